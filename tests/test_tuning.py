"""Tests for fmnist_utils.tuning and the helpers notebook 07 uses with it (tiny models and data, seconds)."""

import json
import math

import keras
import keras_tuner
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fmnist_utils import tuning
from fmnist_utils.callbacks import BatchNormBeforeValidation, recompute_batchnorm_statistics
from fmnist_utils.plots import plot_parallel_coordinates

SPACE = tuning.SearchSpace(
    learning_rate=(3e-4, 1e-2),
    width=(0.5, 1.0),
    dropout=(0.0, 0.5),
    weight_decay=(1e-4, 1e-1),
    augmentation=tuple(tuning.AUGMENTATIONS),
)
VALUES = {"learning_rate": 2e-3, "width": 1.0, "dropout": 0.3, "weight_decay": 1e-2, "augmentation": "none"}
BASE_FILTERS = (8, 16, 32)


@pytest.fixture(scope="module")
def tiny_images():
    """64 training and 32 validation images (N, 28, 28, 1) in [0, 1] with integer labels 0-9."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(96, 28, 28, 1)).astype("float32")
    y = np.arange(96) % 10
    return x[:64], y[:64], x[64:], y[64:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": (1e-2, 1e-3)}, "low end must not exceed"),
        ({"weight_decay": (0.0, 1e-2)}, "log scale"),
        ({"dropout": (0.0, 1.0)}, r"\[0, 1\)"),
        ({"width": ()}, "width multiplier"),
        ({"augmentation": ("mixup",)}, "choose one or more of"),
    ],
)
def test_search_space_rejects_bad_ranges_with_a_clear_message(change, message):
    fields = {name: getattr(SPACE, name) for name in tuning.HYPERPARAMETERS} | change
    with pytest.raises(ValueError, match=message):
        tuning.SearchSpace(**fields)


def test_around_narrows_inside_the_space_and_fixes_the_choices():
    fine = SPACE.around({**VALUES, "learning_rate": 8e-3, "dropout": 0.05})
    assert fine.learning_rate == pytest.approx((4e-3, 1e-2))  # 8e-3 * 2 is clipped to the space's 1e-2
    assert fine.weight_decay == pytest.approx((5e-3, 2e-2))
    assert fine.dropout == pytest.approx((0.0, 0.15))
    assert fine.width == (1.0,) and fine.augmentation == ("none",)
    assert "learning rate 4.0e-03 to 1.0e-02 (log scale)" in str(fine)


def test_clipped_names_every_range_around_cuts_and_says_how_much_is_left():
    # Notebook 07's quick run: the coarse winner's learning rate 7.8e-3 lies within a factor 1.28 of the
    # bound 1e-2, so the fine range loses most of its upper half (a check with a factor 1.25 missed it).
    values = {**VALUES, "learning_rate": 7.8e-3, "weight_decay": 1.8e-3, "dropout": 0.24}
    (cut,) = SPACE.clipped(values)
    assert cut.name == "learning_rate"
    assert cut.intended == pytest.approx((3.9e-3, 1.56e-2)) and cut.kept == pytest.approx((3.9e-3, 1e-2))
    assert cut.kept == pytest.approx(SPACE.around(values).learning_rate)  # the same factor as around
    assert cut.share_kept == pytest.approx(math.log(1e-2 / 7.8e-3) / math.log(2))
    assert str(cut).startswith("learning rate 7.8e-03 is near the upper edge of the coarse range")
    assert "cut to 3.9e-03 to 1.0e-02 instead of 3.9e-03 to 1.6e-02, 36% of its half-width" in str(cut)
    assert "widen that end" in str(cut)


def test_clipped_is_empty_inside_and_follows_the_factor_it_is_given():
    assert SPACE.clipped(VALUES) == []
    assert [c.name for c in SPACE.clipped(VALUES, factor=8.0)] == ["learning_rate"]
    assert [c.name for c in SPACE.clipped(VALUES, factor=16.0)] == ["learning_rate", "weight_decay"]
    assert SPACE.around(VALUES, factor=16.0).weight_decay == pytest.approx((6.25e-4, 1e-1))


def test_clipped_dropout_at_zero_costs_nothing_and_says_so():
    (cut,) = SPACE.clipped({**VALUES, "dropout": 0.05})
    assert cut.name == "dropout" and cut.kept == pytest.approx((0.0, 0.15))
    assert cut.share_kept == pytest.approx(0.5)
    assert "near the lower edge" in str(cut) and "dropout cannot go lower" in str(cut)


def test_point_space_samples_exactly_its_values():
    hp = keras_tuner.HyperParameters()
    assert tuning.SearchSpace.point(VALUES).sample(hp) == VALUES
    assert hp.values == VALUES


def test_rates_are_sampled_log_uniformly_inside_their_range():
    hp = keras_tuner.HyperParameters()
    SPACE.sample(hp)
    (rate,) = [parameter for parameter in hp.space if parameter.name == "learning_rate"]
    draws = np.array([rate.random_sample(seed) for seed in range(400)])
    assert draws.min() >= 3e-4 and draws.max() <= 1e-2
    # Log-uniform: about as many draws below the geometric midpoint of the range as above it.
    assert 0.4 < np.mean(draws < math.sqrt(3e-4 * 1e-2)) < 0.6


def test_scaled_filters_and_schedule():
    assert tuning.scaled_filters((16, 32, 64), 0.75) == (12, 24, 48)
    assert tuning.scaled_filters((4, 8), 0.5) == (4, 4)  # at least 4 filters
    schedule = tuning.warmup_cosine(1e-3, epochs=2, steps_per_epoch=10)
    rates = keras.ops.convert_to_numpy(schedule(np.arange(20)))
    assert schedule.warmup_steps == 5  # a quarter of a run shorter than 4 epochs
    assert rates.argmax() == 4 and rates[4] == pytest.approx(1e-3)
    assert rates[-1] > 1e-4 and float(schedule(20)) == pytest.approx(1e-4)  # a tenth of the peak at the end


@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize(
    "extremes",
    [
        {"learning_rate": 3e-4, "dropout": 0.0, "weight_decay": 1e-4, "augmentation": "none"},
        {"learning_rate": 1e-2, "dropout": 0.5, "weight_decay": 1e-1, "augmentation": "flip + shift + erasing"},
    ],
)
def test_hypermodel_builds_and_trains_valid_models_at_the_extremes(tiny_images, width, extremes):
    x, y, x_val, y_val = tiny_images
    hypermodel = tuning.CNNHyperModel(SPACE, BASE_FILTERS, epochs=1, seed=0, batch_size=32, batchnorm_images=32)
    hp = keras_tuner.HyperParameters()
    for name, value in {**extremes, "width": width}.items():
        hp.Fixed(name, value)
    model = hypermodel.build(hp)
    assert model.output.shape == (None, 10)
    assert model.get_layer("stage1_1_conv").filters == tuning.scaled_filters(BASE_FILTERS, width)[0]
    assert model.get_layer("head_dropout").rate == extremes["dropout"]
    history = hypermodel.fit(hp, model, x, y, validation_data=(x_val, y_val))
    assert np.isfinite(history.history["loss"]).all()
    assert 0 <= history.history["val_accuracy"][0] <= 1


def test_hyperband_runs_with_the_hypermodel(tiny_images, tmp_path):
    """Hyperband passes epochs and initial_epoch to fit (notebook 07's "What to try next")."""
    x, y, x_val, y_val = tiny_images
    hypermodel = tuning.CNNHyperModel(SPACE, BASE_FILTERS, epochs=1, seed=0, batch_size=32, batchnorm_images=32)
    tuner = keras_tuner.Hyperband(
        hypermodel, objective="val_accuracy", max_epochs=2, factor=2, directory=tmp_path, project_name="hb"
    )
    tuner.search(x, y, validation_data=(x_val, y_val))
    trials = list(tuner.oracle.trials.values())
    assert len(trials) >= 2 and all(trial.status == "COMPLETED" for trial in trials)
    continued = [t for t in trials if t.hyperparameters.values.get("tuner/initial_epoch", 0) > 0]
    assert continued, "no trial was trained further from an earlier round"


def test_training_the_same_values_twice_gives_the_same_history(tiny_images):
    x, y, x_val, y_val = tiny_images
    values = {**VALUES, "augmentation": "flip + shift + erasing"}
    histories = [
        tuning.train(values, BASE_FILTERS, 2, 0, x, y, (x_val, y_val), batchnorm_images=32, batch_size=32)[1].history
        for _ in range(2)
    ]
    assert histories[0] == histories[1]


def test_batchnorm_before_validation_sets_the_statistics_fit_validates_with(tiny_images):
    x, y, x_val, y_val = tiny_images
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(), keras.layers.Flatten()]
        + [keras.layers.Dense(10)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, validation_data=(x_val, y_val), epochs=1, verbose=0, callbacks=[BatchNormBeforeValidation(x)])
    batchnorm = model.layers[1]
    after_fit = keras.ops.convert_to_numpy(batchnorm.moving_mean)
    recompute_batchnorm_statistics(model, x)  # no dropout: the same pass gives the same statistics
    np.testing.assert_allclose(after_fit, keras.ops.convert_to_numpy(batchnorm.moving_mean), rtol=1e-5)
    assert np.abs(after_fit).max() > 0  # not the initial zeros: the callback ran


