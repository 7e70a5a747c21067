"""FMNIST_PROFILE selection."""

import subprocess
import sys

import pytest

from fmnist_utils.profiles import PROFILE_VARIABLE, get_profile


@pytest.mark.parametrize("gpu_visible", [True, False])
@pytest.mark.parametrize("value", ["smoke", "quick", "full", "best", " Quick "])
def test_explicit_profile_wins_over_hardware(monkeypatch, value, gpu_visible):
    monkeypatch.setenv(PROFILE_VARIABLE, value)
    profile = get_profile(gpu_visible=gpu_visible)
    assert profile.name == value.strip().lower()
    assert profile.reason == f"{PROFILE_VARIABLE}={profile.name}"


@pytest.mark.parametrize(("gpu_visible", "expected"), [(False, "quick"), (True, "full")])
def test_default_depends_on_gpu(monkeypatch, gpu_visible, expected):
    monkeypatch.delenv(PROFILE_VARIABLE, raising=False)
    profile = get_profile(gpu_visible=gpu_visible)
    assert profile.name == expected
    assert profile.reason.startswith("default: ")


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(PROFILE_VARIABLE, "fast")
    with pytest.raises(ValueError, match=r"FMNIST_PROFILE='fast' is not a run profile. Use one of smoke, quick, full"):
        get_profile(gpu_visible=False)


def test_pick_and_sizes(monkeypatch):
    monkeypatch.setenv(PROFILE_VARIABLE, "smoke")
    smoke = get_profile(gpu_visible=False)
    assert smoke.pick(smoke=1, quick=10, full=50) == 1
    assert smoke.train_images == 2000
    monkeypatch.setenv(PROFILE_VARIABLE, "full")
    full = get_profile(gpu_visible=False)
    assert full.pick(smoke=1, quick=10, full=50, best=80) == 50 and full.train_images is None
    monkeypatch.setenv(PROFILE_VARIABLE, "best")
    best = get_profile(gpu_visible=True)
    assert best.pick(smoke=1, quick=10, full=50, best=80) == 80
    assert best.pick(smoke=1, quick=10, full=50) == 50  # no best recipe of its own: the full one


def test_best_is_never_the_default(monkeypatch):
    monkeypatch.delenv(PROFILE_VARIABLE, raising=False)
    assert {get_profile(gpu_visible=g).name for g in (False, True)} == {"quick", "full"}


def test_profiles_imports_neither_environment_nor_keras():
    """profiles sits below environment: environment asks the backend for a GPU and passes the answer in."""
    code = "import sys, fmnist_utils.profiles; print(sorted({'fmnist_utils.environment', 'keras'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
