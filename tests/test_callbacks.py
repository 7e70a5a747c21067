"""Tests for fmnist_utils.callbacks (tiny models and data, a few seconds)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_utils import callbacks
from fmnist_utils.callbacks import SWA, TrainingTimeEstimate, recompute_batchnorm_statistics
from fmnist_utils.schedules import WarmupCosine

REPO_ROOT = Path(__file__).resolve().parents[1]


class _RecordWeights(keras.callbacks.Callback):
    """Keeps a copy of the trainable weights at every epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.snapshots.append([keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables])


def _data(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 4), dtype=np.float32), rng.random((n, 1), dtype=np.float32)


def _dense_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_average_is_mean_of_epoch_end_weights() -> None:
    x, y = _data()
    model, swa, recorder = _dense_model(), SWA(start_epoch=1, verbose=False), _RecordWeights()
    model.fit(x, y, batch_size=8, epochs=4, callbacks=[swa, recorder], verbose=0)
    assert swa.n_averaged == 3
    expected = [np.mean(weights, axis=0) for weights in zip(*recorder.snapshots[1:])]
    assert len(swa.averaged_weights) == len(expected) == 4
    for average, mean in zip(swa.averaged_weights, expected):
        np.testing.assert_allclose(average, mean, rtol=1e-6, atol=1e-7)
    # The average differs from the last iterate, and `apply` loads it.
    assert not np.allclose(swa.averaged_weights[0], recorder.snapshots[-1][0])
    swa.apply(x)
    for variable, average in zip(model.trainable_variables, swa.averaged_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), average, rtol=1e-6)


def test_apply_without_average_raises() -> None:
    x, y = _data()
    model, swa = _dense_model(), SWA(start_epoch=2, verbose=False)
    model.fit(x, y, epochs=2, callbacks=[swa], verbose=0)
    assert swa.n_averaged == 0
    with pytest.raises(ValueError, match="start_epoch"):
        swa.apply(x)


def test_load_average_keeps_batchnorm_statistics_stale() -> None:
    """The notebook scores the average before recomputing BN statistics: `load_average` must not touch them."""
    x = np.random.default_rng(0).random((32, 4, 4, 3), dtype=np.float32)
    y = np.random.default_rng(1).random((32, 2), dtype=np.float32)
    model, _ = _bn_model("functional")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    swa = SWA(start_epoch=0, verbose=False)
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[swa], verbose=0)
    statistics = [keras.ops.convert_to_numpy(v).copy() for v in model.non_trainable_variables]
    swa.load_average()
    for variable, average in zip(model.trainable_variables, swa.averaged_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), average, rtol=1e-6)
    for variable, before in zip(model.non_trainable_variables, statistics):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), before)


def test_keras_ema_replaces_trainable_weights_at_the_end_of_fit() -> None:
    """Notebook 03 relies on this Keras behaviour: with `use_ema=True`, `fit` ends by copying the optimizer's
    moving average into the trainable weights (not the BN statistics), after the last `on_epoch_end`."""
    x = np.random.default_rng(0).random((32, 4, 4, 3), dtype=np.float32)
    y = np.random.default_rng(1).random((32, 2), dtype=np.float32)
    model, _ = _bn_model("functional")
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    last_epoch = {}
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: last_epoch.update(weights=model.get_weights())
    )
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[keep], verbose=0)
    trainable = {id(v) for v in model.trainable_variables}
    for variable, last in zip(model.weights, last_epoch["weights"]):
        value = keras.ops.convert_to_numpy(variable)
        if id(variable) in trainable and variable.name == "kernel":
            assert not np.allclose(value, last), f"{variable.path} still holds the last step's weights"
        elif id(variable) not in trainable:
            np.testing.assert_array_equal(value, last)  # BN moving statistics: left as training left them


def _bn_model(kind: str) -> tuple[keras.Model, list[keras.Layer]]:
    """Input (4, 4, 3) -> BN -> 1x1 conv (5) -> BN -> pooling -> Dense(2), and its five layers.

    kind: "functional" or "sequential"; "nested functional"/"nested sequential" put
    that model inside an outer functional model, after an Identity layer.
    """
    layers = [
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(5, 1),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ]
    if kind.endswith("sequential"):
        model = keras.Sequential([keras.Input((4, 4, 3))] + layers)
    else:
        inputs = keras.Input((4, 4, 3))
        h = inputs
        for layer in layers:
            h = layer(h)
        model = keras.Model(inputs, h)
    if kind.startswith("nested"):
        inputs = keras.Input((4, 4, 3))
        model = keras.Model(inputs, model(keras.layers.Identity()(inputs)))
    # Non-trivial gamma/beta for the first BN, so the second BN's inputs depend on them.
    rng = np.random.default_rng(1)
    layers[0].gamma.assign(rng.uniform(0.5, 2.0, 3).astype("float32"))
    layers[0].beta.assign(rng.normal(size=3).astype("float32"))
    return model, layers


