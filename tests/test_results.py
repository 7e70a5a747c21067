"""results/ records and README's generated table."""

import json
from pathlib import Path

import numpy as np
import pytest

from fmnist_utils import data, evaluation, models, results
from fmnist_utils.environment import start_run
from fmnist_utils.profiles import Profile

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_matches_results():
    readme = (ROOT / "README.md").read_text()
    records, speedruns = results.load_results(ROOT / "results"), results.load_speedruns(ROOT / "results" / "speedrun")
    expected = results.readme_with_tables(readme, records, results.notebook_names(ROOT), speedruns)
    assert readme == expected, "README's results tables are stale: run `make results`"


def test_real_photo_table_lists_each_model_per_profile():
    record = _record("08_real_photos")
    record["extra"] = {"test_photo_accuracy": {"zero-shot": 0.5, "adapted": 0.8125}}
    table = results.real_photo_table([record, _record("01_mlp")])
    assert "| zero-shot | 50.00% | not measured | not measured |" in table
    assert "| adapted | 81.25% | not measured | not measured |" in table
    assert "| not measured | not measured | not measured | not measured |" in results.real_photo_table([])


def test_every_notebook_is_listed_and_unmeasured_says_so():
    table = results.results_table([], ["01_mlp", "09_future"])
    assert "| `09_future` | not measured | not measured | not measured | not measured | not measured |" in table


def test_records_have_every_field_and_only_real_profiles():
    for path in (ROOT / "results").glob("*.json"):
        record = json.loads(path.read_text())
        assert path.stem == f"{record['notebook']}-{record['profile']}-{record['backend']}"
        assert record["profile"] in results.RECORDED_PROFILES
        for field in (
            "model",
            "parameters",
            "epochs",
            "seed",
            "test_accuracy",
            "test_loss",
            "best_val_accuracy",
            "best_epoch",
            "train_seconds",
            "notebook_seconds",
            "hardware",
            "backend",
            "versions",
            "date",
        ):
            assert field in record, f"{path.name} lacks {field}"


def test_save_results_writes_a_record_and_skips_smoke(tmp_path, monkeypatch):
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    metrics = dict(
        model="m",
        parameters=10,
        test_accuracy=0.9,
        test_loss=0.3,
        best_val_accuracy=0.91,
        best_epoch=2,
        train_seconds=1.0,
    )
    smoke = start_run("99_test", seed=1, epochs=1, profile=Profile("smoke", "test"))
    assert results.save_results(smoke, **metrics) is None
    quick = start_run("99_test", seed=1, epochs=3, profile=Profile("quick", "test"))
    path = results.save_results(quick, **metrics)
    record = json.loads(path.read_text())
    assert path == tmp_path / "results" / f"99_test-quick-{quick.backend}.json"
    assert record["epochs"] == 3 and record["seed"] == 1 and record["test_accuracy"] == 0.9
    assert results.comparison("quick", [record]).loc[("99_test", quick.backend), "test accuracy"] == "90.00%"


def _record(notebook="01_mlp", profile="quick", backend="tensorflow", accuracy=0.9):
    return {
        "notebook": notebook,
        "model": "MLP",
        "parameters": 1_000,
        "profile": profile,
        "epochs": 2,
        "seed": 0,
        "test_accuracy": accuracy,
        "best_val_accuracy": accuracy,
        "train_seconds": 60.0,
        "notebook_seconds": 120.0,
        "hardware": "CPU: x, 2 cores",
        "backend": backend,
        "precision": "float32",
    }


def test_two_backends_keep_their_own_records(tmp_path, monkeypatch):
    """A JAX run of a notebook and profile sits beside the TensorFlow one; nothing is overwritten."""
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    metrics = dict(model="m", parameters=10, test_loss=0.3, best_val_accuracy=0.91, best_epoch=2, train_seconds=1.0)
    for backend, accuracy in (("tensorflow", 0.9), ("jax", 0.8)):
        run = start_run("99_test", seed=1, epochs=3, profile=Profile("quick", "test"))
        run.backend = backend
        results.save_results(run, test_accuracy=accuracy, **metrics)
    records = results.load_results(tmp_path / "results")
    assert [(r["backend"], r["test_accuracy"]) for r in records] == [("jax", 0.8), ("tensorflow", 0.9)]


