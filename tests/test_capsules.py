"""Tests for fmnist_utils.capsules (tiny networks, seconds on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from fmnist_utils import evaluation, results
from fmnist_utils.capsules import (
    RECONSTRUCTION_WEIGHT,
    ClassCapsules,
    Mask,
    capsule_network,
    capsule_routing,
    length_logits_model,
    margin_loss,
    perturb_capsule,
    primary_capsules,
    reconstruction_loss,
    routing_decisions,
    squash,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = dict(conv_filters=16, capsule_maps=4, capsule_dim=8, class_capsule_dim=16, decoder_units=(32, 64))


def tiny_data(n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((n, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return images, labels


def compile_capsnet(model: keras.Model) -> None:
    model.compile(
        optimizer="adam",
        loss=[margin_loss, reconstruction_loss],
        loss_weights=[1.0, RECONSTRUCTION_WEIGHT],
    )


def test_squash_keeps_direction_and_maps_norms_into_unit_interval():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(1, 8)).astype(np.float32)
    directions /= np.linalg.norm(directions)
    input_norms = np.array([1e-3, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0], dtype=np.float32)
    s = input_norms[:, None] * directions

    v = ops.convert_to_numpy(squash(s))
    output_norms = np.linalg.norm(v, axis=-1)
    cosines = np.sum(v * s, axis=-1) / (output_norms * input_norms)

    np.testing.assert_allclose(cosines, 1.0, rtol=1e-5)
    assert np.all(output_norms >= 0) and np.all(output_norms < 1)
    assert np.all(np.diff(output_norms) > 0)  # monotone in the input norm
    # |v| = |s|^2 / (1 + |s|^2), e.g. |s| = 1 -> 0.5 (epsilon only matters for |s| near sqrt(1e-7))
    large = input_norms >= 0.1
    expected = input_norms[large] ** 2 / (1 + input_norms[large] ** 2)
    np.testing.assert_allclose(output_norms[large], expected, rtol=1e-5)


def test_squash_of_zero_vector_is_zero():
    v = ops.convert_to_numpy(squash(np.zeros((2, 3, 8), dtype=np.float32)))
    assert not np.any(np.isnan(v))
    np.testing.assert_array_equal(v, 0.0)


def test_single_routing_gives_uniform_coupling():
    layer = ClassCapsules(num_capsules=5, capsule_dim=4, routings=1)
    inputs = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    outputs, coupling = layer(inputs, return_coupling=True)
    assert tuple(outputs.shape) == (2, 5, 4)
    np.testing.assert_allclose(ops.convert_to_numpy(coupling), np.full((2, 7, 5), 1 / 5), rtol=1e-6)


def test_routing_coupling_is_a_distribution_over_output_capsules():
    layer = ClassCapsules(num_capsules=5, capsule_dim=4, routings=3)
    inputs = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    _, coupling = layer(inputs, return_coupling=True)
    coupling = ops.convert_to_numpy(coupling)
    np.testing.assert_allclose(coupling.sum(axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(coupling, 1 / 5)  # routing moved away from uniform


def _routing_by_agreement(u_hat: np.ndarray, routings: int) -> tuple[np.ndarray, np.ndarray]:
    """Procedure 1 of Sabour et al. (2017) in NumPy, on predictions u_hat (batch, num_in, num_out, dim)."""

    def squash_np(s):
        norm2 = (s**2).sum(-1, keepdims=True)
        return norm2 / (1 + norm2) * s / np.sqrt(norm2 + 1e-7)

    b = np.zeros(u_hat.shape[:3])
    for _ in range(routings):
        c = np.exp(b) / np.exp(b).sum(axis=2, keepdims=True)
        v = squash_np(np.einsum("bij,bijd->bjd", c, u_hat))
        b = b + np.einsum("bijd,bjd->bij", u_hat, v)
    return v, c


@pytest.mark.parametrize("routings", [1, 2, 3])
def test_routing_matches_the_paper_procedure(routings):
    layer = ClassCapsules(num_capsules=5, capsule_dim=4, routings=routings)
    inputs = np.random.default_rng(1).normal(size=(2, 7, 3)).astype(np.float32)
    outputs, coupling = layer(inputs, return_coupling=True)
    u_hat = np.einsum("ijdk,bik->bijd", ops.convert_to_numpy(layer.kernel).astype(np.float64), inputs)
    expected_v, expected_c = _routing_by_agreement(u_hat, routings)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), expected_v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(coupling), expected_c, rtol=1e-4, atol=1e-6)


def test_margin_loss_hand_computed():
    y_true = np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float32)
    lengths = np.array([[0.2, 0.7, 0.05], [0.95, 0.3, 0.1]], dtype=np.float32)
    # sample 0: absent 0.5*(0.2-0.1)^2 = 0.005; present (0.9-0.7)^2 = 0.04; absent 0.05 < m- -> 0
    #           total 0.045
    # sample 1: present 0.95 > m+ -> 0; absent 0.5*(0.3-0.1)^2 = 0.02; absent 0.1 - 0.1 = 0 -> 0
    #           total 0.02
    per_sample = ops.convert_to_numpy(margin_loss(y_true, lengths))
    np.testing.assert_allclose(per_sample, [0.045, 0.02], rtol=1e-5)
    # As a compiled loss Keras takes the batch mean: (0.045 + 0.02) / 2 = 0.0325
    np.testing.assert_allclose(per_sample.mean(), 0.0325, rtol=1e-5)


def test_reconstruction_loss_is_sum_of_squared_errors_per_image():
    y_true = np.zeros((2, 2, 2, 1), dtype=np.float32)
    y_pred = np.array([[[[0.5], [0.5]], [[0.0], [1.0]]], [[[0.1], [0.0]], [[0.0], [0.0]]]], dtype=np.float32)
    # image 0: 0.25 + 0.25 + 0 + 1 = 1.5; image 1: 0.01
    np.testing.assert_allclose(ops.convert_to_numpy(reconstruction_loss(y_true, y_pred)), [1.5, 0.01], rtol=1e-5)


def test_mask_keeps_true_class_capsule_when_labels_given():
    capsules = np.array([[[1.0, 0.0], [0.0, 3.0], [0.5, 0.5]], [[2.0, 2.0], [0.1, 0.0], [0.0, 0.2]]], dtype=np.float32)
    labels = np.array([[0, 0, 1], [0, 1, 0]], dtype=np.float32)
    masked = ops.convert_to_numpy(Mask()(capsules, labels))
    expected = np.array([[0, 0, 0, 0, 0.5, 0.5], [0, 0, 0.1, 0.0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(masked, expected)


def test_mask_keeps_longest_capsule_without_labels():
    capsules = np.array([[[1.0, 0.0], [0.0, 3.0], [0.5, 0.5]], [[2.0, 2.0], [0.1, 0.0], [0.0, 0.2]]], dtype=np.float32)
    masked = ops.convert_to_numpy(Mask()(capsules))
    expected = np.array([[0, 0, 0, 3.0, 0, 0], [2.0, 2.0, 0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(masked, expected)


def test_tiny_network_shapes_and_routing_helper():
    train_model, eval_model = capsule_network(**TINY)
    images, labels = tiny_data()
    lengths, reconstruction = eval_model.predict(images, verbose=0)
    assert lengths.shape == (4, 10) and reconstruction.shape == (4, 28, 28, 1)
    assert np.all((lengths >= 0) & (lengths < 1))

    capsules, coupling = capsule_routing(eval_model, images[:1])
    assert capsules.shape == (1, 10, 16)
    assert coupling.shape == (1, 6 * 6 * 4, 10)  # 20x20 -> 9x9 conv, stride 2 -> 6x6 grid, 4 maps
    class_caps_model = keras.Model(eval_model.input, eval_model.get_layer("class_caps").output)
    np.testing.assert_allclose(capsules, class_caps_model.predict(images[:1], verbose=0), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(coupling.sum(axis=-1), 1.0, rtol=1e-5)
    primary_model = keras.Model(eval_model.input, eval_model.get_layer("primary_caps").output)
    np.testing.assert_allclose(
        primary_capsules(eval_model, images), primary_model.predict(images, verbose=0), rtol=1e-5, atol=1e-7
    )

    decoder_inputs = perturb_capsule(capsules[0], class_index=3, dim=5, deltas=[-0.25, 0.0, 0.25])
    assert decoder_inputs.shape == (3, 160)
    grid = decoder_inputs.reshape(3, 10, 16)
    np.testing.assert_allclose(grid[:, 3, 5], capsules[0, 3, 5] + np.array([-0.25, 0.0, 0.25]), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(grid, 3, axis=1), 0.0)
    assert eval_model.get_layer("decoder").predict(decoder_inputs, verbose=0).shape == (3, 28, 28, 1)


def test_routing_decisions_match_the_network_and_a_single_uniform_pass():
    _, eval_model = capsule_network(**TINY)  # routings=3
    images, _ = tiny_data(n=12, seed=1)
    decisions = routing_decisions(eval_model, images, routings=(3, 1), batch_size=5)  # batches 5, 5, 2
    assert decisions.shape == (2, 12)
    lengths, _ = eval_model.predict(images, verbose=0)
    np.testing.assert_array_equal(decisions[0], lengths.argmax(axis=1))
    # one pass: every primary capsule splits its vote equally, v_j = squash(mean_i u_hat_{j|i})
    kernel = ops.convert_to_numpy(eval_model.get_layer("class_caps").kernel)
    u_hat = np.einsum("ijdk,bik->bijd", kernel, primary_capsules(eval_model, images))
    one_pass = ops.convert_to_numpy(squash(u_hat.mean(axis=1)))
    np.testing.assert_array_equal(decisions[1], np.linalg.norm(one_pass, axis=-1).argmax(axis=1))


def test_length_logits_give_lengths_shares_to_evaluation_and_class_capsules_as_features():
    _, eval_model = capsule_network(**TINY)
    images, _ = tiny_data(n=6)
    lengths = eval_model.predict(images, verbose=0)[0]
    logits_model = length_logits_model(eval_model)
    np.testing.assert_allclose(logits_model.predict(images, verbose=0), np.log(lengths), rtol=1e-5, atol=1e-5)
    probabilities = evaluation.predict_probabilities(logits_model, images)
    np.testing.assert_allclose(probabilities, lengths / lengths.sum(axis=1, keepdims=True), rtol=1e-4)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), lengths.argmax(axis=1))
    features = results.penultimate_features(logits_model, images, layer="class_caps")
    assert features.shape == (6, 10 * 16)  # the ten 16-D class capsules, flattened
    np.testing.assert_allclose(np.linalg.norm(features.reshape(6, 10, 16), axis=-1), lengths, rtol=1e-4, atol=1e-6)


def test_save_and_reload_round_trip(tmp_path):
    train_model, eval_model = capsule_network(**TINY)
    compile_capsnet(train_model)
    images, labels = tiny_data()
    train_model.fit([images, labels], [labels, images], epochs=1, batch_size=4, verbose=0)

    for name, model, inputs in [("eval", eval_model, images), ("train", train_model, [images, labels])]:
        path = tmp_path / f"caps_{name}.keras"
        model.save(path)
        reloaded = keras.models.load_model(path)
        for before, after in zip(model.predict(inputs, verbose=0), reloaded.predict(inputs, verbose=0)):
            np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-7)


def test_fit_under_jax_backend():
    script = textwrap.dedent(
        """
        import json
        import keras
        import numpy as np
        from fmnist_utils.capsules import RECONSTRUCTION_WEIGHT, capsule_network, margin_loss, reconstruction_loss

        train_model, eval_model = capsule_network(conv_filters=16, capsule_maps=4, decoder_units=(32, 64))
        train_model.compile(
            optimizer="adam", loss=[margin_loss, reconstruction_loss], loss_weights=[1.0, RECONSTRUCTION_WEIGHT]
        )
        rng = np.random.default_rng(0)
        images = rng.random((4, 28, 28, 1), dtype=np.float32)
        labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]
        history = train_model.fit([images, labels], [labels, images], epochs=1, batch_size=4, verbose=0)
        lengths, reconstruction = eval_model.predict(images, verbose=0)
        print(json.dumps({
            "backend": keras.backend.backend(),
            "lengths": list(lengths.shape),
            "reconstruction": list(reconstruction.shape),
            "loss": float(history.history["loss"][0]),
        }))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["lengths"] == [4, 10]
    assert report["reconstruction"] == [4, 28, 28, 1]
    assert np.isfinite(report["loss"])


def test_paper_architecture_parameter_count():
    train_model, eval_model = capsule_network()  # paper defaults; build only
    conv1 = 9 * 9 * 1 * 256 + 256  # 20,992
    primary_caps = 9 * 9 * 256 * (32 * 8) + 32 * 8  # 5,308,672
    class_caps = (6 * 6 * 32) * 10 * 16 * 8  # W only: 1152 x 10 matrices of 16x8 = 1,474,560
    decoder = (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)  # 1,411,344
    expected = {"conv1": conv1, "primary_caps": primary_caps, "class_caps": class_caps, "decoder": decoder}
    assert {name: train_model.get_layer(name).count_params() for name in expected} == expected
    assert train_model.count_params() == eval_model.count_params() == 8_215_568 == sum(expected.values())


@pytest.mark.parametrize("routings", [0, -1])
def test_routings_must_be_positive(routings):
    with pytest.raises(ValueError):
        ClassCapsules(routings=routings)
