"""Real photos of clothes: load them safely, convert them as Fashion-MNIST was made, classify them (notebook 08).

Fashion-MNIST's images were made from product photos on a white background (Xiao, Rasul & Vollgraf 2017,
section 2): trim the background, resize the longest edge to 28 pixels, sharpen, centre on 28x28, negate and
turn grey, so the item is light on black; every image of the dataset reaches the top of the range (its maximum
pixel is 254 or 255). A phone photo has a floor, a bed or a wall behind the item instead, so
:func:`to_fashion_mnist` first has to find the item: it separates it with OpenCV's GrabCut, falls back to the
colour difference from the photo's border when GrabCut finds next to nothing or nearly everything, then follows
the dataset's steps.

The decision rule (:func:`classify`, the command line, the app and notebook 08 all use it): the three shoe
classes count as one answer, "Shoes", with their summed probability (:func:`merge_shoes`), because the photos'
label "shoes" never says which kind; the out-of-distribution score is computed on the same merged columns.

Command line (``python -m fmnist_utils.photos --help``): one line per image, or one JSON object per line with
``--json``; a file that cannot be used gets one line on stderr with its name and the reason, and the others are
still classified; exit status 0 when every file was classified, 1 when any file failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist_utils.data import CLASS_NAMES
from fmnist_utils.environment import import_keras_quietly
from fmnist_utils.evaluation import softmax

keras = import_keras_quietly()

MIN_SIDE = 28  # pixels: a photo smaller than the model's input cannot be made into one
MAX_PIXELS = 40_000_000  # a larger image is refused (decompression bomb); a 108 MP phone photo has 12,000 x 9,000
WORKING_SIDE = 128  # pixels: the item is found on a copy of this size, which is plenty for a 28x28 result
BORDER = 0.04  # share of each side taken as background when estimating it and initialising GrabCut
MIN_WORKING_SIDE = 16  # pixels: a working copy thinner than this (aspect ratio over 8:1) has no item to find
GRABCUT_RANGE = (0.05, 0.80)  # share of the photo: a GrabCut item outside it is replaced by the colour fallback
EMPTY_ITEM = 0.15  # an item whose brightest pixel is below this (before stretching) is nearly invisible
SHOES = tuple(CLASS_NAMES.index(name) for name in ("Sandal", "Sneaker", "Ankle boot"))

# The clothing dataset's labels -> the Fashion-MNIST classes a correct prediction may name (notebook 08):
# "shoes" accepts any of the three shoe classes, and hat, shorts and skirt have no Fashion-MNIST class at all.
LABEL_TO_CLASSES: dict[str, tuple[int, ...]] = {
    "t-shirt": (CLASS_NAMES.index("T-shirt/top"),),
    "pants": (CLASS_NAMES.index("Trouser"),),
    "longsleeve": (CLASS_NAMES.index("Pullover"),),
    "dress": (CLASS_NAMES.index("Dress"),),
    "outwear": (CLASS_NAMES.index("Coat"),),
    "shirt": (CLASS_NAMES.index("Shirt"),),
    "shoes": SHOES,
    "hat": (),
    "shorts": (),
    "skirt": (),
}
DEFAULT_MODEL_NAME = "models/08_real_photos.keras"  # written by notebook 08's recorded runs, committed


class PhotoError(ValueError):
    """A file or photo that cannot be used; the message names it and says why."""


def _name(source: str | Path | bytes, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, bytes | bytearray) else str(source)


def load_photo(source: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a photo as an upright RGB image, (H, W, 3) uint8.

    Applies the EXIF orientation (phones store portrait photos sideways and say so in EXIF), composites an
    image with transparency on white, and converts greyscale, 16-bit, palette and CMYK images to RGB.

    Args:
        source: a path or the file's bytes. name: the name used in errors (default: the path).
        max_pixels: larger images are refused before they are decoded.

    Raises:
        PhotoError: not an image, truncated, over ``max_pixels``, or smaller than 28 pixels on a side.
    """
    label = _name(source, name)
    try:
        data = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    except OSError as error:
        raise PhotoError(f"{label}: cannot read the file ({error.strerror or error})") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(
                    f"{label}: {width} x {height} pixels is over the limit of {max_pixels:,}; "
                    "shrink the photo first (this limit guards against decompression bombs)"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
    except PhotoError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        if isinstance(error, UnidentifiedImageError):
            raise PhotoError(f"{label}: not an image file Pillow can read (JPEG, PNG, WebP, ...)") from error
        raise PhotoError(f"{label}: too many pixels ({error}); shrink the photo first") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"{label}: the image is damaged or truncated ({error})") from error
    if min(image.size) < MIN_SIDE:
        raise PhotoError(
            f"{label}: {image.width} x {image.height} pixels is too small; it needs {MIN_SIDE} on each side"
        )
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16- or 32-bit greyscale: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        grey = np.clip(values / top * 255, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


class Conversion(NamedTuple):
    """What :func:`to_fashion_mnist` returns: ``image``, (28, 28) float32 in [0, 1], item light on black;
    ``steps``, the intermediate images for display: ``photo`` (h, w, 3) uint8 at the working size, ``mask``
    (h, w) bool (the item), ``mask_method`` ("grabcut", "colour" or "rectangle": :func:`item_mask`), ``crop``
    (the item's box of the photo, RGB), ``grey`` (the crop negated and masked, float in [0, 1]); ``background``
    is the estimated background colour (3,) and ``box`` (top, left, bottom, right) the item's box in ``photo``;
    and ``warnings`` (also a property), sentences for the user when the result is doubtful (a fallback mask, a
    nearly empty image)."""

    image: np.ndarray
    steps: dict[str, Any]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.steps.get("warnings", ())


def _working_copy(photo: np.ndarray, side: int) -> np.ndarray:
    image = Image.fromarray(photo)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _border_pixels(height: int, width: int, border: float) -> tuple[int, int]:
    """Rows and columns (at least 1 each) of the outer ``border`` share of a height x width image."""
    return max(1, round(height * border)), max(1, round(width * border))


def background_colour(photo: np.ndarray, border: float = BORDER) -> np.ndarray:
    """The median colour (3,) of the photo's outer ``border`` share on each side, where the item rarely is."""
    height, width = photo.shape[:2]
    bh, bw = _border_pixels(height, width, border)
    ring = np.concatenate(
        [
            photo[:bh].reshape(-1, 3),
            photo[-bh:].reshape(-1, 3),
            photo[:, :bw].reshape(-1, 3),
            photo[:, -bw:].reshape(-1, 3),
        ]
    )
    return np.median(ring, axis=0)


def _largest_region(item: np.ndarray) -> np.ndarray:
    """The largest connected region of a (H, W) bool mask, holes filled (all False stays all False)."""
    from scipy import ndimage

    regions, count = ndimage.label(item)
    if not count:
        return item
    sizes = ndimage.sum(item, regions, range(1, count + 1))
    return ndimage.binary_fill_holes(regions == 1 + int(np.argmax(sizes)))


def colour_mask(photo: np.ndarray, border: float = BORDER) -> np.ndarray:
    """Where the item is, (H, W) bool, by colour alone: pixels far from the border's median colour
    (:func:`background_colour`), with the cut-off chosen by Otsu's method on the distances (OpenCV), then the
    largest region with its holes filled. The fallback of :func:`item_mask`."""
    import cv2

    distance = np.linalg.norm(photo.astype(np.float32) - background_colour(photo, border), axis=2)
    scaled = np.uint8(np.round(255 * distance / max(float(distance.max()), 1.0)))
    _, item = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return _largest_region(item.astype(bool))


def item_mask(
    photo: np.ndarray, border: float = BORDER, iterations: int = 5, *, name: str = "photo", fallback: bool = True
) -> tuple[np.ndarray, str]:
    """Where the item is, (H, W) bool, for an RGB photo (H, W, 3) uint8 of a single item, and how it was found.

    GrabCut (Rother, Kolmogorov & Blake 2004, OpenCV's ``grabCut``) starts from "the outer ``border`` is
    background, the rest may be item", models both as colour mixtures and cuts the photo along strong edges.
    The largest connected region is kept and its holes are filled ("grabcut"). When that region covers less than
    5 % or more than 80 % of the photo (:data:`GRABCUT_RANGE`), the colour difference from the border decides
    instead (:func:`colour_mask`, "colour"); when that also finds next to nothing, the whole inner rectangle is
    taken ("rectangle"). With ``fallback=False`` the colour step is skipped, and only a GrabCut region under 2 %
    of the photo is replaced by the rectangle (the rule before the fallback existed; notebook 08 compares them).

    Raises:
        PhotoError: GrabCut cannot model this photo (e.g. a photo of one flat colour).
    """
    import cv2

    height, width = photo.shape[:2]
    bh, bw = _border_pixels(height, width, border)
    mask = np.zeros((height, width), np.uint8)
    rect = (bw, bh, width - 2 * bw, height - 2 * bh)
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(photo[..., ::-1]), mask, rect, *models, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1]
        raise PhotoError(f"{name}: GrabCut could not separate an item from the background ({reason})") from error
    item = _largest_region((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
    low, high = GRABCUT_RANGE if fallback else (0.02, 1.0)
    if low <= item.mean() <= high:
        return item, "grabcut"
    item = colour_mask(photo, border) if fallback else np.zeros_like(item)
    if low <= item.mean() <= high:
        return item, "colour"
    item = np.zeros_like(item)
    item[bh : height - bh, bw : width - bw] = True
    return item, "rectangle"


MASK_WARNINGS = {
    "colour": "GrabCut did not find the item; it was separated by its colour difference from the photo's border.",
    "rectangle": "The item could not be separated from the background; the whole photo inside a thin border was "
    "used. Keep the whole item in the frame, with a margin, on a background of another colour.",
}


def to_fashion_mnist(
    photo: np.ndarray, *, side: int = WORKING_SIDE, name: str = "photo", fallback: bool = True
) -> Conversion:
    """Convert an RGB photo (H, W, 3) uint8 of one item into a Fashion-MNIST image, with the steps for display.

    The steps: shrink to ``side`` pixels, find the item (:func:`item_mask`), crop to the item's box, turn grey
    and negate (a dark item becomes light, a white one dim), set the background to 0, resize the longest edge to
    28 keeping the aspect ratio (Lanczos, where the dataset subsampled pixels), sharpen, centre on a 28x28 black
    image, and stretch so the brightest pixel is 1, as in every Fashion-MNIST image.

    Raises:
        PhotoError: the photo is too thin to hold an item (aspect ratio over 8:1), or GrabCut fails on it;
            ``name`` starts the message. ``fallback`` goes to :func:`item_mask`.
    """
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an RGB photo (H, W, 3) uint8, got {photo.shape} {photo.dtype}; use load_photo")
    small = _working_copy(photo, side)
    if min(small.shape[:2]) < MIN_WORKING_SIDE:
        raise PhotoError(
            f"{name}: {photo.shape[1]} x {photo.shape[0]} pixels is too thin to hold an item "
            f"(longer side over {side // MIN_WORKING_SIDE} times the shorter)"
        )
    mask, method = item_mask(small, name=name, fallback=fallback)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    crop = small[box[0] : box[2], box[1] : box[3]]
    crop_mask = mask[box[0] : box[2], box[1] : box[3]]
    luma = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    grey = np.where(crop_mask, 1.0 - luma, 0.0).astype(np.float32)
    image = _fit_28(grey)
    notes = [MASK_WARNINGS[method]] if method in MASK_WARNINGS else []
    brightest = float(image.max())
    if brightest < EMPTY_ITEM:
        notes.append(
            "The item is nearly invisible in the 28x28 image (a light item on a light background?): "
            "the answer means little. Try a darker background."
        )
    if brightest > 0:
        image = image / brightest
    steps = {
        "photo": small,
        "background": background_colour(small),
        "mask": mask,
        "mask_method": method,
        "box": box,
        "crop": crop,
        "grey": grey,
        "warnings": tuple(notes),
    }
    return Conversion(image, steps)


def _fit_28(grey: np.ndarray) -> np.ndarray:
    """(h, w) float in [0, 1] -> (28, 28) float32: longest edge to 28 (Lanczos), sharpened, centred on black."""
    height, width = grey.shape
    scale = 28 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.uint8(np.round(grey * 255))).resize(size, Image.Resampling.LANCZOS)
    resized = resized.filter(ImageFilter.UnsharpMask(radius=1, percent=60, threshold=2))
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(resized, ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255


# --- Labels of real photos -------------------------------------------------------------------------------------

MERGED_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shoes", "Shirt", "Bag")
SHOES_COLUMN = MERGED_NAMES.index("Shoes")
SHOES_GROUP = "Shoes (sandal, sneaker or ankle boot)"  # how the rule's shoe answer is shown
ANSWER_NAMES = tuple(SHOES_GROUP if name == "Shoes" else name for name in MERGED_NAMES)  # the rule's 8 answers
_MERGE = np.array([[name == ("Shoes" if i in SHOES else CLASS_NAMES[i]) for name in MERGED_NAMES] for i in range(10)])


def candidate_targets(labels: Sequence[str]) -> np.ndarray:
    """(N, 10) float32 masks of the Fashion-MNIST classes a correct answer may name, one row per photo label.

    "shoes" rows have three ones (Sandal, Sneaker, Ankle boot); hat, shorts and skirt rows are all zeros:
    "none of these". :class:`CandidateSetLoss` trains on them.
    """
    unknown = sorted(set(labels) - set(LABEL_TO_CLASSES))
    if unknown:
        raise ValueError(f"unknown photo labels {unknown}; known: {', '.join(LABEL_TO_CLASSES)}")
    targets = np.zeros((len(labels), len(CLASS_NAMES)), np.float32)
    for row, label in enumerate(labels):
        targets[row, list(LABEL_TO_CLASSES[label])] = 1
    return targets


def merge_shoes(probabilities: np.ndarray) -> np.ndarray:
    """(N, 10) class probabilities -> (N, 8) over :data:`MERGED_NAMES`, the three shoe classes summed into one
    "Shoes" column, so that "any shoe class is right" becomes ordinary accuracy."""
    return np.asarray(probabilities) @ _MERGE.astype(np.asarray(probabilities).dtype)


def merged_labels(labels: Sequence[str]) -> np.ndarray:
    """(N,) int: each photo label's column of :func:`merge_shoes`, -1 for hat, shorts and skirt."""
    columns = candidate_targets(labels) @ _MERGE  # (N, 8): one 1 per in-distribution row (three shoe ones add up)
    return np.where(columns.any(axis=1), columns.argmax(axis=1), -1)


@dataclass(frozen=True)
class PhotoSet:
    """The committed real photos (``data/real-photos/``): ``files`` (N,) paths and ``labels`` (N,) clothing-dataset
    labels ("t-shirt", ..., "skirt"), in ``labels.csv`` order."""

    files: np.ndarray
    labels: np.ndarray

    def subset(self, indices: np.ndarray) -> PhotoSet:
        return PhotoSet(self.files[indices], self.labels[indices])

    @property
    def in_distribution(self) -> np.ndarray:
        """(N,) bool: the photo shows a kind of item Fashion-MNIST has a class for."""
        return np.array([bool(LABEL_TO_CLASSES[label]) for label in self.labels])


def repository_path(relative: str) -> Path:
    """A file or folder of the repository: found from the working directory (a clone, where a pip-installed
    package lives elsewhere, as on Colab), else beside this package (an editable install)."""
    from fmnist_utils.results import project_root

    candidates = [project_root() / relative, Path(__file__).resolve().parents[1] / relative]
    return next((path for path in candidates if path.exists()), candidates[-1])


def photo_folder() -> Path:
    """``data/real-photos/`` of the repository (:func:`repository_path`)."""
    return repository_path("data/real-photos")


def load_photo_set(folder: str | Path | None = None) -> PhotoSet:
    """Read ``labels.csv`` (columns ``file``, ``label``) of a folder of photos (default :func:`photo_folder`)."""
    import csv

    folder = Path(folder) if folder else photo_folder()
    with open(folder / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return PhotoSet(np.array([str(folder / row["file"]) for row in rows]), np.array([row["label"] for row in rows]))


def split_photos(labels: np.ndarray, seed: int, validation: float = 0.2, test: float = 0.3) -> dict[str, np.ndarray]:
    """Stratified indices ``{"train", "validation", "test"}`` of photos with these labels (scikit-learn's
    ``train_test_split`` twice): every label gets the same shares. Chosen once per seed; notebook 08 never
    makes a choice on the test part."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    rest, test_part = train_test_split(indices, test_size=test, stratify=labels, random_state=seed)
    train_part, validation_part = train_test_split(
        rest, test_size=validation / (1 - test), stratify=labels[rest], random_state=seed
    )
    return {"train": np.sort(train_part), "validation": np.sort(validation_part), "test": np.sort(test_part)}


def convert_photos(files: Sequence[str | Path]) -> np.ndarray:
    """Load and convert photo files into Fashion-MNIST images (N, 28, 28, 1) float32 (:func:`to_fashion_mnist`)."""
    return np.stack([to_fashion_mnist(load_photo(path), name=str(path)).image for path in files])[..., None]


# --- Training on real photos ------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="fmnist_utils")
class CandidateSetLoss(keras.losses.Loss):
    """A Keras 3 loss on logits (N, 10) and :func:`candidate_targets` (N, 10): the negative log of the summed
    probability of a photo's candidate classes.

    For a T-shirt (one candidate) it is the usual cross-entropy. For shoes it is
    ``-log(p_sandal + p_sneaker + p_ankle_boot)``: the model is not forced to pick one kind of shoe for a photo
    that does not show which. For a row with no candidate ("none of these": hat, shorts, skirt) it is
    ``none_weight`` times the cross-entropy against the uniform distribution over the eight answers of the
    decision rule (:data:`MERGED_NAMES`: the shoe classes share one eighth), Outlier Exposure (Hendrycks,
    Mazeika & Dietterich 2019): it teaches low confidence on items that are no Fashion-MNIST class.
    """

    def __init__(self, none_weight: float = 0.5, name: str = "candidate_set_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.none_weight = none_weight

    def call(self, y_true, y_pred):
        ops = keras.ops
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        y_true = ops.cast(y_true, "float32")
        candidate = -ops.logsumexp(ops.where(y_true > 0, log_p, -1e9), axis=-1)
        merge = ops.convert_to_tensor(_MERGE, "bool")  # (10, 8)
        log_groups = ops.logsumexp(ops.where(merge[None], log_p[:, :, None], -1e9), axis=1)  # (N, 8)
        uniform = -ops.mean(log_groups, axis=-1) * self.none_weight
        return ops.where(ops.sum(y_true, axis=-1) > 0, candidate, uniform)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "none_weight": self.none_weight}


@keras.saving.register_keras_serializable(package="fmnist_utils")
def candidate_accuracy(y_true, y_pred):
    """Per row, 1 when the top logit is one of the :func:`candidate_targets` candidates, else 0 (a Keras metric:
    ``metrics=[candidate_accuracy]``; give it photos of Fashion-MNIST kinds only, rows with no candidate score 0)."""
    top = keras.ops.one_hot(keras.ops.argmax(y_pred, axis=-1), keras.ops.shape(y_pred)[-1])
    return keras.ops.sum(keras.ops.cast(y_true, "float32") * top, axis=-1)


# --- Out-of-distribution scores and classification ------------------------------------------------------------


def ood_score(logits: np.ndarray, method: str = "energy", temperature: float = 1.0) -> np.ndarray:
    """(N,) scores of logits (N, 10): higher means less like any Fashion-MNIST class.

    ``"msp"``: one minus the largest probability at ``temperature`` among the eight answers of the decision rule
    (:func:`merge_shoes`; Hendrycks & Gimpel 2017). ``"energy"``: the free energy ``-T * logsumexp(logits / T)``
    (Liu et al. 2020): low when some class gets a large logit, and unlike softmax it keeps how large; merging the
    shoe classes does not change it.
    """
    from scipy.special import logsumexp

    scaled = np.asarray(logits, np.float64) / temperature
    if method == "msp":
        return 1.0 - merge_shoes(softmax(scaled)).max(axis=1)
    if method == "energy":
        return -temperature * logsumexp(scaled, axis=1)
    raise ValueError(f"unknown OOD score {method!r}: use 'msp' or 'energy'")


@dataclass(frozen=True)
class OodRule:
    """How :func:`classify` decides "not a Fashion-MNIST item": ``ood_score(logits, method, temperature) >
    threshold``, with the threshold chosen on validation photos (notebook 08) so that the share ``keep`` of
    clothing photos of the Fashion-MNIST kinds stays under it (None: not recorded)."""

    method: str = "energy"
    temperature: float = 1.0
    threshold: float = float("inf")
    keep: float | None = None

    def scores(self, logits: np.ndarray) -> np.ndarray:
        return ood_score(logits, self.method, self.temperature)


def predict_logits(model: Any, images: np.ndarray, flip_tta: bool = True) -> np.ndarray:
    """Logits (N, 10) float64 of images (N, 28, 28, 1) in one call of ``model``; with ``flip_tta`` the mean of the
    logits of each image and of its mirror image (the models of notebook 08 are trained on mirrored images too)."""
    logits = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), np.float64)
    if flip_tta:
        mirrored = keras.ops.convert_to_numpy(model(np.ascontiguousarray(images[:, :, ::-1]), training=False))
        logits = (logits + np.asarray(mirrored, np.float64)) / 2
    return logits


@dataclass(frozen=True)
class PhotoClassifier:
    """A Keras model that outputs logits for (N, 28, 28, 1) images, its :class:`OodRule`, and whether it averages
    each image with its mirror image (:func:`predict_logits`)."""

    model: Any
    ood: OodRule = field(default_factory=OodRule)
    flip_tta: bool = True

    def save(self, path: str | Path, **facts: Any) -> Path:
        """Write the model to ``path`` (``.keras``) and the rule, with ``facts`` (e.g. how it was trained), to
        the same name with ``.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)
        sidecar = {
            "ood": {
                "method": self.ood.method,
                "temperature": self.ood.temperature,
                "threshold": self.ood.threshold,
                "keep": self.ood.keep,
            },
            "flip_tta": self.flip_tta,
        }
        path.with_suffix(".json").write_text(json.dumps({**sidecar, **facts}, indent=2) + "\n")
        return path


def load_classifier(path: str | Path | None = None) -> PhotoClassifier:
    """Load a :class:`PhotoClassifier` saved by :meth:`PhotoClassifier.save` (default: :data:`DEFAULT_MODEL_NAME`
    of the repository, written by notebook 08 and committed)."""
    path = Path(path) if path else repository_path(DEFAULT_MODEL_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}: run notebook 08 (it writes {DEFAULT_MODEL_NAME}) or pass --model")
    model = keras.saving.load_model(path, compile=False)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return PhotoClassifier(model)
    facts = json.loads(sidecar.read_text())
    return PhotoClassifier(model, OodRule(**facts["ood"]), facts.get("flip_tta", True))


@dataclass(frozen=True)
class Prediction:
    """One photo's answer by the decision rule (the shoe classes merged): ``class_index`` (0-9; for the shoe
    answer, the most probable shoe class), ``label`` (that class's name), ``group`` (:data:`SHOES_GROUP` when the
    rule answered "Shoes", else None), ``probability`` of the answer (for shoes, the summed shoe probability),
    ``probabilities`` (10,), ``ood_score`` (higher: less like any Fashion-MNIST class) and ``in_distribution``
    (the score is at most the rule's threshold)."""

    class_index: int
    label: str
    probability: float
    probabilities: np.ndarray
    ood_score: float
    in_distribution: bool
    group: str | None = None

    @property
    def answer(self) -> str:
        """What to show: the group for shoes, else the class name."""
        return self.group or self.label


def decide(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decision rule on class probabilities (N, 10): the column of :data:`MERGED_NAMES` with the largest
    merged probability (N,), one class index per row (N,) (for "Shoes", the most probable shoe class) and the
    answer's probability (N,)."""
    probabilities = np.asarray(probabilities)
    merged = merge_shoes(probabilities)
    columns = merged.argmax(axis=1)
    best_shoe = np.asarray(SHOES)[probabilities[:, list(SHOES)].argmax(axis=1)]
    classes = np.where(columns == SHOES_COLUMN, best_shoe, probabilities.argmax(axis=1))
    return columns, classes, merged.max(axis=1)


def classify(images: np.ndarray, model: PhotoClassifier | str | Path | None = None) -> list[Prediction]:
    """Classify Fashion-MNIST-like images (N, 28, 28) or (N, 28, 28, 1) in [0, 1], e.g. from :func:`convert_photos`.

    Args:
        model: a :class:`PhotoClassifier`, the path of a saved one, or None for the committed default model.
    """
    classifier = model if isinstance(model, PhotoClassifier) else load_classifier(model)
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:] != (28, 28, 1):
        raise ValueError(f"expected images (N, 28, 28) or (N, 28, 28, 1), got {images.shape}; see to_fashion_mnist")
    logits = predict_logits(classifier.model, images, classifier.flip_tta)
    probabilities = softmax(logits)
    columns, classes, answer_probabilities = decide(probabilities)
    scores = classifier.ood.scores(logits)
    return [
        Prediction(
            int(c),
            CLASS_NAMES[int(c)],
            float(q),
            p,
            float(score),
            bool(score <= classifier.ood.threshold),
            SHOES_GROUP if column == SHOES_COLUMN else None,
        )
        for p, c, q, column, score in zip(probabilities, classes, answer_probabilities, columns, scores)
    ]


# --- Command line -----------------------------------------------------------------------------------------------


def _line(path: str, prediction: Prediction, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "path": path,
                "class": prediction.class_index,
                "label": prediction.label,
                "group": prediction.group,
                "probability": round(prediction.probability, 4),
                "in_distribution": prediction.in_distribution,
                "ood_score": round(prediction.ood_score, 4),
            }
        )
    verdict = "" if prediction.in_distribution else "  (does not look like any Fashion-MNIST class)"
    return f"{path}: {prediction.answer} {prediction.probability:.0%}{verdict}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fmnist_utils.photos [--model PATH] [--json] IMAGE...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_utils.photos",
        description="Classify photos of clothes with a Fashion-MNIST model (notebook 08's pipeline and model).",
        epilog="Exit status: 0 when every image was classified, 1 when any file failed, 2 for usage errors.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files (JPEG, PNG, WebP, ...)")
    parser.add_argument(
        "--model", type=Path, help=f"a .keras model saved by notebook 08 (default {DEFAULT_MODEL_NAME})"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    try:
        classifier = load_classifier(args.model)
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = False
    for path in args.images:
        try:
            conversion = to_fashion_mnist(load_photo(path), name=path)
        except PhotoError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        for warning in conversion.warnings:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        print(_line(path, classify(conversion.image[None], classifier)[0], args.json), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
