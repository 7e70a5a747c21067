"""Combine and calibrate saved class probabilities: greedy and bagged ensembles, expected calibration error,
temperature scaling (notebook 06).

Everything here works on probabilities (N, 10) such as ``results.load_predictions`` returns, so it trains nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from fmnist_utils.evaluation import cross_entropy, softmax


@dataclass(frozen=True)
class Ensemble:
    """An average of candidates' probabilities.

    Attributes:
        members: the chosen candidates' names; a name may repeat (a repeated member weighs more).
    """

    members: list[str]

    def average(self, probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
        """Mean of the members' probabilities (N, 10), each member counted as often as it was picked."""
        return np.mean([probabilities[name] for name in self.members], axis=0)

    def counts(self) -> dict[str, int]:
        """How often each member was picked, most often first."""
        return dict(Counter(self.members).most_common())


@dataclass(frozen=True)
class GreedyEnsemble(Ensemble):
    """The result of :func:`greedy_ensemble`.

    Attributes:
        members: the chosen candidates' names in the order picked (see :class:`Ensemble`).
        history: validation accuracy of the average after each pick, ``len(history) == max_members``.
        picks: every pick made, ``len(picks) == max_members``; ``members`` is the prefix with the best accuracy.
    """

    history: list[float]
    picks: list[str]


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows of ``probabilities`` (N, C) whose largest entry is at the label (N,)."""
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def greedy_ensemble(
    val_probabilities: Mapping[str, np.ndarray], y_val: np.ndarray, max_members: int = 20
) -> GreedyEnsemble:
    """Greedy forward selection with replacement (Caruana et al., 2004) on the validation split.

    Start from the empty ensemble; at each step add the candidate (possibly one already in) whose addition gives
    the highest validation accuracy of the averaged probabilities, ties to the first in ``val_probabilities``'
    order. After ``max_members`` steps keep the prefix with the best validation accuracy (the shortest on ties).
    The test set plays no part.

    Args:
        val_probabilities: candidate name -> validation probabilities (N_val, C), all of the same shape.
        y_val: validation labels (N_val,).
        max_members: how many picks to make.

    Raises:
        ValueError: no candidates, shapes that differ, labels that do not match, or ``max_members < 1``.
    """
    if not val_probabilities:
        raise ValueError("greedy_ensemble needs at least one candidate's validation probabilities.")
    if max_members < 1:
        raise ValueError(f"max_members must be at least 1, not {max_members}.")
    shapes = {name: np.shape(p) for name, p in val_probabilities.items()}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values()))[0] != len(y_val):
        raise ValueError(f"Every candidate needs probabilities of shape ({len(y_val)}, classes); got {shapes}.")
    names = list(val_probabilities)
    total = np.zeros_like(np.asarray(val_probabilities[names[0]], dtype=np.float64))
    picks: list[str] = []
    history: list[float] = []
    for step in range(1, max_members + 1):
        scores = [accuracy((total + val_probabilities[name]) / step, y_val) for name in names]
        best = names[int(np.argmax(scores))]
        total += val_probabilities[best]
        picks.append(best)
        history.append(max(scores))
    size = int(np.argmax(history)) + 1
    return GreedyEnsemble(members=picks[:size], history=history, picks=picks)


def bagged_ensemble(
    val_probabilities: Mapping[str, np.ndarray],
    y_val: np.ndarray,
    max_members: int = 20,
    bags: int = 20,
    fraction: float = 0.5,
    seed: int = 0,
) -> Ensemble:
    """Bagged ensemble selection (Caruana et al., 2004): :func:`greedy_ensemble` on bags of models.

    Each bag draws ``fraction`` of the candidates (at least one) without replacement and runs the greedy
    selection among them on the whole validation split; the ensemble is the union of every bag's members, each
    counted as often as it was picked in all bags. A bag without the strongest candidates must combine the
    others, so the pooled ensemble leans less on one model's luck on these validation images than one greedy
    run does.

    Args:
        val_probabilities, y_val, max_members: as for :func:`greedy_ensemble`.
        bags: how many bags. fraction: share of the candidates in each, in (0, 1].
        seed: seeds the bags.
    """
    if not 0 < fraction <= 1 or bags < 1:
        raise ValueError(f"bags must be at least 1 and fraction in (0, 1]; got bags={bags}, fraction={fraction}.")
    names = list(val_probabilities)
    rng = np.random.default_rng(seed)
    size = max(1, round(fraction * len(names)))
    members: list[str] = []
    for _ in range(bags):
        bag = sorted(rng.choice(len(names), size, replace=False))
        members += greedy_ensemble({names[i]: val_probabilities[names[i]] for i in bag}, y_val, max_members).members
    return Ensemble(members=sorted(members, key=names.index))


def held_out_accuracy(
    select: Callable[[dict[str, np.ndarray], np.ndarray], Ensemble],
    val_probabilities: Mapping[str, np.ndarray],
    y_val: np.ndarray,
    repeats: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """How well a selection procedure does on validation images it did not choose on.

    For each of ``repeats`` random halvings of the validation split, ``select(probabilities, labels)`` chooses an
    ensemble on one half, which is scored on the other. The test set plays no part, so this can decide between
    procedures (greedy or bagged, with or without some candidates) without spending the test set.

    Returns:
        Accuracies (repeats,) on the held-out halves; the same ``seed`` gives every procedure the same halvings,
        so two procedures' arrays are paired.
    """
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        order = rng.permutation(len(y_val))
        chosen_on, scored_on = order[: len(order) // 2], order[len(order) // 2 :]
        chosen = select({k: v[chosen_on] for k, v in val_probabilities.items()}, y_val[chosen_on])
        scores.append(
            accuracy(chosen.average({k: v[scored_on] for k, v in val_probabilities.items()}), y_val[scored_on])
        )
    return np.array(scores)


def cheapest_within_noise(held_out: Mapping[str, np.ndarray]) -> str:
    """The first procedure, in ``held_out``'s order, that the best one does not beat by more than noise.

    ``held_out`` maps procedure names, cheapest first, to paired held-out accuracies (repeats,) from
    :func:`held_out_accuracy`. "Noise" is one standard error of the paired differences from the procedure with
    the best mean: a procedure whose mean is at most that far below the best counts as a tie, and ties go to the
    cheaper procedure.
    """
    if not held_out:
        raise ValueError("cheapest_within_noise needs at least one procedure's held-out accuracies.")
    best = max(held_out, key=lambda name: held_out[name].mean())
    for name, scores in held_out.items():
        differences = held_out[best] - scores
        standard_error = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else 0.0
        if differences.mean() <= standard_error:
            return name
    return best


def break_ties(probabilities: np.ndarray, toward: np.ndarray) -> tuple[np.ndarray, int]:
    """Settle rows whose two largest probabilities are exactly equal in favour of the class ``toward`` prefers.

    A saturated softmax gives a top probability of exactly 1.0 even in float32, so the flip-TTA average of two
    confident views that disagree is an exact 0.5/0.5 tie, which ``argmax`` would settle towards the lower class
    index. Here such a row gets ``1e-6 * toward`` added (renormalised), e.g. ``toward`` = the probabilities of
    the original, un-mirrored view. Other rows are returned unchanged.

    Args:
        probabilities: (N, C). toward: (N, C), the tie-breaker.

    Returns:
        The probabilities (N, C), float64, and how many rows were ties.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    tied = top_two[:, 0] == top_two[:, 1]
    settled = probabilities.copy()
    settled[tied] = probabilities[tied] + 1e-6 * np.asarray(toward, dtype=np.float64)[tied]
    settled[tied] /= settled[tied].sum(axis=1, keepdims=True)
    return settled, int(tied.sum())


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty confidence bin: mean confidence, accuracy and number of images.

    The confidence of an image is its largest probability; images go into ``bins`` equal-width bins over [0, 1].
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    used = [b for b in range(bins) if (which == b).any()]
    return (
        np.array([confidence[which == b].mean() for b in used]),
        np.array([correct[which == b].mean() for b in used]),
        np.array([(which == b).sum() for b in used]),
    )


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the gap between confidence and accuracy, averaged over confidence bins.

    Over the bins of :func:`reliability_curve`, ECE = sum of (images in bin / N) * |accuracy in bin - mean
    confidence in bin|. 0 for a perfectly calibrated model; a fraction, like accuracy.
    """
    confidence, accuracy_in_bin, count = reliability_curve(probabilities, labels, bins)
    return float(np.sum(count / len(labels) * np.abs(accuracy_in_bin - confidence)))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log(probabilities) / temperature: > 1 softens, < 1 sharpens; the predicted class never changes."""
    return softmax(np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature)


def fit_temperature(val_probabilities: np.ndarray, y_val: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T in [0.05, 20] that minimises validation cross-entropy."""
    result = minimize_scalar(
        lambda t: cross_entropy(apply_temperature(val_probabilities, t), y_val), bounds=(0.05, 20.0), method="bounded"
    )
    return float(result.x)
