"""scripts/run_notebooks.py, which `make notebooks` runs: the same notebook as nbconvert writes, with live output.

Tiny notebooks made with nbformat in a temporary folder; each run starts one Python kernel (a second or two).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(run_notebooks)

FIRST = (
    "import os, sys\n"
    "print('Epoch 1/2')\n"
    "print('10/10 [==>...]', end='\\r'); print('10/10 [=====] - accuracy: 0.5')\n"
    "print('kernel in', os.path.basename(os.getcwd()))"
)
SECOND = "print('warned', file=sys.stderr)\n6 * 7"


def _write(path: Path, *sources: str) -> Path:
    cells = [new_markdown_cell("# A tiny notebook")] + [new_code_cell(source) for source in sources]
    cells[1].metadata["execution"] = {"iopub.status.busy": "2020-01-01T00:00:00.000000Z"}  # from an older run
    nb = new_notebook(cells=cells)
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"  # fixed ids, so two copies are identical
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _without_execution_metadata(nb: dict) -> dict:
    for cell in nb["cells"]:
        cell["metadata"].pop("execution", None)
    return nb


def test_same_notebook_as_nbconvert_without_timestamps(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FMNIST_PROFILE", "quick")
    path = _write(tmp_path / "book" / "tiny.ipynb", FIRST, SECOND)
    nbconvert = "-m nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1".split()
    subprocess.run([sys.executable, *nbconvert, str(path)], check=True, capture_output=True, timeout=120)
    by_nbconvert = json.loads(path.read_text())
    assert any("execution" in cell["metadata"] for cell in by_nbconvert["cells"]), "nbconvert records timings"

    _write(path, FIRST, SECOND)
    assert run_notebooks.main([str(path)]) == 0
    ours = json.loads(path.read_text())
    assert not any("execution" in cell["metadata"] for cell in ours["cells"])
    assert ours == _without_execution_metadata(by_nbconvert)

    code = [cell for cell in ours["cells"] if cell["cell_type"] == "code"]
    assert [cell["execution_count"] for cell in code] == [1, 2]
    assert [output["output_type"] for output in code[1]["outputs"]] == ["stream", "execute_result"]
    assert "".join(code[1]["outputs"][1]["data"]["text/plain"]) == "42"
    assert "kernel in book\n" in "".join(code[0]["outputs"][0]["text"]), "the kernel runs in the notebook's folder"

    out, err = capsys.readouterr()
    assert "  tiny | Epoch 1/2\n" in out
    assert "  tiny | 10/10 [=====] - accuracy: 0.5\n" in out, "a redrawn line is shown as a terminal shows it"
    assert "  tiny | kernel in book\n" in out
    assert "  tiny | warned\n" in err
    assert out.splitlines()[0] == f"[1/1] {path}: executing"
    assert out.splitlines()[-1].startswith(f"[1/1] {path}: done in ")


def test_failing_cell_stops_with_the_notebook_and_cell_and_writes_nothing(tmp_path, capsys):
    good = _write(tmp_path / "a_good.ipynb", "print('fine')")
    bad = _write(tmp_path / "b_bad.ipynb", "x = 1", "1 / 0", "print('never')")
    never = _write(tmp_path / "c_never.ipynb", "print('not reached')")
    before = bad.read_text(), never.read_text()
    assert run_notebooks.main([str(good), str(bad), str(never)]) == 1
    assert (bad.read_text(), never.read_text()) == before, "a failed run leaves the notebooks as they were"
    assert "fine" in good.read_text(), "notebooks before the failure were written"
    out, err = capsys.readouterr()
    assert f"FAILED: {bad}, cell 3 of 4" in err
    assert "ZeroDivisionError" in err
    assert "not reached" not in out and "All 3 notebooks" not in out


def test_missing_notebook_is_reported_before_anything_runs(tmp_path, capsys):
    assert run_notebooks.main([str(tmp_path / "nope.ipynb")]) == 2
    assert "No such notebook" in capsys.readouterr().err


@pytest.mark.parametrize(
    "line, shown",
    [
        ("plain", "plain"),
        ("1/3 [>..]\r2/3 [=>.]\r3/3 [===] done", "3/3 [===] done"),
        ("abc\b\bXY", "aXY"),
        ("long progress\rshort", "shortprogress"),  # as a terminal shows it: the rest of the line stays
        ("ends with cr\r", "ends with cr"),
    ],
)
def test_as_displayed(line, shown):
    assert run_notebooks.as_displayed(line) == shown


@pytest.mark.parametrize(("profile", "dry_run"), [("smoke", ""), ("full", "1")])
def test_smoke_and_dry_runs_execute_but_never_write(tmp_path, capsys, monkeypatch, profile, dry_run):
    monkeypatch.setenv("FMNIST_PROFILE", profile)
    monkeypatch.setenv("FMNIST_DRY_RUN", dry_run)
    path = _write(tmp_path / "tiny.ipynb", "print('ran')")
    before = path.read_bytes()
    assert run_notebooks.main([str(path)]) == 0
    assert path.read_bytes() == before
    out = capsys.readouterr().out
    assert "executed but not written" in out and "  tiny | ran\n" in out