def test_table_labels_backends_only_when_several_ran_a_profile():
    records = [_record(backend="jax", accuracy=0.8), _record(accuracy=0.9), _record(profile="full", accuracy=0.95)]
    row = results.results_table(records, ["01_mlp"]).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == "quick: 2; full: 2"  # epochs
    assert cells[4:7] == ["80.00% (jax); 90.00% (tensorflow)", "95.00%", "not measured"]  # quick, full, best
    assert cells[7] == (
        "quick: CPU: x, 2 cores, float32, jax, 2.0 min; quick: CPU: x, 2 cores, float32, tensorflow, 2.0 min; "
        "full: CPU: x, 2 cores, float32, tensorflow, 2.0 min"
    )


def test_table_gives_epochs_per_profile_and_none_for_a_notebook_that_trains_nothing():
    records = [{**_record(backend="jax"), "epochs": 3}, _record(), {**_record("06_compare"), "epochs": 0}]
    rows = results.results_table(records, ["01_mlp", "06_compare"]).splitlines()
    assert rows[0].split(" | ")[3] == "Epochs"
    assert rows[2].split(" | ")[3] == "quick: 3 (jax), 2 (tensorflow)"
    assert rows[3].split(" | ")[3] == "quick: none"


def test_runs_summary_says_where_each_group_of_runs_ran():
    records = [
        {**_record(), "cpu_bf16_flags": ["avx512_bf16"], "precision": "mixed_bfloat16"},
        {
            **_record("02_lenet"),
            "cpu_bf16_flags": ["avx512_bf16"],
            "precision": "mixed_bfloat16",
            "notebook_seconds": 600,
        },
        {**_record("04_wrn", profile="full"), "hardware": "GPU: T4", "precision": "mixed_float16"},
    ]
    assert results.runs_summary(records) == (
        "Recorded runs, from `results/`: `quick`: notebooks 01 and 02 ran on CPU: x, 2 cores (bfloat16 instructions: "
        "avx512_bf16), in `mixed_bfloat16`, under tensorflow; wall time 2.0 to 10.0 min per notebook, 12.0 min in "
        "all. `full`: notebook 04 ran on GPU: T4, in `mixed_float16`, under tensorflow; wall time 2.0 min."
    )
    assert results.runs_summary([]) == "No run is recorded yet."


def test_comparison_has_a_row_per_notebook_and_backend():
    records = [
        _record(backend="jax", accuracy=0.8),
        _record(accuracy=0.9),
        _record("02_lenet"),
        _record(profile="full", accuracy=0.95),
    ]
    table = results.comparison("quick", records)
    assert list(table.index) == [("01_mlp", "jax"), ("01_mlp", "tensorflow"), ("02_lenet", "tensorflow")]
    assert table.loc[("01_mlp", "jax"), "test accuracy"] == "80.00%"
    assert results.comparison("full", []).empty
    assert table.loc[("02_lenet", "tensorflow"), "seconds per epoch"] == 30.0  # 60 s over 2 epochs


def test_comparison_keeps_only_the_notebooks_asked_for():
    records = [_record(), _record("02_lenet"), _record("03_modern_cnn"), {**_record("06_compare"), "epochs": 0}]
    table = results.comparison("quick", records, notebooks=["01_mlp", "02_lenet"])
    assert list(table.index) == [("01_mlp", "tensorflow"), ("02_lenet", "tensorflow")]
    assert np.isnan(results.comparison("quick", records).loc[("06_compare", "tensorflow"), "seconds per epoch"])
    assert results.comparison("quick", records, notebooks=["08_real_photos"]).empty


def test_markers_are_required():
    with pytest.raises(ValueError, match="no table markers"):
        results.readme_with_table("# no table", "|a|")


def test_feature_subset_is_fixed_stratified_and_sorted():
    y = np.repeat(np.arange(10), 1_000)
    indices = results.feature_subset(y)
    assert len(indices) == results.FEATURE_SUBSET_SIZE == len(np.unique(indices))
    assert np.all(np.diff(indices) > 0)
    assert np.all(np.bincount(y[indices], minlength=10) == 200)
    np.testing.assert_array_equal(indices, results.feature_subset(y))  # the same in every notebook
    with pytest.raises(ValueError, match="at least 2,000"):
        results.feature_subset(y[:1_999])


