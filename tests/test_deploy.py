"""fmnist_utils.deploy (notebook 10): float32 copies, ONNX and LiteRT exports that compute what Keras computes,
int8 files that are smaller and still agree, timing, the web page's model files and the browser record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist_utils import deploy
from fmnist_utils.environment import import_keras_quietly

keras = import_keras_quietly()


def _cnn(augment: bool = False) -> keras.Model:
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.RandomFlip("horizontal")(inputs) if augment else inputs
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """A float32 model, its ONNX and LiteRT files, and int8 versions of both, in one folder."""
    keras.utils.set_random_seed(0)
    model = deploy.float32_copy(_cnn())
    folder = tmp_path_factory.mktemp("exports")
    files = {
        "onnx": deploy.export_onnx(model, folder / "m.onnx"),
        "litert": deploy.export_litert(model, folder / "m.tflite"),
    }
    files["onnx int8"] = deploy.quantize_onnx(files["onnx"], folder / "m.int8.onnx", images[:32])
    files["litert int8"] = deploy.export_litert(model, folder / "m.int8.tflite", images[:32])
    return model, files


def test_float32_copy_drops_mixed_precision_and_augmentation_but_keeps_the_weights(images):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as start_run sets it on this CPU
    model = _cnn(augment=True)
    model.compile(optimizer="adam", loss="mse")
    copy = deploy.float32_copy(model)
    assert keras.config.dtype_policy().name == "mixed_bfloat16"  # the global policy is left as it was
    keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert not copy.compiled
    assert not any(isinstance(layer, deploy.AUGMENTATION_LAYERS) for layer in copy.layers)
    assert isinstance(copy.layers[1], keras.layers.Identity)
    expected = keras.ops.convert_to_numpy(model(images, training=False)).astype("float32")
    np.testing.assert_allclose(deploy.logits_in_batches(copy, images), expected, atol=0.1)  # bfloat16 vs float32


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_float32_exports_compute_what_keras_computes(exported, images, name):
    model, files = exported
    runner = deploy.OnnxModel(files[name]) if name == "onnx" else deploy.LiteRTModel(files[name])
    expected = deploy.logits_in_batches(model, images)
    got = deploy.logits_in_batches(runner, images, batch_size=16)
    assert got.shape == (64, 10) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert runner(images[:1]).shape == (1, 10)  # the batch size can change between calls


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_int8_files_are_smaller_and_mostly_agree(exported, images, name):
    model, files = exported
    assert deploy.size_mb(files[f"{name} int8"]) < deploy.size_mb(files[name]) / 2
    runner = (deploy.OnnxModel if name == "onnx" else deploy.LiteRTModel)(files[f"{name} int8"])
    expected = deploy.logits_in_batches(model, images)
    got = deploy.logits_in_batches(runner, images)
    assert np.abs(got - expected).max() < 0.25 * np.abs(expected).max()


def test_median_ms_times_the_calls_after_the_warm_up():
    calls = []
    ms = deploy.median_ms(lambda: calls.append(1), calls=7, warmup=3)
    assert len(calls) == 10 and 0 <= ms < 5


def test_write_web_model_copies_the_model_and_writes_its_rule(exported, tmp_path):
    _, files = exported
    rule = {"method": "msp", "temperature": 1.5, "threshold": 0.7, "keep": 0.95}
    path = deploy.write_web_model(files["onnx"], rule, tmp_path / "model", flip_tta=True)
    assert path.read_bytes() == files["onnx"].read_bytes()
    sidecar = json.loads((tmp_path / "model" / "model.json").read_text())
    assert sidecar == {"input": "image", "ood": rule, "flip_tta": True}


def test_browser_record_reads_what_the_browser_test_writes(tmp_path):
    assert deploy.browser_record(tmp_path / "missing.json") is None
    run = deploy.BrowserRun(
        200, 198, 197, 199, 200, 1.234, 55.0, "headless Chrome 156", "CPU: AMD EPYC, 2 cores", "2026-12-06"
    )
    (tmp_path / "record.json").write_text(json.dumps(vars(run)))
    read = deploy.browser_record(tmp_path / "record.json")
    assert read == run
    assert "198 of 200 held-out photos (99.0%)" in read.summary() and "1.23 s" in read.summary()


def test_a_model_never_called_is_called_before_export(tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    runner = deploy.OnnxModel(deploy.export_onnx(model, tmp_path / "never_called.onnx"))
    assert runner(np.zeros((2, 28, 28, 1), "float32")).shape == (2, 10)
