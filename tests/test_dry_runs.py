"""The GPU recipes run here before a reader's GPU runs them: every notebook's ``full`` recipe, and its ``best`` one
where it differs, executed as a dry run (``FMNIST_DRY_RUN=1``: the recipe on a few hundred images, about one epoch
in 40; :mod:`fmnist_utils.profiles`). Outputs are not compared; an error fails. One run is in ``mixed_float16``
(the T4's policy, with loss scaling) and two under JAX (02, and 09, whose timings and pipelines differ there).
The simulated Colab runtime runs notebook 06's ``full`` dry run (``tests/test_colab.py``); 04's backups resume in
``test_an_interrupted_full_run_resumes_from_its_backup``.
"""

import asyncio
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BEST_VALUE = re.compile(r'\bbest=|"best": \d')  # a profile.pick(..., best=...) or an EPOCHS entry of its own


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _with_own_best() -> list[str]:
    return [n.stem for n in NOTEBOOKS if BEST_VALUE.search(_code(n))]


# one notebook's full dry run in the T4's policy, two under JAX (float32 on a CPU)
# (float16 is slow on a CPU: 05, whose capsule layers stay float32 beside float16 convolutions, not the longer 03)
VARIANTS = {
    "05_capsule_network": {"FMNIST_PRECISION": "mixed_float16"},
    "02_lenet": {"KERAS_BACKEND": "jax"},
    "09_speedrun": {"KERAS_BACKEND": "jax"},
}
# dry runs that would execute the same code as another one, and which one runs it
COVERED = {
    ("01_mlp", "full"): "no value of its code depends on the profile but the epochs: its smoke run executes it",
    ("04_wide_resnet", "full"): "test_an_interrupted_full_run_resumes_from_its_backup runs it to its end",
    ("06_compare_and_ensemble", "full"): "tests/test_colab.py runs it as a Colab GPU runtime would",
    ("06_compare_and_ensemble", "best"): "its best value only orders the prediction sources; in CI full and best "
    "both fall back to the committed quick ones",
    ("10_deploy", "full"): "it trains nothing and its code differs between profiles only in profile.size values: "
    "its smoke run executes it",
}


def client(name: str, profile: str, monkeypatch, kind=NotebookClient, environment=None, **options) -> NotebookClient:
    """A client that runs ``notebooks/<name>.ipynb`` in a fresh kernel, in its folder, as a dry run of ``profile``."""
    for key, value in {"FMNIST_PROFILE": profile, "FMNIST_DRY_RUN": "1", **(environment or {})}.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    path = {"metadata": {"path": str(ROOT / "notebooks")}}
    return kind(notebook, timeout=600, kernel_name="python3", resources=path, **options)


def execute(name: str, profile: str, monkeypatch, **environment: str) -> str:
    """Run the notebook as :func:`client` says; return what its cells printed."""
    notebook = client(name, profile, monkeypatch, environment=environment).execute()
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


DRY_RUNS = [(n.stem, "full") for n in NOTEBOOKS] + [(name, "best") for name in _with_own_best()]


@pytest.mark.parametrize(("name", "profile"), [run for run in DRY_RUNS if run not in COVERED])
def test_recipe_runs_as_a_dry_run(name, profile, monkeypatch):
    before = sorted(p.name for p in (ROOT / "results").rglob("*"))
    printed = execute(name, profile, monkeypatch, **VARIANTS.get(name, {}) if profile == "full" else {})
    assert f"Run profile : {profile} " in printed and "DRY RUN" in printed
    if "FMNIST_PRECISION" in VARIANTS.get(name, {}) and profile == "full":
        assert "Precision   : mixed_float16" in printed
    assert sorted(p.name for p in (ROOT / "results").rglob("*")) == before  # nothing recorded


def test_the_best_recipes_are_found_and_every_skipped_run_is_covered():
    assert _with_own_best() == ["04_wide_resnet", "06_compare_and_ensemble"]
    assert set(COVERED) <= set(DRY_RUNS)


class InterruptAt(NotebookClient):
    """Interrupts the kernel, as Jupyter's stop button does, when a cell prints a line matching ``pattern``."""

    def __init__(self, notebook, pattern: str, **kwargs):
        super().__init__(notebook, **kwargs)
        self.pattern, self.interrupted = re.compile(pattern, re.M), False

    def output(self, outs, msg, display_id, cell_index):
        text = msg["content"].get("text", "")
        if not self.interrupted and self.pattern.search(text):
            self.interrupted = True
            asyncio.ensure_future(self.km.interrupt_kernel())
        return super().output(outs, msg, display_id, cell_index)


def test_an_interrupted_full_run_resumes_from_its_backup(monkeypatch):
    """04's full recipe backs up after every epoch: stop it in its second one, run it again, and it goes on."""
    backup = ROOT / "runs" / "04_wide_resnet-full-dry-tensorflow"
    shutil.rmtree(backup, ignore_errors=True)
    # the main training's second epoch (the plain/residual demo trains 1 epoch in a dry run)
    stopped = client(
        "04_wide_resnet", "full", monkeypatch, InterruptAt, {"KERAS_BACKEND": "tensorflow"}, pattern=r"^Epoch 2/2$"
    )
    with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
        stopped.execute()
    assert stopped.interrupted and (backup / "fit").is_dir(), "the interrupted run left no backup"
    printed = execute("04_wide_resnet", "full", monkeypatch)
    assert re.search(r"^Epoch 2/2$", printed, re.M) and not re.search(r"^Epoch 1/2$", printed, re.M), (
        "the main training started again from its first epoch"
    )
    assert not (backup / "fit").exists(), "a finished training removes its backup"
