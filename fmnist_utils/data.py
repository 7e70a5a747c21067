"""Fashion-MNIST: find, verify and load the four official files; split, subset and scale them.

Taught in notebook 01. :func:`load_data` returns exactly the official arrays or raises
:class:`DatasetError`; it never returns a silently wrong array and never changes a file it did not
download itself.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fmnist_utils.profiles import Profile

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Label ``i`` means ``CLASS_NAMES[i]`` (Zalando Research's order)."""

DATA_DIR_VARIABLE = "FMNIST_DATA_DIR"
PACKAGE_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian/Ubuntu's ``dataset-fashion-mnist`` package puts the files."""
KERAS_MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class _IdxFile:
    name: str
    sha256: str  # of the decompressed content
    magic: int  # 0x801: unsigned bytes, 1 dimension (labels); 0x803: 3 dimensions (images)
    count: int


FILES = (
    _IdxFile(
        "train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 0x803, 60_000
    ),
    _IdxFile(
        "train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 0x801, 60_000
    ),
    _IdxFile(
        "t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 0x803, 10_000
    ),
    _IdxFile(
        "t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 0x801, 10_000
    ),
)

HOW_TO_FIX = (
    "To get a correct copy: on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist`; "
    f"or put the four official .gz files in a folder and set {DATA_DIR_VARIABLE} to it; "
    "or copy them to the Keras cache (~/.keras/datasets/fashion-mnist) on a machine without network."
)


class DatasetError(RuntimeError):
    """A Fashion-MNIST file is missing, unreadable or not the official content."""


def keras_cache_dir() -> Path:
    """Keras' dataset cache for Fashion-MNIST: ``$KERAS_HOME`` (default ``~/.keras``)/datasets/fashion-mnist."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / "fashion-mnist"


def _display(path: Path) -> str:
    """A path for messages, with the home folder shown as ~ (outputs get committed)."""
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home) :] if home not in ("", "/") and text.startswith(home + os.sep) else text


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _has_any(folder: Path) -> bool:
    return folder.is_dir() and any(_find(folder, f.name) for f in FILES)


def _download(name: str, folder: Path) -> None:
    """Download ``name``.gz from Keras' mirror into ``folder`` (the Keras cache)."""
    import keras

    keras.utils.get_file(
        fname=f"{name}.gz",
        origin=KERAS_MIRROR + f"{name}.gz",
        cache_dir=str(folder.parent.parent),
        cache_subdir=str(Path(folder.parent.name) / folder.name),
    )


