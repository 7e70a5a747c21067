#!/usr/bin/env python3
"""Say whether TensorFlow can use a GPU in this container (installed as ``fmnist-gpu-check``).

TensorFlow's GPU images have shipped CUDA/cuDNN libraries that did not match their own TensorFlow;
TensorFlow then lists no GPU, or fails at the first convolution, and the notebooks quietly train on
the CPU. This check prints the driver and the CUDA/cuDNN versions TensorFlow was built with, lists the
GPUs, runs one small convolution on the first of them, and then what training runs: a two-step ``fit``
of a small Conv2D + BatchNormalization + ReLU model compiled with XLA (``jit_compile=True``, as Keras
compiles every ``fit`` on a GPU), which exercises XLA's fused convolutions, ptxas and libdevice.

Exit status: 0 when a GPU works, or when none does without ``--require``; 1 with ``--require``
when TensorFlow has no working GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

HINTS = """\
  Possible causes:
  - the container was started without GPUs: use `docker run --gpus all ...`, or `docker compose up`
    (docker-compose.yml reserves them);
  - the NVIDIA Container Toolkit is missing on the host: `docker run --rm --gpus all ubuntu nvidia-smi`
    must list the GPU;
  - the host's NVIDIA driver is too old for CUDA 12 (see `nvidia-smi` on the host);
  - CUDA/cuDNN libraries in the image do not match TensorFlow: look for "Cannot dlopen" or
    "Could not load dynamic library" in the messages above.
  The notebooks still run on the CPU (FMNIST_PROFILE=quick sizes them for that). See docs/docker.md."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmnist-gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="store_true", help="exit with status 1 unless a GPU works")
    args = parser.parse_args(argv)
    failure = 1 if args.require else 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        import tensorflow as tf
    except Exception as error:  # a broken install must be reported, not crash the entrypoint
        print(f"[fmnist] GPU check: TensorFlow does not import: {error}")
        return failure

    built_with_cuda = tf.test.is_built_with_cuda()
    build = tf.sysconfig.get_build_info()
    print(
        f"[fmnist] TensorFlow {tf.__version__} (built with CUDA: {built_with_cuda}; CUDA "
        f"{build.get('cuda_version', 'unknown')}, cuDNN {build.get('cudnn_version', 'unknown')}); "
        f"NVIDIA driver {driver_version()}"
    )
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("[fmnist] NO GPU is visible to TensorFlow: tf.config.list_physical_devices('GPU') == [].")
        print("[fmnist] Training runs on the CPU, much slower.")
        print(HINTS)
        return failure
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)  # leave the memory to the notebooks
        except RuntimeError:
            pass
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(f"{gpu.name} ({details.get('device_name', 'unknown model')})")
    print(f"[fmnist] GPU(s) visible to TensorFlow: {', '.join(names)}")

    try:
        with tf.device("/GPU:0"):
            images = tf.random.normal([2, 28, 28, 1])
            kernels = tf.random.normal([3, 3, 1, 8])
            value = float(tf.reduce_sum(tf.nn.conv2d(images, kernels, strides=1, padding="SAME")))
    except Exception as error:
        print(f"[fmnist] A GPU is listed, but a convolution on it failed (cuDNN?): {error}")
        print(HINTS)
        return failure
    if value != value:  # NaN
        print("[fmnist] A GPU is listed, but a convolution on it returned NaN.")
        return failure
    try:
        loss = xla_fit_check()
    except Exception as error:
        print(f"[fmnist] A convolution runs, but an XLA-compiled fit (as in every notebook) failed: {error}")
        print(HINTS)
        return failure
    if loss != loss:  # NaN
        print("[fmnist] An XLA-compiled fit on the GPU returned a NaN loss.")
        return failure
    print("[fmnist] GPU check passed: a convolution and a two-step XLA-compiled fit ran on /GPU:0.")
    return 0


def driver_version() -> str:
    """The NVIDIA driver version that ``nvidia-smi`` reports, or why there is none."""
    if shutil.which("nvidia-smi") is None:
        return "unknown (no nvidia-smi)"
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "unknown"


def xla_fit_check() -> float:
    """Train a tiny Conv2D + BatchNormalization + ReLU model for two steps with ``jit_compile=True``; the last loss."""
    import keras
    import numpy as np

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 28, 28, 1), dtype=np.float32), np.arange(32) % 10
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return float(history.history["loss"][-1])


if __name__ == "__main__":
    sys.exit(main())
