"""The Setup cell's report, and the helpers on a second Keras backend."""

import os
import subprocess
import sys
import textwrap

from fmnist_utils.environment import library_versions, start_run
from fmnist_utils.profiles import Profile


def test_start_run_prints_what_the_run_is(capsys):
    run = start_run("00_check", seed=7, epochs={"smoke": 1, "quick": 5, "full": 9}, profile=Profile("quick", "test"))
    out = capsys.readouterr().out
    assert run.epochs == 5 and run.backend in out and "Seed        : 7" in out and "keras" in out
    assert run.device.startswith(("CPU: ", "GPU: "))
    assert {"python", "keras", "numpy"} <= set(library_versions())


def test_tiny_model_trains_under_jax():
    """fmnist_utils uses the Keras 3 API only, so it runs on JAX as well as TensorFlow."""
    code = textwrap.dedent("""
        import numpy as np, keras
        from fmnist_utils import data, evaluation, models
        from fmnist_utils.environment import gpu_name
        assert keras.backend.backend() == "jax", keras.backend.backend()
        keras.utils.set_random_seed(0)
        x = data.to_float(np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8))
        y = np.arange(64) % 10
        for model in (models.mlp((32,)), models.lenet()):
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
            model.fit(x, y, epochs=1, batch_size=32, verbose=0)
            result = evaluation.evaluate(model, x, y, flip_tta=True)
            assert result.probabilities.shape == (64, 10)
        print("ok", gpu_name())
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok None"


def test_setup_is_quiet_under_jax_with_tensorflow_installed():
    """Keras imports an installed TensorFlow when seeding; its C++ notices must not reach the notebook."""
    code = textwrap.dedent("""
        from fmnist_utils.environment import import_keras_quietly, start_run
        from fmnist_utils.profiles import Profile
        keras = import_keras_quietly()
        assert keras.backend.backend() == "jax", keras.backend.backend()
        start_run("00_check", seed=1, epochs=1, profile=Profile("smoke", "test"))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a fresh Jupyter kernel
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Backend     : jax" in done.stdout
    assert done.stderr == ""


def test_gpu_memory_is_taken_on_demand_and_tensorflow_leaves_the_gpu_to_jax():
    code = textwrap.dedent("""
        import os
        from fmnist_utils.environment import import_keras_quietly
        keras = import_keras_quietly()
        import tensorflow as tf
        print(os.environ["TF_FORCE_GPU_ALLOW_GROWTH"], os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"])
        print(tf.config.get_visible_devices("GPU"))
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    for name in ("TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["true false", "[]"]


def test_setup_warns_when_a_gpu_is_present_but_unseen(monkeypatch, capsys):
    from fmnist_utils import environment

    monkeypatch.setattr(environment, "gpu_details", lambda: None)
    monkeypatch.setattr(environment, "nvidia_gpu_present", lambda: True)
    start_run("00_check", seed=0, epochs=1, profile=Profile("quick", "test"))
    out = capsys.readouterr().out
    assert "Warning     : this machine has an NVIDIA GPU, but the Keras backend does not see it" in out
    monkeypatch.setattr(environment, "nvidia_gpu_present", lambda: False)
    start_run("00_check", seed=0, epochs=1, profile=Profile("quick", "test"))
    assert "Warning" not in capsys.readouterr().out


def test_setup_waits_for_the_dpkg_lock():
    """A fresh cloud machine's boot-time apt-get holds the dpkg lock; setup and CI wait for it instead of failing."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("scripts/apt_install.sh", ".ci/run"):  # apt_install.sh: get_dataset.sh's and get_browser.sh's
        with open(os.path.join(root, name)) as script:
            text = script.read()
        assert "DPkg::Lock::Timeout=" in text, name
    assert "waiting for it" in open(os.path.join(root, "scripts/apt_install.sh")).read()
    for name in ("scripts/get_dataset.sh", "scripts/get_browser.sh"):
        assert "apt_install.sh" in open(os.path.join(root, name)).read(), name
