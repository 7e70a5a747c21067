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

Each notebook picks its own settings per profile with :meth:`Profile.pick`, its epoch counts with
:meth:`Profile.epochs` and the size of other work (search trials, timing calls) with :meth:`Profile.size`.

``FMNIST_DRY_RUN=1`` beside the profile makes a **dry run** of that profile's recipe (read here too): the same
architectures, augmentation, callbacks, schedules, precision, backups and search space, on a few hundred images
(``DRY_RUN_TRAIN_IMAGES``...), about one epoch in ``DRY_RUN_EPOCH_DIVISOR`` (at least one) and the ``smoke``
size of other work. CI runs the
``full`` and ``best`` recipes this way, so that no reader is the first to execute them. A dry run records
nothing (:attr:`Profile.records`), and its numbers mean nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TypeVar

PROFILE_VARIABLE = "FMNIST_PROFILE"
DRY_RUN_VARIABLE = "FMNIST_DRY_RUN"
PROFILES = ("smoke", "quick", "full", "best")
SMOKE_TRAIN_IMAGES = 2_000
SMOKE_VALIDATION_IMAGES = 500
SMOKE_TEST_IMAGES = 2_000
DRY_RUN_TRAIN_IMAGES = 250
DRY_RUN_VALIDATION_IMAGES = 250
DRY_RUN_TEST_IMAGES = 250
DRY_RUN_EPOCH_DIVISOR = 40  # a dry run keeps one epoch in 40 of each count, and at least one

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """The run size of a notebook.

    Attributes:
        name: ``"smoke"``, ``"quick"``, ``"full"`` or ``"best"``.
        reason: how it was chosen, e.g. ``"FMNIST_PROFILE=quick"`` or ``"default: no GPU visible"``.
        dry_run: this profile's recipe on a few hundred images and few epochs (``FMNIST_DRY_RUN=1``).
    """

    name: str
    reason: str
    dry_run: bool = False

    @property
    def label(self) -> str:
        """The name, with ``-dry`` for a dry run: for folders of backups and searches, e.g. ``"full-dry"``."""
        return f"{self.name}-dry" if self.dry_run else self.name

    @property
    def records(self) -> bool:
        """Whether this run writes results, predictions, figures and models: quick, full and best, not dry."""
        return self.name != "smoke" and not self.dry_run

    def pick(self, *, smoke: T, quick: T, full: T, best: T | None = None) -> T:
        """Return the value for this profile, e.g. ``epochs = profile.pick(smoke=1, quick=15, full=60)``.

        ``best`` defaults to ``full``'s value: pass it only where the top-accuracy recipe differs.
        """
        return {"smoke": smoke, "quick": quick, "full": full, "best": full if best is None else best}[self.name]

    def size(self, *, smoke: T, quick: T, full: T, best: T | None = None) -> T:
        """Like :meth:`pick`, for how much work a run does beside its training (search trials and their budget,
        timing calls, resamples), not what it trains: a dry run takes the ``smoke`` value."""
        return smoke if self.dry_run else self.pick(smoke=smoke, quick=quick, full=full, best=best)

    def epochs(self, *, smoke: int, quick: int, full: int, best: int | None = None) -> int:
        """Like :meth:`pick`, for a number of epochs: a dry run keeps about one in
        ``DRY_RUN_EPOCH_DIVISOR``, at least one, e.g. ``full=50`` gives 2 and ``full=12`` gives 1."""
        value = self.pick(smoke=smoke, quick=quick, full=full, best=best)
        return max(1, math.ceil(value / DRY_RUN_EPOCH_DIVISOR)) if self.dry_run else value

    @property
    def train_images(self) -> int | None:
        """How many training images to use (stratified), or None for all of them."""
        return self._images(SMOKE_TRAIN_IMAGES, DRY_RUN_TRAIN_IMAGES)

    @property
    def validation_images(self) -> int | None:
        """How many validation images to use (stratified), or None for the whole validation split."""
        return self._images(SMOKE_VALIDATION_IMAGES, DRY_RUN_VALIDATION_IMAGES)

    @property
    def test_images(self) -> int | None:
        """How many test images to evaluate on (stratified), or None for all 10,000."""
        return self._images(SMOKE_TEST_IMAGES, DRY_RUN_TEST_IMAGES)

    def _images(self, smoke: int, dry_run: int) -> int | None:
        if self.dry_run:
            return dry_run
        return smoke if self.name == "smoke" else None


def get_profile(gpu_visible: bool) -> Profile:
    """Read ``FMNIST_PROFILE``; when unset, ``full`` if a GPU is visible, else ``quick``. ``FMNIST_DRY_RUN``
    set to 1 (or true, yes) makes it a dry run of that profile; 0, false, no or empty leave it a real run.

    Args:
        gpu_visible: whether the Keras backend sees a GPU, e.g.
            ``fmnist_utils.environment.gpu_name() is not None``; used only when the variable is unset.

    Raises:
        ValueError: ``FMNIST_PROFILE`` or ``FMNIST_DRY_RUN`` holds an unknown value.
    """
    dry_value = os.environ.get(DRY_RUN_VARIABLE, "").strip().lower()
    if dry_value not in ("", "0", "false", "no", "1", "true", "yes"):
        raise ValueError(
            f"{DRY_RUN_VARIABLE}={os.environ[DRY_RUN_VARIABLE]!r} is neither on nor off. "
            f"Use {DRY_RUN_VARIABLE}=1 for a dry run of the profile's recipe, or unset it."
        )
    dry_run = dry_value in ("1", "true", "yes")
    profile = _read_profile(gpu_visible)
    if dry_run:
        return Profile(profile.name, f"{profile.reason}, {DRY_RUN_VARIABLE}=1", dry_run=True)
    return profile


def _read_profile(gpu_visible: bool) -> Profile:
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
