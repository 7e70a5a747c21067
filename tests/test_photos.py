"""fmnist_utils.photos (notebook 08): safe loading, the photo -> 28x28 pipeline, the loss, OOD scores, the command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from fmnist_utils import photos
from fmnist_utils.data import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- load_photo ---------------------------------------------------------------------------------------------------


def test_a_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo")
    with pytest.raises(photos.PhotoError, match=r"notes\.jpg: not an image file"):
        photos.load_photo(path)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(photos.PhotoError, match=r"gone\.jpg: cannot read the file"):
        photos.load_photo(tmp_path / "gone.jpg")


def test_a_truncated_jpeg_is_refused():
    data = _jpeg(Image.new("RGB", (200, 200), (200, 30, 30)))
    with pytest.raises(photos.PhotoError, match=r"cut\.jpg: the image is damaged or truncated"):
        photos.load_photo(data[: len(data) // 2], name="cut.jpg")


def test_too_many_pixels_are_refused_before_decoding():
    data = _png(Image.new("RGB", (300, 200)))
    with pytest.raises(photos.PhotoError, match=r"big\.png: 300 x 200 pixels is over the limit of 50,000"):
        photos.load_photo(data, name="big.png", max_pixels=50_000)


def test_a_decompression_bomb_is_refused():
    """A PNG whose header claims far more pixels than its few bytes hold (the default limit applies)."""
    data = _png(Image.new("L", (9_000, 5_000)))  # 45 MP of zeros compress to a few kB
    assert len(data) < 100_000
    with pytest.raises(photos.PhotoError, match=r"over the limit of 40,000,000"):
        photos.load_photo(data, name="bomb.png")


def test_an_image_smaller_than_28_pixels_is_refused():
    with pytest.raises(photos.PhotoError, match=r"tiny\.png: 27 x 40 pixels is too small; it needs 28"):
        photos.load_photo(_png(Image.new("RGB", (27, 40))), name="tiny.png")


def test_an_exif_rotated_jpeg_comes_out_upright():
    """Stored 60 wide x 40 high with orientation 6 ("rotate 90 degrees clockwise to display"): upright it is
    40 wide x 60 high, and the stored top-left corner is at the top right."""
    stored = Image.new("RGB", (60, 40), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = photos.load_photo(_jpeg(stored, exif=exif.tobytes(), quality=95))
    assert upright.shape == (60, 40, 3) and upright.dtype == np.uint8
    assert upright[3, -3, 0] > 200 and upright[3, -3, 1] < 60  # red: top right
    assert upright[-3, 3].min() > 200  # white: bottom left


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (10, 10, 30, 30))
    rgb = photos.load_photo(_png(image))
    assert rgb.shape == (40, 40, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[20, 20].tolist() == [0, 0, 255]


def test_greyscale_16_bit_and_cmyk_become_rgb():
    grey = photos.load_photo(_png(Image.new("L", (30, 30), 77)))
    assert grey.shape == (30, 30, 3) and (grey == 77).all()
    deep = Image.fromarray(np.full((30, 30), 65535, np.uint16))
    assert photos.load_photo(_png(deep)).min() == 255
    cmyk = photos.load_photo(_jpeg(Image.new("CMYK", (30, 30), (0, 255, 255, 0)), quality=95))
    assert cmyk.shape == (30, 30, 3) and cmyk[15, 15, 0] > 200 and cmyk[15, 15, 1] < 60  # pure red


# --- to_fashion_mnist -------------------------------------------------------------------------------------------


def _scene(background: tuple[int, int, int], item: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A 200 x 160 photo with a textured background and an item 100 high x 50 wide off the centre."""
    rng = np.random.default_rng(seed)
    photo = np.clip(np.array(background) + rng.normal(0, 6, (200, 160, 3)), 0, 255)
    photo[40:140, 30:80] = np.clip(np.array(item) + rng.normal(0, 6, (100, 50, 3)), 0, 255)
    return photo.astype(np.uint8)


