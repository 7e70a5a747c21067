"""What a run ran on, and the Setup cell every notebook starts with.

:func:`start_run` seeds everything, chooses and sets the Keras precision policy (:func:`precision_policy`,
taught in notebook 04), prints profile, epochs, seed, precision, Keras backend, library versions and device,
and returns a :class:`Run` that :func:`fmnist_utils.results.save_results` later turns into a record in
``results/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata

from fmnist_utils.profiles import DRY_RUN_EPOCH_DIVISOR, Profile, get_profile

LIBRARIES = ("keras", "tensorflow", "jax", "torch", "numpy", "scikit-learn", "matplotlib")
PRECISION_VARIABLE = "FMNIST_PRECISION"
# x86 flags (/proc/cpuinfo) of native bfloat16 arithmetic: AVX-512 BF16 (AMD Zen 4/5, Intel Cooper Lake and
# later) and AMX-BF16 tiles (Intel Sapphire Rapids and later). oneDNN, which TensorFlow uses on x86, runs
# bfloat16 convolutions and matrix products on them.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Read by the backends when they load: TensorFlow grows its GPU memory instead of taking almost all of it, and
# JAX does not pre-allocate 75 % of it (the Dockerfile and docker-compose.yml set them too).
GPU_MEMORY_ON_DEMAND = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


@dataclass(frozen=True)
class Precision:
    """The Keras dtype policy of a run and why it was chosen.

    Attributes:
        policy: a Keras policy name, e.g. ``"mixed_bfloat16"`` (compute in bfloat16, weights in float32).
        reason: why, e.g. ``"CPU has amx_bf16, avx512_bf16"``.
        cpu_flags: the bfloat16 flags of :data:`BF16_CPU_FLAGS` the CPU has (empty for none).
    """

    policy: str
    reason: str
    cpu_flags: tuple[str, ...] = ()


def precision_policy(
    compute_capability: tuple[int, int] | None,
    cpu_flags: set[str] | frozenset[str],
    *,
    backend: str = "tensorflow",
    override: str | None = None,
) -> Precision:
    """Choose the Keras dtype policy from the hardware (a pure function: no device is queried).

    - GPU with compute capability >= (8, 0) (A100, L4, RTX 30xx/40xx, H100): ``"mixed_bfloat16"``;
      bfloat16 tensor cores, no loss scaling needed.
    - (7, x) (V100, T4): ``"mixed_float16"``; float16 tensor cores, and Keras wraps the optimizer in a
      ``LossScaleOptimizer`` in ``compile`` so that small gradients do not flush to zero.
    - Older GPUs: ``"float32"``.
    - No GPU: ``"mixed_bfloat16"`` when ``cpu_flags`` holds ``avx512_bf16`` or ``amx_bf16`` and the backend
      is TensorFlow (oneDNN kernels); ``"float32"`` otherwise. Under JAX on a CPU bfloat16 was measured
      no faster than float32 (measured: 1.3x slower for notebook 03's CNN, 1.1x faster for WRN-16-2, both far
      slower than TensorFlow), so JAX gets ``"float32"`` there.

    Args:
        compute_capability: the GPU's ``(major, minor)``, or None when no GPU is visible.
        cpu_flags: flag names of ``/proc/cpuinfo``, e.g. ``{"avx2", "avx512_bf16"}``; empty if unknown.
        backend: the Keras backend, e.g. ``"tensorflow"`` or ``"jax"``.
        override: a Keras policy name that wins over the hardware (``FMNIST_PRECISION``), or None.

    Raises:
        ValueError: ``override`` is not a Keras policy name.
    """
    found = tuple(flag for flag in BF16_CPU_FLAGS if flag in cpu_flags)
    if override:
        import keras

        try:
            name = keras.DTypePolicy(override.strip()).name
        except ValueError:
            raise ValueError(
                f"{PRECISION_VARIABLE}={override!r} is not a Keras precision policy. Use one of float32, "
                f"mixed_bfloat16, mixed_float16, bfloat16, float16 (e.g. `export {PRECISION_VARIABLE}=float32`), "
                "or unset it to choose by hardware."
            ) from None
        return Precision(name, f"{PRECISION_VARIABLE}={name}", found)
    if compute_capability is not None:
        capability = ".".join(map(str, compute_capability))
        if tuple(compute_capability) >= (8, 0):
            return Precision("mixed_bfloat16", f"GPU compute capability {capability}: bfloat16 tensor cores", found)
        if compute_capability[0] == 7:
            return Precision(
                "mixed_float16", f"GPU compute capability {capability}: float16 tensor cores, loss scaling", found
            )
        return Precision("float32", f"GPU compute capability {capability}: no 16-bit tensor cores", found)
    if not found:
        return Precision("float32", "CPU without native bfloat16 (no avx512_bf16 or amx_bf16)", found)
    if backend != "tensorflow":
        return Precision(
            "float32",
            f"CPU has {', '.join(found)}, but under {backend} bfloat16 is not reliably faster on a CPU",
            found,
        )
    return Precision("mixed_bfloat16", f"CPU has {', '.join(found)}", found)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); empty if unreadable."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Send everything written to file descriptor 2 (C and C++ code included) to /dev/null for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras_quietly():
    """Import and return ``keras`` without the backend's C++ start-up log lines.

    TensorFlow 2.21 prints oneDNN and CUDA-driver notices while it is imported, before
    ``TF_CPP_MIN_LOG_LEVEL`` takes effect; they say nothing about the notebook and would clutter
    its committed outputs. Under another backend (JAX), Keras still imports an installed
    TensorFlow later, in ``keras.utils.set_random_seed``, so it is imported here, quietly, too, and
    with no GPU visible to it. Python errors still surface: an import that fails raises as usual.

    It also sets :data:`GPU_MEMORY_ON_DEMAND` (unless already set) before the backend loads, so that
    TensorFlow and JAX take GPU memory as they need it and several notebooks can share one GPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name, value in GPU_MEMORY_ON_DEMAND.items():
        os.environ.setdefault(name, value)
    with _stderr_to_devnull():
        import keras

        if keras.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
            import tensorflow

            # Keras under JAX imports TensorFlow only for utilities: it must not claim the GPU JAX trains on.
            tensorflow.config.set_visible_devices([], "GPU")
    return keras


