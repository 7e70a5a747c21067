"""Evaluation metrics on tiny known examples, and every plot function (headless)."""

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from fmnist_utils import evaluation, plots
from fmnist_utils.environment import start_run
from fmnist_utils.profiles import Profile

Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_known_example():
    counts = evaluation.confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_classification_report_known_example():
    report = evaluation.classification_report(Y_TRUE, Y_PRED, class_names=("a", "b", "c"))
    rows = {line.split()[0]: line.split()[1:] for line in report.splitlines() if line.strip()[:1] in ("a", "b", "c")}
    # class b: predicted 3 times, 2 right -> precision 0.667; all 2 found -> recall 1.0; F1 = 0.8
    assert rows["b"] == ["0.667", "1.000", "0.800", "2"]
    assert rows["c"] == ["1.000", "0.500", "0.667", "2"]
    assert "accuracy" in report and "0.667" in report


def test_softmax_and_evaluate_with_a_stub_model():
    class Stub:
        def predict(self, x, batch_size, verbose):
            logits = np.zeros((len(x), 3))
            logits[np.arange(len(x)), [0, 1, 2, 0]] = np.log(3.0)  # probability 0.6 for the chosen class
            return logits

    x = np.zeros((4, 28, 28, 1), np.float32)
    result = evaluation.evaluate(Stub(), x, np.array([0, 1, 2, 1]))
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0)
    assert result.accuracy == 0.75 and result.predictions.tolist() == [0, 1, 2, 0]
    # three right with p = 0.6, one wrong with p(true) = 0.2
    assert result.loss == pytest.approx(-(3 * np.log(0.6) + np.log(0.2)) / 4)


def test_flip_tta_averages_the_mirror_view():
    class LeftRight:
        """Logit of class 1 grows with the brightness of the left half: mirroring moves it."""

        def predict(self, x, batch_size, verbose):
            left = x[:, :, :14, 0].sum(axis=(1, 2))
            return np.stack([np.zeros(len(x)), left], axis=1)

    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, :, :14] = 0.01
    plain = evaluation.predict_probabilities(LeftRight(), x)
    both = evaluation.predict_probabilities(LeftRight(), x, flip_tta=True)
    assert plain[0, 1] > 0.5 and both[0, 1] == pytest.approx((plain[0, 1] + 0.5) / 2)


def test_most_confused_pairs_and_best_epoch():
    pairs = evaluation.most_confused_pairs(Y_TRUE, Y_PRED, top=2, class_names=("a", "b", "c"))
    assert set(pairs) == {("a", "b", 1), ("c", "a", 1)}
    assert evaluation.best_epoch({"val_accuracy": [0.5, 0.7, 0.6]}) == (0.7, 2)


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    y = np.arange(40) % 10
    probabilities = rng.dirichlet(np.ones(10), size=40)
    return x, y, probabilities


