"""Build the Docker image, start its Jupyter server and check it for real (`make docker-smoke`).

    python3 scripts/docker_smoke.py                  # docker or podman, whichever works here
    python3 scripts/docker_smoke.py --gpu            # on a GPU machine: also require TensorFlow to see the GPU
    python3 scripts/docker_smoke.py --skip-notebooks # only build, start and check the server

Standard library only, so it runs with any Python 3.9+ on the host. Steps, each printed with its time:

1. Find a container engine that answers (`docker info`, then `podman info`). None: say so and exit 0.
2. Find the base image (`ARG BASE_IMAGE=` in the Dockerfile): present, or pulled. When no registry can be
   reached, build a local stand-in for it with debootstrap from the distribution's own mirror (root and
   `debootstrap` needed) and say plainly that the image's own layers are then tested on a stand-in.
3. Build the image. A CA bundle (`--ca-bundle`, default: the host's `SSL_CERT_FILE` when set) goes in as
   the build secret `ca-bundle`, used only while pip downloads and never stored in the image.
4. With `--gpu`: run `fmnist-gpu-check --require` in the image with the GPUs.
5. Start the server on 127.0.0.1 with a random token and check: the health check reports healthy;
   `/api/contents` answers 403 without a token and with a wrong one, 200 with the right one; Jupyter runs
   as a non-root user; the token is in no process's command line, inside the container or on the host.
6. Run the notebooks with nbval in the smoke profile inside the running container.
7. Remove the container it started (by id). The image stays, for the next build's cache.

Exit status: 0 when every check passed or no engine was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DEFAULT_IMAGE = "fmnist-notebooks:smoke"
# A repository of its own: podman matches short names such as python:3.11-slim-bookworm against local images
# by suffix, so a stand-in named localhost/.../python:3.11-slim-bookworm would pass for the real base.
STAND_IN_REPOSITORY = "localhost/fmnist-stand-in"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# podman's crun cannot set these limits in some sandboxes (`setrlimit RLIMIT_NOFILE: Operation not permitted`);
# explicit limits below the host's let both runtimes start containers.
PODMAN_RUN_ARGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=30000:30000"]


def say(message: str) -> None:
    print(f"[docker-smoke] {message}", flush=True)


def run(command: list[str], timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


# --- 1. engine ---------------------------------------------------------------------------------


def find_engine(candidates: tuple[str, ...] = ("docker", "podman")) -> tuple[str | None, list[str]]:
    """The first engine whose `info` succeeds, and why each one tried before it was not usable."""
    reasons = []
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name}: not installed")
            continue
        try:
            result = run([path, "info"], timeout=60)
        except subprocess.TimeoutExpired:
            reasons.append(f"{name}: `{name} info` did not answer within 60 s")
            continue
        if result.returncode == 0:
            return name, reasons
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        reasons.append(f"{name}: installed, but `{name} info` failed: {last[0]}")
    return None, reasons


# --- 2. base image -----------------------------------------------------------------------------


def base_image(dockerfile: Path = DOCKERFILE) -> str:
    """The default of `ARG BASE_IMAGE=` in the Dockerfile."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"{dockerfile} has no `ARG BASE_IMAGE=<image>` line; cannot tell which base to test.")
    return match.group(1)


def debian_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))) -> str:
    """The first Debian mirror apt already uses on this machine (deb822 `URIs:` or one-line `deb` entries)."""
    files: list[Path] = []
    for source in sources:
        files += sorted(source.glob("*")) if source.is_dir() else [source] if source.is_file() else []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(r"URIs:\s*(\S+)", line) or re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    return DEFAULT_MIRROR


def stand_in_plan(base: str) -> tuple[str, str]:
    """(Debian suite, Python version) that stand in for an official `python:X.Y-slim-<suite>` base image."""
    match = re.fullmatch(r"(?:docker\.io/(?:library/)?)?python:(\d+\.\d+)(?:\.\d+)?-slim-(\w+)", base)
    if match is None:
        raise SystemExit(f"No stand-in is known for the base image {base}; only python:X.Y-slim-<debian suite>.")
    return match.group(2), match.group(1)


def build_stand_in(engine: str, base: str) -> str:
    """Make a local image with the same Debian suite and Python minor version as ``base``; return its name."""
    suite, python = stand_in_plan(base)
    name = f"{STAND_IN_REPOSITORY}:{base.rsplit('/', 1)[-1].replace(':', '-')}"
    if run([engine, "image", "inspect", name]).returncode == 0:
        say(f"stand-in base {name} already built")
        return name
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise SystemExit(
            f"{base} cannot be pulled and a stand-in needs root and debootstrap "
            "(apt-get install debootstrap). Pull or load the base image, then run again."
        )
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="fmnist-rootfs-") as rootfs:
        say(f"debootstrap {suite} from {mirror} (minbase, with python3, python3-venv, ca-certificates)")
        start = time.perf_counter()
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                suite,
                rootfs,
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [engine, "import", "--change", 'CMD ["python3"]', "-", name],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
    version = run([engine, "run", "--rm", *engine_run_args(engine), name, "python3", "--version"]).stdout.strip()
    if not version.startswith(f"Python {python}."):
        raise SystemExit(f"the stand-in has {version or 'no python3'}, but {base} has Python {python}")
    say(f"stand-in {name} built in {time.perf_counter() - start:.0f} s: Debian {suite}, {version}")
    return name


