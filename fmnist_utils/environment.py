"""What a run ran on, and the Setup cell every notebook starts with.

:func:`start_run` seeds everything, prints profile, epochs, seed, Keras backend, library versions
and device, and returns a :class:`Run` that :func:`fmnist_utils.results.save_results` later turns
into a record in ``results/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata

from fmnist_utils.profiles import Profile, get_profile

LIBRARIES = ("keras", "tensorflow", "jax", "torch", "numpy", "scikit-learn", "matplotlib")


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
    TensorFlow later, in ``keras.utils.set_random_seed``, so it is imported here, quietly, too.
    Python errors still surface: an import that fails raises as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_to_devnull():
        import keras

        if keras.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
            import tensorflow  # noqa: F401
    return keras


def gpu_name() -> str | None:
    """Name of the first GPU the Keras backend sees, or None when it sees none."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return gpus[0].device_kind if gpus else None
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return None


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
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since the Setup cell ran."""
        return time.perf_counter() - self.started


def start_run(notebook: str, seed: int, epochs: dict[str, int] | int, profile: Profile | None = None) -> Run:
    """Seed Python, NumPy and the backend, set plot defaults, and print what this run is.

    Args:
        notebook: notebook name without extension, e.g. ``"02_lenet"``.
        seed: passed to ``keras.utils.set_random_seed``.
        epochs: epochs of the main training, or a dict ``{"smoke": 1, "quick": 15, "full": 60}``.
        profile: defaults to :func:`fmnist_utils.profiles.get_profile`, told whether :func:`gpu_name` finds a GPU.
    """
    import keras
    import matplotlib.pyplot as plt

    keras.utils.set_random_seed(seed)
    plt.rcParams.update({"figure.dpi": 90, "axes.grid": False, "image.cmap": "binary"})
    gpu = gpu_name()
    profile = profile or get_profile(gpu_visible=gpu is not None)
    if isinstance(epochs, dict):
        epochs = profile.pick(**epochs)
    run = Run(
        notebook=notebook,
        profile=profile,
        seed=seed,
        epochs=epochs,
        backend=keras.backend.backend(),
        device=f"GPU: {gpu}" if gpu else f"CPU: {cpu_name()}",
        versions=library_versions(),
        date=dt.date.today().isoformat(),
    )
    print(f"Run profile : {profile.name} ({profile.reason})")
    print(f"Epochs      : {run.epochs}")
    print(f"Seed        : {seed}")
    print(f"Backend     : {run.backend}")
    print(f"Device      : {run.device}")
    print("Versions    : " + ", ".join(f"{k} {v}" for k, v in run.versions.items()))
    if gpu is None and profile.name == "full":
        print("No GPU is visible: the full recipe will be slow. Use Colab or the Docker image (see README).")
    return run
