"""Hyperparameter search for notebook 07 with KerasTuner: the search space of notebook 03's CNN, the
training recipe every trial follows, and the table of the trials a tuner wrote to disk.

A search has two stages. The coarse one samples :class:`SearchSpace` widely; the fine one samples
``space.around(best_values)``, a narrower space around the best coarse trial. Every trial trains
:func:`fmnist_utils.models.modern_cnn` with notebook 03's optimiser (AdamW), label smoothing and batch
size, and is scored by its best validation accuracy over its epochs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
import pandas as pd

from fmnist_utils import models
from fmnist_utils.augment import AugmentedBatches
from fmnist_utils.callbacks import BatchNormBeforeValidation
from fmnist_utils.schedules import WarmupCosine

AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "none": {"flip": False, "max_shift": 0, "erasing_p": 0.0},
    "flip": {"flip": True, "max_shift": 0, "erasing_p": 0.0},
    "flip + shift": {"flip": True, "max_shift": 2, "erasing_p": 0.0},
    "flip + shift + erasing": {"flip": True, "max_shift": 2, "erasing_p": 0.5},
}
"""Augmentation strengths, weakest first: keyword arguments of :class:`fmnist_utils.augment.AugmentedBatches`."""

HYPERPARAMETERS = ("learning_rate", "width", "dropout", "weight_decay", "augmentation")
LOG_SCALE = ("learning_rate", "weight_decay")
STAGE_DROPOUT_SHARE = 1 / 3  # dropout after each stage, as a share of the head's (notebook 03: 0.1 and 0.3)
AROUND_FACTOR = 2.0
"""How far :meth:`SearchSpace.around` reaches from a trial's learning rate and weight decay: a factor either way."""
AROUND_DROPOUT_STEP = 0.1
"""How far :meth:`SearchSpace.around` reaches from a trial's dropout: this much either way."""


