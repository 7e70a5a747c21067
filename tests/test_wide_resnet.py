"""Tests for fmnist_utils.wide_resnet (tiny models only, a few seconds)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_utils.wide_resnet import (
    BN_MOMENTUM,
    count_multiply_adds,
    preact_block,
    wide_resnet,
    wide_resnet_table,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _projection_names(model: keras.Model) -> set[str]:
    """Names of the 1x1 convolutions, i.e. the shortcut projections."""
    return {
        layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1)
    }


@pytest.mark.parametrize("depth, width", [(10, 1), (16, 2)])
def test_output_shape_is_logits(depth: int, width: int) -> None:
    model = wide_resnet(depth, width)
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    assert logits.shape == (3, 10)
    # Logits, not probabilities: rows do not sum to one.
    assert not np.allclose(logits.sum(axis=1), 1.0)
    assert model.name == f"WRN-{depth}-{width}"


@pytest.mark.parametrize("depth", [4, 8, 20, 30])
def test_invalid_depth_raises(depth: int) -> None:
    message = f"depth must be 6n+4 (10, 16, 22, 28, 40), got {depth}"
    with pytest.raises(ValueError, match=re.escape(message)):
        wide_resnet(depth=depth)


def test_parameter_count_wrn_10_1_by_hand() -> None:
    # WRN-10-1: n = 1 block per group, filters 16, 32, 64; 1 input channel.
    # A BatchNormalization over C channels holds 4 * C numbers:
    # gamma and beta (trainable) and the moving mean and variance
    # (non-trainable, but count_params() includes them).
    expected = (
        3 * 3 * 1 * 16  # stem conv, no bias
        # group1_block1: 16 -> 16 channels, stride 1: identity shortcut
        + 4 * 16  # bn1
        + 3 * 3 * 16 * 16  # conv1
        + 4 * 16  # bn2
        + 3 * 3 * 16 * 16  # conv2
        # group2_block1: 16 -> 32 channels, stride 2: projection shortcut
        + 4 * 16  # bn1
        + 3 * 3 * 16 * 32  # conv1
        + 4 * 32  # bn2
        + 3 * 3 * 32 * 32  # conv2
        + 1 * 1 * 16 * 32  # 1x1 projection conv
        # group3_block1: 32 -> 64 channels, stride 2: projection shortcut
        + 4 * 32  # bn1
        + 3 * 3 * 32 * 64  # conv1
        + 4 * 64  # bn2
        + 3 * 3 * 64 * 64  # conv2
        + 1 * 1 * 32 * 64  # 1x1 projection conv
        # head
        + 4 * 64  # final bn
        + 64 * 10
        + 10  # dense kernel + bias
    )
    assert expected == 78_042
    model = wide_resnet(depth=10, width=1)
    assert model.count_params() == expected
    # The moving statistics are the only non-trainable weights: 2 * C per BN.
    bn_channels = 16 + 16 + 16 + 32 + 32 + 64 + 64
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * bn_channels


@pytest.mark.parametrize(
    "width, expected",
    [
        # k = 1: group1 keeps 16 channels at stride 1, so no projection there.
        (1, {"group2_block1_shortcut", "group3_block1_shortcut"}),
        # k = 2: group1 goes 16 -> 32 channels, so its first block projects too.
        (
            2,
            {
                "group1_block1_shortcut",
                "group2_block1_shortcut",
                "group3_block1_shortcut",
            },
        ),
    ],
)
def test_projections_exactly_where_shape_changes(width: int, expected: set[str]) -> None:
    model = wide_resnet(depth=16, width=width)  # n = 2 blocks per group
    assert _projection_names(model) == expected
    assert {layer.name for layer in model.layers if "shortcut" in layer.name} == expected
    # Every block adds its shortcut: 3 groups x 2 blocks.
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 6
    for name in expected:
        # As in the authors' code, a projection reads the pre-activated input.
        block = name.removesuffix("_shortcut")
        assert model.get_layer(name).input is model.get_layer(f"{block}_relu1").output


def test_identity_shortcut_reads_raw_block_input() -> None:
    model = wide_resnet(depth=16, width=2)
    add_inputs = model.get_layer("group2_block2_add").input
    assert add_inputs[1] is model.get_layer("group2_block1_add").output


def _block_model(filters: int, stride: int, residual: bool = True) -> keras.Model:
    inputs = keras.Input((8, 8, 4))
    return keras.Model(inputs, preact_block(inputs, filters, stride=stride, residual=residual, name="b"))


def test_preact_block_adds_its_input_to_the_branch() -> None:
    model = _block_model(filters=4, stride=1)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 4)).astype("float32")
    branch = model.predict(x, verbose=0) - x  # F(x)
    model.get_layer("b_conv2").kernel.assign(np.zeros((3, 3, 4, 4), "float32"))
    np.testing.assert_allclose(model.predict(x, verbose=0), x, atol=1e-6)  # F = 0: the block is the identity
    assert np.abs(branch).max() > 0.1
    plain = _block_model(filters=4, stride=1, residual=False)
    plain.get_layer("b_conv2").kernel.assign(np.zeros((3, 3, 4, 4), "float32"))
    np.testing.assert_allclose(plain.predict(x, verbose=0), 0.0)  # no shortcut: nothing passes


def test_preact_block_projects_when_the_shape_changes() -> None:
    model = _block_model(filters=6, stride=2)
    assert model.output.shape == (None, 4, 4, 6)
    assert model.get_layer("b_shortcut").input is model.get_layer("b_relu1").output
    assert model.get_layer("b_bn1").momentum == BN_MOMENTUM == 0.9


def test_plain_network_has_no_skips() -> None:
    residual = wide_resnet(depth=16, width=2)
    plain = wide_resnet(depth=16, width=2, residual=False)

    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert _projection_names(plain) == set()
    assert plain.output.shape == residual.output.shape == (None, 10)
    # Same layers otherwise: only shortcuts and additions are removed.
    residual_names = {layer.name for layer in residual.layers if not layer.name.endswith(("_shortcut", "_add"))}
    assert {layer.name for layer in plain.layers} == residual_names


def test_dropout_layers_only_when_requested() -> None:
    def n_dropouts(model: keras.Model) -> int:
        return sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers)

    assert n_dropouts(wide_resnet(depth=16, width=1)) == 0
    assert n_dropouts(wide_resnet(depth=16, width=1, dropout=0.3)) == 6


def test_weight_decay_is_half_l2() -> None:
    model = wide_resnet(depth=10, width=1, weight_decay=5e-4)
    kernels = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(model.losses) == len(kernels)  # one penalty per kernel
    dense = model.get_layer("logits")
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    penalty = float(keras.ops.convert_to_numpy(dense.losses[0]))
    # L2(5e-4 / 2): gradient 5e-4 * w, as SGD weight decay in the paper.
    assert penalty == pytest.approx(2.5e-4 * np.sum(kernel**2), rel=1e-5)

    assert wide_resnet(depth=10, width=1, weight_decay=0).losses == []


def test_count_multiply_adds_by_hand() -> None:
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 4)),
            # -> (4, 4, 6); each of the 2 groups sees 4 / 2 = 2 input channels.
            keras.layers.Conv2D(6, 3, strides=2, padding="same", groups=2),
            keras.layers.Flatten(),  # -> (96,)
            keras.layers.Dense(10),
        ]
    )
    conv = 4 * 4 * 3 * 3 * (4 // 2) * 6  # H_out * W_out * kh * kw * C_in / groups * C_out
    dense = 96 * 10
    assert count_multiply_adds(model) == conv + dense == 2_688


def test_wide_resnet_table() -> None:
    rows = wide_resnet_table([(10, 1), (16, 2)])
    assert [row["model"] for row in rows] == ["WRN-10-1", "WRN-16-2"]
    assert rows[0] == {
        "model": "WRN-10-1",
        "depth": 10,
        "width": 1,
        "parameters": 78_042,
        "multiply_adds": count_multiply_adds(wide_resnet(10, 1)),
    }
    # Doubling the width roughly quadruples parameters and multiply-adds.
    assert rows[1]["parameters"] > 3 * rows[0]["parameters"]
    assert rows[1]["multiply_adds"] > 3 * rows[0]["multiply_adds"]


def test_trains_under_jax_backend() -> None:
    script = textwrap.dedent(
        """
        import keras
        import numpy as np

        from fmnist_utils.wide_resnet import wide_resnet

        assert keras.backend.backend() == "jax", keras.backend.backend()
        rng = np.random.default_rng(0)
        images = rng.random((8, 28, 28, 1), dtype=np.float32)
        labels = rng.integers(0, 10, size=8)

        model = wide_resnet(depth=10, width=1)
        model.compile(
            optimizer="sgd",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        print(model.predict(images, verbose=0).shape)
        """
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(8, 10)"


def test_mixed_precision_computes_in_bfloat16_with_float32_logits() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = wide_resnet(depth=10, width=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("group1_block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("group1_block1_conv1").kernel.dtype == "float32"  # weights stay float32
    logits = model(np.zeros((2, 28, 28, 1), dtype=np.float32), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