def _capability(value: object) -> tuple[int, int] | None:
    """``(7, 5)``, ``"7.5"`` or ``None`` as ``(major, minor)`` or ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = value.split(".")
    major, minor = (int(part) for part in value)
    return major, minor


def gpu_details() -> tuple[str, tuple[int, int] | None] | None:
    """Name and compute capability ``(major, minor)`` of the first GPU the Keras backend sees, or None.

    TensorFlow: ``tf.config.experimental.get_device_details``; JAX: the device's ``device_kind`` and
    ``compute_capability``; PyTorch: ``torch.cuda``. The capability is None where the backend does not say.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details = tf.config.experimental.get_device_details(gpus[0])
        return details.get("device_name", gpus[0].name), _capability(details.get("compute_capability"))
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        return gpus[0].device_kind, _capability(getattr(gpus[0], "compute_capability", None))
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0))
    return None


def nvidia_gpu_present() -> bool:
    """Whether the machine has an NVIDIA GPU, whatever the backend sees (``/dev/nvidiactl`` or ``nvidia-smi -L``)."""
    if os.path.exists("/dev/nvidiactl"):
        return True
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def gpu_name() -> str | None:
    """Name of the first GPU the Keras backend sees, or None when it sees none."""
    details = gpu_details()
    return details[0] if details else None


def choose_precision(gpu: tuple[str, tuple[int, int] | None] | None) -> Precision:
    """:func:`precision_policy` for this machine: its GPU, its CPU flags, the backend, ``FMNIST_PRECISION``.

    Args:
        gpu: what :func:`gpu_details` returned (name and compute capability), or None for no GPU.
    """
    import keras

    return precision_policy(
        gpu[1] if gpu else None,
        cpu_flags(),
        backend=keras.backend.backend(),
        override=os.environ.get(PRECISION_VARIABLE),
    )


