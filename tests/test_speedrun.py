"""fmnist_utils.speedrun: the recipe's switches, the alternating flip, time-to-accuracy, records and the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist_utils import speedrun

ROOT = Path(__file__).resolve().parents[1]


def images(n=6, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype(np.float32)


def test_recipe_rejects_unknown_flip_and_empty_training():
    with pytest.raises(ValueError, match="flip must be one of"):
        speedrun.Recipe(flip="sometimes")
    with pytest.raises(ValueError, match="epochs >= 1"):
        speedrun.Recipe(epochs=0)
    assert speedrun.Recipe().replace(flip="none").flip == "none"
    assert speedrun.Recipe().as_dict()["widths"] == list(speedrun.Recipe().widths)


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    x = images(200)
    recipe = speedrun.Recipe(flip="alternating")
    flipped = np.zeros(len(x), bool)
    rng = np.random.default_rng(1)
    epochs = [speedrun.epoch_images(x, recipe, epoch, flipped, rng) for epoch in range(4)]
    mirrored = [np.all(e == x[:, :, ::-1], axis=(1, 2, 3)) for e in epochs]
    assert 60 < mirrored[0].sum() < 140  # about half in the first epoch
    assert np.array_equal(mirrored[1], ~mirrored[0])  # the others in the next
    assert np.array_equal(mirrored[2], mirrored[0]) and np.array_equal(mirrored[3], mirrored[1])
    assert np.array_equal(x, images(200))  # the input is not modified


def test_no_flip_keeps_images_and_shift_moves_them():
    x = images(20)
    rng = np.random.default_rng(0)
    same = speedrun.epoch_images(x, speedrun.Recipe(flip="none"), 3, np.zeros(20, bool), rng)
    assert np.array_equal(same, x)
    shifted = speedrun.epoch_images(x, speedrun.Recipe(flip="none", max_shift=2), 0, np.zeros(20, bool), rng)
    assert shifted.shape == x.shape and not np.array_equal(shifted, x)


def test_seconds_to_is_the_first_epoch_that_reaches_the_target():
    assert speedrun.seconds_to([10, 20, 30], [0.90, 0.93, 0.92], 0.92) == 20
    assert speedrun.seconds_to([10, 20, 30], [0.90, 0.93, 0.92], 0.94) is None


def test_array_batches_visit_every_image_once_per_epoch():
    x = np.arange(10, dtype=np.float32)[:, None]
    batches = speedrun.ArrayBatches(x, x, batch_size=5)
    seen = np.concatenate([batches[i][0][:, 0] for i in range(len(batches))])
    assert sorted(seen) == list(range(10))
    first = seen.copy()
    batches.on_epoch_end()
    again = np.concatenate([batches[i][0][:, 0] for i in range(len(batches))])
    assert sorted(again) == list(range(10)) and not np.array_equal(again, first)


def test_speed_cnn_maps_images_to_float32_logits():
    model = speedrun.speed_cnn((8, 16, 32))
    logits = np.asarray(model(images(3)))
    assert logits.shape == (3, 10) and logits.dtype == np.float32


def test_train_records_one_point_per_epoch_and_flip_tta_averages_mirrors():
    x, y = images(64), np.arange(64) % 10
    recipe = speedrun.Recipe(widths=(4, 8, 8), epochs=2, batch_size=32)
    seen = []
    training = speedrun.train(recipe, x, y, {"validation": (x[:16], y[:16])}, on_epoch=lambda e, t: seen.append(e))
    assert seen == [1, 2] and len(training.seconds) == 2 and training.seconds[1] > training.seconds[0] > 0
    assert len(training.accuracy["validation"]) == 2 and len(training.prepare_seconds) == 2
    plain = speedrun.predict_logits(training.model, x[:4], flip_tta=False)
    mirrored = speedrun.predict_logits(training.model, x[:4, :, ::-1], flip_tta=False)
    np.testing.assert_allclose(speedrun.predict_logits(training.model, x[:4], True), (plain + mirrored) / 2, atol=1e-5)


def test_step_seconds_restores_the_precision_policy():
    import keras

    before = keras.mixed_precision.global_policy().name
    first, step = speedrun.step_seconds(lambda: speedrun.speed_cnn((4, 8, 8)), 8, "float32", "auto", steps=2)
    assert first > 0 and step > 0 and keras.mixed_precision.global_policy().name == before


def test_share_line_says_whether_the_target_was_reached():
    training = speedrun.Training(model=None, seconds=[100.0, 200.0], accuracy={"test": [0.93, 0.945]})
    line = speedrun.share_line(training, "CPU: X, 2 cores", "mixed_bfloat16, tensorflow", {"keras": "3.15.1"})
    assert "94% test after 200 s" in line and "CPU: X" in line and "keras 3.15.1" in line
    training.accuracy["test"] = [0.91, 0.93]
    assert "93.00% test (94% not reached) after 200 s" in speedrun.share_line(training, "d", "p", {})


def test_records_round_trip_and_are_found_by_recipe(tmp_path):
    recipe = speedrun.Recipe(epochs=2)
    training = speedrun.Training(model=None, seconds=[1.0, 2.0], accuracy={"test": [0.5, 0.6], "validation": [0, 1]})
    run = {"hardware": "CPU: X", "precision": "float32", "backend": "tensorflow", "versions": {}}
    path = speedrun.record(training, recipe, 3, run, folder=tmp_path)
    entry = json.loads(path.read_text())
    assert entry["seed"] == 3 and entry["test_accuracy"] == 0.6 and entry["seconds_to_target"] is None
    assert speedrun.load_runs(recipe, tmp_path) == [entry]
    assert speedrun.load_runs(recipe.replace(epochs=3), tmp_path) == []


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_command_trains_and_prints_one_line_to_share_in_smoke(backend):
    environment = {**os.environ, "FMNIST_PROFILE": "smoke", "FMNIST_DRY_RUN": "", "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-m", "fmnist_utils.speedrun", "--seeds", "0"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Fashion-MNIST speedrun:" in result.stdout and f"{backend};" in result.stdout
    assert "Recorded" not in result.stdout  # smoke runs record nothing


def test_command_rejects_a_seed_that_is_not_a_number():
    result = subprocess.run(
        [sys.executable, "-m", "fmnist_utils.speedrun", "--seeds", "one"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and "invalid int value: 'one'" in result.stderr