def _second_bn_inputs_by_hand(layers: list[keras.Layer], x: np.ndarray, batch_size: int) -> np.ndarray:
    """Inputs of the second BN in training mode: the first BN uses each batch's statistics."""
    bn, conv = layers[:2]
    gamma, beta = (keras.ops.convert_to_numpy(v) for v in (bn.gamma, bn.beta))
    kernel, bias = (keras.ops.convert_to_numpy(v) for v in (conv.kernel, conv.bias))
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].astype(np.float64)
        mean, var = batch.mean(axis=(0, 1, 2)), batch.var(axis=(0, 1, 2))
        normalised = gamma * (batch - mean) / np.sqrt(var + bn.epsilon) + beta
        outputs.append(np.einsum("nhwc,cd->nhwd", normalised, kernel[0, 0]) + bias)
    return np.concatenate(outputs)


def _moving_statistics(bn: keras.layers.BatchNormalization) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in (bn.moving_mean, bn.moving_variance)]


@pytest.mark.parametrize("kind", ["functional", "sequential", "nested functional", "nested sequential"])
def test_recompute_batchnorm_statistics(kind: str) -> None:
    model, layers = _bn_model(kind)
    x = np.random.default_rng(0).normal(2.0, 3.0, (50, 4, 4, 3)).astype(np.float32)
    batch_size = 16  # batches of 16, 16, 16, 2
    assert recompute_batchnorm_statistics(model, x, batch_size) == 2
    mean, var = _moving_statistics(layers[0])
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5)
    h = _second_bn_inputs_by_hand(layers, x, batch_size)
    mean, var = _moving_statistics(layers[2])
    np.testing.assert_allclose(mean, h.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, h.var(axis=(0, 1, 2)), rtol=1e-4)


def test_recompute_rejects_batchnorm_hidden_in_custom_layer() -> None:
    class Block(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return self.bn(x, training=training)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Block()(inputs))
    with pytest.raises(ValueError, match="moving_mean"):
        recompute_batchnorm_statistics(model, np.zeros((4, 4), np.float32))


