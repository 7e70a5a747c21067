"""Data-parallel training (fmnist_utils.parallel) on simulated CPU devices, each run in a fresh process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

TRAIN = r"""
import json, sys, time
import numpy as np
import keras
from fmnist_utils import parallel

devices, global_batch = int(sys.argv[1]), 32
plan = parallel.data_parallel(global_batch // devices, enabled=devices > 1, device_type="cpu")
assert len(plan.devices) == devices and plan.global_batch == global_batch, plan
rng = np.random.default_rng(0)
x = rng.random((512, 28, 28, 1), dtype=np.float32)
y = rng.integers(0, 10, 512)
keras.utils.set_random_seed(0)
with plan.scope():
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=plan.global_batch, epochs=1, shuffle=False, verbose=0)  # 16 steps
weights = [w.tolist() for w in model.get_weights()]
start = time.perf_counter()
model.fit(x, y, batch_size=plan.global_batch, epochs=3, shuffle=False, verbose=0)
print(json.dumps({"weights": weights, "images_per_second": 3 * len(x) / (time.perf_counter() - start)}))
"""


def train(backend: str, devices: int) -> dict:
    """Train the tiny model in a new process that sees two CPU devices."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # read when JAX starts
        script = TRAIN
    else:  # TensorFlow: two logical CPUs, configured before anything else touches TensorFlow
        script = (
            "import tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        ) + TRAIN
    done = subprocess.run(
        [sys.executable, "-c", script, str(devices)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_simulated_devices_train_like_one_device_with_the_same_global_batch(backend):
    one, two = train(backend, 1), train(backend, 2)
    # same steps, same global batch, gradients averaged over the devices: the same weights up to float32
    # rounding, as the per-device sums are added in another order (TensorFlow's batch norm normalises each
    # device's slice with its own statistics, a larger but still small difference)
    tolerance = 1e-4 if backend == "jax" else 5e-2
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=tolerance, atol=tolerance)
    largest = max(float(np.max(np.abs(np.array(b) - np.array(a)))) for a, b in zip(one["weights"], two["weights"]))
    print(
        f"\n{backend}: largest weight difference {largest:.1e} (tolerance {tolerance:g}); "
        f"{one['images_per_second']:.0f} images/s on 1 device, "
        f"{two['images_per_second']:.0f} on 2 simulated devices (the same cores)"
    )


def test_one_device_or_disabled_changes_nothing():
    from fmnist_utils import parallel

    plan = parallel.data_parallel(125, enabled=False)
    assert plan.global_batch == 125 and plan.strategy is None and len(plan.devices) == 1
    with plan.scope():
        pass
