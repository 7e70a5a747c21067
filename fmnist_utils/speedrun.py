"""Time-to-accuracy training on a CPU: notebook 09's recipe, its tricks as switches, and ``make speedrun``.

:class:`Recipe` holds every choice of the speedrun (network widths, epochs, batch size, learning rate, label
smoothing, flips, test-time augmentation); :func:`train` trains it on arrays and records, after every epoch, the
training seconds so far and the validation accuracy, so that a run is a time-to-accuracy curve. Training
seconds count only ``fit`` (compilation included), never the evaluation between epochs.

``python -m fmnist_utils.speedrun`` (``make speedrun``) trains the recipe once on this machine, with a progress
bar, and prints one line to share; it records the run in ``results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fmnist_utils.environment import import_keras_quietly
from fmnist_utils.evaluation import softmax

keras = import_keras_quietly()

FLIPS = ("none", "random", "alternating")


@dataclass(frozen=True)
class Recipe:
    """Every choice of a speedrun training.

    Attributes:
        widths: filters of the stem (28x28) and of each later stage (14x14, 7x7), e.g. ``(24, 48, 96)``.
        epochs: passes over the training images.
        batch_size: images per step.
        peak_lr: SGD learning rate at the end of the warm-up (Nesterov momentum ``momentum``).
        warmup: share of the steps spent warming up linearly from 0; the rest decays along a cosine to 0.
        weight_decay: decoupled weight decay per step, times the learning rate (Keras ``SGD(weight_decay=...)``).
        label_smoothing: share of each target spread evenly over the 10 classes.
        flip: ``"none"``, ``"random"`` (each image mirrored with probability 0.5 every epoch) or
            ``"alternating"`` (random in epoch 1, then each image mirrored every other epoch).
        max_shift: random translation of up to this many pixels (0: none).
        flip_tta: average the predictions of each image and its mirror image at evaluation.
    """

    widths: tuple[int, ...] = (24, 48, 96)
    epochs: int = 8
    batch_size: int = 128
    peak_lr: float = 0.1
    momentum: float = 0.9
    warmup: float = 0.15
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    flip: str = "alternating"
    max_shift: int = 0
    flip_tta: bool = True

    def __post_init__(self) -> None:
        if self.flip not in FLIPS:
            raise ValueError(f"flip must be one of {FLIPS}, not {self.flip!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"need epochs >= 1 and batch_size >= 1, got {self.epochs} and {self.batch_size}")

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed, e.g. ``recipe.replace(flip="none")``."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (widths as a list), as records store them."""
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


def speed_cnn(widths: Sequence[int] = (24, 48, 96), name: str = "speed_cnn"):
    """The speedrun network: little work at full resolution, most at 14x14 and 7x7.

    Stem: conv 3x3 (``widths[0]`` filters) -> BN -> ReLU at 28x28, then 2x2 max-pooling. Each later width: two
    (conv 3x3 -> BN -> ReLU), then 2x2 max-pooling (14 -> 7 -> 3). Head: global max-pooling -> Dense 10 logits
    (float32). Input (N, 28, 28, 1) in [0, 1]; output (N, 10) logits.
    """
    from keras import layers

    from fmnist_utils.models import INPUT_SHAPE, NUM_CLASSES, conv_bn_relu

    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.MaxPooling2D(2, name="stem_pool")(conv_bn_relu(inputs, widths[0], name="stem"))
    for stage, filters in enumerate(widths[1:], start=1):
        for index in (1, 2):
            x = conv_bn_relu(x, filters, name=f"stage{stage}_{index}")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.GlobalMaxPooling2D(name="global_max_pool")(x)
    outputs = layers.Dense(NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def epoch_images(x: np.ndarray, recipe: Recipe, epoch: int, flipped: np.ndarray, rng: np.random.Generator):
    """The training images of one epoch (0-based ``epoch``), flipped and shifted as ``recipe`` says.

    ``flipped`` (N,) bool holds which images the alternating flip mirrors in even epochs; odd epochs mirror the
    others. Returns a new array; ``x`` (N, 28, 28, 1) is not modified.
    """
    from fmnist_utils.augment import random_translate

    if recipe.flip == "random" or (recipe.flip == "alternating" and epoch == 0):
        mirror = rng.random(len(x)) < 0.5
        if recipe.flip == "alternating":
            flipped[:] = mirror
    elif recipe.flip == "alternating":
        mirror = flipped if epoch % 2 == 0 else ~flipped
    else:
        mirror = np.zeros(len(x), bool)
    out = np.where(mirror[:, None, None, None], x[:, :, ::-1], x)
    return random_translate(out, rng, recipe.max_shift) if recipe.max_shift else out


def predict_logits(model, x: np.ndarray, flip_tta: bool, batch_size: int = 1000) -> np.ndarray:
    """Logits (N, 10) of images ``x``; with ``flip_tta``, the mean of the logits of each image and its mirror."""
    logits = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float64)
    if flip_tta:
        logits = (logits + np.asarray(model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0))) / 2
    return logits


