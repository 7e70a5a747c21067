"""README's instructions work as written: every command, path, link, name and setting it gives is checked here.

Nothing is installed, trained or started: `make` commands run as dry runs (`make -n`), Python modules and
functions are found in the source without importing them, and the Docker URL is read from the entrypoint.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fmnist_utils import results

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAKE = shutil.which("make")
# Read by Keras itself, not by this project.
EXTERNAL_VARIABLES = {"KERAS_BACKEND", "KERAS_HOME"}
# Where the project reads its environment variables and make variables (the notebooks' Setup cells, too).
SOURCES = [
    *sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")),
    *sorted((ROOT / "fmnist_utils").glob("*.py")),
    *sorted((ROOT / "scripts").glob("*")),
    *sorted((ROOT / "docker").glob("*")),
    ROOT / "Makefile",
    ROOT / "Dockerfile",
    ROOT / "docker-compose.yml",
]


def _code_spans() -> list[str]:
    """Inline code spans and the lines of fenced code blocks, comments dropped."""
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.S | re.M)
    lines = [line.split(" #", 1)[0].strip() for block in fenced for line in block.splitlines()]
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", README, flags=re.S | re.M)
    return [span for span in lines + re.findall(r"`([^`\n]+)`", prose) if span]


def _commands() -> list[list[str]]:
    """Every command README gives, split into words (`a && b` gives two)."""
    commands = []
    for span in _code_spans():
        for part in span.split("&&"):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            if words:
                commands.append(words)
    return commands


def _without_environment(words: list[str]) -> list[str]:
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words


def _make_commands() -> list[list[str]]:
    found = [_without_environment(words) for words in _commands()]
    unique = dict.fromkeys(tuple(words[1:]) for words in found if words[:1] == ["make"] and len(words) > 1)
    return [list(words) for words in unique]


def test_readme_names_make_commands():
    targets = {words[0] for words in _make_commands()}
    assert {"lab", "test", "demo", "notebooks", "results", "bench", "search", "docker-smoke"} <= targets, targets


@pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")
@pytest.mark.parametrize("arguments", _make_commands(), ids=" ".join)
def test_every_make_command_in_readme_runs_dry(arguments):
    arguments = [word for word in arguments if word != "..."]
    target = arguments[0]
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), flags=re.M), (
        f"README says `make {target}`, but the Makefile has no target {target}"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("PROFILE", "NOTEBOOKS", "MAKEFLAGS")}
    result = subprocess.run(
        # -B: as on a fresh clone, where setup runs first (and uses PYTHON)
        [MAKE, "--no-print-directory", "-n", "-B", "-C", str(ROOT), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for assignment in arguments[1:]:
        name, _, value = assignment.partition("=")
        assert value and value in result.stdout, f"`make {' '.join(arguments)}` does not use {name}:\n{result.stdout}"


def _module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def test_every_python_command_in_readme_names_a_real_script_and_options():
    checked = 0
    for words in _commands():
        if not words[0].endswith("/python"):
            continue
        if words[1] == "-m":
            source, arguments = _module_file(words[2]), words[3:]
            assert source.is_file(), f"README runs `python -m {words[2]}`, but {source} does not exist"
            assert '__name__ == "__main__"' in source.read_text(), f"{source.name} has no command line"
        else:
            source, arguments = ROOT / words[1], words[2:]
            assert source.is_file(), f"README runs {words[1]}, which does not exist"
        for option in (word for word in arguments if word.startswith("--")):
            assert f'"{option}"' in source.read_text(), f"{source.name} has no option {option}"
        checked += 1
    assert checked >= 3


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def test_every_fmnist_utils_name_in_readme_exists():
    names = {
        name
        for span in _code_spans()
        for name in re.findall(r"\b(?:fmnist_utils|results|plots)\.[a-z_]+(?:\.[a-z_]+)?", span)
        if not name.endswith((".py", ".json"))  # file names, e.g. in the Layout
    }
    assert {"fmnist_utils.environment.precision_policy", "results.save_predictions"} <= names, names
    for name in names:
        parts = name.removeprefix("fmnist_utils.").split(".")
        module = ROOT / "fmnist_utils" / f"{parts[0]}.py"
        assert module.is_file(), f"README names {name}, but {module} does not exist"
        if len(parts) > 1:
            assert parts[1] in _defined_names(module), f"README names {name}, which {module.name} does not define"


def _relative_links() -> list[str]:
    return [
        target
        for target in re.findall(r"\]\(([^)\s]+)\)", README)
        if not target.startswith(("http://", "https://", "#"))
    ]


def test_every_relative_link_and_image_exists():
    links = _relative_links()
    assert "docs/docker.md" in links and "images/samples.png" in links
    for target in links:
        assert (ROOT / target.split("#")[0]).exists(), f"README links to {target}, which does not exist"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_anchor_link_names_a_heading():
    anchors = {_slug(heading) for heading in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", README):
        assert anchor in anchors, f"README links to #{anchor}, but no heading has that anchor ({sorted(anchors)})"


def test_every_repository_path_in_readme_exists():
    folders = ("notebooks", "fmnist_utils", "scripts", "tests", "results", "models", "data", "images", "docs", "runs")
    paths = [
        span for span in _code_spans() if re.fullmatch(rf"(\./)?({'|'.join(folders)})/\S*", span) and "<" not in span
    ]
    paths += [words[-1] for words in _commands() if re.fullmatch(r"data/\S+\*\.jpg", words[-1])]
    assert "models/08_real_photos.keras" in paths and "tests/test_colab.py" in paths, paths
    for path in paths:
        assert list(ROOT.glob(path.removeprefix("./").rstrip("/"))), f"README names {path}, which does not exist"


def test_every_file_in_the_layout_exists():
    layout = re.search(r"## Layout\n+```\n(.*?)```", README, flags=re.S).group(1)
    entries = re.split(r"\n(?=\S)", layout.strip())
    for entry in entries:
        folder = entry.split()[0]
        assert (ROOT / folder.rstrip("/")).exists(), f"README's Layout lists {folder}, which does not exist"
        if folder in ("fmnist_utils/", "scripts/", "models/"):
            for name in re.findall(r"\b(\w[\w-]*\.(?:py|sh|json|keras))\b", entry):
                assert (ROOT / folder / name).is_file(), f"README's Layout lists {folder}{name}, which does not exist"


def _notebook_rows() -> dict[str, str]:
    """The notebook table's rows by notebook path: {"notebooks/01_mlp.ipynb": "<the row>"}."""
    rows = re.findall(r"^\| \d\d \| \[[^\]]+\]\((notebooks/[^)]+)\)(.*)$", README, flags=re.M)
    return {path: row for path, row in rows}