def _fake_splits(seed=0):
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        return rng.random((n, 28, 28, 1), dtype=np.float32)

    def labels(n: int) -> np.ndarray:
        return np.tile(np.arange(10, dtype=np.uint8), n // 10)

    return data.Splits(images(100), labels(100), images(60), labels(60), images(2_100), labels(2_100))


def test_save_predictions_round_trip_and_skips_smoke(tmp_path, monkeypatch):
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    splits = _fake_splits()
    model = models.mlp(hidden_units=(16, 8))
    smoke = start_run("99_test", seed=1, epochs=1, profile=Profile("smoke", "test"))
    assert results.save_predictions(smoke, model, splits) is None
    quick = start_run("99_test", seed=1, epochs=1, profile=Profile("quick", "test"))
    path = results.save_predictions(quick, model, splits)
    assert path == tmp_path / "results" / "predictions" / f"99_test-quick-{quick.backend}.npz"
    assert [p.name for p in (tmp_path / "results").glob("*.json")] == []  # load_results never reads them

    saved = results.load_predictions("99_test", "quick", folder=tmp_path / "results")
    assert saved["metadata"]["notebook"] == "99_test" and saved["metadata"]["backend"] == quick.backend
    for split, n in (("val", 60), ("test", 2_100)):
        for name in (f"{split}_probabilities", f"{split}_probabilities_tta"):
            assert saved[name].shape == (n, 10) and saved[name].dtype == np.float32
            np.testing.assert_allclose(saved[name].astype(np.float64).sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        saved["test_probabilities"].astype(np.float64),
        evaluation.predict_probabilities(model, splits.x_test),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        saved["val_probabilities_tta"].astype(np.float64),
        evaluation.predict_probabilities(model, splits.x_val, flip_tta=True),
        atol=1e-6,
    )
    assert not np.allclose(saved["test_probabilities"], saved["test_probabilities_tta"])
    np.testing.assert_array_equal(saved["y_test"], splits.y_test)
    np.testing.assert_array_equal(saved["feature_indices"], results.feature_subset(splits.y_test))
    assert saved["test_features"].shape == (2_000, 8) and saved["test_features"].dtype == np.float16  # dense2's 8 units
    hidden = results.penultimate_features(model, splits.x_test[saved["feature_indices"]], layer="dense2")
    np.testing.assert_allclose(saved["test_features"].astype(np.float32), hidden, rtol=1e-2, atol=1e-3)


def test_save_model_round_trip_uncompiled_and_skips_smoke(tmp_path, monkeypatch):
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    model = models.mlp(hidden_units=(16, 8))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = _fake_splits().x_test[:50]
    model.fit(x, np.zeros(50, "int64"), epochs=1, verbose=0)  # the optimizer now has state
    smoke = start_run("99_test", seed=1, epochs=1, profile=Profile("smoke", "test"))
    assert results.save_model(smoke, model) is None and not (tmp_path / "models").exists()
    quick = start_run("99_test", seed=1, epochs=1, profile=Profile("quick", "test"))
    path = results.save_model(quick, model, chosen="final weights")
    assert path == tmp_path / "models" / "99_test.keras"
    model.save(tmp_path / "compiled.keras")
    assert path.stat().st_size < 0.75 * (tmp_path / "compiled.keras").stat().st_size  # no Adam moments

    loaded, facts = results.load_model("99_test", folder=tmp_path / "models")
    assert facts["profile"] == "quick" and facts["backend"] == quick.backend and facts["chosen"] == "final weights"
    assert facts["precision"] == quick.precision.policy and facts["precision_reason"] == quick.precision.reason
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(FileNotFoundError, match=r"make notebooks PROFILE=quick NOTEBOOKS=notebooks/04_x.ipynb"):
        results.load_model("04_x", folder=tmp_path)


def test_committed_wrn_is_the_one_whose_predictions_are_committed():
    """models/04_wide_resnet.keras (exported by notebook 10) and 04's saved predictions (read by notebook 06) come
    from the same run: a stale model would make notebook 10 export another network than notebook 04 reports."""
    model, facts = results.load_model("04_wide_resnet", folder=ROOT / "models")
    saved = results.load_predictions("04_wide_resnet", facts["profile"], facts["backend"], folder=ROOT / "results")
    assert saved["metadata"]["date"] == facts["date"]
    (_, _), (x_test, _) = data.load_data(verbose=False)
    x = data.to_float(x_test[:300])
    probabilities = evaluation.predict_probabilities(model, x)
    expected = saved["test_probabilities"][:300]
    assert np.mean(probabilities.argmax(1) == expected.argmax(1)) >= 0.99
    assert np.abs(probabilities - expected).mean() < 0.01  # bfloat16 arithmetic may differ between CPUs


def test_load_predictions_says_how_to_make_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"make notebooks PROFILE=full NOTEBOOKS=notebooks/07_x.ipynb"):
        results.load_predictions("07_x", "full", folder=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"KERAS_BACKEND=jax make notebooks PROFILE=full"):
        results.load_predictions("07_x", "full", "jax", folder=tmp_path)


