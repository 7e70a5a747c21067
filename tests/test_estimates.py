"""Training-time estimates from FLOPs and from a timed forward pass; batch sizes that divide the splits."""

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_utils import capsules, estimates, models
from fmnist_utils.profiles import SMOKE_TEST_IMAGES, SMOKE_TRAIN_IMAGES, SMOKE_VALIDATION_IMAGES
from fmnist_utils.wide_resnet import count_multiply_adds, wide_resnet

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_training_flops_by_hand() -> None:
    # 2 epochs x (3 x 100 training + 10 validation images) x 2 FLOPs x 1,000 multiply-adds
    assert estimates.training_flops(1_000, train_images=100, epochs=2, val_images=10) == 2 * 310 * 2 * 1_000


def test_gpu_estimate_arithmetic_and_scale() -> None:
    estimate = estimates.gpu_estimate("T4", 1_000_000_000, epochs=10, batch_size=250)
    flops = 2e9 * 10 * (3 * 55_000 + 5_000)  # 3.4 PFLOP
    host = 10 * 220 * np.array([3, 5]) / 1e3 / 60  # 2,200 steps of 3 to 5 ms
    assert estimate.low_minutes == pytest.approx(flops / 16e12 / 60 + host[0])
    assert estimate.high_minutes == pytest.approx(flops / 10e12 / 60 + host[1])
    assert "3.40 PFLOP" in estimate.arithmetic and "2,200 steps" in estimate.arithmetic
    span = estimates.minutes_range(estimate.low_minutes, estimate.high_minutes)
    assert str(estimate).startswith(f"{span} (estimate: ")
    assert estimates.minutes_range(7.2, 11.4) == "7-11 min" and estimates.minutes_range(0.24, 0.36) == "0.2-0.4 min"


def test_gpu_estimates_of_the_wide_resnet_recipes() -> None:
    """The old full recipe (WRN-16-8, 80 epochs) took about an hour on a T4; the H100 class does it in minutes."""
    wrn_16_8 = count_multiply_adds(wide_resnet(16, 8))
    t4 = estimates.gpu_estimate("T4", wrn_16_8, epochs=80, batch_size=250)
    h100 = estimates.gpu_estimate("H100/H200", wrn_16_8, epochs=80, batch_size=250)
    assert t4.low_minutes > 30 and 2 < h100.low_minutes < h100.high_minutes < 8
    full = estimates.gpu_estimate("T4", wide_resnet(16, 4), epochs=50, batch_size=250)
    assert full.high_minutes < 20


def test_capsule_layers_count_their_multiply_adds() -> None:
    """The paper's CapsNet: conv1, the primary capsules' convolution, predictions and routing, the decoder."""
    model, _ = capsules.capsule_network()
    conv1 = 20 * 20 * 9 * 9 * 256
    primary = 6 * 6 * 9 * 9 * 256 * 256
    predictions, routing = 1152 * 10 * 16 * 8, (2 * 3 - 1) * 1152 * 10 * 16
    decoder = 160 * 512 + 512 * 1024 + 1024 * 784
    assert count_multiply_adds(model) == conv1 + primary + predictions + routing + decoder


def test_print_fit_estimate_leaves_the_model_as_it_was(capsys) -> None:
    model = models.modern_cnn((4, 8), dense_units=8)
    before = [w.copy() for w in model.get_weights()]
    seconds = estimates.print_fit_estimate(
        model, np.zeros((8, 28, 28, 1), np.float32), epochs=3, steps_per_epoch=5, validation_steps=2
    )
    assert seconds > 0
    assert re.fullmatch(
        r"Estimated training time on this machine: about \d+\.\d (s|min) for 3 epoch\(s\) \(a forward pass of one "
        r"batch took \d+ ms; a training step counted as 3\)\. The epoch times of fit replace it after epoch 2\.\n",
        capsys.readouterr().out,
    )
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert keras.ops.convert_to_numpy(model.get_layer("stage1_1_bn").moving_mean).tolist() == [0.0] * 4


def _batch_sizes(notebook: Path) -> list[int]:
    source = "\n".join(
        "".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"
    )
    sizes = []
    for line in re.findall(r"^BATCH_SIZE = (.+)$", source, flags=re.MULTILINE):
        sizes += [int(n) for n in re.findall(r"\b\d+\b", line.split("#")[0])]
    return sizes


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_batch_sizes_divide_every_split(notebook: Path) -> None:
    """No partial batch: each fit, evaluate and predict compiles its step for one batch shape only."""
    for batch_size in _batch_sizes(notebook):
        for images in (55_000, 5_000, 10_000, SMOKE_TRAIN_IMAGES, SMOKE_VALIDATION_IMAGES, SMOKE_TEST_IMAGES):
            assert images % batch_size == 0, f"{notebook.name}: batch size {batch_size} leaves {images % batch_size}"