@pytest.mark.parametrize(
    ("background", "item"),
    [((225, 220, 210), (40, 40, 70)), ((35, 30, 40), (200, 205, 215))],
    ids=["dark item on light", "light item on dark"],
)
def test_the_item_is_centred_with_its_aspect_kept_light_on_black(background, item):
    image, steps = photos.to_fashion_mnist(_scene(background, item))
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    top, left, bottom, right = steps["box"]  # in the 128-pixel working copy: 200 x 160 -> 128 x 102
    assert abs((bottom - top) / (right - left) - 2.0) < 0.15
    rows, cols = np.flatnonzero(image.max(axis=1) > 0), np.flatnonzero(image.max(axis=0) > 0)
    assert rows[0] == 0 and rows[-1] == 27  # the longest edge fills the 28 pixels
    assert 12 <= len(cols) <= 16  # aspect 2:1 kept
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred
    assert image[:, : cols[0]].max() == 0 and image[:, cols[-1] + 1 :].max() == 0  # background black
    assert image[4:24, cols[0] + 2 : cols[-1] - 1].min() > 0  # the item lighter than the background
    assert image.max() == 1  # stretched, as every Fashion-MNIST image
    assert steps["mask_method"] == "grabcut" and steps["warnings"] == ()


def test_a_dark_item_comes_out_brighter_than_a_light_one_before_the_stretch():
    dark = photos.to_fashion_mnist(_scene((225, 220, 210), (40, 40, 70))).steps["grey"]
    light = photos.to_fashion_mnist(_scene((35, 30, 40), (200, 205, 215))).steps["grey"]
    assert np.median(dark[dark > 0]) > 0.7 > 0.3 > np.median(light[light > 0])  # negated grey levels


def test_an_item_in_the_background_colour_falls_back_to_the_inner_rectangle_with_a_warning():
    flat = np.full((100, 100, 3), 128, np.uint8)
    conversion = photos.to_fashion_mnist(flat)
    assert conversion.image.shape == (28, 28) and conversion.steps["mask"].mean() > 0.8
    assert conversion.steps["mask_method"] == "rectangle"
    assert any("could not be separated" in warning for warning in conversion.warnings)


def test_a_white_photo_is_flagged_as_nearly_empty():
    conversion = photos.to_fashion_mnist(np.full((100, 100, 3), 255, np.uint8))
    assert conversion.image.max() == 0
    assert any("nearly invisible" in warning for warning in conversion.warnings)


def test_when_grabcut_takes_everything_the_colour_fallback_finds_the_item(monkeypatch):
    import cv2

    def everything(image, mask, rect, *args):
        mask[:] = cv2.GC_PR_FGD

    monkeypatch.setattr(cv2, "grabCut", everything)
    conversion = photos.to_fashion_mnist(_scene((225, 220, 210), (40, 40, 70)))
    assert conversion.steps["mask_method"] == "colour"
    top, left, bottom, right = conversion.steps["box"]  # the item: rows 40-140, columns 30-80 of 200 x 160
    assert abs(top - 40 * 0.64) <= 2 and abs(bottom - 140 * 0.64) <= 2 and abs(left - 30 * 0.64) <= 2
    assert any("colour difference" in warning for warning in conversion.warnings)


def test_a_grabcut_failure_is_a_photo_error_with_the_name(monkeypatch):
    import cv2

    def fail(*args):
        raise cv2.error("OpenCV(5.0) grabcut.cpp:386: error: (-215:Assertion failed) !bgdSamples.empty()")

    monkeypatch.setattr(cv2, "grabCut", fail)
    with pytest.raises(photos.PhotoError, match=r"^odd\.png: GrabCut could not separate an item"):
        photos.to_fashion_mnist(_scene((225, 220, 210), (40, 40, 70)), name="odd.png")


def test_a_thin_photo_is_a_photo_error(tmp_path):
    thin = tmp_path / "thin.png"
    thin.write_bytes(_png(Image.new("RGB", (2000, 28), (200, 50, 50))))
    with pytest.raises(photos.PhotoError, match=r"thin\.png: 2000 x 28 pixels is too thin to hold an item"):
        photos.to_fashion_mnist(photos.load_photo(thin), name=thin.name)


def test_to_fashion_mnist_wants_load_photos_output():
    with pytest.raises(ValueError, match=r"expected an RGB photo \(H, W, 3\) uint8.*use load_photo"):
        photos.to_fashion_mnist(np.zeros((50, 50), np.float32))


# --- labels, loss, metric, scores -------------------------------------------------------------------------------