def test_every_notebook_has_a_row_with_its_own_colab_link():
    rows = _notebook_rows()
    notebooks = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(rows) == notebooks, "README's notebook table and notebooks/ list different notebooks"
    for path, row in rows.items():
        links = re.findall(r"\((https://colab\.research\.google\.com/[^)]+)\)", row)
        assert len(links) == 1, f"the row of {path} has no Colab link: {row}"
        assert links[0].endswith("/blob/main/" + path), links[0]
        notebook = json.loads((ROOT / path).read_text())
        first = "".join(notebook["cells"][0]["source"])
        assert links[0] in first, f"{path}'s own Open in Colab badge links elsewhere than README ({links[0]})"


def test_every_environment_variable_in_readme_is_read_somewhere():
    variables = {
        name
        for span in _code_spans()
        for name in re.findall(r"\$?\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", span)
        if name not in ("Requires-Python",)
    }
    assert {"FMNIST_PROFILE", "FMNIST_PRECISION", "FMNIST_DATA_DIR", "JUPYTER_TOKEN"} <= variables, variables
    sources = "\n".join(path.read_text(errors="replace") for path in SOURCES if path.is_file())
    for name in variables - EXTERNAL_VARIABLES:
        assert name in sources, f"README names {name}, but nothing in the project reads it"


def test_the_jupyter_url_is_the_one_the_container_prints():
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    port = re.search(r"^PORT=(\d+)$", entrypoint, flags=re.M).group(1)
    printed = re.search(r"Open:\s+(http://\S+/lab\?token=)", entrypoint).group(1).replace("${PORT}", port)
    urls = re.findall(r"http://[\w.:]+/lab\?token=", README)
    assert urls and set(urls) == {printed}, f"README gives {urls}; the entrypoint prints {printed}..."


def test_runs_folder_outlives_the_compose_container_as_readme_says():
    assert "Docker Compose, which mounts `./runs`" in README
    (service,) = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].values()
    assert "./runs:/workspace/runs" in service["volumes"]
    assert (ROOT / "runs" / ".gitkeep").is_file(), "runs/ must exist in a clone, or Compose creates it as root"


def test_no_hand_typed_hardware_outside_the_generated_blocks():
    """Which CPU ran which notebook comes from results/ only (README's generated table and sentence)."""
    typed = README
    for start, end in (
        (results.TABLE_START, results.TABLE_END),
        (results.RUNS_START, results.RUNS_END),
        (results.PHOTO_TABLE_START, results.PHOTO_TABLE_END),
        (results.SPEEDRUN_START, results.SPEEDRUN_END),
    ):
        typed = typed.split(start)[0] + typed.split(end, 1)[1]
    for word in ("Xeon", "EPYC"):
        assert word not in typed, f"README types {word!r} outside the tables generated from results/"
