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