def test_candidate_targets_and_merged_labels():
    targets = photos.candidate_targets(["t-shirt", "shoes", "hat"])
    assert targets[0].tolist() == [1] + [0] * 9
    assert np.flatnonzero(targets[1]).tolist() == [5, 7, 9]
    assert targets[2].sum() == 0
    assert photos.merged_labels(["t-shirt", "shoes", "hat", "shirt"]).tolist() == [0, 5, -1, 6]
    with pytest.raises(ValueError, match=r"unknown photo labels \['jumper'\]"):
        photos.candidate_targets(["jumper"])


def test_merge_shoes_sums_the_three_shoe_classes():
    probabilities = np.arange(10, dtype=np.float64)[None] / 45
    merged = photos.merge_shoes(probabilities)
    assert merged.shape == (1, 8) and photos.MERGED_NAMES[5] == "Shoes"
    np.testing.assert_allclose(merged[0], np.array([0, 1, 2, 3, 4, 5 + 7 + 9, 6, 8]) / 45)


def test_candidate_set_loss_against_a_hand_computation():
    logits = np.array([[2.0, 0.5, 0, 0, 0, 1.0, 0, 0.3, 0, -1.0]] * 3, np.float32)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    targets = photos.candidate_targets(["t-shirt", "shoes", "skirt"])
    loss = photos.CandidateSetLoss(none_weight=0.5, reduction=None)(targets, logits)
    groups = np.append(p[[0, 1, 2, 3, 4, 6, 8]], p[5] + p[7] + p[9])  # the eight answers of the rule
    expected = [-np.log(p[0]), -np.log(p[5] + p[7] + p[9]), 0.5 * -np.log(groups).mean()]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), expected, rtol=1e-5)
    restored = keras.losses.deserialize(keras.losses.serialize(photos.CandidateSetLoss(none_weight=0.25)))
    assert restored.none_weight == 0.25


def test_candidate_accuracy_counts_any_candidate():
    targets = photos.candidate_targets(["shoes", "shoes", "t-shirt"])
    logits = np.zeros((3, 10), np.float32)
    logits[0, 9] = logits[1, 8] = logits[2, 0] = 5  # Ankle boot: right; Bag: wrong; T-shirt: right
    assert keras.ops.convert_to_numpy(photos.candidate_accuracy(targets, logits)).tolist() == [1, 0, 1]


def test_ood_scores_against_hand_values():
    logits = np.array([[3.0, 1.0, 0.0] + [0.0] * 7, [0.0] * 10])
    exp = np.exp(logits[0])
    np.testing.assert_allclose(photos.ood_score(logits, "msp"), [1 - exp.max() / exp.sum(), 0.7])  # shoes: 3/10
    np.testing.assert_allclose(photos.ood_score(logits, "energy"), [-np.log(exp.sum()), -np.log(10)])
    np.testing.assert_allclose(photos.ood_score(logits, "energy", 2.0), -2 * np.log(np.exp(logits / 2).sum(axis=1)))
    with pytest.raises(ValueError, match=r"unknown OOD score 'odin'"):
        photos.ood_score(logits, "odin")


def test_split_photos_is_stratified_disjoint_and_seeded():
    labels = np.repeat(list(photos.LABEL_TO_CLASSES), 20)
    parts = photos.split_photos(labels, seed=3)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(labels)))
    for name, share in (("train", 10), ("validation", 4), ("test", 6)):
        assert all(abs((labels[parts[name]] == label).sum() - share) <= 1 for label in photos.LABEL_TO_CLASSES)
    again = photos.split_photos(labels, seed=3)
    assert all((parts[name] == again[name]).all() for name in parts)


def test_the_committed_photos_are_listed_and_readable():
    photo_set = photos.load_photo_set()
    assert len(photo_set.files) == 2_170 and set(photo_set.labels) == set(photos.LABEL_TO_CLASSES)
    assert photo_set.in_distribution.sum() == 1_682
    assert all(Path(path).is_file() for path in photo_set.files)
    assert (ROOT / "data" / "real-photos" / "LICENSE").read_text().startswith("Creative Commons Legal Code")
    assert max(photos.load_photo(photo_set.files[0]).shape[:2]) <= 128


