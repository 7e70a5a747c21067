"""How fast this machine runs the helpers the notebooks lean on, with the machine named beside the figures.

Timings make poor unit tests: on a busy or small machine they fail without anything being wrong. This
command prints them instead (``make bench``, or ``python scripts/bench.py [--rounds N]``), each beside
its budget, a figure that a quiet 2-core laptop CPU meets, so a slow figure can be read in context.

Every figure is the fastest of ``--rounds`` rounds: other processes can only make a round slower.
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

BATCH_SIZE = 128  # images per augmented batch, as in the notebooks
AUGMENTATION_CALLS = 20  # calls per round of an augmentation function


def fastest_seconds(function: Callable[[], object], rounds: int, calls: int) -> float:
    """Seconds per call of ``function``: the fastest of ``rounds`` rounds of ``calls`` calls, after one warm-up."""
    function()
    return min(timeit.repeat(function, repeat=rounds, number=calls)) / calls


def main(argv: list[str] | None = None) -> int:
    """Print the machine, then one line per figure: what was timed, the time, and its budget if it has one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure; the fastest is shown (default 5)")
    rounds = parser.parse_args(argv).rounds

    print(f"Machine : {cpu_name()}")
    print(f"Python  : {platform.python_version()}, NumPy {np.__version__}")
    data.load_data()  # the cold load is not timed (it may download the files); it prints where they are
    load_seconds = fastest_seconds(lambda: data.load_data(verbose=False), rounds, calls=1)
    figures: list[tuple[str, float, str, float | None]] = [
        ("warm dataset load (4 files read and verified)", load_seconds, "s", 1.5)
    ]

    import_keras_quietly()  # augment imports Keras; this keeps TensorFlow's C++ start-up lines off the screen
    from fmnist_utils import augment

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
