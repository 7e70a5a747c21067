"""How fast this machine runs the helpers and the models of the notebooks, with the machine named beside the figures.

Timings make poor unit tests: on a busy or small machine they fail without anything being wrong. This
command prints them instead (``make bench``, or ``python scripts/bench.py [--rounds N] [--steps N]``), each
beside its budget, a figure that a quiet 2-core laptop CPU meets, so a slow figure can be read in context.

Every helper figure is the fastest of ``--rounds`` rounds: other processes can only make a round slower.
The model table gives, for each network the notebooks train, the seconds of one 55,000-image training epoch
(440 steps of 125 images, validation not included) in float32 and in the precision policy this machine gets
(:func:`fmnist_utils.environment.choose_precision`): the median of ``--steps`` timed training steps after two
untimed ones (the first compiles), times 440. The median ignores the occasional stall of a shared machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable

import numpy as np

from fmnist_utils import data
from fmnist_utils.environment import cpu_name, import_keras_quietly

BATCH_SIZE = 125  # images per batch, as in the notebooks
STEPS_PER_EPOCH = 55_000 // BATCH_SIZE
AUGMENTATION_CALLS = 20  # calls per round of an augmentation function


def main(argv: list[str] | None = None) -> int:
    """Print the machine, then one line per figure: what was timed, the time, and its budget if it has one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure; the fastest is shown (default 5)")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per model (default 15)")
    parser.add_argument("--skip-models", action="store_true", help="helpers only, no model table")
    arguments = parser.parse_args(argv)
    rounds = arguments.rounds

    print(f"Machine : {cpu_name()}")
    print(f"Python  : {platform.python_version()}, NumPy {np.__version__}")
    import_keras_quietly()  # estimates and augment import Keras; this keeps TensorFlow's C++ start-up lines quiet
    from fmnist_utils import augment
    from fmnist_utils.estimates import fastest_seconds

    data.load_data()  # the cold load is not timed (it may download the files); it prints where they are
    load_seconds = fastest_seconds(lambda: data.load_data(verbose=False), rounds, calls=1)
    figures: list[tuple[str, float, str, float | None]] = [
        ("warm dataset load (4 files read and verified)", load_seconds, "s", 1.5)
    ]

    images = np.random.default_rng(0).uniform(0.0, 1.0, (BATCH_SIZE, 28, 28, 1)).astype(np.float32)
    rng = np.random.default_rng(1)
    augmentations: tuple[tuple[str, Callable[[], np.ndarray], float | None], ...] = (
        ("random_flip", lambda: augment.random_flip(images, rng), None),
        ("random_translate", lambda: augment.random_translate(images, rng), 5.0),
        ("random_erasing", lambda: augment.random_erasing(images, rng), None),
        ("augment_batch (flip, translate, erase)", lambda: augment.augment_batch(images, rng), 20.0),
    )
    for name, function, budget_ms in augmentations:
        milliseconds = 1_000 * fastest_seconds(function, rounds, AUGMENTATION_CALLS)
        figures.append((f"{name}, per batch of {BATCH_SIZE} images", milliseconds, "ms", budget_ms))

    width = max(len(label) for label, *_ in figures)
    for label, value, unit, budget in figures:
        context = f"budget < {budget:g} {unit}" if budget is not None else ""
        print(f"{label:<{width}}  {value:8.2f} {unit:<2}  {context}".rstrip())
    if not arguments.skip_models:
        print_model_table(arguments.steps)
    return 0


def _model_builders() -> dict[str, Callable[[], tuple[object, object, object]]]:
    """Notebook, network -> a function that builds and compiles it and returns (model, inputs, targets)."""
    import keras

    from fmnist_utils import capsules, models, wide_resnet

    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (BATCH_SIZE, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, BATCH_SIZE)
    onehot = keras.utils.to_categorical(labels, 10)

    def classifier(build: Callable[[], keras.Model]) -> Callable[[], tuple[object, object, object]]:
        def make() -> tuple[object, object, object]:
            model = build()
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model, images, labels

        return make

    def capsnet() -> tuple[object, object, object]:
        model, _ = capsules.capsule_network(conv_filters=64, capsule_maps=8)
        model.compile(optimizer="adam", loss=[capsules.margin_loss, capsules.reconstruction_loss])
        return model, [images, onehot], [onehot, images]

    return {
        "01 MLP 784-512-256-10": classifier(lambda: models.mlp((512, 256), dropout=0.2)),
        "02 LeNet 32-64": classifier(lambda: models.lenet((32, 64), dropout=0.3)),
        "03 modern CNN 16-32-64": classifier(lambda: models.modern_cnn((16, 32, 64), dropout=0.1, head_dropout=0.3)),
        "04 WRN-40-1 (plain vs residual demo)": classifier(lambda: wide_resnet.wide_resnet(40, 1)),
        "04 WRN-16-2": classifier(lambda: wide_resnet.wide_resnet(16, 2)),
        "05 CapsNet, slim (64 filters, 8 maps)": capsnet,
        "07 tuned CNN 12-24-48": classifier(lambda: models.modern_cnn((12, 24, 48), dropout=0.1, head_dropout=0.22)),
    }


def epoch_seconds(make: Callable[[], tuple[object, object, object]], policy: str, steps: int) -> float:
    """Seconds per 55,000-image epoch of the model ``make`` builds under ``policy`` (median step x 440)."""
    import keras

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    model, inputs, targets = make()
    for _ in range(2):  # the first call compiles the training step
        model.train_on_batch(inputs, targets)
    timings = []
    for _ in range(steps):
        start = timeit.default_timer()
        model.train_on_batch(inputs, targets)
        timings.append(timeit.default_timer() - start)
    keras.mixed_precision.set_global_policy("float32")
    return float(np.median(timings)) * STEPS_PER_EPOCH


def print_model_table(steps: int) -> None:
    """One line per network: seconds per 55,000-image epoch in float32 and in this machine's policy."""
    import keras

    from fmnist_utils.environment import choose_precision, gpu_details

    precision = choose_precision(gpu_details())
    policies = ["float32"] + ([precision.policy] if precision.policy != "float32" else [])
    print(
        f"\nSeconds per 55,000-image training epoch ({STEPS_PER_EPOCH} steps of {BATCH_SIZE}, no validation), "
        f"Keras {keras.__version__} on {keras.backend.backend()}; this machine's policy: {precision.policy} "
        f"({precision.reason})"
    )
    builders = _model_builders()
    width = max(len(name) for name in builders)
    print(
        f"{'network':<{width}}  "
        + "  ".join(f"{policy:>15}" for policy in policies)
        + ("  speed-up" if len(policies) > 1 else "")
    )
    for name, make in builders.items():
        seconds = [epoch_seconds(make, policy, steps) for policy in policies]
        line = f"{name:<{width}}  " + "  ".join(f"{value:13.1f} s" for value in seconds)
        if len(seconds) > 1:
            line += f"  {seconds[0] / seconds[1]:7.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