@dataclass
class Training:
    """What :func:`train` returns: the model and its time-to-accuracy curves.

    Attributes:
        model: the trained Keras model.
        seconds: cumulative training seconds after each epoch (``fit`` only, compilation included).
        accuracy: for each named set given to :func:`train`, its accuracy after each epoch (fractions), with the
            recipe's test-time augmentation.
        prepare_seconds, evaluate_seconds: seconds spent making each epoch's images and evaluating the sets
            after it (not in ``seconds``).
    """

    model: object
    seconds: list[float] = field(default_factory=list)
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    prepare_seconds: list[float] = field(default_factory=list)
    evaluate_seconds: list[float] = field(default_factory=list)

    def seconds_to(self, target: float, name: str = "validation") -> float | None:
        """Training seconds until the accuracy on set ``name`` first reached ``target``, or None if it never did."""
        return seconds_to(self.seconds, self.accuracy[name], target)


def seconds_to(seconds: Sequence[float], accuracies: Sequence[float], target: float) -> float | None:
    """The first of ``seconds`` (cumulative, per epoch) whose accuracy in ``accuracies`` reaches ``target``, or
    None if none does: the time to accuracy of one curve."""
    for elapsed, reached in zip(seconds, accuracies):
        if reached >= target:
            return elapsed
    return None


def train(
    recipe: Recipe,
    x_train: np.ndarray,
    y_train: np.ndarray,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
    on_epoch: Callable[[int, Training], None] | None = None,
) -> Training:
    """Train ``recipe`` on images (N, 28, 28, 1) in [0, 1] and labels (N,), seeded with ``seed``.

    After each epoch the model is evaluated on every set of ``curves`` (name -> (images, labels)), e.g.
    ``{"validation": (x_val, y_val)}``, and ``on_epoch(epoch, training)`` is called (1-based epoch), e.g. to
    move a progress bar.
    """
    from fmnist_utils.models import NUM_CLASSES

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = speed_cnn(recipe.widths)
    steps = recipe.epochs * (len(x_train) // recipe.batch_size)
    warmup = int(round(recipe.warmup * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(steps - warmup, 1), warmup_target=recipe.peak_lr, warmup_steps=warmup
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay
        ),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing),
    )
    targets = keras.utils.to_categorical(y_train, NUM_CLASSES)
    flipped = np.zeros(len(x_train), bool)
    training = Training(model, accuracy={name: [] for name in curves})
    elapsed = 0.0
    for epoch in range(recipe.epochs):
        start = time.perf_counter()
        images = epoch_images(x_train, recipe, epoch, flipped, rng)
        fit_start = time.perf_counter()
        model.fit(images, targets, batch_size=recipe.batch_size, epochs=1, shuffle=True, verbose=0)
        elapsed += time.perf_counter() - fit_start
        training.prepare_seconds.append(fit_start - start)
        start = time.perf_counter()
        for name, (x, y) in curves.items():
            training.accuracy[name].append(accuracy(model, x, y, recipe.flip_tta))
        training.evaluate_seconds.append(time.perf_counter() - start)
        training.seconds.append(elapsed)
        if on_epoch:
            on_epoch(epoch + 1, training)
    return training


def accuracy(model, x: np.ndarray, y: np.ndarray, flip_tta: bool) -> float:
    """Share of images ``x`` (N, 28, 28, 1) whose predicted class is the label ``y`` (N,)."""
    return float(np.mean(predict_logits(model, x, flip_tta).argmax(1) == y))


class ArrayBatches(keras.utils.PyDataset):
    """Batches of arrays, reshuffled every epoch, as a ``keras.utils.PyDataset`` (Python code per batch).

    Args:
        x: images (N, 28, 28, 1). y: targets, first dimension N. batch_size: images per batch (the last
            N % batch_size images of each shuffled epoch sit it out). seed: seeds the shuffling.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return max(len(self.x) // self.batch_size, 1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def step_seconds(
    build: Callable[[], object], batch_size: int, precision: str, jit_compile: bool = False, steps: int = 8
) -> tuple[float, float]:
    """Time training steps of a fresh model from ``build()`` on random images, under the Keras ``precision`` policy.

    Returns ``(first, median)``: seconds of the first step (tracing and compilation included) and the median of
    ``steps`` later steps. The global precision policy is restored afterwards.
    """
    from fmnist_utils.models import INPUT_SHAPE, NUM_CLASSES

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE), np.float32)
    y = rng.integers(0, NUM_CLASSES, batch_size)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:]))


def fit_seconds(model, batches, repeats: int = 2) -> float:
    """Fastest of ``repeats`` timed one-epoch ``fit`` calls of a compiled ``model`` on ``batches`` (a
    ``keras.utils.PyDataset`` or a ``tf.data.Dataset``; for arrays, a pair ``(images, targets)`` at batch 256),
    after one untimed call that compiles."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        if isinstance(batches, tuple):
            model.fit(*batches, batch_size=256, epochs=1, shuffle=True, verbose=0)
        else:
            model.fit(batches, epochs=1, shuffle=False, verbose=0)  # they shuffle themselves
        times.append(time.perf_counter() - start)
    return min(times[1:])