@dataclass(frozen=True)
class Clipping:
    """One range of :meth:`SearchSpace.around`, as intended and as kept inside the coarse space.

    Attributes:
        name: the hyperparameter, e.g. ``"learning_rate"``.
        value: the trial's value the range is centred on.
        intended: ``(low, high)`` before the cut. kept: ``(low, high)`` after it.
    """

    name: str
    value: float
    intended: tuple[float, float]
    kept: tuple[float, float]

    @property
    def share_kept(self) -> float:
        """Share of the intended half-width left on the cut side (of the logarithm, for :data:`LOG_SCALE`).

        E.g. 0.36 for a learning rate of 7.8e-3 with factor 2 under a bound of 1e-2: log(1e-2 / 7.8e-3) / log 2.
        """
        scale = math.log if self.name in LOG_SCALE else float
        shares = []
        for end in (0, 1):
            if self.kept[end] != self.intended[end]:
                wanted = abs(scale(self.intended[end]) - scale(self.value))
                left = abs(scale(self.kept[end]) - scale(self.value))
                shares.append(left / wanted if wanted else 0.0)
        return max(0.0, min(shares, default=1.0))

    def __str__(self) -> str:
        form = ".1e" if self.name in LOG_SCALE else ".2f"
        label = self.name.replace("_", " ")
        side = "upper" if self.kept[1] != self.intended[1] else "lower"
        if self.name == "dropout" and side == "lower" and self.kept[0] <= 0:
            advice = "dropout cannot go lower, so nothing is lost"
        else:
            advice = "the optimum may lie beyond it: widen that end of the coarse range and search again"
        return (
            f"{label} {self.value:{form}} is near the {side} edge of the coarse range: the fine range is cut to "
            f"{self.kept[0]:{form}} to {self.kept[1]:{form}} instead of {self.intended[0]:{form}} to "
            f"{self.intended[1]:{form}}, {self.share_kept:.0%} of its half-width on that side; {advice}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """Where a search looks. Ranges are ``(low, high)``, inclusive; choices are tuples.

    Attributes:
        learning_rate: peak learning rate of AdamW, sampled on a log scale.
        width: multipliers of the base filters per stage, e.g. ``(0.5, 1.0)``.
        dropout: dropout before the classifier; each stage's dropout is a third of it.
        weight_decay: AdamW's decoupled weight decay, sampled on a log scale.
        augmentation: names from :data:`AUGMENTATIONS`.
    """

    learning_rate: tuple[float, float]
    width: tuple[float, ...]
    dropout: tuple[float, float]
    weight_decay: tuple[float, float]
    augmentation: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("learning_rate", "dropout", "weight_decay"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"SearchSpace.{name}=({low}, {high}): the low end must not exceed the high end.")
        for name in LOG_SCALE:
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"SearchSpace.{name} is sampled on a log scale, so it must be positive.")
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ValueError(f"SearchSpace.dropout={self.dropout}: dropout rates lie in [0, 1).")
        if not self.width or min(self.width) <= 0:
            raise ValueError(f"SearchSpace.width={self.width}: give at least one positive width multiplier.")
        unknown = [name for name in self.augmentation if name not in AUGMENTATIONS]
        if not self.augmentation or unknown:
            raise ValueError(
                f"SearchSpace.augmentation={self.augmentation}: choose one or more of {list(AUGMENTATIONS)}."
            )

    def __str__(self) -> str:
        def span(name: str, form: str) -> str:
            low, high = getattr(self, name)
            scale = " (log scale)" if name in LOG_SCALE else ""
            return f"{low:{form}}" if low == high else f"{low:{form}} to {high:{form}}{scale}"

        return (
            f"learning rate {span('learning_rate', '.1e')}; width {' or '.join(map(str, self.width))}; "
            f"dropout {span('dropout', '.2f')}; weight decay {span('weight_decay', '.1e')}; "
            f"augmentation {' or '.join(self.augmentation)}"
        )

    @classmethod
    def point(cls, values: Mapping[str, Any]) -> SearchSpace:
        """The space that holds only ``values`` (a dict of the five hyperparameters): every trial is that one."""
        return cls(
            learning_rate=(values["learning_rate"],) * 2,
            width=(values["width"],),
            dropout=(values["dropout"],) * 2,
            weight_decay=(values["weight_decay"],) * 2,
            augmentation=(values["augmentation"],),
        )

    def around(
        self, values: Mapping[str, Any], factor: float = AROUND_FACTOR, dropout_step: float = AROUND_DROPOUT_STEP
    ) -> SearchSpace:
        """A narrower space around one trial's ``values``, kept inside this space.

        Learning rate and weight decay range over ``value / factor`` to ``value * factor``, dropout over
        ``value ± dropout_step``; width and augmentation are fixed to the trial's choices. A range that would
        reach past this space's bounds is cut at them: :meth:`clipped` lists those cuts.
        """
        ranges = {c.name: c.kept for c in self._around_ranges(values, factor, dropout_step)}
        return replace(self, **ranges, width=(values["width"],), augmentation=(values["augmentation"],))

    def clipped(
        self, values: Mapping[str, Any], factor: float = AROUND_FACTOR, dropout_step: float = AROUND_DROPOUT_STEP
    ) -> list[Clipping]:
        """The ranges of ``around(values, factor, dropout_step)`` that this space's bounds cut short.

        A cut range means the trial sits near an edge of this space, and the optimum may lie beyond it: the
        fine stage cannot look there. Empty when every range fits.
        """
        return [c for c in self._around_ranges(values, factor, dropout_step) if c.kept != c.intended]

    def _around_ranges(self, values: Mapping[str, Any], factor: float, dropout_step: float) -> list[Clipping]:
        """Intended and kept ranges of :meth:`around` for the three numeric hyperparameters."""
        intended = {
            "learning_rate": (values["learning_rate"] / factor, values["learning_rate"] * factor),
            "weight_decay": (values["weight_decay"] / factor, values["weight_decay"] * factor),
            "dropout": (values["dropout"] - dropout_step, values["dropout"] + dropout_step),
        }
        ranges = []
        for name, (low, high) in intended.items():
            bounds = getattr(self, name)
            kept = (max(low, bounds[0]), min(high, bounds[1]))
            ranges.append(Clipping(name, values[name], (low, high), kept))
        return ranges

    def sample(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Register this space's hyperparameters in ``hp`` and return their values for this trial."""

        def number(name: str, sampling: str) -> float:
            low, high = getattr(self, name)
            if low == high:
                return hp.Fixed(name, low)
            return hp.Float(name, low, high, sampling=sampling)

        return {
            "learning_rate": number("learning_rate", "log"),
            "width": hp.Choice("width", list(self.width)),
            "dropout": number("dropout", "linear"),
            "weight_decay": number("weight_decay", "log"),
            "augmentation": hp.Choice("augmentation", list(self.augmentation)),
        }


def scaled_filters(base_filters: Sequence[int], width: float) -> tuple[int, ...]:
    """Filters per stage for a width multiplier, at least 4 each, e.g. ``(16, 32, 64)`` x 0.75 -> ``(12, 24, 48)``."""
    return tuple(max(4, round(filters * width)) for filters in base_filters)


class CNNHyperModel(keras_tuner.HyperModel):
    """Notebook 03's CNN and training recipe, with the values of a :class:`SearchSpace` filled in.

    ``build`` returns the network (uncompiled); ``fit`` compiles it with AdamW (warm-up for the first epoch,
    then cosine decay to a tenth of the peak), label smoothing 0.1 on one-hot targets, and trains it on
    :class:`~fmnist_utils.augment.AugmentedBatches` with the trial's augmentation. Each trial is seeded
    with ``seed``, so two trials with the same values train identically on the same CPU (on a GPU,
    kernel autotuning and atomic additions can make them differ slightly).

    Args:
        space: the search space.
        base_filters: filters per stage at width 1, e.g. ``(16, 32, 64)``.
        epochs: training epochs of each trial.
        seed: seed of the weights, the batch order and the augmentations.
        batch_size: images per batch (125 divides 55,000, 20,000, 10,000 and 5,000: one shape per fit).
        label_smoothing: of the cross-entropy (notebook 03: 0.1).
        batchnorm_images: before each validation pass, batch norm's statistics are recomputed exactly on
            this many training images (:class:`~fmnist_utils.callbacks.BatchNormBeforeValidation`), so that
            short trials are not scored with statistics their weights have outgrown; 0 keeps Keras'
            moving averages, as notebook 03 did.
    """

    def __init__(
        self,
        space: SearchSpace,
        base_filters: Sequence[int],
        epochs: int,
        seed: int,
        batch_size: int = 125,
        label_smoothing: float = 0.1,
        batchnorm_images: int = 5_000,
    ) -> None:
        super().__init__(name="modern_cnn_search")
        # KerasTuner clears Keras' session before each trial, which resets the precision policy to float32:
        # build() sets the policy that was in force when the hypermodel was made (the Setup cell's).
        self.precision = keras.mixed_precision.global_policy().name
        self.batchnorm_images = batchnorm_images
        self.space, self.base_filters, self.epochs = space, tuple(base_filters), epochs
        self.seed, self.batch_size, self.label_smoothing = seed, batch_size, label_smoothing

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The CNN for this trial's values: image (N, 28, 28, 1) -> logits (N, 10)."""
        values = self.space.sample(hp)
        keras.mixed_precision.set_global_policy(self.precision)
        keras.utils.set_random_seed(self.seed)
        return models.modern_cnn(
            filters=scaled_filters(self.base_filters, values["width"]),
            dropout=values["dropout"] * STAGE_DROPOUT_SHARE,
            head_dropout=values["dropout"],
        )

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray],
        callbacks: list[keras.callbacks.Callback] | None = None,
        verbose: int = 0,
        **kwargs: Any,
    ) -> keras.callbacks.History:
        """Compile and train ``model`` on images ``x`` (N, 28, 28, 1) and integer labels ``y`` (N,).

        ``validation_data`` holds images and integer labels too. Prints one line per trial: its values, its
        best validation accuracy and its training seconds. Returns the ``History`` of ``model.fit``.

        A tuner may pass ``epochs`` and ``initial_epoch`` (``keras_tuner.Hyperband`` does: its rounds train a
        trial's model further). The schedule is then sized to the round's ``epochs`` and entered at
        ``initial_epoch``, without a second warm-up. That is a warm restart, not a resumption: the last round's
        schedule had decayed to a tenth of the peak, and the new one starts higher (0.775 x peak when a trial goes
        on from 2 to 4 epochs). Compiling again also resets AdamW's moment estimates.
        """
        epochs = kwargs.pop("epochs", self.epochs)
        initial_epoch = kwargs.get("initial_epoch", 0)
        values = {name: hp.get(name) for name in HYPERPARAMETERS}
        batches = AugmentedBatches(
            x, keras.utils.to_categorical(y, 10), self.batch_size, self.seed, **AUGMENTATIONS[values["augmentation"]]
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(
                warmup_cosine(values["learning_rate"], epochs, len(batches)),
                weight_decay=values["weight_decay"],
            ),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=self.label_smoothing),
            metrics=["accuracy"],
        )
        model.optimizer.iterations.assign(initial_epoch * len(batches))  # the schedule's step
        x_val, y_val = validation_data
        if self.batchnorm_images:
            callbacks = [*(callbacks or []), BatchNormBeforeValidation(x[: self.batchnorm_images])]
        start = time.perf_counter()
        history = model.fit(
            batches,
            validation_data=(x_val, keras.utils.to_categorical(y_val, 10)),
            epochs=epochs,
            shuffle=False,
            callbacks=callbacks,
            verbose=verbose,
            **kwargs,
        )
        seconds = time.perf_counter() - start
        best = int(np.argmax(history.history["val_accuracy"]))
        print(
            f"{describe(values)} -> best validation accuracy "
            f"{history.history['val_accuracy'][best]:.2%} (epoch {initial_epoch + best + 1} of {epochs}), "
            f"{seconds:.0f} s"
        )
        return history


