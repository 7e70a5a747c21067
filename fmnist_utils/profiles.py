"""Run profiles: how big a run every notebook makes, chosen by one environment variable.

``FMNIST_PROFILE`` is read here and nowhere else:

- ``smoke``: CI. At most 2,000 stratified training images, 1 epoch; each notebook runs in
  about a minute on a 2-core CPU. Its numbers mean nothing and are never committed.
- ``quick``: the default when no GPU is visible. The whole training set, sized so that each
  notebook finishes in at most 20 minutes on a 2-core laptop CPU.
- ``full``: the default when a GPU is visible. The GPU recipe, sized to finish in about 20 minutes per
  notebook on the GPU most readers have, a Colab T4 with ``mixed_float16`` (an estimate from FLOPs until
  measured; :mod:`fmnist_utils.estimates`).
- ``best``: opt-in only (``FMNIST_PROFILE=best``). The top-accuracy recipe for data-centre GPUs (A100,
  H100/H200); where a notebook has no bigger recipe it runs its ``full`` one.

Each notebook picks its own settings per profile with :meth:`Profile.pick`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

PROFILE_VARIABLE = "FMNIST_PROFILE"
PROFILES = ("smoke", "quick", "full", "best")
SMOKE_TRAIN_IMAGES = 2_000
SMOKE_VALIDATION_IMAGES = 500
SMOKE_TEST_IMAGES = 2_000

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """The run size of a notebook.

    Attributes:
        name: ``"smoke"``, ``"quick"``, ``"full"`` or ``"best"``.
        reason: how it was chosen, e.g. ``"FMNIST_PROFILE=quick"`` or ``"default: no GPU visible"``.
    """

    name: str
    reason: str

    def pick(self, *, smoke: T, quick: T, full: T, best: T | None = None) -> T:
        """Return the value for this profile, e.g. ``epochs = profile.pick(smoke=1, quick=15, full=60)``.

        ``best`` defaults to ``full``'s value: pass it only where the top-accuracy recipe differs.
        """
        return {"smoke": smoke, "quick": quick, "full": full, "best": full if best is None else best}[self.name]

    @property
    def train_images(self) -> int | None:
        """How many training images to use (stratified), or None for all of them."""
        return SMOKE_TRAIN_IMAGES if self.name == "smoke" else None

    @property
    def validation_images(self) -> int | None:
        """How many validation images to use (stratified), or None for the whole validation split."""
        return SMOKE_VALIDATION_IMAGES if self.name == "smoke" else None

    @property
    def test_images(self) -> int | None:
        """How many test images to evaluate on (stratified), or None for all 10,000."""
        return SMOKE_TEST_IMAGES if self.name == "smoke" else None


def get_profile(gpu_visible: bool) -> Profile:
    """Read ``FMNIST_PROFILE``; when unset, ``full`` if a GPU is visible, else ``quick``.

    Args:
        gpu_visible: whether the Keras backend sees a GPU, e.g.
            ``fmnist_utils.environment.gpu_name() is not None``; used only when the variable is unset.

    Raises:
        ValueError: ``FMNIST_PROFILE`` holds an unknown value.
    """
    value = os.environ.get(PROFILE_VARIABLE, "").strip().lower()
    if value:
        if value not in PROFILES:
            raise ValueError(
                f"{PROFILE_VARIABLE}={os.environ[PROFILE_VARIABLE]!r} is not a run profile. "
                f"Use one of {', '.join(PROFILES)} (e.g. `export {PROFILE_VARIABLE}=quick`), "
                "or unset it to choose by hardware."
            )
        return Profile(value, f"{PROFILE_VARIABLE}={value}")
    if gpu_visible:
        return Profile("full", "default: a GPU is visible")
    return Profile("quick", "default: no GPU visible")
