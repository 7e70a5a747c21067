"""The Makefile's targets, checked with dry runs (`make -n`) in a copy of the repository's skeleton.

Nothing here installs anything or starts Jupyter: a sandbox folder holds the Makefile, the files its
setup rule depends on, and a ready `.venv` marker, so `make -n lab` prints only the command it would run.
Stand-ins on PATH play `id` (to be root or not) and a too-old `python3`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
OVERRIDES = ROOT / "scripts" / "jupyterlab_overrides.json"

pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")


def _executable(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def sandbox(tmp_path):
    """A folder with the Makefile, its setup rule's inputs, two notebooks, a set-up .venv and a `bin/` for stand-ins."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "scripts").mkdir()
    for name in (
        "requirements.txt",
        "pyproject.toml",
        "scripts/get_dataset.sh",
        "scripts/apt_install.sh",
        "scripts/jupyterlab_overrides.json",
        "scripts/web_vendor.sh",
        "web/package.json",
        "web/package-lock.json",
    ):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    for name in ("01_first.ipynb", "02_second.ipynb"):
        (tmp_path / "notebooks" / name).write_text("{}")
    settings = tmp_path / ".venv" / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True)
    (tmp_path / ".venv" / ".ready").touch()
    (settings / "overrides.json").touch()
    (tmp_path / "bin").mkdir()
    return tmp_path


def _make(sandbox: Path, *args: str, uid: int | None = None) -> subprocess.CompletedProcess:
    if uid is not None:
        _executable(sandbox / "bin" / "id", f"echo {uid}\n")
    env = {**os.environ, "PATH": f"{sandbox / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("PROFILE", "NOTEBOOKS", "PYTHON", "MAKEFLAGS"):
        env.pop(name, None)
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(sandbox), *args], env=env, capture_output=True, text=True, timeout=60
    )


def _command(result: subprocess.CompletedProcess, needle: str) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if needle in line]
    assert len(lines) == 1, result.stdout
    return lines[0]


def test_sandbox_is_set_up(sandbox):
    result = _make(sandbox, "-n", "setup", uid=1000)
    assert result.returncode == 0 and "pip" not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("uid, root", [(0, True), (1000, False)])
def test_lab_allows_root_only_for_root(sandbox, uid, root):
    command = _command(_make(sandbox, "-n", "lab", uid=uid), "jupyter lab")
    assert command.split()[0] == ".venv/bin/jupyter" and command.split()[-1] == "notebooks/"
    assert ("--allow-root" in command.split()) is root, command


def test_notebooks_let_the_hardware_choose_the_profile_by_default(sandbox):
    command = _command(_make(sandbox, "-n", "notebooks", uid=1000), "run_notebooks.py")
    assert "FMNIST_PROFILE" not in command, command
    assert command.split()[-2:] == ["notebooks/01_first.ipynb", "notebooks/02_second.ipynb"], command


def test_notebooks_pass_a_given_profile(sandbox):
    result = _make(sandbox, "-n", "notebooks", "PROFILE=full", "NOTEBOOKS=notebooks/02_second.ipynb", uid=1000)
    command = _command(result, "run_notebooks.py")
    assert command == "FMNIST_PROFILE=full .venv/bin/python scripts/run_notebooks.py notebooks/02_second.ipynb"
    assert "fmnist_utils.results" in result.stdout, "the results table is refreshed after the notebooks"


def test_bench_runs_the_benchmark_script(sandbox):
    assert _command(_make(sandbox, "-n", "bench", uid=1000), "bench.py") == ".venv/bin/python scripts/bench.py"


def test_speedrun_trains_the_recipe_once_or_per_seed(sandbox):
    command = _command(_make(sandbox, "-n", "speedrun", uid=1000), "fmnist_utils.speedrun")
    assert command == ".venv/bin/python -m fmnist_utils.speedrun"
    command = _command(_make(sandbox, "-n", "speedrun", "SEEDS=0 1 2", uid=1000), "fmnist_utils.speedrun")
    assert command == ".venv/bin/python -m fmnist_utils.speedrun --seeds 0 1 2"