def test_load_predictions_picks_the_backend(tmp_path):
    folder = tmp_path / results.PREDICTIONS_FOLDER
    folder.mkdir()
    for backend in ("tensorflow", "jax"):
        np.savez(
            folder / f"07_x-quick-{backend}.npz",
            metadata=np.array(json.dumps({"backend": backend})),
            y_test=np.arange(3),
        )
    assert results.load_predictions("07_x", "quick", "jax", folder=tmp_path)["metadata"]["backend"] == "jax"
    with pytest.raises(ValueError, match=r"several Keras backends: jax, tensorflow\. Pick one .*backend='jax'"):
        results.load_predictions("07_x", "quick", folder=tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"under the torch backend .* Saved backends of this notebook and profile: jax, tensorflow",
    ):
        results.load_predictions("07_x", "quick", "torch", folder=tmp_path)
    (folder / "07_x-quick-jax.npz").unlink()
    assert results.load_predictions("07_x", "quick", folder=tmp_path)["metadata"]["backend"] == "tensorflow"


def test_find_predictions_prefers_the_profile_then_the_own_backend(tmp_path):
    folder = tmp_path / results.PREDICTIONS_FOLDER
    folder.mkdir()
    for name in ("04_x-quick-tensorflow", "04_x-quick-jax", "04_x-full-tensorflow"):
        np.savez(folder / f"{name}.npz", metadata=np.array("{}"))
    assert results.find_predictions("04_x", ("quick",), "jax", folder=tmp_path) == ("quick", "jax")
    assert results.find_predictions("04_x", ("quick",), "tensorflow", folder=tmp_path) == ("quick", "tensorflow")
    # full comes first and only TensorFlow saved it: that one, though the run is under JAX
    assert results.find_predictions("04_x", ("full", "quick"), "jax", folder=tmp_path) == ("full", "tensorflow")
    assert results.find_predictions("04_x", ("best",), "jax", folder=tmp_path) is None
    assert results.backends_with_predictions("04_x", "quick", folder=tmp_path) == ["jax", "tensorflow"]


def test_a_dry_run_records_nothing_and_has_its_own_runs_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    dry = start_run("99_test", seed=1, epochs={"smoke": 1, "quick": 3, "full": 50}, profile=Profile("full", "t", True))
    assert dry.epochs == 2
    assert "DRY RUN" in capsys.readouterr().out
    metrics = dict(model="m", parameters=10, test_accuracy=0.9, test_loss=0.3, best_val_accuracy=0.9, best_epoch=1)
    assert results.save_results(dry, train_seconds=1.0, **metrics) is None
    assert not (tmp_path / "results").exists()
    assert results.runs_folder(dry) == tmp_path / "runs" / f"99_test-full-dry-{dry.backend}"
    real = start_run("99_test", seed=1, epochs=3, profile=Profile("full", "t"))
    assert results.runs_folder(real) == tmp_path / "runs" / f"99_test-full-{real.backend}"


def test_time_to_accuracy_table_reads_curves_and_end_points():
    speedrun = {**_record(), "seed": 1, "date": "2026-12-06T05:00:00", "seconds": [50.0, 100.0, 150.0]}
    speedrun["accuracy"] = {"test": [0.91, 0.935, 0.941]}
    notebook_09 = {**_record("09_speedrun"), "extra": {"seconds": [60.0, 120.0], "accuracy": {"test": [0.92, 0.93]}}}
    wrn = {**_record("04_wide_resnet", accuracy=0.943), "train_seconds": 1733.3}
    cnn = {**_record("03_modern_cnn", accuracy=0.9358), "model": "CNN, original images, final weights"}
    cnn["extra"] = {"ablation": {"original images, final weights": {"train_seconds": 819.6}}}
    table = results.time_to_accuracy_table([cnn, wrn, notebook_09, _record("01_mlp")], [speedrun])
    rows = table.splitlines()[2:]
    assert rows[0].endswith("| 50 | 100 | 100 | 150 | 94.10% |")  # the first epoch at or above each threshold
    assert "`09_speedrun` (quick)" in rows[1] and rows[1].endswith("| 60 | 60 | 120 | not reached | 93.00% |")
    assert rows[2].endswith("| <= 820 | <= 820 | <= 820 | not reached | 93.58% |")  # 03: its chosen training only
    assert rows[3].endswith("| <= 1733 | <= 1733 | <= 1733 | <= 1733 | 94.30% |")
    assert len(rows) == 4  # notebook 01 is not a row
