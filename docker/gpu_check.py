#!/usr/bin/env python3
"""Say whether TensorFlow can use a GPU in this container (installed as ``fmnist-gpu-check``).

TensorFlow's GPU images have shipped CUDA/cuDNN libraries that did not match their own TensorFlow;
TensorFlow then lists no GPU, or fails at the first convolution, and the notebooks quietly train on
the CPU. This check lists the GPUs and runs one small convolution on the first of them.

Exit status: 0 when a GPU works, or when none does without ``--require``; 1 with ``--require``
when TensorFlow has no working GPU.
"""

from __future__ import annotations

import argparse
import os
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
    print(f"[fmnist] TensorFlow {tf.__version__} (built with CUDA: {built_with_cuda})")
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
    print("[fmnist] GPU check passed: a convolution ran on /GPU:0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