def _write_trial(folder, trial_id, values, score, best_step, status="COMPLETED"):
    trial_dir = folder / f"trial_{trial_id}"
    trial_dir.mkdir(parents=True)
    trial = {
        "trial_id": trial_id,
        "hyperparameters": {"space": [], "values": values},
        "metrics": {"metrics": {}},
        "score": score,
        "best_step": best_step,
        "status": status,
        "message": None,
    }
    (trial_dir / "trial.json").write_text(json.dumps(trial))


def test_trials_table_reads_a_tuner_directory(tmp_path):
    _write_trial(tmp_path, "0", VALUES, 0.85, 1)
    _write_trial(tmp_path, "1", {**VALUES, "width": 0.5}, None, None, status="RUNNING")
    (tmp_path / "oracle.json").write_text("{}")
    table = tuning.trials_table(tmp_path)
    assert list(table.index) == ["0", "1"]
    assert list(table.columns) == [*tuning.HYPERPARAMETERS, "status", "val_accuracy", "best_epoch"]
    assert table.loc["0", "val_accuracy"] == 0.85 and table.loc["0", "best_epoch"] == 2
    assert math.isnan(table.loc["1", "val_accuracy"]) and table.loc["1", "status"] == "RUNNING"


def test_trials_table_says_which_folder_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="project folder"):
        tuning.trials_table(tmp_path)


