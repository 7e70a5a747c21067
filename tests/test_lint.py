"""The code passes ruff, configured in pyproject.toml: lint and format of fmnist_utils/, tests/ and scripts/,
lint only of notebooks/ (committed with the outputs of a real run, they are never reformatted)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("fmnist_utils", "tests", "scripts")


@pytest.mark.parametrize(
    "arguments",
    [("check", *CODE), ("format", "--check", *CODE), ("check", "notebooks")],
    ids=["lint code", "format code", "lint notebooks"],
)
def test_ruff_finds_nothing(arguments: tuple[str, ...]) -> None:
    command = [sys.executable, "-m", "ruff", *arguments, "--no-cache"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"`ruff {' '.join(arguments)}` failed. Run `ruff check --fix {' '.join(CODE)} && ruff format` "
        f"from the repository root, then fix by hand what remains:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    )
