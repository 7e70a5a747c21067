"""Training callbacks: Stochastic Weight Averaging (SWA) with BatchNormalization re-estimation, a
training time estimate, and exact BatchNormalization statistics before each validation pass.

SWA (Izmailov et al., 2018, "Averaging Weights Leads to Wider Optima and
Better Generalization", arXiv:1803.05407) keeps training with a constant (or
cyclic) learning rate after a normal schedule and averages the weights visited
at the end of each epoch.  Izmailov et al. argue that the average lies in a
flatter region of the loss surface than any single iterate and generalises
better; notebooks 03 and 04 measured no gain from it in their short ``quick``
runs.

Two steps are needed to use the averaged network:

1. copy the averaged trainable weights into the model (``SWA.apply``);
2. re-estimate the BatchNormalization moving mean/variance, because the stored
   ones were collected for the *individual* iterates, not for their average
   (``recompute_batchnorm_statistics``).

``TrainingTimeEstimate`` prints, once the first epoch is done, how long the remaining epochs should take
on this machine, so a reader knows whether to wait or to pick a smaller profile.

``BatchNormBeforeValidation`` runs ``recompute_batchnorm_statistics`` before every validation pass of
``fit``, for runs too short for batch norm's moving averages to settle (hyperparameter trials).

All code uses Keras 3 only and runs on the TensorFlow and JAX backends.
"""

import time
from pathlib import Path

import keras
import numpy as np


def _batchnorm_inputs(
    model: keras.Model,
) -> tuple[list[keras.layers.BatchNormalization], list[keras.KerasTensor]]:
    """BatchNormalization layers of ``model`` and their input tensors.

    Searches functional and Sequential sub-models recursively.  The tensors
    are symbolic tensors of ``model``'s own graph (for a nested sub-model,
    its graph is re-applied to the sub-model's input in ``model``'s graph).

    Returns:
        ``(layers, tensors)``, two lists of the same length.
    """
    bn_layers, tensors = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            bn_layers.append(layer)
            tensors.append(layer.input)
        elif isinstance(layer, keras.Model):
            inner_layers, inner_tensors = _batchnorm_inputs(layer)
            if inner_layers:
                inner_features = keras.Model(layer.inputs, inner_tensors)
                # `keras.Layer.input` is the input of the sub-model's first call
                # in the outer graph (`keras.Model` overrides `.input` to return
                # its own `Input`s).
                outer_input = keras.tree.flatten(keras.Layer.input.fget(layer))
                bn_layers += inner_layers
                tensors += keras.tree.flatten(inner_features(outer_input))
    return bn_layers, tensors


def _batchnorm_moments_model(
    model: keras.Model, bn_layers: list[keras.layers.BatchNormalization], tensors: list[keras.KerasTensor]
) -> keras.Model:
    """A model that maps ``model``'s input to the per-channel batch moments of each BN layer's input.

    ``bn_layers`` and ``tensors`` are those of :func:`_batchnorm_inputs`. For every BN layer it outputs the
    mean and the sum of squared deviations from that mean (both float32, shape (channels,)) of the layer's
    input over the batch and all positions, reduced on the device by the backend; only these 2 x channels
    numbers per layer reach the host.
    """
    moments = []
    for bn, h in zip(bn_layers, tensors):
        axis = bn.axis % len(h.shape)
        axes = [i for i in range(len(h.shape)) if i != axis]
        h = keras.ops.cast(h, "float32")  # 16-bit inputs under a mixed-precision policy
        mean = keras.ops.mean(h, axis=axes, keepdims=True)
        squared_deviations = keras.ops.sum(keras.ops.square(h - mean), axis=axes)
        moments += [keras.ops.reshape(mean, (-1,)), squared_deviations]
    return keras.Model(model.inputs, moments)