def test_plots_work_headless_and_return_figures(tiny, tmp_path, monkeypatch):
    assert matplotlib.get_backend().lower() == "agg"
    x, y, probabilities = tiny
    history = {"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.55, 0.75]}
    figures = {
        "samples": plots.plot_samples(x, y, n=16),
        "history": plots.plot_history({"a": history, "b": history}),
        "confusion": plots.plot_confusion_matrix(y, probabilities.argmax(axis=1)),
        "mistakes": plots.plot_misclassified(x, y, probabilities, n=8),
        "prediction": plots.plot_prediction(x[0], probabilities[0], int(y[0])),
        "grid": plots.plot_image_grid(x[:5, :, :, np.newaxis], titles=list("abcde"), ncols=5),
    }
    assert all(isinstance(f, Figure) for f in figures.values())
    assert len(figures["samples"].axes) == 16
    assert len(figures["history"].axes) == 2 and len(figures["history"].axes[0].lines) == 4
    assert figures["history"].axes[0].get_yscale() == "linear"
    log_history = plots.plot_history(
        {"a": {**history, "val_loss": [500.0] + list(history["val_loss"][1:])}}, log_loss=True
    )
    loss_axis = log_history.axes[0]
    log_history.canvas.draw()
    assert loss_axis.get_yscale() == "log"
    labels = [label.get_text() for label in loss_axis.get_yticklabels() if label.get_text()]
    assert "100" in labels and not any("^" in label for label in labels)  # plain numbers, not 10^2
    assert [a.get_title() for a in figures["confusion"].axes] == ["Confusion matrix (40 test images)"]
    monkeypatch.chdir(tmp_path)
    quick = start_run("00_check", seed=0, epochs=1, profile=Profile("quick", "test"))
    smoke = start_run("00_check", seed=0, epochs=1, profile=Profile("smoke", "test"))
    assert plots.save_figure(figures["prediction"], "skipped", smoke) is None
    path = plots.save_figure(figures["prediction"], "check", quick)
    assert path == tmp_path / "images" / "check.png" and path.stat().st_size > 1000
    assert not (tmp_path / "images" / "skipped.png").exists()


def test_centred_image_grid_puts_zero_in_the_middle_of_the_colour_map():
    weights = np.array([[[-0.5, 0.1], [0.2, 0.0]], [[0.3, -0.1], [0.0, 0.25]]])  # (2, 2, 2), largest |value| 0.5
    fig = plots.plot_image_grid(weights, ncols=2, cmap="RdBu", centred=True)
    images = [image for ax in fig.axes for image in ax.get_images()]
    assert len(images) == 2 and all(image.get_clim() == (-0.5, 0.5) for image in images)
    assert len(fig.axes) == 3  # two images and the colour bar
    plain = plots.plot_image_grid(weights, ncols=2)
    assert [image.get_clim() for ax in plain.axes for image in ax.get_images()] == [(-0.5, 0.2), (-0.1, 0.3)]


def test_image_grid_shows_photos_of_different_sizes_in_colour():
    photo = np.zeros((40, 30, 3), np.uint8)
    photo[..., 0] = 255
    fig = plots.plot_image_grid([photo, np.ones((28, 28, 1)), np.zeros((50, 50))], ["photo", "grey", "other"], ncols=3)
    shown = [image.get_array() for ax in fig.axes for image in ax.get_images()]
    assert [image.shape for image in shown] == [(40, 30, 3), (28, 28), (50, 50)]


def test_paired_comparison_against_a_hand_count():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    right = np.eye(3)[labels]
    wrong = np.eye(3)[(labels + 1) % 3]
    a = np.where(np.array([1, 1, 1, 0, 0, 1, 1, 1])[:, None], right, wrong)  # 6 right
    b = np.where(np.array([1, 0, 0, 1, 1, 1, 1, 1])[:, None], right, wrong)  # 6 right
    result = evaluation.paired_comparison(a, b, labels)
    assert (result.only_a, result.only_b) == (2, 2) and result.accuracy_a == result.accuracy_b == 0.75
    assert result.p_value == pytest.approx(1.0)
    # B right on 6 images A gets wrong, A never right alone: two-sided exact p = 2 / 2**6
    assert evaluation.paired_comparison(wrong[:6], right[:6], labels[:6]).p_value == pytest.approx(2 / 64)
    same = evaluation.paired_comparison(a, a, labels)
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="same images"):
        evaluation.paired_comparison(a, b[:4], labels)
    assert str(result) == "75.00% vs 75.00% (+0.00 points); only A right on 2, only B right on 2; exact McNemar p = 1"


def test_preact_block_figure_has_both_shortcuts():
    fig = plots.plot_preact_block()
    texts = [[text.get_text() for text in ax.texts] for ax in fig.axes]
    assert len(fig.axes) == 2
    assert "identity" in texts[0] and "conv 1×1 (C')\nstride s" in texts[1]
    assert all(text.count("BN → ReLU") == 2 for text in texts)


def test_confusion_heatmap_shows_the_counts():
    fig = plots.plot_confusion_matrix(Y_TRUE, Y_PRED, class_names=("a", "b", "c"))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["1", "1", "0", "0", "2", "0", "1", "0", "1"]


def test_prediction_colours_mark_right_and_wrong(tiny):
    x, _, _ = tiny
    probabilities = np.full(10, 0.02)
    probabilities[3] = 0.82
    right = plots.plot_prediction(x[0], probabilities, 3)
    wrong = plots.plot_prediction(x[0], probabilities, 4)

    def bar(fig):
        return fig.axes[1].patches[3].get_facecolor()

    assert bar(right) == matplotlib.colors.to_rgba(plots.CORRECT_COLOUR)
    assert bar(wrong) == matplotlib.colors.to_rgba(plots.WRONG_COLOUR)


def test_paired_right_counts_discordant_items_and_wilson_matches_a_hand_value():
    a = np.array([True, True, False, False, True])
    b = np.array([True, False, True, True, True])
    result = evaluation.paired_right(a, b)
    assert (result.only_a, result.only_b) == (1, 2) and result.p_value == pytest.approx(1.0)
    assert result.accuracy_a == pytest.approx(0.6) and result.accuracy_b == pytest.approx(0.8)
    with pytest.raises(ValueError, match="same items"):
        evaluation.paired_right(a, b[:3])
    low, high = evaluation.wilson_interval(149, 210)  # hand value: 0.645 to 0.767
    assert low == pytest.approx(0.6448, abs=1e-3) and high == pytest.approx(0.7666, abs=1e-3)


def test_history_ticks_are_whole_epochs():
    values = list(np.linspace(1.0, 0.2, 20))
    history = {"loss": values, "accuracy": values, "val_loss": values, "val_accuracy": values}
    fig = plots.plot_history({"a": history})
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), ticks  # not 2.5, 7.5, ...