def train(
    values: Mapping[str, Any],
    base_filters: Sequence[int],
    epochs: int,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    validation_data: tuple[np.ndarray, np.ndarray],
    batchnorm_images: int = 5_000,
    batch_size: int = 125,
    **fit_options: Any,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train one configuration outside a tuner, as a trial with these ``values`` would be trained.

    ``batchnorm_images`` and ``batch_size`` are those of :class:`CNNHyperModel`; ``fit_options`` go to
    :meth:`CNNHyperModel.fit` (``callbacks``, ``verbose``). Returns the trained model (final weights) and its
    ``History``.
    """
    hypermodel = CNNHyperModel(
        SearchSpace.point(values), base_filters, epochs, seed, batch_size=batch_size, batchnorm_images=batchnorm_images
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    return model, hypermodel.fit(hp, model, x, y, validation_data, **fit_options)


def warmup_cosine(peak_lr: float, epochs: int, steps_per_epoch: int) -> WarmupCosine:
    """Notebook 03's schedule without its constant tail: linear warm-up over the first epoch (a quarter of the
    run when it is shorter than 4 epochs), then cosine decay to ``peak_lr / 10`` at the end of the run."""
    total = epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 4)
    return WarmupCosine(peak_lr, warmup_steps=warmup, decay_steps=max(1, total - warmup), final_lr=peak_lr / 10)


def describe(values: Mapping[str, Any]) -> str:
    """One line for a trial's values, e.g. ``"lr 2.0e-03, width 1.0, dropout 0.30, wd 1.0e-02, none"``."""
    return (
        f"lr {values['learning_rate']:.1e}, width {values['width']}, dropout {values['dropout']:.2f}, "
        f"wd {values['weight_decay']:.1e}, {values['augmentation']}"
    )


