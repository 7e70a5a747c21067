"""results/ records and README's generated table."""

import json
from pathlib import Path

import pytest

from fmnist_utils import results
from fmnist_utils.environment import start_run
from fmnist_utils.profiles import Profile

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_matches_results():
    readme = (ROOT / "README.md").read_text()
    expected = results.readme_with_table(readme, results.results_table(results.load_results(ROOT / "results"), results.notebook_names(ROOT)))
    assert readme == expected, "README's results table is stale: run `make results`"


def test_every_notebook_is_listed_and_unmeasured_says_so():
    table = results.results_table([], ["01_mlp", "09_future"])
    assert "| `09_future` | not measured | not measured | not measured | not measured | not measured |" in table


def test_records_have_every_field_and_only_real_profiles():
    for path in (ROOT / "results").glob("*.json"):
        record = json.loads(path.read_text())
        assert path.stem == f"{record['notebook']}-{record['profile']}"
        assert record["profile"] in results.RECORDED_PROFILES
        for field in ("model", "parameters", "epochs", "seed", "test_accuracy", "test_loss", "best_val_accuracy",
                      "best_epoch", "train_seconds", "notebook_seconds", "hardware", "backend", "versions", "date"):
            assert field in record, f"{path.name} lacks {field}"


def test_save_results_writes_a_record_and_skips_smoke(tmp_path, monkeypatch):
    (tmp_path / "fmnist_utils").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    metrics = dict(model="m", parameters=10, test_accuracy=0.9, test_loss=0.3, best_val_accuracy=0.91, best_epoch=2, train_seconds=1.0)
    smoke = start_run("99_test", seed=1, epochs=1, profile=Profile("smoke", "test"))
    assert results.save_results(smoke, **metrics) is None
    quick = start_run("99_test", seed=1, epochs=3, profile=Profile("quick", "test"))
    path = results.save_results(quick, **metrics)
    record = json.loads(path.read_text())
    assert path == tmp_path / "results" / "99_test-quick.json"
    assert record["epochs"] == 3 and record["seed"] == 1 and record["test_accuracy"] == 0.9
    assert results.comparison("quick", [record]).loc["99_test", "test accuracy"] == "90.00%"


def test_markers_are_required():
    with pytest.raises(ValueError, match="no results table markers"):
        results.readme_with_table("# no table", "|a|")
