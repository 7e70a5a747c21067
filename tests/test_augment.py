"""Tests for fmnist_utils.augment (tiny data and models, a few seconds)."""

import keras
import numpy as np
import pytest

from fmnist_utils.augment import (
    AugmentedBatches,
    augment_batch,
    photo_like_batch,
    random_erasing,
    random_flip,
    random_translate,
)


def _images(n: int = 128, seed: int = 0) -> np.ndarray:
    """Random float32 images (n, 28, 28, 1), values in [0.1, 1): never exactly 0."""
    return np.random.default_rng(seed).uniform(0.1, 1.0, (n, 28, 28, 1)).astype(np.float32)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference translation of one (H, W, C) image: down by dy, right by dx, zero fill."""
    height, width, _ = image.shape
    out = np.zeros_like(image)
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = image[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize(
    "augment",
    [
        random_flip,
        random_translate,
        random_erasing,
        augment_batch,
        lambda x, rng: augment_batch(x, rng, flip=False, max_shift=0, erasing_p=0.0),
        photo_like_batch,
    ],
)
def test_shape_dtype_preserved_and_input_untouched(augment) -> None:
    x = _images()
    original = x.copy()
    out = augment(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, original)


def test_flip_flips_about_half_exactly() -> None:
    x = _images(1000)
    out = random_flip(x, np.random.default_rng(2))
    flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == x, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)  # each image is either flipped or unchanged
    assert 0.45 < flipped.mean() < 0.55


@pytest.mark.parametrize("max_shift", [0, 1, 2, 3])
def test_translate_shifts_within_range_with_zero_fill(max_shift: int) -> None:
    x = _images(64)
    out = random_translate(x, np.random.default_rng(3), max_shift)
    shifts = range(-max_shift, max_shift + 1)
    found = set()
    for image, moved in zip(x, out):
        matches = [(dy, dx) for dy in shifts for dx in shifts if np.array_equal(moved, _shift(image, dy, dx))]
        assert len(matches) == 1
        found.add(matches[0])
    assert len(found) > 1 if max_shift else found == {(0, 0)}  # shifts differ between images


def test_erasing_rectangles_within_bounds() -> None:
    x = _images(1000)
    area = (0.02, 0.25)
    out = random_erasing(x, np.random.default_rng(4), p=0.5, area=area, value=0.0)
    erased = out == 0.0  # the images have no zeros
    counts = erased.sum(axis=(1, 2, 3))
    assert 0.45 < (counts > 0).mean() < 0.55
    np.testing.assert_array_equal(out[~erased], x[~erased])  # nothing else changed
    for mask, count in zip(erased[..., 0], counts):
        if count == 0:
            continue
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert count == len(rows) * len(cols)  # a filled rectangle
        assert len(rows) == rows[-1] - rows[0] + 1 and len(cols) == cols[-1] - cols[0] + 1
        # Sides are rounded to whole pixels, hence the tolerance.
        assert 0.5 * area[0] <= count / 28**2 <= 1.25 * area[1]


def test_erasing_p0_is_identity() -> None:
    x = _images()
    np.testing.assert_array_equal(random_erasing(x, np.random.default_rng(5), p=0.0), x)


def _all_batches(dataset: AugmentedBatches) -> list[tuple[np.ndarray, np.ndarray]]:
    return [dataset[i] for i in range(len(dataset))]


def test_same_seed_same_batches() -> None:
    x, y = _images(300), np.arange(300)
    first, second, other = (AugmentedBatches(x, y, batch_size=128, seed=s) for s in (7, 7, 8))
    for _ in range(2):  # two epochs
        for (xa, ya), (xb, yb), (_, yc) in zip(_all_batches(first), _all_batches(second), _all_batches(other)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
            assert not np.array_equal(ya, yc)
        for dataset in (first, second, other):
            dataset.on_epoch_end()


def test_every_example_once_per_epoch_and_reshuffled() -> None:
    x, y = _images(300), np.arange(300)
    dataset = AugmentedBatches(x, y, batch_size=100, flip=False, max_shift=0, erasing_p=0.0)
    assert len(dataset) == 3
    orders = []
    for _ in range(2):
        batches = _all_batches(dataset)
        for xb, yb in batches:
            np.testing.assert_array_equal(xb, x[yb])  # images stay with their labels
        order = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(order), y)
        orders.append(order)
        dataset.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])


def test_only_full_batches_and_the_left_out_examples_change() -> None:
    """300 examples in batches of 128: two full batches per epoch, and other 44 examples sit out each epoch."""
    x, y = _images(300), np.arange(300)
    dataset = AugmentedBatches(x, y, batch_size=128, flip=False, max_shift=0, erasing_p=0.0)
    assert len(dataset) == 2
    left_out = []
    for _ in range(2):
        batches = _all_batches(dataset)
        assert [len(yb) for _, yb in batches] == [128, 128]
        left_out.append(set(y) - set(np.concatenate([yb for _, yb in batches])))
        dataset.on_epoch_end()
    assert len(left_out[0]) == len(left_out[1]) == 44 and left_out[0] != left_out[1]
    with pytest.raises(ValueError, match="no full batch"):
        len(AugmentedBatches(x[:10], y[:10], batch_size=16))


def test_epoch_callback_serves_the_batches_of_the_epoch_fit_is_in() -> None:
    x, y = _images(200), np.arange(200)
    uninterrupted, resumed = (AugmentedBatches(x, y, batch_size=50, seed=3) for _ in range(2))
    for _ in range(2):
        uninterrupted.on_epoch_end()
    resumed.epoch_callback().on_epoch_begin(2)  # fit resumed at the third epoch
    for (xa, ya), (xb, yb) in zip(_all_batches(uninterrupted), _all_batches(resumed)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_works_in_fit() -> None:
    x, y = _images(64), np.arange(64) % 10
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(2, 3, strides=4),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(AugmentedBatches(x, y, batch_size=32), epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_photo_like_batch_keeps_a_black_background_black_and_stays_in_range() -> None:
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 8:20, 10:18] = 0.7
    out = photo_like_batch(x, np.random.default_rng(0))
    assert out.min() >= 0 and out.max() <= 1
    assert out[:, :3].max() < 0.01 and out[:, -3:].max() < 0.01  # far from the item: still black (blur tails)
    assert photo_like_batch(np.zeros_like(x), np.random.default_rng(0)).max() == 0  # no item, no noise
    brightness = out.reshape(64, -1).max(axis=1)
    assert brightness.std() > 0.05  # the item's brightness varies from image to image
    np.testing.assert_array_equal(out, photo_like_batch(x, np.random.default_rng(0)))  # seeded


def test_photo_like_batch_rotates_by_up_to_max_degrees() -> None:
    """A horizontal bar, rotated by up to 45 degrees: its ink spreads over more rows, never more than 45 allow."""
    x = np.zeros((32, 28, 28, 1), np.float32)
    x[:, 13:15, 4:24] = 1.0
    options = dict(scale=(1.0, 1.0), gain=(1.0, 1.0), gamma=(1.0, 1.0), blur_p=0.0, noise_p=0.0, erasing_p=0.0)
    flat = photo_like_batch(x, np.random.default_rng(1), max_degrees=0.0, **options)
    tilted = photo_like_batch(x, np.random.default_rng(1), max_degrees=45.0, **options)
    rows = lambda images: (images[..., 0].max(axis=2) > 0.3).sum(axis=1)  # noqa: E731
    assert rows(flat).max() <= 6  # the 2-pixel bar, shifted by up to 2 pixels and interpolated
    assert rows(tilted).max() > 8 and rows(tilted).max() <= 17  # 20 * sin(45 degrees) + 2 = 16.1


def test_augmented_batches_use_the_augment_function_given() -> None:
    x, y = _images(20), np.arange(20)
    batches = AugmentedBatches(x, y, batch_size=10, seed=0, augment=lambda images, rng: images * 0 + 0.5)
    images, labels = batches[0]
    assert (images == 0.5).all() and sorted(labels.tolist()) == sorted(y[batches.order[:10]].tolist())
