"""Loading, verification and every bad-input case of fmnist_utils.data."""

import gzip
import hashlib
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fmnist_utils import data
from fmnist_utils.data import DatasetError

LABELS = "t10k-labels-idx1-ubyte"


def test_canonical_arrays(fashion_mnist):
    (x_train, y_train), (x_test, y_test) = fashion_mnist
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == (
        (60000, 28, 28),
        (60000,),
        (10000, 28, 28),
        (10000,),
    )
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.array_equal(np.bincount(y_train), [6000] * 10) and np.array_equal(np.bincount(y_test), [1000] * 10)
    # content: identical to the official files (checked by hash of the arrays' bytes, header excluded)
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert x_train.max() == 255 and x_train.min() == 0


def test_class_names():
    assert len(data.CLASS_NAMES) == 10 and data.CLASS_NAMES[0] == "T-shirt/top" and data.CLASS_NAMES[9] == "Ankle boot"


def test_says_which_source(capsys):
    data.load_data()
    assert "Fashion-MNIST loaded from" in capsys.readouterr().out


@pytest.fixture
def copy_dir(tmp_path: Path) -> Path:
    """A folder with a copy of the four verified files (.gz) that a test may then damage."""
    source = next(d for d in (data.PACKAGE_DIR, data.keras_cache_dir()) if data._has_any(d))
    target = tmp_path / "fmnist"
    target.mkdir()
    for spec in data.FILES:
        found = data._find(source, spec.name)
        shutil.copy(found, target / (spec.name + ".gz" if found.suffix == ".gz" else spec.name))
    return target


def _gz(folder: Path, name: str = LABELS) -> Path:
    path = folder / f"{name}.gz"
    if not path.exists():  # the source copy was uncompressed: compress it
        raw = (folder / name).read_bytes()
        (folder / name).unlink()
        path.write_bytes(gzip.compress(raw))
    return path


def test_explicit_folder_and_environment_variable(copy_dir, monkeypatch, capsys):
    (x, _), _ = data.load_data(copy_dir)
    assert x.shape == (60000, 28, 28)
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(copy_dir))
    data.load_data()
    assert data.DATA_DIR_VARIABLE in capsys.readouterr().out


def test_uncompressed_files_are_accepted(copy_dir):
    path = _gz(copy_dir)
    (copy_dir / LABELS).write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    _, (_, y_test) = data.load_data(copy_dir, verbose=False)
    assert y_test.shape == (10000,)


def test_truncated_file(copy_dir):
    path = _gz(copy_dir)
    before = path.read_bytes()[:-100]
    path.write_bytes(before)
    with pytest.raises(
        DatasetError, match=rf"{LABELS}\.gz is truncated or corrupt.*apt-get install dataset-fashion-mnist"
    ):
        data.load_data(copy_dir)
    assert path.read_bytes() == before, "the loader must never change a user's file"


def test_not_gzip(copy_dir):
    _gz(copy_dir).write_text("<html>404 Not Found</html>")
    with pytest.raises(DatasetError, match=rf"{LABELS}\.gz is not a gzip file"):
        data.load_data(copy_dir)


def test_corrupt_content_same_size(copy_dir):
    path = _gz(copy_dir)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: header and size are still right
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetError, match=r"SHA-256 .* not the official t10k-labels-idx1-ubyte"):
        data.load_data(copy_dir)


def test_other_dataset_under_official_name(copy_dir):
    """Images where labels should be (e.g. MNIST files renamed wrongly): the IDX header says so."""
    images = data._find(copy_dir, "t10k-images-idx3-ubyte")
    shutil.copy(images, _gz(copy_dir))
    with pytest.raises(DatasetError, match=r"IDX header magic 0x0803 .* expected magic 0x0801"):
        data.load_data(copy_dir)


def test_padded_file(copy_dir):
    path = _gz(copy_dir)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"\0"))
    with pytest.raises(DatasetError, match="truncated or padded"):
        data.load_data(copy_dir)


def test_missing_file_in_explicit_folder(copy_dir):
    _gz(copy_dir).unlink()
    with pytest.raises(DatasetError, match=rf"{LABELS}\.gz is missing"):
        data.load_data(copy_dir)


def test_missing_dataset_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(data, "PACKAGE_DIR", tmp_path / "no-package")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(name, folder):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(
        DatasetError, match=r"not on this machine and downloading .* failed .*URLError.*FMNIST_DATA_DIR"
    ):
        data.load_data()


def test_keras_cache_is_used_and_missing_files_are_downloaded(copy_dir, tmp_path, monkeypatch):
    """The cache holds three files; only the missing one is fetched, and nothing present is rewritten."""
    monkeypatch.delenv(data.DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(data, "PACKAGE_DIR", tmp_path / "no-package")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = data.keras_cache_dir()
    shutil.copytree(copy_dir, cache)
    missing = _gz(cache)
    saved = missing.read_bytes()
    missing.unlink()
    fetched = []

    def fake_download(name, folder):
        fetched.append(name)
        (folder / f"{name}.gz").write_bytes(saved)

    monkeypatch.setattr(data, "_download", fake_download)
    data.load_data(verbose=False)
    assert fetched == [LABELS]


def test_split_is_stratified_and_deterministic(fashion_mnist):
    (x, y), _ = fashion_mnist
    (x_a, y_a), (x_v, y_v) = data.train_val_split(x, y, val_size=5000, seed=1)
    (_, _), (x_v2, y_v2) = data.train_val_split(x, y, val_size=5000, seed=1)
    (_, _), (x_v3, _) = data.train_val_split(x, y, val_size=5000, seed=2)
    assert len(y_v) == 5000 and len(y_a) == 55000
    assert np.array_equal(np.bincount(y_v), [500] * 10)
    assert np.array_equal(x_v, x_v2) and np.array_equal(y_v, y_v2)
    assert not np.array_equal(x_v, x_v3)
    # no image is in both parts (pixel hashes)
    train_hashes = {hashlib.sha1(img.tobytes()).digest() for img in x_a}
    assert (
        sum(hashlib.sha1(img.tobytes()).digest() in train_hashes for img in x_v) < 10
    )  # a few duplicate images exist in the dataset


def test_stratified_subset(fashion_mnist):
    (x, y), _ = fashion_mnist
    x_s, y_s = data.stratified_subset(x, y, 2000, seed=0)
    assert x_s.shape == (2000, 28, 28) and np.array_equal(np.bincount(y_s), [200] * 10)
    assert data.stratified_subset(x, y, None)[0] is x


def test_to_float_and_wrong_shapes(fashion_mnist):
    _, (x, _) = fashion_mnist
    scaled = data.to_float(x[:5])
    assert scaled.shape == (5, 28, 28, 1) and scaled.dtype == np.float32
    assert scaled.min() >= 0 and scaled.max() <= 1 and np.isclose(scaled.max(), 1.0)
    with pytest.raises(ValueError, match="expects raw uint8 images of shape"):
        data.to_float(scaled)  # already scaled: would silently become 1/255 of the right values
    with pytest.raises(ValueError, match="got dtype uint8 and shape \\(5, 784\\)"):
        data.to_float(x[:5].reshape(5, 784))


def test_prepare_splits_for_a_small_profile(fashion_mnist):
    splits = data.prepare_splits(*fashion_mnist, seed=0, train_images=2000, validation_images=500, test_images=1000)
    assert splits.x_train.shape == (2000, 28, 28, 1) and splits.x_val.shape == (500, 28, 28, 1)
    assert splits.x_test.shape == (1000, 28, 28, 1) and np.array_equal(np.bincount(splits.y_test), [100] * 10)