def test_swa_with_learning_rate_schedule() -> None:
    model, layers = _bn_model("functional")
    schedule = WarmupCosine(peak_lr=0.05, warmup_steps=2, decay_steps=4, final_lr=0.01)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 4, 4, 3)).astype(np.float32), rng.normal(size=(24, 2)).astype(np.float32)
    swa = SWA(start_epoch=2, verbose=False)
    model.fit(x, y, batch_size=8, epochs=4, callbacks=[swa], verbose=0)  # steps 6..11: constant 0.01
    assert swa.n_averaged == 2
    swa.apply(x, batch_size=10)
    np.testing.assert_allclose(_moving_statistics(layers[0])[0], x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    assert np.isfinite(model.predict(x, verbose=0)).all()


def test_swa_on_jax_backend() -> None:
    code = textwrap.dedent(
        """
        import keras, numpy as np
        from fmnist_utils.callbacks import SWA
        from fmnist_utils.schedules import WarmupCosine
        assert keras.backend.backend() == "jax"

        class Record(keras.callbacks.Callback):
            snapshots = []
            def on_epoch_end(self, epoch, logs=None):
                self.snapshots.append([keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables])

        inputs = keras.Input((4, 4, 3))
        h = keras.layers.BatchNormalization()(inputs)
        h = keras.layers.Conv2D(2, 1)(h)
        outputs = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.BatchNormalization()(h)))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(WarmupCosine(0.05, 2, 2, 0.01)), loss="mse")
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 4, 4, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
        swa, record = SWA(start_epoch=1, verbose=False), Record()
        model.fit(x, y, batch_size=8, epochs=3, callbacks=[swa, record], verbose=0)
        assert swa.n_averaged == 2
        for average, *snapshots in zip(swa.averaged_weights, *record.snapshots[1:]):
            np.testing.assert_allclose(average, np.mean(snapshots, axis=0), rtol=1e-6, atol=1e-7)
        assert not np.allclose(record.snapshots[1][0], record.snapshots[2][0])
        swa.apply(x, batch_size=5)
        bn = model.layers[1]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), x.mean(axis=(0, 1, 2)), rtol=1e-5)
        print("SWA OK")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SWA OK" in result.stdout


def _fit_images(epochs: int, capsys: pytest.CaptureFixture[str]) -> str:
    """Fit a tiny convolutional model on 16 random images (16, 28, 28, 1) for ``epochs``; return its stdout."""
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 28, 28, 1), dtype=np.float32), np.arange(16) % 10
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3, strides=4), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    capsys.readouterr()
    model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x, y), callbacks=[TrainingTimeEstimate()], verbose=0)
    return capsys.readouterr().out


def test_training_time_estimate_prints_one_line_after_the_second_epoch(capsys) -> None:
    out = _fit_images(3, capsys)
    assert re.fullmatch(
        r"epoch 2 took \d+\.\d (s|min) \(epoch 1, with compilation: \d+\.\d (s|min)\); the remaining epoch "
        r"should take about \d+\.\d (s|min) on this machine\n",
        out,
    ), out
    assert re.fullmatch(r"epoch 2 took \d+\.\d (s|min) \(epoch 1, .*\); no epochs remain\n", _fit_images(2, capsys))
    assert re.fullmatch(r"epoch 1 took \d+\.\d (s|min); no epochs remain\n", _fit_images(1, capsys))


def test_training_time_estimate_uses_the_second_epoch(monkeypatch, capsys) -> None:
    """Epoch 1 (with compilation) 100 s, epoch 2 17.5 s, 18 epochs to go: about 18 x 17.5 s = 5.2 min."""
    clock = iter([0.0, 100.0, 100.5, 118.0, 118.5, 140.0])  # epochs 1, 2 and 3 begin and end
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    estimate = TrainingTimeEstimate()
    estimate.set_params({"epochs": 20})
    estimate.on_train_begin()
    for epoch in (0, 1, 2):
        estimate.on_epoch_begin(epoch)
        estimate.on_epoch_end(epoch)
    estimate.on_train_end()
    assert capsys.readouterr().out == (
        "epoch 2 took 17.5 s (epoch 1, with compilation: 1.7 min); the remaining 18 epochs should take about "
        "5.2 min on this machine\n"
    )


class _StopAtEpoch(keras.callbacks.Callback):
    """Raise at the beginning of an epoch, as a lost connection would stop a run."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("disconnected")


def _swa_training(backup: Path | None, stop_at: int | None = None, epochs: int = 5):
    """Train a tiny CNN with SWA from epoch 1 on augmented batches; with ``backup``, resumable."""
    from fmnist_utils.augment import AugmentedBatches

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, strides=2, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    batches = AugmentedBatches(rng.random((64, 28, 28, 1), dtype=np.float32), np.arange(64) % 10, 16, seed=1)
    swa = SWA(start_epoch=1, verbose=False, backup_dir=backup / "swa" if backup else None)
    # epoch_callback: a resumed fit gets the batches of the epoch it resumes at (Keras ends an epoch of the
    # dataset once before training, so without it the first epoch would get the order of epoch 1)
    extra = [batches.epoch_callback()] + ([keras.callbacks.BackupAndRestore(backup / "fit")] if backup else [])
    if stop_at is not None:
        extra.append(_StopAtEpoch(stop_at))
    model.fit(batches, epochs=epochs, shuffle=False, callbacks=[swa, *extra], verbose=0)
    return model, swa


def test_backup_and_restore_resumes_training_and_the_swa_average(tmp_path) -> None:
    uninterrupted, swa = _swa_training(None)
    with pytest.raises(KeyboardInterrupt):
        _swa_training(tmp_path, stop_at=3)
    assert sorted(p.name for p in (tmp_path / "swa").iterdir()) == ["swa-00001.npz", "swa-00002.npz"]
    resumed, resumed_swa = _swa_training(tmp_path)  # a new process would build everything again, as here
    assert resumed_swa.n_averaged == swa.n_averaged == 4
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(swa.averaged_weights, resumed_swa.averaged_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert list((tmp_path / "swa").iterdir()) == []  # a finished fit leaves no average behind


def test_swa_refuses_a_backup_that_does_not_match_the_resumed_epoch(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _swa_training(tmp_path, stop_at=3)
    for path in (tmp_path / "swa").iterdir():
        path.unlink()
    with pytest.raises(RuntimeError, match="fit resumes at epoch 4, but .* not after epoch 3"):
        _swa_training(tmp_path)


def test_recompute_batchnorm_statistics_under_mixed_bfloat16() -> None:
    """The second BN layer gets the bfloat16 output of a convolution; it is reduced in float32 on the device."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, layers = _bn_model("functional")
    assert keras.KerasTensor.dtype.fget(layers[2].input) == "bfloat16"
    x = np.random.default_rng(0).normal(2.0, 3.0, (50, 4, 4, 3)).astype(np.float32)
    recompute_batchnorm_statistics(model, x, batch_size=16)
    mean, var = _moving_statistics(layers[0])  # the model's float32 input itself
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5)
    h = _second_bn_inputs_by_hand(layers, x, 16)  # float64 arithmetic: bfloat16 keeps about 3 digits
    mean, var = _moving_statistics(layers[2])
    np.testing.assert_allclose(mean, h.mean(axis=(0, 1, 2)), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(var, h.var(axis=(0, 1, 2)), rtol=2e-2)