def recompute_batchnorm_statistics(model: keras.Model, x: np.ndarray, batch_size: int = 250) -> int:
    """Set every BatchNormalization layer's moving statistics from one pass over ``x``.

    After weight averaging, the stored moving mean/variance no longer match
    the weights.  As PyTorch's ``torch.optim.swa_utils.update_bn``, this runs
    the network once over ``x`` **in training mode**, so each BN layer sees
    the inputs it would see during training (upstream BN layers normalise
    with batch statistics).  For each BN layer and batch, the device reduces
    the layer's input to its per-channel mean and sum of squared deviations
    (float32, over images and positions); the host merges the batches in
    float64 with Chan et al.'s pairwise update, and then::

        moving_mean     = E[h]
        moving_variance = E[h**2] - E[h]**2      (population variance)

    BN momentum is not used: the result is the exact average over ``x``,
    independent of ``batch_size`` (except through the batch statistics of
    upstream BN layers, as in training).

    Because the pass runs in training mode, Dropout and Keras random
    augmentation layers inside the model are active too, which matches what
    the BN layers saw during training.

    Args:
        model: a built single-input functional or Sequential model.  BN layers
            inside nested functional/Sequential sub-models are found too; BN
            layers inside custom (subclassed) layers or models are not
            supported and raise ``ValueError``.
        x: inputs, shape ``(N, ...)`` as the model expects, e.g.
            ``(N, 28, 28, 1)`` float32 images.  Typically the training set.
        batch_size: images per forward pass (250 divides the splits of these
            notebooks, so every pass has one shape).

    Returns:
        The number of BatchNormalization layers updated (0 if there are none;
        then no pass is made).
    """
    bn_layers, tensors = _batchnorm_inputs(model)
    found = {id(bn.moving_mean) for bn in bn_layers}
    missed = [v.path for v in model.variables if v.name == "moving_mean" and id(v) not in found]
    if missed:
        raise ValueError(f"BatchNormalization statistics not reachable through functional sub-models: {missed}")
    if not bn_layers:
        return 0

    moments_model = _batchnorm_moments_model(model, bn_layers, tensors)
    values_per_image = [int(np.prod(h.shape[1:])) // h.shape[bn.axis] for bn, h in zip(bn_layers, tensors)]
    counts = np.zeros(len(bn_layers))  # values per channel seen so far
    means: list[np.ndarray | float] = [0.0] * len(bn_layers)  # per channel, float64
    squared_deviations: list[np.ndarray | float] = [0.0] * len(bn_layers)
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        outputs = [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in moments_model([batch], training=True)]
        for i in range(len(bn_layers)):
            n_batch = len(batch) * values_per_image[i]
            batch_mean, batch_squares = outputs[2 * i], outputs[2 * i + 1]
            total = counts[i] + n_batch
            delta = batch_mean - means[i]
            means[i] = means[i] + delta * (n_batch / total)
            squared_deviations[i] = squared_deviations[i] + batch_squares + delta**2 * (counts[i] * n_batch / total)
            counts[i] = total

    for bn, mean, deviations, count in zip(bn_layers, means, squared_deviations, counts):
        bn.moving_mean.assign(np.asarray(mean).astype(bn.moving_mean.dtype))
        bn.moving_variance.assign((np.asarray(deviations) / count).astype(bn.moving_variance.dtype))
    return len(bn_layers)


class SWA(keras.callbacks.Callback):
    """Stochastic Weight Averaging of the model's trainable weights.

    From the end of epoch ``start_epoch`` (0-based, i.e. after that epoch's
    updates) on, at every epoch end the trainable weights ``w`` are folded into
    an equal-weight running mean (float64)::

        average += (w - average) / (n_averaged + 1)

    The callback never touches the learning rate: the constant (or cyclic)
    learning rate of the SWA phase is the optimizer schedule's job, e.g.
    ``fmnist_utils.schedules.WarmupCosine`` whose tail is constant.  It works
    with a float learning rate or a ``LearningRateSchedule``.

    The average accumulates across ``fit`` calls (epochs are numbered as by
    ``fit``, so continue training with ``initial_epoch``).  After training,
    call ``apply(x_train)`` to load the average into the model and
    re-estimate its BatchNormalization statistics.

    A long training can be resumed after an interruption with ``keras.callbacks.BackupAndRestore``, which
    saves the model and the optimizer after every epoch. The running average lives in this callback, so
    pass ``backup_dir`` too: the average is then saved there after every epoch (with the one before, in
    case the run stopped between the two callbacks' saves), reloaded when ``fit`` resumes, and deleted
    when ``fit`` ends normally. Use a folder of its own, not BackupAndRestore's.

    Args:
        start_epoch: first epoch (0-based) whose final weights are averaged.
        verbose: print a line when averaging starts and in ``apply``.
        backup_dir: folder for the running average of an interrupted ``fit``, or None (not saved).

    Attributes:
        n_averaged: number of epoch-end weight snapshots in the average.
        averaged_weights: float64 arrays, one per trainable variable (in
            ``model.trainable_variables`` order, same shapes); empty until
            the first average.
    """

    def __init__(self, start_epoch: int, verbose: bool = True, backup_dir: str | Path | None = None) -> None:
        super().__init__()
        self.start_epoch = start_epoch
        self.verbose = verbose
        self.backup_dir = Path(backup_dir) if backup_dir is not None else None
        self.n_averaged = 0
        self.averaged_weights: list[np.ndarray] = []
        self._resume_checked = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._resume_checked = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # The first epoch of this fit: BackupAndRestore has set it by now. Resume the average of epochs < epoch.
        if self._resume_checked or self.backup_dir is None:
            return
        self._resume_checked = True
        saved = {}
        for path in self._state_files():
            with np.load(path) as state:
                saved[int(state["epoch"])] = {name: state[name] for name in state.files}
        if epoch == 0 or epoch <= self.start_epoch and not saved:
            return  # a fresh start, or a resume before averaging began
        if epoch - 1 not in saved:
            raise RuntimeError(
                f"fit resumes at epoch {epoch + 1}, but {self.backup_dir} holds the SWA average after epoch(s) "
                f"{sorted(e + 1 for e in saved) or 'none'}, not after epoch {epoch}. Delete that folder and the "
                "BackupAndRestore folder to start the training again."
            )
        state = saved[epoch - 1]
        self.n_averaged = int(state["n_averaged"])
        self.averaged_weights = [state[f"w{i}"] for i in range(len(state) - 2)]
        if self.verbose:
            print(f"SWA: resumed the average of {self.n_averaged} epoch-end weights from {self.backup_dir}")

    def _state_files(self) -> list[Path]:
        """The saved averages in ``backup_dir``, ``swa-<0-based epoch>.npz``, oldest first."""
        return sorted(p for p in self.backup_dir.glob("swa-*.npz") if ".partial" not in p.name)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.backup_dir is not None:
            for path in self._state_files():
                path.unlink()

    def _save_state(self, epoch: int) -> None:
        """Write the average after ``epoch`` (0-based) and keep only the previous epoch's file beside it."""
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        weights = {f"w{i}": w for i, w in enumerate(self.averaged_weights)}
        partial = self.backup_dir / f"swa-{epoch:05d}.partial.npz"
        np.savez(partial, epoch=epoch, n_averaged=self.n_averaged, **weights)
        partial.replace(self.backup_dir / f"swa-{epoch:05d}.npz")
        for path in self._state_files():
            if int(path.stem.split("-")[1]) < epoch - 1:
                path.unlink()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch < self.start_epoch:
            return
        weights = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in self.model.trainable_variables]
        if self.n_averaged == 0:
            self.averaged_weights = weights
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: SWA starts averaging the weights.")
        else:
            for average, w in zip(self.averaged_weights, weights):
                average += (w - average) / (self.n_averaged + 1)
        self.n_averaged += 1
        if self.backup_dir is not None:
            self._save_state(epoch)

    def load_average(self) -> None:
        """Copy the averaged weights into the model's trainable variables.

        The BatchNormalization moving statistics are left as training left
        them, i.e. stale: call ``recompute_batchnorm_statistics`` next, or use
        ``apply``, which does both.
        """
        if self.n_averaged == 0:
            raise ValueError(
                f"SWA has averaged nothing: averaging starts at the end of epoch "
                f"{self.start_epoch} (0-based), so train for more than start_epoch "
                f"epochs (start_epoch >= the number of epochs run)."
            )
        for variable, average in zip(self.model.trainable_variables, self.averaged_weights):
            variable.assign(average.astype(variable.dtype))

    def apply(self, x: np.ndarray, batch_size: int = 250) -> None:
        """Load the averaged weights into the model and recompute its BN statistics.

        Args:
            x: training inputs, shape ``(N, ...)``, for
                ``recompute_batchnorm_statistics``.
            batch_size: images per forward pass of that recomputation.
        """
        self.load_average()
        n_bn = recompute_batchnorm_statistics(self.model, x, batch_size)
        if self.verbose:
            print(
                f"SWA: loaded the average of {self.n_averaged} epoch-end weights; "
                f"recomputed the statistics of {n_bn} BatchNormalization layers."
            )


