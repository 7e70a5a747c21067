"""FMNIST_PROFILE selection."""

import subprocess
import sys

import pytest

from fmnist_utils.profiles import DRY_RUN_VARIABLE, PROFILE_VARIABLE, Profile, get_profile


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


@pytest.mark.parametrize("value", ["1", "true", " Yes "])
def test_dry_run_keeps_the_recipe_on_a_few_hundred_images(monkeypatch, value):
    monkeypatch.setenv(PROFILE_VARIABLE, "best")
    monkeypatch.setenv(DRY_RUN_VARIABLE, value)
    profile = get_profile(gpu_visible=False)
    assert (profile.name, profile.dry_run, profile.label) == ("best", True, "best-dry")
    assert profile.reason == f"{PROFILE_VARIABLE}=best, {DRY_RUN_VARIABLE}=1"
    assert profile.pick(smoke=(16,), quick=(16,), full=(32,), best=(64,)) == (64,)  # the recipe itself
    assert (profile.train_images, profile.validation_images, profile.test_images) == (250, 250, 250)
    assert not profile.records
    # about one epoch in 40, at least one; the profile's own count first
    assert profile.epochs(smoke=1, quick=10, full=50, best=80) == 2
    assert profile.epochs(smoke=1, quick=10, full=12) == 1
    assert profile.epochs(smoke=0, quick=1, full=2) == 1


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_a_real_run_keeps_every_count(monkeypatch, value):
    monkeypatch.setenv(PROFILE_VARIABLE, "full")
    monkeypatch.setenv(DRY_RUN_VARIABLE, value)
    profile = get_profile(gpu_visible=False)
    assert (profile.dry_run, profile.label, profile.records) == (False, "full", True)
    assert profile.epochs(smoke=1, quick=10, full=50, best=80) == 50
    assert profile.train_images is None


def test_smoke_records_nothing_and_epochs_is_pick_outside_dry_runs():
    for name in ("smoke", "quick", "full", "best"):
        profile = Profile(name, "test")
        assert profile.records == (name != "smoke")
        assert profile.epochs(smoke=1, quick=12, full=40, best=60) == profile.pick(smoke=1, quick=12, full=40, best=60)


def test_unknown_dry_run_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(PROFILE_VARIABLE, "full")
    monkeypatch.setenv(DRY_RUN_VARIABLE, "maybe")
    with pytest.raises(ValueError, match=r"FMNIST_DRY_RUN='maybe' is neither on nor off. Use FMNIST_DRY_RUN=1"):
        get_profile(gpu_visible=False)


def test_size_is_the_smoke_value_in_a_dry_run_and_pick_otherwise():
    values = dict(smoke=2, quick=8, full=12, best=16)
    assert Profile("best", "test", dry_run=True).size(**values) == 2
    assert [Profile(n, "test").size(**values) for n in ("smoke", "quick", "full", "best")] == [2, 8, 12, 16]
