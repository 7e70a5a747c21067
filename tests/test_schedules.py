"""Tests for fmnist_utils.schedules (tiny models only, a few seconds)."""

import math

import keras
import numpy as np
import pytest

from fmnist_utils.schedules import WarmupCosine

PEAK, WARMUP, DECAY, FINAL = 0.1, 10, 20, 0.001


def _lr(schedule: WarmupCosine, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, PEAK / WARMUP),  # first warm-up step
        (WARMUP - 1, PEAK),  # end of warm-up
        (WARMUP, PEAK),  # start of the cosine
        (WARMUP + DECAY // 4, FINAL + 0.5 * (PEAK - FINAL) * (1 + math.cos(math.pi / 4))),
        (WARMUP + DECAY // 2, (PEAK + FINAL) / 2),  # middle of the cosine
        (WARMUP + DECAY, FINAL),  # end of the cosine
        (WARMUP + DECAY + 1, FINAL),  # constant tail ...
        (10_000, FINAL),  # ... for good
    ],
)
def test_values(step: int, expected: float) -> None:
    assert _lr(WarmupCosine(PEAK, WARMUP, DECAY, FINAL), step) == pytest.approx(expected, rel=1e-6)


def test_without_warmup_starts_at_peak() -> None:
    assert _lr(WarmupCosine(PEAK, 0, DECAY, FINAL), 0) == pytest.approx(PEAK, rel=1e-6)


def test_invalid_steps_raise() -> None:
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupCosine(PEAK, WARMUP, 0)


def test_get_config_round_trip() -> None:
    schedule = WarmupCosine(PEAK, WARMUP, DECAY, FINAL)
    config = keras.optimizers.schedules.serialize(schedule)
    clone = keras.optimizers.schedules.deserialize(config)
    assert isinstance(clone, WarmupCosine)
    assert clone.get_config() == schedule.get_config()
    assert WarmupCosine.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_works_inside_fit() -> None:
    schedule = WarmupCosine(PEAK, warmup_steps=2, decay_steps=3, final_lr=FINAL)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), dtype=np.float32), rng.random((32, 1), dtype=np.float32)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 8 steps: past the decay
    assert np.isfinite(history.history["loss"]).all()
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 8
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(FINAL, rel=1e-6)
