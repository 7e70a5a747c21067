"""Data augmentation in NumPy, outside the model graph.

Why not Keras preprocessing layers inside the model?  On a CPU they run on the
same cores as the training step, one after the other (notebook 03 measures what
that costs on the machine that runs it), and several Keras 3.15 layers have
pitfalls: ``RandomErasing`` assumes ``value_range=(0, 255)`` and draws its
erasing probability from ``U(0, factor)``; ``RandomCrop`` uses one offset per
batch, not per image.  Here every image gets its own random transform, and
batches are prepared by a ``keras.utils.PyDataset`` (optionally in worker
threads/processes) while the model trains.

All functions take float32 images of shape ``(N, H, W, C)`` (Fashion-MNIST:
``(N, 28, 28, 1)``, values in [0, 1]), return a new array of the same shape
and dtype, and never modify their input.
"""

import math
from collections.abc import Callable

import keras
import numpy as np
from scipy import ndimage


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip each image left-right with probability 0.5."""
    out = x.copy()
    flip = rng.random(len(x)) < 0.5
    out[flip] = x[flip, :, ::-1]
    return out


def random_translate(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Shift each image by its own random integer offsets, filling with zeros.

    The offsets ``dy`` (down) and ``dx`` (right), in pixels, are uniform in
    ``[-max_shift, max_shift]``, independently per image and axis.
    """
    n, height, width, _ = x.shape
    dy = rng.integers(-max_shift, max_shift + 1, size=n)
    dx = rng.integers(-max_shift, max_shift + 1, size=n)
    padded = np.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    # Output pixel (r, c) of image i reads padded pixel (r + max_shift - dy[i], c + max_shift - dx[i]).
    rows = np.arange(height) + (max_shift - dy)[:, None]  # (n, height)
    cols = np.arange(width) + (max_shift - dx)[:, None]  # (n, width)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_erasing(
    x: np.ndarray,
    rng: np.random.Generator,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.25),
    aspect: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
) -> np.ndarray:
    """Random Erasing (Zhong et al., 2017, arXiv:1708.04896).

    With probability ``p`` per image, a rectangle of area ``A * H * W`` with
    ``A ~ U(area)`` and aspect ratio height/width ``r`` log-uniform in
    ``aspect`` (as in torchvision, so tall and wide are equally likely) is
    set to ``value`` at a uniformly random position.  As in the paper, a
    rectangle that does not fit is drawn again; after 10 tries the image is
    left unchanged.
    """
    n, height, width, _ = x.shape
    erase = rng.random(n) < p
    heights = np.zeros(n, dtype=int)  # 0: no rectangle (yet)
    widths = np.zeros(n, dtype=int)
    for _ in range(10):
        todo = erase & (heights == 0)
        if not todo.any():
            break
        target_area = rng.uniform(*area, size=n) * height * width
        ratio = np.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1]), size=n))
        h = np.rint(np.sqrt(target_area * ratio)).astype(int)
        w = np.rint(np.sqrt(target_area / ratio)).astype(int)
        fits = todo & (h >= 1) & (h <= height) & (w >= 1) & (w <= width)
        heights[fits], widths[fits] = h[fits], w[fits]

    top = rng.integers(0, height - heights + 1)
    left = rng.integers(0, width - widths + 1)
    in_rows = (np.arange(height) >= top[:, None]) & (np.arange(height) < (top + heights)[:, None])  # (n, H)
    in_cols = (np.arange(width) >= left[:, None]) & (np.arange(width) < (left + widths)[:, None])  # (n, W)
    out = x.copy()
    out[in_rows[:, :, None] & in_cols[:, None, :]] = value  # all channels
    return out


def augment_batch(
    x: np.ndarray, rng: np.random.Generator, flip: bool = True, max_shift: int = 2, erasing_p: float = 0.5
) -> np.ndarray:
    """Random flip (if ``flip``), then translation, then Random Erasing (probability ``erasing_p``)."""
    if flip:
        x = random_flip(x, rng)
    x = random_translate(x, rng, max_shift)
    return random_erasing(x, rng, p=erasing_p)


