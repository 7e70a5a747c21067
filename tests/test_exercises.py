"""The exercises at the end of the notebooks: each has a solution, and every code solution runs.

A notebook's exercises are the markdown cells from its "## Exercises" heading to the next heading of level 1 or 2
("## What to try next"). In them, an exercise is a numbered item at the start of a line ("1. **Title.** ..."),
followed by its solution in a collapsed block::

    <details><summary>Solution</summary>

    What to look for, then the code, in a fenced ```python block.

    </details>

Every ```python block inside a ``<details>`` block is executed in the smoke profile (FMNIST_PROFILE=smoke), in one
Python process per notebook, each block in a fresh namespace and with the notebook's folder as working directory: a
solution must import what it uses and size its work with the run profile. A notebook without an Exercises section
is not tested here; one that gains a section is picked up by its name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES_HEADING = re.compile(r"^##\s+(\d+\.\s*)?Exercises\s*$")
SECTION_END = re.compile(r"^#{1,2}\s")  # the next heading of level 1 or 2 ends the section
EXERCISE = re.compile(r"^\d+\.\s")
FENCE = re.compile(r"^\s*```\s*(\w*)")

# Runs the solutions of one notebook: [label, source] pairs on stdin; every block, even after a failure.
RUNNER = """
import json, sys, traceback
failed = []
for label, source in json.load(sys.stdin):
    print(f"----- {label}", flush=True)
    try:
        exec(compile(source, label, "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        failed.append(label)
    sys.stdout.flush()
if failed:
    print("FAILED: " + "; ".join(failed))
    sys.exit(1)
"""


def exercises_of(notebook: Path) -> list[dict] | None:
    """The exercises of a notebook, in order, each ``{"title", "solutions", "code"}``; None without a section.

    ``solutions`` counts the exercise's ``<details>`` blocks whose summary says "Solution"; ``code`` lists the
    ```python blocks inside its ``<details>`` blocks.
    """
    cells = json.loads(notebook.read_text())["cells"]
    lines, in_section = [], False
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        fenced = False
        for line in "".join(cell["source"]).splitlines():
            fenced ^= bool(FENCE.match(line))
            if not fenced and EXERCISES_HEADING.match(line):
                in_section = True
                continue
            if in_section and not fenced and SECTION_END.match(line):
                return _parse(lines)
            if in_section:
                lines.append(line)
    return _parse(lines) if in_section else None


def _parse(lines: list[str]) -> list[dict]:
    exercises: list[dict] = []
    details = False
    fence: str | None = None  # "python" inside a ```python block, "other" inside any other fence
    block: list[str] = []
    for line in lines:
        match = FENCE.match(line)
        if fence:
            if match and not match.group(1):
                if fence == "python" and exercises:
                    exercises[-1]["code"].append("\n".join(block))
                fence = None
            elif fence == "python":
                block.append(line)
            continue
        if match:
            fence, block = ("python" if details and match.group(1) in ("python", "py") else "other"), []
            continue
        if "<details" in line:
            details = True
            if exercises and re.search(r"<summary>\s*Solution", line):
                exercises[-1]["solutions"] += 1
        if "</details>" in line:
            details = False
        elif not details and EXERCISE.match(line):
            exercises.append({"title": line.strip()[:60], "solutions": 0, "code": []})
    return exercises


WITH_EXERCISES = [path for path in NOTEBOOKS if exercises_of(path) is not None]


def test_every_notebook_with_solutions_has_an_exercises_section():
    for path in NOTEBOOKS:
        if "<summary>Solution" in path.read_text():
            assert exercises_of(path) is not None, f"{path.name} has solutions but no '## Exercises' heading"


@pytest.mark.parametrize("notebook", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_three_to_six_exercises_each_with_a_solution(notebook: Path):
    exercises = exercises_of(notebook)
    assert 3 <= len(exercises) <= 6, f"{notebook.name} has {len(exercises)} exercises; write 3 to 6"
    missing = [e["title"] for e in exercises if e["solutions"] != 1]
    assert not missing, f"{notebook.name}: exercises without exactly one <details><summary>Solution: {missing}"


@pytest.mark.parametrize("notebook", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_code_solutions_run_in_the_smoke_profile(notebook: Path):
    # dedent: a block indented under a list item runs too
    blocks = [
        [f"{notebook.stem}, exercise {number}, code block {index}", textwrap.dedent(code)]
        for number, exercise in enumerate(exercises_of(notebook), start=1)
        for index, code in enumerate(exercise["code"], start=1)
    ]
    if not blocks:
        pytest.skip(f"{notebook.name} has no code solutions")
    env = {**os.environ, "FMNIST_PROFILE": "smoke", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=ROOT / "notebooks",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