def test_search_starts_a_chief_and_the_workers_asked_for(sandbox):
    command = _command(_make(sandbox, "-n", "search", uid=1000), "fmnist_utils.distributed")
    assert command == ".venv/bin/python -m fmnist_utils.distributed launch --workers 2"
    command = _command(_make(sandbox, "-n", "search", "WORKERS=4", "TRIALS=16", uid=1000), "fmnist_utils.distributed")
    assert command == ".venv/bin/python -m fmnist_utils.distributed launch --workers 4 --trials 16"


def test_demo_serves_the_app_and_takes_a_port(sandbox):
    assert (
        _command(_make(sandbox, "-n", "demo", uid=1000), "fmnist_utils.demo") == ".venv/bin/python -m fmnist_utils.demo"
    )
    command = _command(_make(sandbox, "-n", "demo", "PORT=8000", uid=1000), "fmnist_utils.demo")
    assert command == ".venv/bin/python -m fmnist_utils.demo --port 8000"


def test_test_gets_the_browser_and_the_web_page_before_pytest(sandbox):
    lines = _make(sandbox, "-n", "test", uid=1000).stdout.splitlines()
    browser = next(i for i, line in enumerate(lines) if "get_browser.sh" in line)
    web = next(i for i, line in enumerate(lines) if "web_vendor.sh" in line)
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert browser < pytest_line and web < pytest_line


def test_web_serves_the_page_on_loopback_only(sandbox):
    command = _command(_make(sandbox, "-n", "web", "PORT=8080", uid=1000), "http.server")
    assert command == "python3 -m http.server 8080 --bind 127.0.0.1 --directory web"


def test_docker_smoke_is_opt_in_and_needs_no_venv(sandbox):
    (sandbox / ".venv" / ".ready").unlink()  # no setup: the script uses only the standard library
    result = _make(sandbox, "-n", "docker-smoke", "DOCKER_SMOKE_ARGS=--skip-notebooks", uid=1000)
    assert _command(result, "docker_smoke.py") == "python3 scripts/docker_smoke.py --skip-notebooks"
    assert "pip" not in result.stdout
    test = _make(sandbox, "-n", "test", uid=1000)
    assert "docker_smoke" not in test.stdout, "make test must not build images"


def test_setup_refuses_a_python_the_pins_do_not_support(sandbox):
    # A python3.10 stand-in that fails at anything but --version: were the check to let it through,
    # the next command (python -m venv) would fail too, so nothing is created either way.
    too_old = 'if [ "$1" = --version ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n'
    _executable(sandbox / "bin" / "python3.10", too_old)
    (sandbox / ".venv" / ".ready").unlink()
    result = _make(sandbox, "setup", "PYTHON=python3.10", uid=1000)
    assert result.returncode != 0
    assert "Python 3.11 to 3.13" in result.stderr and "Python 3.10.12" in result.stderr, result.stderr
    assert "[1/4]" not in result.stdout and not (sandbox / ".venv" / ".ready").exists()


def test_setup_copies_the_jupyterlab_overrides(sandbox):
    overrides = sandbox / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    overrides.unlink()
    result = _make(sandbox, "setup", uid=1000)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(overrides.read_text()) == json.loads(OVERRIDES.read_text())


def test_jupyterlab_overrides_match_the_installed_schemas():
    """Each overridden setting exists in the installed JupyterLab and has a value its schema accepts
    (fetchNews takes the strings "true", "false" and "none", not a boolean)."""
    import jsonschema

    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    overrides = json.loads(OVERRIDES.read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    for plugin_id, settings in overrides.items():
        package, plugin = plugin_id.split(":")
        schema_file = schemas / package / f"{plugin}.json"
        assert schema_file.is_file(), f"{schema_file} not found: is JupyterLab installed next to {sys.executable}?"
        schema = json.loads(schema_file.read_text())
        for key in settings:
            assert key in schema["properties"], f"{plugin_id} has no setting {key!r}"
        jsonschema.validate(settings, schema)
    notification = json.loads((schemas / "@jupyterlab" / "apputils-extension" / "notification.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"fetchNews": False}, notification)