def resolve_base(engine: str, base: str, stand_in: str) -> tuple[str, bool]:
    """(image to build on, whether it is a stand-in)."""
    if stand_in != "always":
        if run([engine, "image", "inspect", base]).returncode == 0:
            return base, False
        say(f"pulling {base}")
        try:
            pulled = run([engine, "pull", base], timeout=900)
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is not None and pulled.returncode == 0:
            return base, False
        reason = "timed out" if pulled is None else (pulled.stderr.strip().splitlines() or ["failed"])[-1]
        if stand_in == "never":
            raise SystemExit(f"cannot pull {base} ({reason}), and --stand-in never was given")
        say(f"cannot pull {base} ({reason}): building a local stand-in")
    return build_stand_in(engine, base), True


# --- 3-7. build, run, check ----------------------------------------------------------------------


def engine_run_args(engine: str) -> list[str]:
    return PODMAN_RUN_ARGS if engine == "podman" else []


def build(engine: str, image: str, base: str, ca_bundle: Path | None, log: Path) -> float:
    command = [engine, "build", "--tag", image, "--build-arg", f"BASE_IMAGE={base}", *engine_run_args(engine)]
    if engine == "podman":
        command += ["--format", "docker"]  # keeps HEALTHCHECK, which the OCI format drops
    if ca_bundle is not None:
        command += ["--secret", f"id=ca-bundle,src={ca_bundle}"]
    say(f"building {image} on {base} (log: {log})")
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run([*command, str(ROOT)], stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"the build failed after {seconds:.0f} s; the end of {log}:\n{tail}")
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_server(url: str, container: str, engine: str, timeout: float = 180) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            http_status(url)
            return time.perf_counter() - start
        except (urllib.error.URLError, ConnectionError, OSError):
            state = run([engine, "inspect", "--format", "{{.State.Running}}", container]).stdout.strip()
            if state == "false":
                break
            time.sleep(1)
    logs = run([engine, "logs", container])
    raise SystemExit(
        f"Jupyter did not answer at {url} within {timeout:.0f} s. Container log:\n{logs.stdout}{logs.stderr}"
    )


def health(engine: str, container: str, timeout: float = 150) -> str:
    """'healthy' once the image's HEALTHCHECK passes, else the last state seen."""
    start, state = time.perf_counter(), "no health check"
    while time.perf_counter() - start < timeout:
        if engine == "podman":
            result = run([engine, "healthcheck", "run", container], timeout=60)
            state = "healthy" if result.returncode == 0 else (result.stdout + result.stderr).strip() or "unhealthy"
        else:
            result = run([engine, "inspect", "--format", "{{json .State.Health}}", container])
            status = json.loads(result.stdout or "null") if result.returncode == 0 else None
            state = status["Status"] if status else "no health check"
        if state == "healthy" or "no health check" in state or "has no defined healthcheck" in state:
            return state
        time.sleep(3)
    return state


PROCESS_SCAN = """
import json, os
rows = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
        uid = next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("Uid:"))
    except OSError:
        continue
    rows.append((int(uid), args))
print(json.dumps(rows))
"""


def processes(python: list[str]) -> list[tuple[int, str]]:
    """(uid, command line) of every process that ``python`` sees: ``[sys.executable]`` lists this machine's,
    ``[engine, "exec", container, "python3"]`` the container's."""
    result = run([*python, "-c", PROCESS_SCAN], timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"could not list the processes with {' '.join(python)}: {result.stderr.strip()}")
    return [(uid, args) for uid, args in json.loads(result.stdout)]


