"""Learning-rate schedules, written with ``keras.ops`` so they run on any backend."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fmnist_utils")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, cosine decay, then a constant learning rate.

    With ``s`` the optimizer step (0-based count of weight updates, i.e. batches)::

        s <  W          lr = peak_lr * (s + 1) / W                     (linear warm-up)
        W <= s < W + D  lr = final_lr + (peak_lr - final_lr)
                              * (1 + cos(pi * (s - W) / D)) / 2        (cosine decay)
        s >= W + D      lr = final_lr                                  (constant tail)

    where ``W = warmup_steps`` and ``D = decay_steps``.  The constant tail is
    the constant learning rate of the Stochastic Weight Averaging phase (see
    ``fmnist_utils.callbacks.SWA``): train for ``W + D`` steps, then keep
    going at ``final_lr`` while averaging the weights.

    Args:
        peak_lr: learning rate reached at the end of the warm-up.
        warmup_steps: number of warm-up steps ``W`` (0 disables the warm-up).
        decay_steps: number of cosine-decay steps ``D`` (at least 1).
        final_lr: learning rate at the end of the decay and afterwards.
    """

    def __init__(self, peak_lr: float, warmup_steps: int, decay_steps: int, final_lr: float = 0.0) -> None:
        if warmup_steps < 0 or decay_steps < 1:
            raise ValueError(
                f"Need warmup_steps >= 0 and decay_steps >= 1; got "
                f"warmup_steps={warmup_steps}, decay_steps={decay_steps}."
            )
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.final_lr = float(final_lr)

    def __call__(self, step):
        """Learning rate at ``step`` (scalar integer tensor) as a float32 scalar tensor."""
        step = ops.cast(step, "float32")
        warmup_lr = self.peak_lr * (step + 1.0) / max(self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        cosine_lr = self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup_lr, cosine_lr)

    def get_config(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "final_lr": self.final_lr,
        }