def photo_like_batch(
    x: np.ndarray,
    rng: np.random.Generator,
    max_degrees: float = 20.0,
    scale: tuple[float, float] = (0.8, 1.05),
    gain: tuple[float, float] = (0.5, 1.2),
    gamma: tuple[float, float] = (0.7, 1.4),
    blur_p: float = 0.3,
    noise_p: float = 0.5,
    erasing_p: float = 0.3,
) -> np.ndarray:
    """Alter Fashion-MNIST images the way notebook 08's photo pipeline alters real clothes.

    Per image: a mirror flip (probability 0.5); a rotation by up to ``max_degrees`` and a scaling by a factor
    in ``scale`` about the centre, plus a shift of up to 2 pixels (a garment lies crooked on a bed, the mask
    cuts it a little large or small); the item's brightness ``gain * x ** gamma`` (a white T-shirt, negated,
    comes out dim, a black one bright); a Gaussian blur of 0.5-1 pixel (probability ``blur_p``, a soft photo);
    noise of standard deviation 0.05 on the item only (probability ``noise_p``, prints and fabric texture:
    the background stays black, as the pipeline makes it); then Random Erasing (probability ``erasing_p``, a
    fold or a hand over part of the item).
    """
    x = random_flip(x, rng)
    n, height, width, _ = x.shape
    out = np.empty_like(x)
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    factors = rng.uniform(*scale, n)
    shifts = rng.uniform(-2, 2, (n, 2))
    for i in range(n):
        cos, sin = np.cos(angles[i]), np.sin(angles[i])
        matrix = np.array([[cos, -sin], [sin, cos]]) / factors[i]  # output pixel -> input pixel
        offset = centre - matrix @ (centre + shifts[i])
        out[i, :, :, 0] = ndimage.affine_transform(x[i, :, :, 0], matrix, offset, order=1, mode="constant")
    out = np.clip(out, 0, 1)
    brightness = rng.uniform(*gain, (n, 1, 1, 1)) * out ** rng.uniform(*gamma, (n, 1, 1, 1))
    blurred = ndimage.gaussian_filter(brightness, sigma=(0, 0.75, 0.75, 0))
    out = np.where(rng.random((n, 1, 1, 1)) < blur_p, blurred, brightness)
    noisy = out + rng.normal(0, 0.05, out.shape) * (out > 0.02)
    out = np.where(rng.random((n, 1, 1, 1)) < noise_p, noisy, out)
    return random_erasing(np.clip(out, 0, 1).astype(x.dtype), rng, p=erasing_p)


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented mini-batches for ``model.fit``.

    The examples are reshuffled every epoch and each batch is augmented with
    ``augment_batch`` (or the function given as ``augment``).  The order and the augmentations depend only on
    ``(seed, epoch, batch index)``, so they are reproducible even when
    batches are prepared by several workers.  Pass ``shuffle=False`` to
    ``fit``: otherwise Keras also permutes the batch order with Python's
    (unseeded) ``random`` module.

    Every batch has ``batch_size`` examples, so ``fit`` compiles its training
    step for one shape only: when ``batch_size`` does not divide ``N``, the
    last ``N % batch_size`` examples of each epoch's shuffled order sit that
    epoch out (others each epoch).  The epoch counter advances at the end of
    each epoch; when ``fit`` resumes an interrupted training
    (``keras.callbacks.BackupAndRestore``) at a later epoch, pass
    :meth:`epoch_callback` to ``fit`` as well, so that the resumed epochs get
    the same batches as an uninterrupted run.

    Args:
        x: images, shape ``(N, H, W, C)``, float32 in [0, 1].
        y: targets, first dimension ``N``.
        batch_size: examples per batch.
        seed: seed of the shuffling and the augmentations.
        flip, max_shift, erasing_p: see ``augment_batch``.
        augment: instead of ``augment_batch``, a function ``(images, rng) -> images`` such as
            :func:`photo_like_batch` (notebook 08); ``flip``, ``max_shift`` and ``erasing_p`` are then unused.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size``
            of ``keras.utils.PyDataset``.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = 128,
        seed: int = 0,
        flip: bool = True,
        max_shift: int = 2,
        erasing_p: float = 0.5,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.flip, self.max_shift, self.erasing_p = flip, max_shift, erasing_p
        self.augment = augment
        self.set_epoch(0)

    def __len__(self) -> int:
        if len(self.x) < self.batch_size:
            raise ValueError(
                f"{len(self.x)} examples make no full batch of {self.batch_size}: use a smaller batch_size"
            )
        return len(self.x) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment is None:
            x = augment_batch(self.x[batch], rng, self.flip, self.max_shift, self.erasing_p)
        else:
            x = self.augment(self.x[batch], rng)
        return x, self.y[batch]

    def set_epoch(self, epoch: int) -> None:
        """Serve the batches of ``epoch`` (0-based) next."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback for ``fit`` that tells these batches each epoch's number as it begins."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.set_epoch(epoch))