def _read_verified(path: Path, spec: _IdxFile) -> np.ndarray:
    """Decompress (if .gz), check the IDX header and SHA-256, and return the array (uint8)."""
    where = _display(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except gzip.BadGzipFile as error:
            raise DatasetError(
                f"{where} is not a gzip file ({error}). Expected the gzipped {spec.name}. {HOW_TO_FIX}"
            ) from error
        except (EOFError, OSError, ValueError) as error:
            raise DatasetError(
                f"{where} is truncated or corrupt: it does not decompress ({error}). "
                f"Delete it and get a fresh copy. {HOW_TO_FIX}"
            ) from error
    dims = spec.magic & 0xFF
    header_size = 4 + 4 * dims
    expected_shape = (spec.count, 28, 28) if dims == 3 else (spec.count,)
    if len(raw) < header_size:
        raise DatasetError(
            f"{where} holds {len(raw)} bytes, too few for an IDX header. Expected {spec.name}. {HOW_TO_FIX}"
        )
    magic, *shape = struct.unpack(f">{1 + dims}I", raw[:header_size])
    if magic != spec.magic or tuple(shape) != expected_shape:
        raise DatasetError(
            f"{where} has IDX header magic {magic:#06x} and shape {tuple(shape)}; expected magic "
            f"{spec.magic:#06x} and shape {expected_shape} for {spec.name}. It is another file or dataset. {HOW_TO_FIX}"
        )
    if len(raw) != header_size + int(np.prod(expected_shape)):
        raise DatasetError(
            f"{where} holds {len(raw) - header_size:,} data bytes; {spec.name} has {int(np.prod(expected_shape)):,}. "
            f"The file is truncated or padded. {HOW_TO_FIX}"
        )
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise DatasetError(
            f"{where} decompresses to content with SHA-256 {digest}, not the official {spec.name} "
            f"({spec.sha256}). It is corrupt or a different dataset under the official name. {HOW_TO_FIX}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(expected_shape)


def _choose_source(data_dir: str | Path | None) -> tuple[str, Path, bool]:
    """Return (description, folder, may_download) of the first source found."""
    if data_dir is not None:
        return "the folder passed to load_data", Path(data_dir), False
    if os.environ.get(DATA_DIR_VARIABLE):
        return f"{DATA_DIR_VARIABLE}", Path(os.environ[DATA_DIR_VARIABLE]), False
    if _has_any(PACKAGE_DIR):
        return "the Debian/Ubuntu package dataset-fashion-mnist", PACKAGE_DIR, False
    cache = keras_cache_dir()
    if _has_any(cache):
        return "the Keras cache", cache, True
    return "a download from Keras' mirror into the Keras cache", cache, True


def load_data(
    data_dir: str | Path | None = None, verbose: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the official Fashion-MNIST arrays, verified by content.

    Sources, first found wins: ``data_dir``; ``$FMNIST_DATA_DIR``; the Debian/Ubuntu package folder
    ``/usr/share/datasets/fashion-mnist``; the Keras cache (``$KERAS_HOME/datasets/fashion-mnist``);
    else a download from Keras' mirror into that cache. Files may be gzipped (``name.gz``) or not.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays of shapes (60000, 28, 28), (60000,),
        (10000, 28, 28), (10000,); pixels 0-255 (0 is background), labels 0-9 (see ``CLASS_NAMES``).

    Raises:
        DatasetError: a file is missing, not gzip, truncated, has a wrong IDX header or a SHA-256 that is
            not the official one, or the download failed (e.g. offline). The message names the file and
            says how to fix it.
    """
    description, folder, may_download = _choose_source(data_dir)
    arrays = []
    for spec in FILES:
        path = _find(folder, spec.name)
        if path is None and may_download:
            try:
                _download(spec.name, folder)
            except Exception as error:  # urllib, http and OS errors: all mean "no copy"
                raise DatasetError(
                    f"Fashion-MNIST is not on this machine and downloading {spec.name}.gz from {KERAS_MIRROR} "
                    f"failed ({type(error).__name__}: {error}). {HOW_TO_FIX}"
                ) from error
            path = _find(folder, spec.name)
        if path is None:
            raise DatasetError(
                f"{_display(folder / (spec.name + '.gz'))} is missing (source: {description}). "
                f"Expected the four files {', '.join(f.name + '.gz' for f in FILES)}. {HOW_TO_FIX}"
            )
        arrays.append(_read_verified(path, spec))
    if verbose:
        print(
            f"Fashion-MNIST loaded from {description} ({_display(folder)}); all four files match the official SHA-256."
        )
    x_train, y_train, x_test, y_test = arrays
    return (x_train, y_train), (x_test, y_test)


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` examples with the class proportions of ``y`` (all of them, unchanged, if n is None or >= len(y))."""
    if n is None or n >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    x_keep, _, y_keep, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    return x_keep, y_keep


def train_val_split(
    x: np.ndarray, y: np.ndarray, val_size: int = 5_000, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split the training set into a training part and a stratified validation part.

    Models and epochs are selected on the validation part only, never on the test set.

    Args:
        x: images, shape (N, ...). y: labels, shape (N,).
        val_size: number of validation images (default 5,000 of 60,000).
        seed: the same seed gives the same split.

    Returns:
        ``(x_train, y_train), (x_val, y_val)`` with ``len(y_val) == val_size`` and each class in the
        same proportion in both parts.
    """
    if not 0 < val_size < len(y):
        raise ValueError(f"val_size must be between 1 and {len(y) - 1}, got {val_size}")
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_size, stratify=y, random_state=seed)
    return (x_train, y_train), (x_val, y_val)


def to_float(x: np.ndarray) -> np.ndarray:
    """Scale uint8 images (N, 28, 28) to float32 in [0, 1] with a channel axis: (N, 28, 28, 1).

    Raises:
        ValueError: ``x`` is not a uint8 array of shape (N, 28, 28) (for instance already scaled).
    """
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(
            f"to_float expects raw uint8 images of shape (N, 28, 28) as load_data returns them; "
            f"got dtype {x.dtype} and shape {x.shape}. Pass the images before scaling or reshaping."
        )
    return (x.astype(np.float32) / 255.0)[..., np.newaxis]


@dataclass(frozen=True)
class Splits:
    """Training, validation and test sets ready for a model.

    Images are float32 (N, 28, 28, 1) in [0, 1]; labels are uint8 (N,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def describe(self) -> str:
        return f"train {self.x_train.shape}, validation {self.x_val.shape}, test {self.x_test.shape}"


def prepare_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
    val_size: int = 5_000,
    train_images: int | None = None,
    validation_images: int | None = None,
    test_images: int | None = None,
) -> Splits:
    """Split off a stratified validation set, keep stratified subsets if asked (smoke runs), and scale.

    Args:
        train, test: ``(x, y)`` uint8 pairs as :func:`load_data` returns them.
        seed: seeds the split and the subsets.
        val_size: validation images taken from the 60,000 training images.
        train_images, validation_images, test_images: keep only this many (stratified); None keeps all.
            ``profile.train_images`` etc. give the values for a run profile.
    """
    (x_train, y_train), (x_val, y_val) = train_val_split(*train, val_size=val_size, seed=seed)
    x_train, y_train = stratified_subset(x_train, y_train, train_images, seed)
    x_val, y_val = stratified_subset(x_val, y_val, validation_images, seed)
    x_test, y_test = stratified_subset(*test, test_images, seed)
    return Splits(to_float(x_train), y_train, to_float(x_val), y_val, to_float(x_test), y_test)


def load_splits(profile: Profile, seed: int, val_size: int = 5_000) -> Splits:
    """:func:`load_data`, then :func:`prepare_splits` sized for ``profile``.

    Args:
        profile: a :class:`fmnist_utils.profiles.Profile`; its ``train_images``, ``validation_images`` and
            ``test_images`` set the subset sizes.
        seed: seeds the split and the subsets. val_size: validation images taken from the training images.
    """
    train, test = load_data()
    return prepare_splits(
        train,
        test,
        seed=seed,
        val_size=val_size,
        train_images=profile.train_images,
        validation_images=profile.validation_images,
        test_images=profile.test_images,
    )
