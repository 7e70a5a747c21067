"""scripts/docker_smoke.py (`make docker-smoke`): the parts that need no container engine.

Building and running the image is the script's own job, opt-in, with the figures in docs/docker.md; here
stand-in engines on PATH show that it picks a working engine, and skips with exit status 0 when there is
none, and the Dockerfile and apt sources are read as they should be.
"""

from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("docker_smoke", ROOT / "scripts" / "docker_smoke.py")
docker_smoke = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(docker_smoke)


@pytest.fixture
def engines(tmp_path, monkeypatch):
    """A PATH holding only the stand-in engines written with the returned function."""
    monkeypatch.setenv("PATH", str(tmp_path))

    def write(name: str, status: int, message: str = "") -> None:
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {status}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    return write


def test_no_engine_skips_with_a_clear_message_and_exit_0(engines, capsys):
    engines("docker", 1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
    assert docker_smoke.main([]) == 0
    out = capsys.readouterr().out
    assert "skipped: no usable container engine" in out
    assert "docker: installed, but `docker info` failed: Cannot connect to the Docker daemon" in out
    assert "podman: not installed" in out


def test_the_first_engine_that_answers_is_used(engines):
    engines("docker", 1, "no daemon")
    engines("podman", 0)
    engine, reasons = docker_smoke.find_engine()
    assert engine == "podman"
    assert reasons == ["docker: installed, but `docker info` failed: no daemon"]


def test_the_script_runs_with_the_plain_system_python(engines):
    """Standard library only: `make docker-smoke` uses the host's python3, not .venv."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "scripts" / "docker_smoke.py")],
        capture_output=True,
        text=True,
        env={"PATH": ""},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout


def test_base_image_is_read_from_the_dockerfile(tmp_path):
    assert docker_smoke.base_image() == docker_smoke.base_image(ROOT / "Dockerfile")
    assert docker_smoke.stand_in_plan(docker_smoke.base_image()) == ("bookworm", "3.11")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11\n")
    with pytest.raises(SystemExit, match="ARG BASE_IMAGE"):
        docker_smoke.base_image(dockerfile)


@pytest.mark.parametrize(
    ("base", "plan"),
    [
        ("python:3.12-slim-trixie", ("trixie", "3.12")),
        ("docker.io/library/python:3.11.9-slim-bookworm", ("bookworm", "3.11")),
    ],
)
def test_stand_in_plan_matches_suite_and_python(base, plan):
    assert docker_smoke.stand_in_plan(base) == plan


def test_no_stand_in_for_other_bases():
    with pytest.raises(SystemExit, match="No stand-in is known"):
        docker_smoke.stand_in_plan("tensorflow/tensorflow:2.21.0-gpu-jupyter")


def test_debian_mirror_comes_from_apt_sources(tmp_path):
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert docker_smoke.debian_mirror((folder,)) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert docker_smoke.debian_mirror((one_line,)) == "http://other.example/debian"
    assert docker_smoke.debian_mirror((tmp_path / "missing",)) == docker_smoke.DEFAULT_MIRROR
