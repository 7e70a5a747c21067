"""Precision policy: chosen from the hardware without the hardware, float16 loss scaling, float32 logits."""

import numpy as np
import pytest

from fmnist_utils import environment, models
from fmnist_utils.environment import PRECISION_VARIABLE, precision_policy, start_run
from fmnist_utils.profiles import Profile
from fmnist_utils.wide_resnet import wide_resnet

CPU_WITH_BF16 = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
CPU_WITHOUT_BF16 = {"fpu", "avx2", "fma"}


@pytest.mark.parametrize(
    ("gpu", "capability", "expected"),
    [
        ("T4", (7, 5), "mixed_float16"),
        ("V100", (7, 0), "mixed_float16"),
        ("A100", (8, 0), "mixed_bfloat16"),
        ("L4", (8, 9), "mixed_bfloat16"),
        ("H100", (9, 0), "mixed_bfloat16"),
        ("K80", (3, 7), "float32"),
        ("P100", (6, 0), "float32"),
    ],
)
def test_gpu_policy_follows_the_compute_capability(gpu, capability, expected) -> None:
    for flags in (CPU_WITH_BF16, CPU_WITHOUT_BF16):  # the host CPU does not matter when a GPU trains
        precision = precision_policy(capability, flags)
        assert precision.policy == expected, gpu
        assert f"compute capability {capability[0]}.{capability[1]}" in precision.reason


@pytest.mark.parametrize(
    ("flags", "backend", "expected"),
    [
        (CPU_WITH_BF16, "tensorflow", "mixed_bfloat16"),
        ({"avx512_bf16"}, "tensorflow", "mixed_bfloat16"),  # AMD Zen 4/5
        ({"amx_bf16"}, "tensorflow", "mixed_bfloat16"),
        (CPU_WITHOUT_BF16, "tensorflow", "float32"),
        (set(), "tensorflow", "float32"),  # flags unknown (macOS, Windows)
        (CPU_WITH_BF16, "jax", "float32"),  # measured: not reliably faster under JAX on a CPU
    ],
)
def test_cpu_policy_follows_the_bf16_flags(flags, backend, expected) -> None:
    precision = precision_policy(None, flags, backend=backend)
    assert precision.policy == expected
    assert precision.cpu_flags == tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)
    if expected == "mixed_bfloat16":
        assert precision.reason == f"CPU has {', '.join(precision.cpu_flags)}"


def test_override_wins_and_bad_names_are_clear_errors(monkeypatch) -> None:
    assert precision_policy((9, 0), CPU_WITH_BF16, override="float32").policy == "float32"
    assert precision_policy(None, CPU_WITHOUT_BF16, override=" mixed_bfloat16 ").reason == (
        f"{PRECISION_VARIABLE}=mixed_bfloat16"
    )
    with pytest.raises(ValueError, match=r"FMNIST_PRECISION='bf16' is not a Keras precision policy\. Use one of"):
        precision_policy(None, CPU_WITH_BF16, override="bf16")
    monkeypatch.setenv(PRECISION_VARIABLE, "float32")
    assert environment.choose_precision(environment.gpu_details()).policy == "float32"


def test_cpu_flags_reads_this_machine() -> None:
    flags = environment.cpu_flags()
    assert isinstance(flags, set)
    expected = precision_policy(None, flags).policy
    assert expected == ("mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & flags else "float32")


def test_start_run_sets_and_prints_the_policy(monkeypatch, capsys) -> None:
    import keras

    monkeypatch.setenv(PRECISION_VARIABLE, "mixed_bfloat16")
    run = start_run("00_check", seed=0, epochs=1, profile=Profile("quick", "test"))
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16" == run.precision.policy
    assert f"Precision   : mixed_bfloat16 ({PRECISION_VARIABLE}=mixed_bfloat16)" in capsys.readouterr().out


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_models_compute_in_16_bits_with_float32_logits(policy) -> None:
    import keras

    keras.mixed_precision.set_global_policy(policy)
    for model in (models.mlp((16,)), models.lenet(), models.modern_cnn((4, 8), dense_units=8)):
        assert model.get_layer("logits").compute_dtype == "float32"
        assert model.layers[-2].compute_dtype == policy.removeprefix("mixed_")
        out = model(np.zeros((2, 28, 28, 1), np.float32))
        assert out.dtype == "float32"


def test_float16_fit_scales_the_loss_and_stays_finite() -> None:
    """On a T4 the policy is mixed_float16: Keras wraps the optimizer in compile, and the 04 recipe trains."""
    import keras

    from fmnist_utils.callbacks import SWA, recompute_batchnorm_statistics

    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = wide_resnet(10, 1)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    y = np.arange(64) % 10
    swa = SWA(start_epoch=0, verbose=False)
    history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[swa], verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8
    swa.load_average()
    recompute_batchnorm_statistics(model, x, batch_size=32)
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.weights)
    assert np.isfinite(keras.ops.convert_to_numpy(model(x[:4]))).all()
