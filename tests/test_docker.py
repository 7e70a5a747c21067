"""Static checks of the Docker image, docker-compose.yml and the CI workflows.

No Docker engine is needed: the Dockerfile is linted with hadolint, the workflows and the compose
file are validated against the JSON schemas bundled with check-jsonschema (offline), and the
entrypoint is run with a stand-in `jupyter` to show that it never starts Jupyter without a token.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
REQUIREMENTS = ROOT / "requirements.txt"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
GPU_CHECK = ROOT / "docker" / "gpu_check.py"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def _tool(name: str) -> str:
    """A console script installed next to this Python (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` was not found next to {sys.executable} or on PATH; "
            "`pip install -r requirements.txt` installs it."
        )
    return found


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += " " + stripped
        if current.endswith("\\"):
            current = current[:-1]
            continue
        keyword, _, arguments = current.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def _base_image() -> str:
    """The default of ``ARG BASE_IMAGE=`` that the single ``FROM ${BASE_IMAGE}`` builds on."""
    instructions = _dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE}"], f"expected a single stage FROM ${{BASE_IMAGE}}, found FROM {froms}"
    args = [
        arguments for keyword, arguments in instructions[: instructions.index(("FROM", froms[0]))] if keyword == "ARG"
    ]
    defaults = [arg.split("=", 1)[1] for arg in args if arg.startswith("BASE_IMAGE=")]
    assert len(defaults) == 1, f"expected one `ARG BASE_IMAGE=<image>` before FROM, found {args}"
    return defaults[0]


# --- Dockerfile --------------------------------------------------------------------------------


def test_hadolint_passes():
    result = _run([_tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, f"hadolint found problems in the Dockerfile:\n{result.stdout}{result.stderr}"


def test_hadolint_is_not_vacuous(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install -y curl\n")
    result = _run([_tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout + result.stderr


def test_base_image_is_python_slim_with_the_tested_python():
    base = _base_image()
    match = re.fullmatch(r"python:(\d+\.\d+)-slim-(\w+)", base)
    assert match, f"base image {base!r} is not Python's official python:X.Y-slim-<debian suite> image"
    tested = re.search(r"Tested with Python (\d+\.\d+)", (ROOT / "README.md").read_text()).group(1)
    assert match.group(1) == tested, f"the image has Python {match.group(1)}, but the project is tested on {tested}"


def test_cuda_wheels_were_resolved_for_the_tensorflow_pin():
    pins = re.findall(r"^tensorflow(?:\[[^\]]*\])?==(\S+)", REQUIREMENTS.read_text(), flags=re.MULTILINE)
    assert len(pins) == 1, "requirements.txt needs exactly one `tensorflow==X.Y.Z` pin"
    cuda = (ROOT / "docker" / "requirements-cuda.txt").read_text()
    resolved = re.search(r"resolved to for tensorflow==(\S+)", cuda)
    assert resolved and resolved.group(1) == pins[0], (
        f"docker/requirements-cuda.txt was resolved for tensorflow=={resolved and resolved.group(1)}, but "
        f"requirements.txt pins tensorflow=={pins[0]}; re-resolve it as its header says"
    )


def test_ca_bundle_is_a_build_secret_never_copied_into_the_image():
    text = DOCKERFILE.read_text()
    assert "--mount=type=secret,id=ca-bundle" in text
    copies = [arguments for keyword, arguments in _dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert not any("cert" in arguments or ".crt" in arguments or ".pem" in arguments for arguments in copies), copies


def test_dockerfile_runs_jupyter_as_non_root_with_the_entrypoint():
    instructions = _dockerfile_instructions()
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"last USER is {users[-1:] or 'root (none set)'}"
    keywords = [keyword for keyword, _ in instructions]
    for required in ("EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"):
        assert required in keywords, f"the Dockerfile has no {required}"
    assert ("EXPOSE", "8888") in instructions
    assert any(k == "ENTRYPOINT" and "fmnist-entrypoint" in a for k, a in instructions)
    assert ("CMD", '["lab"]') in instructions, 'CMD must be ["lab"]: the base image\'s CMD would start Jupyter as root'
    text = DOCKERFILE.read_text()
    assert "docker/entrypoint.sh" in text and "docker/gpu_check.py" in text
    assert "dataset-fashion-mnist" in text and "load_data()" in text
    assert "--no-cache-dir" in text


def test_dockerignore_keeps_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()} - {""}
    for needed in (".git", ".venv", "**/__pycache__", "**/.ipynb_checkpoints", ".pytest_cache"):
        assert needed in patterns, f".dockerignore should exclude {needed}"
    for kept in ("notebooks", "fmnist_utils", "docker", "requirements.txt", "pyproject.toml", "README.md"):
        assert kept not in patterns, f".dockerignore must not exclude {kept}: the image needs it"


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_file_reserves_a_gpu_and_publishes_8888():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert len(services) == 1
    (service,) = services.values()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in devices
    container_ports = [str(port).rsplit(":", 1)[-1] for port in service["ports"]]
    assert "8888" in container_ports, service["ports"]
    assert "JUPYTER_TOKEN" in service["environment"]
    mounts = [str(volume).split(":")[1] for volume in service["volumes"]]
    assert "/workspace/results" in mounts
    assert any(mount.startswith("/home/") and mount.endswith("/.keras") for mount in mounts)
    user = re.search(r"^ARG NB_USER=(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE).group(1)
    assert f"/home/{user}/.keras" in mounts, f"the Keras cache volume must be mounted at /home/{user}/.keras"


def test_compose_file_matches_the_compose_schema():
    result = _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- GitHub workflows ------------------------------------------------------------------------


def test_workflows_exist():
    names = {path.name for path in WORKFLOWS}
    assert {"ci.yml", "gpu.yml", "pages.yml"} <= names, names


def test_workflows_match_the_github_schema(tmp_path):
    # One run (check-jsonschema starts slowly) with a broken canary, so the check is seen to bite.
    canary = tmp_path / "canary.yml"
    canary.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: echo\n")  # no runs-on
    result = _run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            "--output-format",
            "JSON",
            *map(str, WORKFLOWS),
            str(canary),
        ]
    )
    report = json.loads(result.stdout)
    failing = {Path(error["filename"]).name: error for error in report["errors"]}
    assert not report["parse_errors"], report["parse_errors"]
    assert "canary.yml" in failing, "the schema check did not reject a workflow job without runs-on"
    del failing["canary.yml"]
    assert not failing, f"workflows that do not match GitHub's schema: {json.dumps(failing, indent=2)}"


def test_workflow_jobs_have_timeouts():
    for path in WORKFLOWS:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), f"{path.name}: job {name} has no timeout-minutes"


def _steps(workflow: str, job: str) -> list[dict]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())["jobs"][job]["steps"]


def test_workflows_use_pinned_actions():
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), step["uses"]


def test_cpu_job_runs_readme_test_command():
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    assert jobs["test"]["runs-on"] == "ubuntu-latest"
    assert any(step.get("run", "").strip() == "make test" for step in _steps("ci.yml", "test"))


def test_pages_workflow_publishes_the_page_with_its_npm_files():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    runs = " ".join(step.get("run", "") for step in _steps("pages.yml", "build"))
    assert "make web-vendor" in runs
    page = (ROOT / "web" / "index.html").read_text() + (ROOT / "web" / "app.js").read_text()
    for name in ("index.html", "app.js", "pipeline.js", "style.css", "model", "examples"):
        assert f"web/{name}" in runs, name
    for referenced in re.findall(r'(?:src|href)="((?!https?:|data:)[^"]+)"|from "\./([^"]+)"', page):
        name = next(part for part in referenced if part)
        assert name.startswith("vendor/") or f"web/{name.split('/')[0]}" in runs, f"{name} is not published"
    assert "vendor" in runs and "_site/vendor" in runs
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][-1]["uses"].startswith("actions/deploy-pages@")


def test_gpu_job_runs_docker_smoke_with_a_gpu():
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu.yml").read_text())["jobs"]["notebooks-gpu"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    runs = [step.get("run", "") for step in job["steps"]]
    host = next(i for i, run in enumerate(runs) if "nvidia-smi" in run)
    smoke = next(i for i, run in enumerate(runs) if "scripts/docker_smoke.py" in run)
    assert host < smoke
    assert "--gpu" in runs[smoke].split() and "--stand-in never" in runs[smoke]


def test_gpu_check_script_compiles():
    compile(GPU_CHECK.read_text(), str(GPU_CHECK), "exec")
    assert 'list_physical_devices("GPU")' in GPU_CHECK.read_text()


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("fmnist_gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_tensorflow(gpus=("GPU:0",), conv_error=None):
    """Just what fmnist-gpu-check calls, with GPUs listed or not and a convolution that works or raises."""

    def conv2d(*args, **kwargs):
        if conv_error:
            raise conv_error
        return 1.0

    devices = [types.SimpleNamespace(name=f"/physical_device:{g}") for g in gpus]
    experimental = types.SimpleNamespace(
        set_memory_growth=lambda gpu, grow: None, get_device_details=lambda gpu: {"device_name": "Tesla T4"}
    )
    return types.SimpleNamespace(
        __version__="2.21.0",
        test=types.SimpleNamespace(is_built_with_cuda=lambda: True),
        sysconfig=types.SimpleNamespace(get_build_info=lambda: {"cuda_version": "12.5", "cudnn_version": "9"}),
        config=types.SimpleNamespace(list_physical_devices=lambda kind: devices, experimental=experimental),
        device=lambda name: contextlib.nullcontext(),
        random=types.SimpleNamespace(normal=lambda shape: 0.0),
        nn=types.SimpleNamespace(conv2d=conv2d),
        reduce_sum=lambda value: value,
    )


@pytest.mark.parametrize(
    ("case", "expected", "status"),
    [
        ("no tensorflow", "TensorFlow does not import", 1),
        ("no gpu", "NO GPU is visible to TensorFlow", 1),
        ("conv fails", "a convolution on it failed (cuDNN?): DNN library is not found", 1),
        ("fit fails", "an XLA-compiled fit (as in every notebook) failed: ptxas not found", 1),
        ("works", "GPU check passed: a convolution and a two-step XLA-compiled fit ran on /GPU:0.", 0),
    ],
)
def test_gpu_check_says_what_failed(monkeypatch, capsys, case, expected, status):
    check = _gpu_check_module()
    fake = {
        "no tensorflow": None,  # `import tensorflow` raises ImportError
        "no gpu": _fake_tensorflow(gpus=()),
        "conv fails": _fake_tensorflow(conv_error=RuntimeError("DNN library is not found")),
    }.get(case, _fake_tensorflow())
    monkeypatch.setitem(sys.modules, "tensorflow", fake)
    monkeypatch.setattr(check, "driver_version", lambda: "555.42")

    def fit():
        if case == "fit fails":
            raise RuntimeError("ptxas not found")
        return 0.5

    monkeypatch.setattr(check, "xla_fit_check", fit)
    assert check.main(["--require"]) == status
    out = capsys.readouterr().out
    assert expected in out, out
    if case not in ("no tensorflow",):
        assert "CUDA 12.5, cuDNN 9); NVIDIA driver 555.42" in out
    if status:
        assert check.main([]) == 0  # without --require a missing GPU only informs


# --- entrypoint: never a Jupyter without a token -------------------------------------------------


@pytest.fixture
def fake_bin(tmp_path):
    """A folder, first on PATH, with stand-ins for `jupyter` and `fmnist-gpu-check`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "jupyter-args"

    def write(name: str, body: str) -> None:
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    write("jupyter", f'printf "%s\\n" "$@" > "{record}"\nenv > "{record}.env"\n')
    write("fmnist-gpu-check", 'echo "fake gpu check $*"; exit "${FAKE_GPU_STATUS:-0}"\n')
    write("python3", f'exec "{sys.executable}" "$@"\n')
    return bin_dir, record, write


def _entrypoint(fake_bin, *args: str, **env: str) -> subprocess.CompletedProcess:
    bin_dir, _, _ = fake_bin
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(bin_dir.parent),
        **env,
    }
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True, timeout=30)


def _token_of(record: Path) -> str:
    """The token Jupyter was given: from the config file named by --config=, which only its owner may read."""
    args = record.read_text().splitlines()
    configs = [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    assert len(configs) == 1, args
    config = Path(configs[0])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600, oct(config.stat().st_mode)
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700, oct(config.parent.stat().st_mode)
    token = json.loads(config.read_text())["IdentityProvider"]["token"]
    assert not any(token in arg for arg in args), "the token must not be on Jupyter's command line"
    return token


def test_entrypoint_is_executable_bash():
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable (chmod +x)"
    assert _run(["bash", "-n", str(ENTRYPOINT)]).returncode == 0


@pytest.mark.parametrize("token", [None, "", "   "])
def test_entrypoint_generates_a_random_token(fake_bin, token):
    _, record, _ = fake_bin
    env = {} if token is None else {"JUPYTER_TOKEN": token}
    result = _entrypoint(fake_bin, **env)
    assert result.returncode == 0, result.stderr
    generated = _token_of(record)
    assert re.fullmatch(r"[0-9a-f]{48}", generated), generated
    assert f"token={generated}" in result.stdout, "the URL with the generated token must be printed"
    args = record.read_text().splitlines()
    assert args[:2] == ["lab", "--ip=0.0.0.0"] and "--no-browser" in args and "--port=8888" in args
    assert "JUPYTER_TOKEN=" not in (record.parent / "jupyter-args.env").read_text()
    second = fake_bin[1]
    _entrypoint(fake_bin, **env)
    assert _token_of(second) != generated, "tokens must be random"


def test_entrypoint_uses_jupyter_token(fake_bin):
    _, record, _ = fake_bin
    result = _entrypoint(fake_bin, "lab", JUPYTER_TOKEN='my-"secret"\\token')
    assert result.returncode == 0, result.stderr
    assert _token_of(record) == 'my-"secret"\\token'  # quotes and backslashes survive the JSON file
    assert "secret" not in result.stdout, "a token the user chose is not echoed to the log"


def test_entrypoint_refuses_to_start_without_a_token(fake_bin):
    _, record, write = fake_bin
    write("python3", "exit 1\n")  # the token generator fails
    result = _entrypoint(fake_bin)
    assert result.returncode != 0
    assert not record.exists(), "Jupyter was started although no token could be made"
    assert "refusing" in result.stderr


def test_entrypoint_rejects_extra_jupyter_arguments(fake_bin):
    _, record, _ = fake_bin
    result = _entrypoint(fake_bin, "lab", "--IdentityProvider.token=")
    assert result.returncode != 0 and not record.exists()


def test_entrypoint_runs_other_commands(fake_bin):
    _, record, _ = fake_bin
    result = _entrypoint(fake_bin, "echo", "hello")
    assert result.returncode == 0 and result.stdout.strip() == "hello"
    assert not record.exists()


def test_entrypoint_enforces_a_gpu_when_required(fake_bin):
    _, record, _ = fake_bin
    result = _entrypoint(fake_bin, FMNIST_REQUIRE_GPU="1", FAKE_GPU_STATUS="1")
    assert result.returncode != 0 and not record.exists()
    result = _entrypoint(fake_bin, "echo", "ran", FMNIST_REQUIRE_GPU="1", FAKE_GPU_STATUS="1")
    assert result.returncode != 0 and "ran" not in result.stdout
    result = _entrypoint(fake_bin, FAKE_GPU_STATUS="1")  # without the requirement: a report only
    assert result.returncode == 0 and record.exists()
