"""The notebooks run as they do on Colab: the Setup cell clones the repository, installs its package, works in it.

No Colab and no GitHub here: a fake ``google.colab`` module on the kernel's path, ``FMNIST_REPO_URL`` pointing at a
local clone of this repository (its committed state), and each notebook started from an empty folder that holds
nothing but the notebook file. pip installs the clone's package into a folder of the test (``PIP_TARGET``, without
dependencies: they are this environment's), which the kernel imports first.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COLAB_BLOCK = re.compile(r'^if "google\.colab" in sys\.modules:.*?^    os\.chdir\(.*?\)\n', re.S | re.M)


def _setup_cell(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return next("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_every_notebook_has_the_same_colab_block() -> None:
    blocks = {notebook.name: COLAB_BLOCK.findall(_setup_cell(notebook)) for notebook in NOTEBOOKS}
    assert all(len(found) == 1 for found in blocks.values()), blocks
    assert len({found[0] for found in blocks.values()}) == 1, "the Colab blocks of the Setup cells differ"
    assert "FMNIST_REPO_URL" in blocks[NOTEBOOKS[0].name][0]


def _git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Environment variables that make a Jupyter kernel look like a Colab runtime with this repository online."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and this repository's history (run from a clone)")
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        pytest.skip("HEAD is detached: the Setup cell clones a branch")
    base = tmp_path_factory.mktemp("colab")
    fake = base / "fake-modules" / "google" / "colab"  # google stays a namespace package (google.protobuf)
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""A stand-in for the module that tells a notebook it runs on Colab."""\n')
    # Colab's kernel has google.colab imported before the first cell runs; sitecustomize does that here.
    (fake.parent.parent / "sitecustomize.py").write_text("import google.colab  # noqa: F401\n")
    site = base / "site-packages"
    return base, {
        "FMNIST_REPO_URL": f"file://{ROOT}",
        "FMNIST_REPO_BRANCH": branch,
        "FMNIST_COLAB_DIR": str(base / "content"),
        "PYTHONPATH": f"{site}:{fake.parent.parent}",
        "PIP_TARGET": str(site),
        "PIP_NO_DEPS": "1",
        "FMNIST_PROFILE": "smoke",
    }


# 06 as a GPU runtime runs it: its full recipe (a dry run: tests/test_dry_runs.py), reading the clone's committed
# predictions of the other notebooks. One notebook is enough: every Setup cell has the same Colab block (tested above).
COLAB_RUNS = {"06_compare_and_ensemble": {"FMNIST_PROFILE": "full", "FMNIST_DRY_RUN": "1"}}


@pytest.mark.parametrize("name", list(COLAB_RUNS))
def test_notebook_runs_from_an_empty_folder_as_on_colab(colab, name, tmp_path, monkeypatch) -> None:
    base, environment = colab
    for key, value in {**environment, **COLAB_RUNS[name]}.items():
        monkeypatch.setenv(key, value)
    notebook = ROOT / "notebooks" / f"{name}.ipynb"
    (tmp_path / notebook.name).write_bytes(notebook.read_bytes())
    nb = nbformat.read(tmp_path / notebook.name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    clone = base / "content" / "fashion-mnist-notebooks"
    assert (clone / "notebooks" / notebook.name).is_file()  # the clone, at this repository's committed state
    assert (base / "site-packages" / "fmnist_utils" / "environment.py").is_file()  # installed from the clone
    assert sorted(p.name for p in tmp_path.iterdir()) == [notebook.name]  # the notebook worked in the clone
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"Run profile : {COLAB_RUNS[name]['FMNIST_PROFILE']} " in printed and "DRY RUN" in printed
    assert re.search(r"01_mlp\s+quick predictions, tensorflow", printed)  # the clone's committed ones


# What a Colab runtime had preinstalled in 2025 (a stand-in: only their names and versions are faked).
COLAB_PREINSTALLED = {"tensorflow": "2.19.0", "keras": "3.10.0", "numpy": "2.0.2"}


def test_installing_the_package_leaves_colabs_tensorflow_keras_and_numpy_alone(tmp_path) -> None:
    """pip resolves the package against a venv in which Colab's versions count as installed; none may change."""
    import venv

    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    site = next((tmp_path / "venv" / "lib").glob("python3.*/site-packages"))
    for name, version in COLAB_PREINSTALLED.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    report = tmp_path / "report.json"
    command = [str(python), "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and ("NewConnectionError" in done.stderr or "No matching distribution" in done.stderr):
        pytest.skip(f"no package index reachable: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    to_install = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "fmnist-utils" in to_install or "fmnist_utils" in to_install
    assert not set(COLAB_PREINSTALLED) & set(to_install), {
        n: to_install[n] for n in set(COLAB_PREINSTALLED) & set(to_install)
    }