def cpu_name() -> str:
    """The CPU model and the number of cores this process may use, e.g. ``Intel(R) Xeon(R) Processor, 2 cores``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def library_versions() -> dict[str, str]:
    """Versions of the installed libraries among ``LIBRARIES`` (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class Run:
    """One execution of a notebook: what was chosen and what it ran on.

    Attributes:
        notebook: notebook name without extension, e.g. ``"01_mlp"``.
        profile: the run profile. seed: the global seed. epochs: training epochs of the main model.
        backend: Keras backend. device: GPU name, or CPU model and cores. versions: library versions.
        precision: the Keras dtype policy set for the run and why (:func:`precision_policy`).
        started: ``time.perf_counter()`` at the start, for the whole-notebook wall time (seconds).
    """

    notebook: str
    profile: Profile
    seed: int
    epochs: int
    backend: str
    device: str
    versions: dict[str, str]
    date: str
    precision: Precision
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since the Setup cell ran."""
        return time.perf_counter() - self.started


def start_run(notebook: str, seed: int, epochs: dict[str, int] | int, profile: Profile | None = None) -> Run:
    """Seed Python, NumPy and the backend, set plot defaults and the precision policy, and print what this run is.

    The precision is :func:`choose_precision`'s, set with ``keras.mixed_precision.set_global_policy``: layers
    built afterwards compute in it (``keras.backend.clear_session`` resets it to float32).

    Args:
        notebook: notebook name without extension, e.g. ``"02_lenet"``.
        seed: passed to ``keras.utils.set_random_seed``.
        epochs: epochs of the main training, or a dict ``{"smoke": 1, "quick": 15, "full": 60}`` (a ``"best"``
            entry is optional, as in :meth:`~fmnist_utils.profiles.Profile.epochs`, which a dry run shortens).
        profile: defaults to :func:`fmnist_utils.profiles.get_profile`, told whether :func:`gpu_name` finds a GPU.
    """
    import keras
    import matplotlib.pyplot as plt

    keras.utils.set_random_seed(seed)
    plt.rcParams.update({"figure.dpi": 90, "axes.grid": False, "image.cmap": "binary"})
    details = gpu_details()
    gpu = details[0] if details else None
    profile = profile or get_profile(gpu_visible=gpu is not None)
    precision = choose_precision(details)
    keras.mixed_precision.set_global_policy(precision.policy)
    if isinstance(epochs, dict):
        epochs = profile.epochs(**epochs)
    run = Run(
        notebook=notebook,
        profile=profile,
        seed=seed,
        epochs=epochs,
        backend=keras.backend.backend(),
        device=f"GPU: {gpu}" if gpu else f"CPU: {cpu_name()}",
        versions=library_versions(),
        date=dt.date.today().isoformat(),
        precision=precision,
    )
    print(f"Run profile : {profile.name} ({profile.reason})")
    print(f"Epochs      : {run.epochs}")
    print(f"Seed        : {seed}")
    print(f"Precision   : {precision.policy} ({precision.reason})")
    print(f"Backend     : {run.backend}")
    print(f"Device      : {run.device}")
    print("Versions    : " + ", ".join(f"{k} {v}" for k, v in run.versions.items()))
    if gpu is None and nvidia_gpu_present():
        print(
            "Warning     : this machine has an NVIDIA GPU, but the Keras backend does not see it, so this run uses "
            "the CPU. Likely causes: a TensorFlow or JAX without CUDA (pip install 'tensorflow[and-cuda]'; the Docker "
            "image's JAX is CPU-only), a driver older than the CUDA of the wheels (nvidia-smi shows both), or "
            "CUDA_VISIBLE_DEVICES hiding it."
        )
    if profile.dry_run:
        print(
            f"DRY RUN     : the {profile.name} recipe on {profile.train_images} training images and about one epoch "
            f"in {DRY_RUN_EPOCH_DIVISOR}, to check that its code runs. Its numbers mean nothing; nothing is recorded."
        )
    elif gpu is None and profile.name in ("full", "best"):
        print("No GPU is visible: the full recipe will be slow. Use Colab or the Docker image (see README).")
    return run