def _duration(seconds: float) -> str:
    """Seconds as ``"17.5 s"``, ``"5.8 min"`` or ``"1.2 h"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class TrainingTimeEstimate(keras.callbacks.Callback):
    """After the second epoch of ``fit``, print one line: its wall time and the expected time of the rest.

    For example ``epoch 2 took 17.5 s (epoch 1, with compilation: 25.0 s); the remaining 18 epochs should take
    about 5.2 min on this machine``. The first epoch also traces or compiles the training and validation
    steps (on a GPU with XLA, much longer than a step), so the estimate uses the second epoch's wall time
    (training and validation) times the number of remaining epochs, i.e. ``fit``'s ``epochs`` minus the epochs
    done. A ``fit`` of a single epoch reports that epoch at the end of training.

    The line is printed when the third epoch begins, after Keras' progress bar has finished the second
    epoch's line, or at the end of training if no third epoch follows. Nothing else is printed. It measures
    the epochs of every ``fit`` call it is passed to.
    """

    def __init__(self) -> None:
        super().__init__()
        self._epoch_started = 0.0
        self._epochs: list[tuple[int, float]] = []  # (0-based epoch, wall seconds) of this fit's first two epochs
        self._printed = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._epochs, self._printed = [], False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if len(self._epochs) == 2 and not self._printed:
            self._report(remaining=self.params["epochs"] - epoch)  # epochs epoch, ..., epochs - 1 (0-based)
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if len(self._epochs) < 2:
            self._epochs.append((epoch, time.perf_counter() - self._epoch_started))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._epochs and not self._printed:
            self._report(remaining=0)  # no third epoch began: the last epoch, or training stopped early

    def _report(self, remaining: int) -> None:
        """Print the line for the last measured epoch, followed by ``remaining`` epochs."""
        epoch, seconds = self._epochs[-1]
        line = f"epoch {epoch + 1} took {_duration(seconds)}"
        if len(self._epochs) == 2:
            first_epoch, first_seconds = self._epochs[0]
            line += f" (epoch {first_epoch + 1}, with compilation: {_duration(first_seconds)})"
        if remaining == 0:
            line += "; no epochs remain"
        else:
            epochs = "epoch" if remaining == 1 else f"{remaining} epochs"
            line += f"; the remaining {epochs} should take about {_duration(remaining * seconds)} on this machine"
        print(line)
        self._printed = True


class BatchNormBeforeValidation(keras.callbacks.Callback):
    """Before every validation pass of ``fit``, set the BatchNormalization statistics exactly from ``x``.

    Batch norm's moving averages (momentum 0.99) forget their starting values (mean 0, variance 1) only
    after several hundred steps, so a model trained for a few hundred steps is validated with statistics
    that do not match its weights, and scores far below what it has learnt. Short hyperparameter trials
    are such runs. This callback calls :func:`recompute_batchnorm_statistics` on ``x`` (images
    (N, 28, 28, 1)) in ``on_test_begin``, which ``fit`` calls before each validation pass.
    """

    def __init__(self, x: np.ndarray, batch_size: int = 250) -> None:
        super().__init__()
        self.x, self.batch_size = x, batch_size

    def on_test_begin(self, logs: dict | None = None) -> None:
        recompute_batchnorm_statistics(self.model, self.x, self.batch_size)