def test_parallel_coordinates_draws_one_line_per_scored_trial():
    table = pd.DataFrame(
        {
            "learning_rate": [1e-3, 1e-2, 3e-3, 5e-3],
            "width": [0.5, 1.0, 1.0, 0.5],
            "augmentation": ["none", "flip", "none", "flip"],
            "val_accuracy": [0.80, 0.90, 0.85, math.nan],
        }
    )
    fig = plot_parallel_coordinates(
        table, ["learning_rate", "width", "augmentation"], "val_accuracy", ["learning_rate"]
    )
    ax = fig.axes[0]
    assert len(ax.lines) == 4 + 3 + 1  # 4 axis lines; 3 scored trials and the best one drawn again
    best = next(line for line in ax.lines if line.get_linewidth() == 3).get_ydata()
    assert list(best) == [1.0, 1.0, 0.0, 1.0]  # lr 1e-2 (top), width 1.0 (top), "flip" (first), best score (top)
    assert [tick.get_text() for tick in ax.get_xticklabels()] == [
        "learning rate",
        "width",
        "augmentation",
        "val accuracy",
    ]
    plt.close(fig)
    ordered = plot_parallel_coordinates(
        table, ["augmentation"], "val_accuracy", orders={"augmentation": list(tuning.AUGMENTATIONS)}
    )
    best = next(line for line in ordered.axes[0].lines if line.get_linewidth() == 3).get_ydata()
    assert list(best) == [1.0, 1.0]  # "none" first (bottom), "flip" second (top of two): the given order
    plt.close(ordered)
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_parallel_coordinates(table.assign(val_accuracy=math.nan), ["width"], "val_accuracy")
