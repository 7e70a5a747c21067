"""Tests for fmnist_utils.gradients: per-layer gradient norms against a hand-derived gradient."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_utils.gradients import kernel_gradient_norms
from fmnist_utils.wide_resnet import wide_resnet

REPO_ROOT = Path(__file__).resolve().parents[1]


def _softmax_regression(seed: int = 0) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A linear classifier on flattened 4x4 images, a batch of 6 and its labels."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3, name="linear")])
    model.get_layer("linear").set_weights([rng.normal(size=(16, 3)).astype("float32"), np.zeros(3, "float32")])
    return model, rng.random((6, 4, 4, 1), dtype=np.float32), rng.integers(0, 3, size=6)


def _hand_gradient_norm(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of softmax(x W + b): dL/dW = x^T (softmax - one_hot) / N."""
    kernel, bias = model.get_layer("linear").get_weights()
    flat = x.reshape(len(x), -1).astype(np.float64)
    logits = flat @ kernel + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return float(np.linalg.norm(flat.T @ (probabilities - np.eye(3)[y]) / len(y)))


def test_matches_the_gradient_derived_by_hand() -> None:
    model, x, y = _softmax_regression()
    norms = kernel_gradient_norms(model, x, y, layer_type=keras.layers.Dense)
    assert list(norms) == ["linear"]
    assert norms["linear"] == pytest.approx(_hand_gradient_norm(model, x, y), rel=1e-5)


def test_one_norm_per_convolution_in_model_order_and_nothing_changes() -> None:
    keras.utils.set_random_seed(0)
    model = wide_resnet(10, 1)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.variables]
    rng = np.random.default_rng(0)
    norms = kernel_gradient_norms(model, rng.random((8, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 8))
    convolutions = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert list(norms) == convolutions
    assert all(np.isfinite(n) and n > 0 for n in norms.values())
    # Weights and batch-norm moving statistics are exactly as before.
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(variable))


def test_clear_errors() -> None:
    model, x, y = _softmax_regression()
    with pytest.raises(ValueError, match="no .*Conv2D"):
        kernel_gradient_norms(model, x, y)
    with pytest.raises(ValueError, match="one label per image"):
        kernel_gradient_norms(model, x, y[:-1], layer_type=keras.layers.Dense)


def test_jax_backend_gives_the_same_norm() -> None:
    script = textwrap.dedent(
        """
        import json, keras, numpy as np
        from tests.test_gradients import _softmax_regression, _hand_gradient_norm
        from fmnist_utils.gradients import kernel_gradient_norms
        assert keras.backend.backend() == "jax"
        model, x, y = _softmax_regression()
        print(json.dumps([kernel_gradient_norms(model, x, y, layer_type=keras.layers.Dense)["linear"],
                          _hand_gradient_norm(model, x, y)]))
        """
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured, by_hand = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured == pytest.approx(by_hand, rel=1e-5)
