"""FMNIST_PROFILE selection."""

import pytest

from fmnist_utils.profiles import PROFILE_VARIABLE, get_profile


@pytest.mark.parametrize("value", ["smoke", "quick", "full", " Quick "])
def test_explicit_profile(monkeypatch, value):
    monkeypatch.setenv(PROFILE_VARIABLE, value)
    assert get_profile(gpu_visible=True).name == value.strip().lower()


def test_default_depends_on_gpu(monkeypatch):
    monkeypatch.delenv(PROFILE_VARIABLE, raising=False)
    assert get_profile(gpu_visible=False).name == "quick"
    assert get_profile(gpu_visible=True).name == "full"
    assert get_profile().name == "quick"  # this CPU machine


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(PROFILE_VARIABLE, "fast")
    with pytest.raises(ValueError, match=r"FMNIST_PROFILE='fast' is not a run profile. Use one of smoke, quick, full"):
        get_profile()


def test_pick_and_sizes(monkeypatch):
    monkeypatch.setenv(PROFILE_VARIABLE, "smoke")
    smoke = get_profile()
    assert smoke.pick(smoke=1, quick=10, full=50) == 1
    assert smoke.train_images == 2000
    monkeypatch.setenv(PROFILE_VARIABLE, "full")
    full = get_profile()
    assert full.pick(smoke=1, quick=10, full=50) == 50 and full.train_images is None