# --- classify and the command line ------------------------------------------------------------------------------


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """A saved PhotoClassifier whose logits favour Trouser; energy threshold between its in- and out-scores."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, kernel_initializer="zeros", bias_initializer="zeros")(
        keras.layers.Flatten()(inputs)
    )
    model = keras.Model(inputs, outputs)
    model.layers[-1].bias.assign(np.array([0, 4.0] + [0] * 8, np.float32))
    return photos.PhotoClassifier(model, photos.OodRule("msp", 1.0, 0.5)).save(tmp_path / "tiny.keras", note="test")


def _photo_file(folder: Path, name: str = "shirt.jpg") -> Path:
    path = folder / name
    path.write_bytes(_jpeg(Image.fromarray(_scene((220, 220, 220), (30, 30, 30)))))
    return path


def test_classify_returns_one_prediction_per_image(tiny_model):
    classifier = photos.load_classifier(tiny_model)
    assert classifier.ood == photos.OodRule("msp", 1.0, 0.5) and classifier.flip_tta
    assert json.loads(tiny_model.with_suffix(".json").read_text())["note"] == "test"
    [answer] = photos.classify(np.zeros((1, 28, 28), np.float32), classifier)
    assert answer.class_index == 1 and answer.label == "Trouser"
    assert answer.probabilities.shape == (10,) and abs(answer.probabilities.sum() - 1) < 1e-6
    assert answer.probability == pytest.approx(np.exp(4) / (np.exp(4) + 9))
    assert answer.in_distribution == (answer.ood_score <= 0.5)
    assert answer.group is None and answer.answer == "Trouser"
    with pytest.raises(ValueError, match=r"expected images \(N, 28, 28\)"):
        photos.classify(np.zeros((1, 32, 32)), classifier)


def test_the_rule_merges_the_shoe_classes():
    """Sandal 0.3, Sneaker 0.25, Ankle boot 0.2 beat Coat 0.25: the answer is shoes, shown as the group."""
    probabilities = np.array([[0, 0, 0, 0, 0.25, 0.3, 0, 0.25, 0, 0.2], [0.6, 0, 0, 0, 0.4, 0, 0, 0, 0, 0]])
    columns, classes, answer = photos.decide(probabilities)
    assert columns.tolist() == [photos.SHOES_COLUMN, 0] and classes.tolist() == [5, 0]
    np.testing.assert_allclose(answer, [0.75, 0.6])
    classifier = photos.PhotoClassifier(_constant_model(np.log(probabilities[0] + 1e-9)), photos.OodRule("msp"))
    [shoes] = photos.classify(np.zeros((1, 28, 28), np.float32), classifier)
    assert shoes.class_index == 5 and shoes.label == "Sandal" and shoes.group == photos.SHOES_GROUP
    assert shoes.answer == photos.SHOES_GROUP and shoes.probability == pytest.approx(0.75, abs=1e-6)
    assert shoes.ood_score == pytest.approx(0.25, abs=1e-6)  # msp on the merged answers


def _constant_model(logits: np.ndarray) -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    dense = keras.layers.Dense(10, kernel_initializer="zeros")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.bias.assign(np.asarray(logits, np.float32))
    return model


def test_flip_tta_averages_the_logits_of_the_mirror_image():
    """A linear model that reads the left column only: the mirror view reads the right column."""
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, use_bias=False)(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((784, 10), np.float32)
    kernel[np.arange(28) * 28, 0] = 1  # class 0 counts the ink in column 0
    model.layers[-1].kernel.assign(kernel)
    images = np.zeros((1, 28, 28, 1), np.float32)
    images[0, :, 0] = 1
    assert photos.predict_logits(model, images, flip_tta=False)[0, 0] == pytest.approx(28)
    assert photos.predict_logits(model, images, flip_tta=True)[0, 0] == pytest.approx(14)


def test_the_command_prints_json_and_reports_bad_files(tiny_model, tmp_path, capsys):
    good = _photo_file(tmp_path)
    assert photos.main(["--model", str(tiny_model), "--json", str(good)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert set(line) == {"path", "class", "label", "group", "probability", "in_distribution", "ood_score"}
    assert line["path"] == str(good) and line["class"] == 1 and line["label"] == CLASS_NAMES[1]
    assert line["group"] is None

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    assert photos.main(["--model", str(tiny_model), "--json", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {bad}: not an image file Pillow can read (JPEG, PNG, WebP, ...)"
    assert [json.loads(row)["path"] for row in captured.out.splitlines()] == [str(good)]  # the others still run

    thin = tmp_path / "thin.png"
    thin.write_bytes(_png(Image.new("RGB", (28, 2000), (200, 50, 50))))
    white = tmp_path / "white.png"
    white.write_bytes(_png(Image.new("RGB", (100, 100), (255, 255, 255))))
    assert photos.main(["--model", str(tiny_model), str(thin), str(white), str(good)]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert (
        errors[0]
        == f"error: {thin}: 28 x 2000 pixels is too thin to hold an item (longer side over 8 times the shorter)"
    )
    assert errors[1].startswith(f"warning: {white}: The item could not be separated")
    assert [row.split(":")[0] for row in captured.out.splitlines()] == [str(white), str(good)]

    assert photos.main(["--model", str(tiny_model), str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: Trouser ")


def test_the_command_exits_2_for_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        photos.main([])
    assert raised.value.code == 2
    assert photos.main(["--model", str(tmp_path / "none.keras"), str(_photo_file(tmp_path))]) == 2
    assert "no model at" in capsys.readouterr().err


def test_python_dash_m_runs_the_command(tiny_model, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fmnist_utils.photos", "--model", str(tiny_model), "--json", str(_photo_file(tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "Trouser"


@pytest.mark.skipif(not (ROOT / photos.DEFAULT_MODEL_NAME).is_file(), reason="notebook 08 has not saved its model")
def test_the_committed_model_reproduces_its_recorded_photo_accuracy():
    """The default model loads on a fresh clone, classifies committed photos, and scores on the held-out photos
    what notebook 08 recorded (its seed's split of data/real-photos)."""
    classifier = photos.load_classifier()
    facts = json.loads((ROOT / photos.DEFAULT_MODEL_NAME).with_suffix(".json").read_text())
    photo_set = photos.load_photo_set()
    test = photo_set.subset(photos.split_photos(photo_set.labels, seed=facts["seed"])["test"])
    answers = photos.classify(photos.convert_photos(test.files), classifier)
    assert all(0 <= answer.class_index < 10 and answer.label == CLASS_NAMES[answer.class_index] for answer in answers)
    labels = photos.merged_labels(test.labels)
    columns = np.array([photos.ANSWER_NAMES.index(answer.answer) for answer in answers])  # the shipped rule
    accuracy = float(np.mean(columns[labels >= 0] == labels[labels >= 0]))
    assert accuracy == pytest.approx(facts["test_photo_accuracy"], abs=2 / (labels >= 0).sum())


def _make_real_photos(*args: object) -> subprocess.CompletedProcess:
    """Run scripts/make_real_photos.py with these arguments, capturing its output."""
    command = [sys.executable, str(ROOT / "scripts" / "make_real_photos.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def test_make_real_photos_rebuilds_an_upright_shrunk_subset(tmp_path):
    """scripts/make_real_photos.py on a tiny copy of the clothing dataset's layout."""
    source = tmp_path / "clothing"
    stored = Image.new("RGB", (400, 300), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    exif[0x0112] = 6
    for split, label, count in (
        ("train", "hat", 3),
        ("validation", "hat", 1),
        ("train", "shoes", 2),
        ("test", "hat", 5),
    ):
        (source / split / label).mkdir(parents=True)
        for index in range(count):
            (source / split / label / f"{split}{index}.jpg").write_bytes(_jpeg(stored, exif=exif.tobytes()))
    (source / "LICENSE").write_text("CC0")
    out = tmp_path / "subset"
    done = _make_real_photos(source, "--out", out, "--per-class", "2")
    assert done.returncode == 0, done.stderr
    subset = photos.load_photo_set(out)
    assert sorted(subset.labels.tolist()) == ["hat", "hat", "shoes", "shoes"]
    assert "test" not in (out / "labels.csv").read_text()  # the source's test/ folder is never drawn from
    assert (out / "LICENSE").read_text() == "CC0"
    image = photos.load_photo(subset.files[0])
    assert image.shape == (128, 96, 3) and image[5, -5, 0] > 200 and image[5, -5, 1] < 80  # upright, shrunk
    empty = _make_real_photos(tmp_path)
    assert empty.returncode == 1 and "holds no <split>/<label>/*.jpg photos" in empty.stderr
    with_test = _make_real_photos(source, "--out", out, "--include-test")
    assert with_test.returncode == 0 and "no longer an independent check" in with_test.stderr
    assert sorted(photos.load_photo_set(out).labels.tolist()) == ["hat"] * 9 + ["shoes"] * 2
