"""Builders of notebooks 01-03: output shapes and parameter counts against hand counts."""

import numpy as np
import pytest

from fmnist_utils import models


def test_mlp_parameters_by_hand():
    model = models.mlp(hidden_units=(512, 256))
    assert model.count_params() == (784 * 512 + 512) + (512 * 256 + 256) + (256 * 10 + 10)


def test_lenet_parameters_by_hand():
    model = models.lenet(filters=(6, 16), dense_units=(120, 84))
    conv1 = 5 * 5 * 1 * 6 + 6
    conv2 = 5 * 5 * 6 * 16 + 16
    dense = (5 * 5 * 16 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert model.count_params() == conv1 + conv2 + dense == 61_706  # LeNet-5's well-known count


def test_modern_cnn_parameters_by_hand():
    model = models.modern_cnn(filters=(8, 16), convs_per_stage=1, dense_units=32)

    def bn(channels: int) -> int:
        return 4 * channels  # gamma, beta, moving mean, moving variance

    convs = (9 * 1 * 8 + bn(8)) + (9 * 8 * 16 + bn(16))
    head = (7 * 7 * 16 * 32 + bn(32)) + (32 * 10 + 10)
    assert model.count_params() == convs + head


@pytest.mark.parametrize("build", [models.mlp, models.lenet, models.modern_cnn])
def test_logits_shape(build):
    model = build()
    out = np.asarray(model(np.zeros((3, 28, 28, 1), np.float32)))
    assert out.shape == (3, 10)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits, not probabilities