def trials_table(directory: str | Path, objective: str = "val_accuracy") -> pd.DataFrame:
    """The trials a KerasTuner tuner saved under ``directory`` (``<directory>/trial_*/trial.json``).

    Returns:
        One row per trial, indexed by trial id, in the order they ran: one column per hyperparameter,
        ``status``, ``objective`` (the trial's score, NaN if it has none) and ``best_epoch`` (counted from 1).

    Raises:
        FileNotFoundError: ``directory`` holds no ``trial_*/trial.json``, e.g. the tuner's ``directory`` was
            given instead of ``<directory>/<project_name>``.
    """
    paths = sorted(Path(directory).glob("trial_*/trial.json"))
    if not paths:
        raise FileNotFoundError(
            f"No trial_*/trial.json under {directory}. Pass the tuner's project folder, "
            "<directory>/<project_name>, after at least one trial has run."
        )
    rows = []
    for path in paths:
        trial = json.loads(path.read_text())
        score = trial.get("score")
        best_step = trial.get("best_step")
        rows.append(
            {
                "trial": trial["trial_id"],
                **trial["hyperparameters"]["values"],
                "status": trial["status"],
                objective: math.nan if score is None else score,
                "best_epoch": math.nan if best_step is None else best_step + 1,
            }
        )
    return pd.DataFrame(rows).set_index("trial")
