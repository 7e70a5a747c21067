"""How long a training will take: from FLOPs on the GPUs readers have, and from a timed forward pass here.

Two estimates, both labelled as estimates wherever they are printed:

- :func:`gpu_estimate` sizes a recipe for a GPU class without that GPU (notebook 04 explains it): the
  training FLOPs (3 x the forward pass per training image, 1 x per validation image, 2 FLOPs per
  multiply-add counted by :func:`fmnist_utils.wide_resnet.count_multiply_adds`) divided by a range of
  *effective* throughputs, plus a per-step host overhead. The ranges are those of the GPU review that sized
  the profiles: a share of each GPU's peak that Keras reaches on small images, not a measurement.
- :func:`print_fit_estimate` times the model's forward pass on one batch on the visible device and
  counts a training step as 3 forward passes; every notebook prints it before its first training, and
  :class:`fmnist_utils.callbacks.TrainingTimeEstimate` replaces it with a measured epoch after epoch 2.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fmnist_utils.callbacks import _duration
from fmnist_utils.wide_resnet import count_multiply_adds

#: A training step costs about three forward passes: the forward pass, and a backward pass that computes
#: gradients with respect to both activations and weights (each about as costly as the forward pass).
TRAINING_STEP_IN_FORWARD_PASSES = 3
#: Training and validation images of the full splits (``data.load_splits``).
FULL_TRAIN_IMAGES, FULL_VAL_IMAGES = 55_000, 5_000


@dataclass(frozen=True)
class GpuClass:
    """Effective throughput of one GPU class under its precision policy, as ranges (low, high).

    Attributes:
        name: e.g. ``"T4"``. policy: the Keras policy it gets (:func:`fmnist_utils.environment.precision_policy`).
        tflops: effective tera-FLOPs per second reached by a Keras training step on 28x28 images.
        step_ms: host overhead per training step (Python, Keras, kernel launches), milliseconds.
    """

    name: str
    policy: str
    tflops: tuple[float, float]
    step_ms: tuple[float, float]


#: Estimates, not measurements: T4 fp16 tensor cores at 15-25 % of their 65 TFLOPS peak with Colab's 2-vCPU
#: host; L4, A100 and H100/H200 bf16 at similar shares of theirs, on faster hosts.
GPU_CLASSES = {
    "T4": GpuClass("T4", "mixed_float16", (10.0, 16.0), (3.0, 5.0)),
    "L4": GpuClass("L4", "mixed_bfloat16", (25.0, 40.0), (1.5, 2.5)),
    "A100": GpuClass("A100", "mixed_bfloat16", (70.0, 110.0), (1.5, 2.5)),
    "H100/H200": GpuClass("H100/H200", "mixed_bfloat16", (120.0, 200.0), (1.5, 2.5)),
}


@dataclass(frozen=True)
class Estimate:
    """A training time range in minutes and the arithmetic behind it (one line of text)."""

    low_minutes: float
    high_minutes: float
    arithmetic: str

    def __str__(self) -> str:
        return f"{minutes_range(self.low_minutes, self.high_minutes)} (estimate: {self.arithmetic})"


def minutes_range(low: float, high: float) -> str:
    """A range of minutes as README and the notebooks print it: ``"7-11 min"``, or ``"0.2-0.4 min"`` below 10."""
    return f"{low:.0f}-{high:.0f} min" if high >= 10 else f"{low:.1f}-{high:.1f} min"


def training_flops(multiply_adds: int, train_images: int, epochs: int, val_images: int = 0) -> float:
    """FLOPs of ``epochs`` epochs: 2 FLOPs per multiply-add, 3 forward passes per training image, 1 per validation."""
    return 2.0 * multiply_adds * epochs * (TRAINING_STEP_IN_FORWARD_PASSES * train_images + val_images)


def gpu_estimate(
    gpu: str,
    model: Any,
    *,
    epochs: int,
    batch_size: int,
    train_images: int = FULL_TRAIN_IMAGES,
    val_images: int = FULL_VAL_IMAGES,
) -> Estimate:
    """Minutes of training on a GPU class of :data:`GPU_CLASSES`, from FLOPs and per-step overhead.

    Args:
        gpu: a key of :data:`GPU_CLASSES`, e.g. ``"T4"``.
        model: a built Keras model (its multiply-adds per image are counted), or that count.
        epochs: epochs. batch_size: images per step.
        train_images: training images per epoch (default: all 55,000).
        val_images: validation images evaluated after each epoch (default: all 5,000).
    """
    spec = GPU_CLASSES[gpu]
    multiply_adds = model if isinstance(model, int) else count_multiply_adds(model)
    flops = training_flops(multiply_adds, train_images, epochs, val_images)
    steps = epochs * (train_images // batch_size)
    compute = [flops / (tflops * 1e12) / 60 for tflops in reversed(spec.tflops)]  # low, high minutes
    host = [steps * ms / 1e3 / 60 for ms in spec.step_ms]
    arithmetic = (
        f"{epochs} epochs x ({TRAINING_STEP_IN_FORWARD_PASSES} x {train_images:,} + {val_images:,}) images x "
        f"2 x {multiply_adds / 1e6:,.1f} M multiply-adds = {flops / 1e15:.2f} PFLOP at {spec.tflops[0]:g}-"
        f"{spec.tflops[1]:g} TFLOPS ({spec.policy}) = {_minutes(compute[0])}-{_minutes(compute[1])} min, "
        f"plus {steps:,} steps x {spec.step_ms[0]:g}-{spec.step_ms[1]:g} ms = {host[0]:.1f}-{host[1]:.1f} min "
        f"on a {spec.name}"
    )
    return Estimate(compute[0] + host[0], compute[1] + host[1], arithmetic)


def _minutes(minutes: float) -> str:
    """``"1.3"``, or ``"0.03"`` below a tenth of a minute."""
    return f"{minutes:.1f}" if minutes >= 0.1 else f"{minutes:.2f}"


def fastest_seconds(function: Callable[[], object], rounds: int, calls: int = 1) -> float:
    """Seconds per call of ``function``: the fastest of ``rounds`` rounds of ``calls`` calls, after one warm-up.

    Other processes can only make a round slower, so the fastest round is the machine's speed. The warm-up
    call traces or compiles whatever the first call does (``make bench`` uses this too).
    """
    function()
    return min(timeit.repeat(function, repeat=rounds, number=calls)) / calls


def forward_seconds(model: Any, batch: Any, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed forward passes of ``model`` on ``batch`` (inference mode), after one untimed one.

    The untimed call traces or compiles the forward pass; nothing in the model changes. ``predict_on_batch``
    returns NumPy arrays, so each timed call includes waiting for its result.
    """
    return fastest_seconds(lambda: model.predict_on_batch(batch), rounds=repeats)


def print_fit_estimate(
    model: Any, batch: Any, *, epochs: int, steps_per_epoch: int, validation_steps: int = 0
) -> float:
    """Print and return the estimated seconds of ``fit`` on this machine, before it starts.

    Args:
        model: the model about to be trained (built; compiled or not).
        batch: one training batch of its inputs, e.g. ``x_train[:batch_size]``.
        epochs, steps_per_epoch: of the ``fit`` to come. validation_steps: validation batches per epoch.
    """
    seconds_per_pass = forward_seconds(model, batch)
    passes = epochs * (TRAINING_STEP_IN_FORWARD_PASSES * steps_per_epoch + validation_steps)
    seconds = passes * seconds_per_pass
    print(
        f"Estimated training time on this machine: about {_duration(seconds)} for {epochs} epoch(s) "
        f"(a forward pass of one batch took {1000 * seconds_per_pass:.0f} ms; a training step counted as "
        f"{TRAINING_STEP_IN_FORWARD_PASSES}). The epoch times of fit replace it after epoch 2."
    )
    return seconds
