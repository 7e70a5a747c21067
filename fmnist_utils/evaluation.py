"""Evaluate a trained classifier: probabilities, accuracy, loss, per-class report, confusion matrix.

Every model in this repository outputs logits (one score per class, shape (N, 10)); softmax turns
them into probabilities here, at evaluation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics

from fmnist_utils.data import CLASS_NAMES


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (fraction), loss (mean cross-entropy, nats), probabilities (N, 10) and predicted labels (N,)."""

    accuracy: float
    loss: float
    probabilities: np.ndarray
    predictions: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability (nats) of the true class: probabilities (N, C), labels (N,)."""
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0))))


def _softmax_of_predictions(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    return softmax(np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64))


def predict_with_flip_tta(model: Any, x: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 10) of images ``x`` (N, 28, 28, 1), and the same with flip test-time augmentation.

    Flip TTA averages the probabilities of each image and of its mirror image: clothes look the same
    mirrored, so two views vote. Each image is predicted once, and once mirrored.
    """
    probabilities = _softmax_of_predictions(model, x, batch_size)
    mirrored = _softmax_of_predictions(model, x[:, :, ::-1], batch_size)
    return probabilities, (probabilities + mirrored) / 2


def predict_probabilities(model: Any, x: np.ndarray, batch_size: int = 500, flip_tta: bool = False) -> np.ndarray:
    """Class probabilities (N, 10) for images ``x`` (N, 28, 28, 1) from a model that outputs logits.

    With ``flip_tta``, those of :func:`predict_with_flip_tta`.
    """
    if flip_tta:
        return predict_with_flip_tta(model, x, batch_size)[1]
    return _softmax_of_predictions(model, x, batch_size)


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 500, flip_tta: bool = False) -> Evaluation:
    """Accuracy and cross-entropy of ``model`` on images ``x`` (N, 28, 28, 1) with labels ``y`` (N,)."""
    probabilities = predict_probabilities(model, x, batch_size=batch_size, flip_tta=flip_tta)
    predictions = probabilities.argmax(axis=1)
    loss = cross_entropy(probabilities, y)
    return Evaluation(float(np.mean(predictions == y)), loss, probabilities, predictions)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES) -> str:
    """Per-class precision, recall, F1 and support (scikit-learn), as text."""
    return metrics.classification_report(
        y_true, y_pred, labels=list(range(len(class_names))), target_names=list(class_names), digits=3, zero_division=0
    )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    return metrics.confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def most_confused_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, top: int = 5, class_names: tuple[str, ...] = CLASS_NAMES
) -> list[tuple[str, str, int]]:
    """The ``top`` (true class, predicted class, count) mistakes, most frequent first."""
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    np.fill_diagonal(counts, 0)
    order = np.argsort(counts, axis=None)[::-1][:top]
    return [(class_names[i], class_names[j], int(counts[i, j])) for i, j in zip(*np.unravel_index(order, counts.shape))]


def best_epoch(history: Mapping[str, list[float]], metric: str = "val_accuracy") -> tuple[float, int]:
    """Best value of ``metric`` in a Keras history dict and its epoch, counted from 1."""
    values = history[metric]
    index = int(np.argmax(values))
    return float(values[index]), index + 1


@dataclass(frozen=True)
class PairedComparison:
    """Two classifiers scored on the same N images: accuracies (fractions), the discordant counts
    (``only_a``: images A gets right and B wrong; ``only_b``: the reverse) and the exact McNemar p-value
    (two-sided binomial test of ``only_a`` against ``only_a + only_b`` fair coin flips)."""

    accuracy_a: float
    accuracy_b: float
    only_a: int
    only_b: int
    p_value: float

    def __str__(self) -> str:
        points = 100 * (self.accuracy_b - self.accuracy_a)
        return (
            f"{self.accuracy_a:.2%} vs {self.accuracy_b:.2%} ({points:+.2f} points); "
            f"only A right on {self.only_a}, only B right on {self.only_b}; exact McNemar p = {self.p_value:.3g}"
        )


def paired_comparison(probabilities_a: np.ndarray, probabilities_b: np.ndarray, labels: np.ndarray) -> PairedComparison:
    """Compare two classifiers' predictions on the same images with an exact McNemar test.

    Images both classifiers get right, or both wrong, say nothing about which is better; only the discordant
    ones do. If A and B were equally good, each discordant image would be A's with probability 1/2.

    Args:
        probabilities_a, probabilities_b: class probabilities (N, C) of the two classifiers (argmax = prediction).
        labels: true classes (N,).
    """

    if not np.shape(probabilities_a)[0] == np.shape(probabilities_b)[0] == len(labels):
        raise ValueError(
            f"paired_comparison needs two classifiers' probabilities on the same images as the labels: got "
            f"{np.shape(probabilities_a)}, {np.shape(probabilities_b)} and {len(labels)} labels."
        )
    right_a = np.asarray(probabilities_a).argmax(axis=1) == labels
    right_b = np.asarray(probabilities_b).argmax(axis=1) == labels
    return paired_right(right_a, right_b)


def paired_right(right_a: np.ndarray, right_b: np.ndarray) -> PairedComparison:
    """:func:`paired_comparison` from two classifiers' right/wrong answers (N,) bool on the same items, for a
    decision rule that is not an argmax (notebook 08's merged shoe classes)."""
    from scipy import stats

    right_a, right_b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    if right_a.shape != right_b.shape:
        raise ValueError(f"paired_right needs answers on the same items: got {right_a.shape} and {right_b.shape}")
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    p_value = stats.binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return PairedComparison(float(right_a.mean()), float(right_b.mean()), only_a, only_b, float(p_value))


def wilson_interval(right: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (low, high), as fractions, of an accuracy of ``right`` out of ``total``
    (SciPy's ``binomtest(...).proportion_ci``); notebook 08 gives one for each accuracy on a few hundred photos."""
    from scipy import stats

    interval = stats.binomtest(right, total).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)