def probabilities(model, x: np.ndarray, flip_tta: bool) -> np.ndarray:
    """Class probabilities (N, 10) of images ``x`` (N, 28, 28, 1), with flip test-time augmentation if asked."""
    return softmax(predict_logits(model, x, flip_tta))


TARGET = 0.94  # the accuracy that the speedrun races to, on the test set
BUDGET_SECONDS = 360  # within this much training on the 2-core reference CPU (issue's goal: 6 minutes)


def share_line(training: Training, device: str, precision: str, versions: dict[str, str]) -> str:
    """One line that says what a ``make speedrun`` run reached on the test set, in how long, and on what."""
    seconds = training.seconds_to(TARGET, "test")
    final = training.accuracy["test"][-1]
    total = training.seconds[-1]
    if seconds is None:
        reached = f"{final:.2%} test ({TARGET:.0%} not reached) after {total:.0f} s of training"
    else:
        reached = f"{TARGET:.0%} test after {seconds:.0f} s of training ({final:.2%} after {total:.0f} s)"
    libraries = ", ".join(f"{name} {version}" for name, version in versions.items() if name in SHARED_LIBRARIES)
    return f"Fashion-MNIST speedrun: {reached}; {device}; {precision}; {libraries}"


SHARED_LIBRARIES = ("python", "keras", "tensorflow", "jax", "numpy")


def load_runs(recipe: Recipe, folder=None) -> list[dict]:
    """The recorded ``make speedrun`` runs of ``recipe`` (every field equal) in ``results/speedrun/``, oldest first."""
    from fmnist_utils.results import load_speedruns

    return [entry for entry in load_speedruns(folder) if entry.get("recipe") == recipe.as_dict()]


def record(training: Training, recipe: Recipe, seed: int, run: dict, folder=None):
    """Write one ``make speedrun`` run to ``results/speedrun/<date>T<time>-<backend>-seed<seed>.json``.

    ``run`` holds ``hardware``, ``precision``, ``backend`` and ``versions``. Returns the path.
    """
    import datetime as dt
    import json

    from fmnist_utils.results import results_dir

    now = dt.datetime.now()
    folder = folder or results_dir() / "speedrun"
    path = folder / f"{now:%Y-%m-%dT%H%M%S}-{run['backend']}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "recipe": recipe.as_dict(),
        "seed": seed,
        "target": TARGET,
        "seconds_to_target": training.seconds_to(TARGET, "test"),
        "test_accuracy": round(training.accuracy["test"][-1], 6),
        "train_seconds": round(training.seconds[-1], 1),
        "seconds": [round(value, 1) for value in training.seconds],
        "accuracy": {name: [round(value, 6) for value in values] for name, values in training.accuracy.items()},
        **run,
        "date": now.isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(entry, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``make speedrun``: train :class:`Recipe` once per seed, print progress and one line to share, record it."""
    parser = argparse.ArgumentParser(description="Train notebook 09's speedrun recipe on this machine and time it.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training per seed (default: 0)")
    parser.add_argument("--no-record", action="store_true", help="do not write results/speedrun/")
    arguments = parser.parse_args(argv)

    from fmnist_utils import data, environment, profiles

    details = environment.gpu_details()
    profile = profiles.get_profile(gpu_visible=details is not None)
    precision = environment.choose_precision(details)
    keras.mixed_precision.set_global_policy(precision.policy)
    run = {
        "hardware": f"GPU: {details[0]}" if details else f"CPU: {environment.cpu_name()}",
        "precision": precision.policy,
        "backend": keras.backend.backend(),
        "versions": environment.library_versions(),
    }
    recipe = Recipe(epochs=profile.epochs(smoke=1, quick=Recipe.epochs, full=Recipe.epochs))
    print(f"Device    : {run['hardware']}")
    print(f"Precision : {precision.policy} ({precision.reason}); backend {run['backend']}")
    print(f"Profile   : {profile.label} ({profile.reason})")
    print(f"Recipe    : {recipe}")
    splits = data.load_splits(profile, seed=DATA_SEED)
    curves = {"validation": (splits.x_val, splits.y_val), "test": (splits.x_test, splits.y_test)}
    lines = []
    for seed in arguments.seeds:
        print(f"Seed {seed}")
        shown = [*curves, "training s"]  # shown as they are, not averaged over epochs
        bar = keras.utils.Progbar(recipe.epochs, stateful_metrics=shown, unit_name="epoch")

        def progress(epoch: int, training: Training, bar=bar) -> None:
            latest = [(name, values[-1]) for name, values in training.accuracy.items()]
            bar.update(epoch, [*latest, ("training s", training.seconds[-1])], finalize=epoch == recipe.epochs)

        training = train(recipe, splits.x_train, splits.y_train, curves, seed=seed, on_epoch=progress)
        lines.append(share_line(training, run["hardware"], f"{run['precision']}, {run['backend']}", run["versions"]))
        print(lines[-1])
        if profile.records and not arguments.no_record:
            print(f"Recorded in {record(training, recipe, seed, run)}")
    if len(lines) > 1:
        print("\n".join(["All seeds:", *lines]))
    return 0


DATA_SEED = 42  # the validation split of every notebook


if __name__ == "__main__":
    raise SystemExit(main())
