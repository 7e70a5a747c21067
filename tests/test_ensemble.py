from collections import Counter

import numpy as np
import pytest

from fmnist_utils import ensemble


def one_hot(labels: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.eye(classes)[labels]


def test_greedy_ensemble_picks_complementary_members_on_validation_only():
    y = np.array([0, 1, 2, 0, 1, 2])
    good_on_first_half = one_hot(np.array([0, 1, 2, 1, 2, 0])) * 0.6 + 0.4 / 3  # right on images 0-2
    good_on_second_half = one_hot(np.array([1, 2, 0, 0, 1, 2])) * 0.6 + 0.4 / 3  # right on images 3-5
    weak_everywhere = np.full((6, 3), 1 / 3) + one_hot(y) * 0.01
    candidates = {"a": good_on_first_half, "b": good_on_second_half, "noise": weak_everywhere}
    result = ensemble.greedy_ensemble(candidates, y, max_members=4)
    assert len(result.picks) == len(result.history) == 4
    assert result.history[0] == pytest.approx(ensemble.accuracy(weak_everywhere, y))  # the weak one is right on all
    assert result.members == result.picks[: int(np.argmax(result.history)) + 1]
    assert max(result.history) == pytest.approx(1.0)
    np.testing.assert_allclose(result.average(candidates), np.mean([candidates[m] for m in result.members], axis=0))


def test_greedy_ensemble_says_what_is_wrong():
    with pytest.raises(ValueError, match="at least one candidate"):
        ensemble.greedy_ensemble({}, np.array([0]))
    with pytest.raises(ValueError, match=r"shape \(2, classes\)"):
        ensemble.greedy_ensemble({"a": np.ones((3, 3)) / 3}, np.array([0, 1]))


def noisy_candidates(n: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Three candidates right on 80 %, 70 % and 50 % of n images (independently), with soft probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    candidates = {}
    for name, right in (("good", 0.8), ("fair", 0.7), ("weak", 0.5)):
        predicted = np.where(rng.random(n) < right, y, (y + rng.integers(1, 3, n)) % 3)
        candidates[name] = one_hot(predicted) * 0.5 + 0.5 / 3
    return candidates, y


def test_bagged_ensemble_counts_every_bags_greedy_members():
    candidates, y = noisy_candidates()
    result = ensemble.bagged_ensemble(candidates, y, max_members=5, bags=4, fraction=0.5, seed=1)
    names = list(candidates)
    rng = np.random.default_rng(1)
    expected = []
    for _ in range(4):  # the same bags of models, drawn as the function documents, on all validation images
        bag = sorted(rng.choice(len(names), round(len(names) / 2), replace=False))
        expected += ensemble.greedy_ensemble({names[i]: candidates[names[i]] for i in bag}, y, 5).members
    assert sorted(result.members) == sorted(expected)
    assert result.counts() == dict(sorted(Counter(expected).items(), key=lambda item: -item[1]))
    np.testing.assert_allclose(result.average(candidates), np.mean([candidates[m] for m in expected], axis=0))
    with pytest.raises(ValueError, match="fraction in"):
        ensemble.bagged_ensemble(candidates, y, fraction=0)


def test_bagged_ensemble_gives_weak_candidates_a_say_when_the_best_sits_out():
    candidates, y = noisy_candidates()
    best = max(candidates, key=lambda k: ensemble.accuracy(candidates[k], y))
    result = ensemble.bagged_ensemble(candidates, y, max_members=3, bags=10, fraction=0.25, seed=0)
    assert best in result.members and set(result.members) - {best}


def test_cheapest_within_noise_prefers_the_cheaper_of_a_tie():
    rng = np.random.default_rng(0)
    base = 0.95 + rng.normal(0, 0.002, 30)
    noise = rng.normal(0, 0.002, 30)
    # mean 0.02 points better, standard error of the paired differences about 0.04 points: a tie
    tie = {"single": base, "ensemble": base + 0.0002 + noise - noise.mean()}
    assert ensemble.cheapest_within_noise(tie) == "single"
    clear = {"single": base, "ensemble": base + 0.01 + rng.normal(0, 0.001, 30)}
    assert ensemble.cheapest_within_noise(clear) == "ensemble"
    assert ensemble.cheapest_within_noise({"only": base}) == "only"
    with pytest.raises(ValueError, match="at least one"):
        ensemble.cheapest_within_noise({})


def test_break_ties_settles_exact_ties_toward_the_original_view():
    tta = np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.0, 0.5, 0.5]], dtype=np.float32)
    original = np.array([[0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    settled, ties = ensemble.break_ties(tta, original)
    assert ties == 2
    assert settled.argmax(axis=1).tolist() == [1, 1, 2]  # argmax of tta alone: [0, 1, 1]
    np.testing.assert_allclose(settled.sum(axis=1), 1.0)
    np.testing.assert_array_equal(settled[1], tta[1].astype(np.float64))


def test_held_out_accuracy_scores_each_procedure_on_the_other_half():
    candidates, y = noisy_candidates()
    only_weak = ensemble.held_out_accuracy(lambda c, labels: ensemble.Ensemble(["weak"]), candidates, y, 10, seed=3)
    only_good = ensemble.held_out_accuracy(lambda c, labels: ensemble.Ensemble(["good"]), candidates, y, 10, seed=3)
    assert only_weak.shape == (10,)
    assert np.all(only_good > only_weak)  # paired halvings: the better member wins on every one
    assert 0.7 < only_good.mean() < 0.9 and 0.4 < only_weak.mean() < 0.6
    seen = []

    def spy(c, labels):
        seen.append(len(labels))
        return ensemble.greedy_ensemble(c, labels, 3)

    greedy = ensemble.held_out_accuracy(spy, candidates, y, 5, seed=3)
    assert seen == [len(y) // 2] * 5 and np.all((0 <= greedy) & (greedy <= 1))


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin of 0.9: 2 images, accuracy 0.5, confidence 0.9 -> 0.5 * 0.4; bin of 0.6: accuracy 1.0 -> 0.5 * 0.4
    assert ensemble.expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.4)
    confidence, accuracy, count = ensemble.reliability_curve(probabilities, labels, bins=10)
    np.testing.assert_allclose(confidence, [0.6, 0.9])
    np.testing.assert_allclose(accuracy, [1.0, 0.5])
    np.testing.assert_array_equal(count, [2, 2])


def test_temperature_scaling_softens_an_overconfident_model_and_keeps_its_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2_000)
    right = rng.random(2_000) < 0.7  # 70 % right, but always 99 % sure
    predicted = np.where(right, labels, (labels + 1) % 3)
    overconfident = one_hot(predicted) * 0.98 + 0.02 / 3
    temperature = ensemble.fit_temperature(overconfident, labels)
    calibrated = ensemble.apply_temperature(overconfident, temperature)
    assert temperature > 1.0
    np.testing.assert_array_equal(calibrated.argmax(axis=1), overconfident.argmax(axis=1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert calibrated.max(axis=1).mean() == pytest.approx(0.7, abs=0.02)
    assert ensemble.expected_calibration_error(calibrated, labels) < ensemble.expected_calibration_error(
        overconfident, labels
    )
    assert ensemble.cross_entropy(calibrated, labels) < ensemble.cross_entropy(overconfident, labels)