class Checks:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def record(self, name: str, passed: bool, detail: str) -> None:
        self.results.append((name, passed, detail))
        say(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")

    @property
    def failed(self) -> list[str]:
        return [name for name, passed, _ in self.results if not passed]


def check_server(engine: str, container: str, port: int, token: str, checks: Checks) -> None:
    url = f"http://127.0.0.1:{port}/api/contents"
    state = health(engine, container)
    checks.record("health check", state == "healthy", state)
    for name, given, expected in (
        ("no token", None, 403),
        ("wrong token", secrets.token_hex(24), 403),
        ("right token", token, 200),
    ):
        status = http_status(url, given)
        checks.record(f"/api/contents with {name}", status == expected, f"HTTP {status} (expected {expected})")
    rows = processes([engine, "exec", container, "python3"])
    jupyter = [(uid, args) for uid, args in rows if "jupyter" in args and "python3 -c" not in args]
    uids = sorted({uid for uid, _ in jupyter})
    checks.record("Jupyter runs as non-root", bool(jupyter) and 0 not in uids, f"uid {uids or 'none found'}")
    inside = [args for _, args in rows if token in args and "python3 -c" not in args]
    checks.record("token not in the container's process list", not inside, f"{len(inside)} command lines hold it")
    on_host = [args for _, args in processes([sys.executable]) if token in args]
    checks.record("token not in the host's process list", not on_host, f"{len(on_host)} command lines hold it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("docker", "podman"), help="default: the first that answers")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"tag to build (default {DEFAULT_IMAGE})")
    parser.add_argument("--gpu", action="store_true", help="run with all GPUs and require TensorFlow to see one")
    parser.add_argument("--skip-notebooks", action="store_true", help="do not run nbval inside the container")
    parser.add_argument(
        "--stand-in",
        choices=("auto", "always", "never"),
        default="auto",
        help="build on a local stand-in base: when the base cannot be pulled (auto), always, or never",
    )
    parser.add_argument(
        "--ca-bundle",
        type=Path,
        default=Path(os.environ["SSL_CERT_FILE"]) if os.environ.get("SSL_CERT_FILE") else None,
        help="CA bundle for pip during the build (default: $SSL_CERT_FILE when set), passed as a build secret",
    )
    args = parser.parse_args(argv)

    engine, reasons = find_engine((args.engine,) if args.engine else ("docker", "podman"))
    if engine is None:
        say("skipped: no usable container engine. " + "; ".join(reasons))
        say("Install Docker (with a running daemon) or podman to build and check the image.")
        return 0
    say(f"engine: {engine}" + (f" ({'; '.join(reasons)})" if reasons else ""))

    base = base_image()
    build_base, stand_in = resolve_base(engine, base, args.stand_in)
    if stand_in:
        say(f"NOTE: testing the image's own layers on a local stand-in for {base}, not on the upstream base itself.")
    ca_bundle = args.ca_bundle if args.ca_bundle and args.ca_bundle.is_file() else None
    build_seconds = build(
        engine, args.image, build_base, ca_bundle, Path(tempfile.gettempdir()) / "docker-smoke-build.log"
    )
    size = run([engine, "image", "inspect", "--format", "{{.Size}}", args.image]).stdout.strip()
    say(f"built in {build_seconds / 60:.1f} min; image size {int(size or 0) / 1e9:.1f} GB")

    checks = Checks()
    gpu_args = ["--gpus", "all"] if args.gpu else []
    if args.gpu:
        result = run(
            [engine, "run", "--rm", *gpu_args, *engine_run_args(engine), args.image, "fmnist-gpu-check", "--require"]
        )
        checks.record(
            "TensorFlow sees a working GPU",
            result.returncode == 0,
            ((result.stdout + result.stderr).strip().splitlines() or ["no output"])[-1],
        )
        if result.returncode != 0:
            return 1

    token, port = secrets.token_hex(24), free_port()
    started = run(
        [
            engine,
            "run",
            "--detach",
            *gpu_args,
            *engine_run_args(engine),
            "--publish",
            f"127.0.0.1:{port}:8888",
            "--env",
            "JUPYTER_TOKEN",
            args.image,
        ],
        env={**os.environ, "JUPYTER_TOKEN": token},  # --env NAME passes it without putting it on a command line
    )
    if started.returncode != 0:
        raise SystemExit(f"the container did not start: {started.stderr.strip()}")
    container = started.stdout.strip().splitlines()[-1]
    try:
        start_seconds = wait_for_server(f"http://127.0.0.1:{port}/api", container, engine)
        say(f"Jupyter answered {start_seconds:.0f} s after the start, on 127.0.0.1:{port}")
        check_server(engine, container, port, token, checks)
        if not args.skip_notebooks:
            say("nbval, smoke profile, inside the container")
            begin = time.perf_counter()
            environment = ["--env", "FMNIST_PROFILE=smoke"] + (["--env", "FMNIST_REQUIRE_GPU=1"] if args.gpu else [])
            result = subprocess.run(
                [engine, "exec", *environment, container, "python3", "-m", "pytest", "-q", "--nbval-lax", "notebooks"]
            )
            minutes = (time.perf_counter() - begin) / 60
            checks.record(
                "notebooks (nbval, smoke)", result.returncode == 0, f"exit {result.returncode}, {minutes:.1f} min"
            )
    finally:
        run([engine, "rm", "--force", container])
        say(f"removed container {container[:12]}")

    say(f"build {build_seconds / 60:.1f} min, Jupyter up in {start_seconds:.0f} s, base {build_base}")
    say(f"FAILED: {', '.join(checks.failed)}" if checks.failed else "all checks passed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
