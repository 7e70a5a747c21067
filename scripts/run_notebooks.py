"""Execute notebooks in place, as `jupyter nbconvert --to notebook --execute --inplace` does, showing progress.

`make notebooks` runs this. For each notebook it starts a kernel in the notebook's folder, runs every
cell with no time limit, prints what the cells write to stdout and stderr as it arrives (Keras prints
one line per epoch), then the notebook's wall time; at the end, the total.

A notebook is written back only when all of its cells succeeded, with the outputs and execution
counts nbconvert would write, less the per-cell execution timestamps (cell metadata "execution"),
so committed notebooks carry none. A failing cell stops the run with the notebook's name, the cell's
number and the error; that notebook keeps its previous outputs, and the exit status is 1.

    python scripts/run_notebooks.py notebooks/01_mlp.ipynb notebooks/02_lenet.ipynb
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import ExecutePreprocessor

from fmnist_utils.profiles import get_profile


def as_displayed(line: str) -> str:
    """What a terminal shows for a line that redraws itself with carriage returns or backspaces
    (Keras' progress bars do): each character overwrites the one under the cursor."""
    shown: list[str] = []
    cursor = 0
    for char in line:
        if char == "\r":
            cursor = 0
        elif char == "\b":
            cursor = max(cursor - 1, 0)
        else:
            if cursor < len(shown):
                shown[cursor] = char
            else:
                shown.append(char)
            cursor += 1
    return "".join(shown).rstrip()


class LiveExecutePreprocessor(ExecutePreprocessor):
    """nbconvert's ExecutePreprocessor that also echoes the cells' stream output, line by line,
    each line prefixed with the notebook's name."""

    def __init__(self, label: str, stdout: TextIO | None = None, stderr: TextIO | None = None, **kwargs):
        super().__init__(**kwargs)
        self.label = label
        self.streams = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
        self.unfinished = {"stdout": "", "stderr": ""}
        self.cell_index: int | None = None

    def preprocess_cell(self, cell, resources, index):
        self.cell_index = index
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            for name, rest in self.unfinished.items():
                if rest:
                    self._echo_line(name, rest)
                    self.unfinished[name] = ""

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            name = msg["content"].get("name", "stdout")
            name = name if name in self.streams else "stdout"
            *lines, self.unfinished[name] = (self.unfinished[name] + msg["content"].get("text", "")).split("\n")
            for line in lines:
                self._echo_line(name, line)
        return super().output(outs, msg, display_id, cell_index)

    def _echo_line(self, name: str, line: str) -> None:
        print(f"  {self.label} | {as_displayed(line)}".rstrip(), file=self.streams[name], flush=True)


def strip_execution_timestamps(nb, resources):
    """Drop each cell's "execution" metadata (when the kernel was busy, idle...): it changes on every run."""
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    return nb, resources


def execute_in_place(
    path: Path, stdout: TextIO | None = None, stderr: TextIO | None = None, write: bool = True
) -> None:
    """Execute the notebook at `path` in its own folder and write it back (unless `write` is False); raise on the
    first failing cell."""
    executor = LiveExecutePreprocessor(path.stem, stdout=stdout, stderr=stderr, timeout=None, record_timing=False)
    exporter = NotebookExporter()
    exporter.register_preprocessor(executor, enabled=True)
    exporter.register_preprocessor(strip_execution_timestamps, enabled=True)
    try:
        body, _ = exporter.from_filename(str(path))
    except BaseException as error:
        error.cell_index = executor.cell_index  # for the report: which cell was running
        error.cell_count = len(executor.nb.get("cells", [])) if executor.nb is not None else None
        raise
    if write:
        with open(path, "w", encoding="utf-8") as file:  # as nbconvert's FilesWriter writes it
            file.write(body)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute, in this order")
    paths = parser.parse_args(argv).notebooks
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"No such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    # smoke runs and dry runs only check that the notebooks run: their outputs never replace a real run's
    write = get_profile(gpu_visible=False).records  # (the GPU only decides between quick and full)
    if not write:
        print("Smoke or dry run: the notebooks are executed but not written.", flush=True)
    start = time.perf_counter()
    for number, path in enumerate(paths, 1):
        print(f"[{number}/{len(paths)}] {path}: executing", flush=True)
        notebook_start = time.perf_counter()
        try:
            execute_in_place(path, write=write)
        except (CellExecutionError, DeadKernelError) as error:
            where = _where(error)
            print(
                f"\nFAILED: {path}, {where}, after {_duration(time.perf_counter() - notebook_start)}. "
                f"The notebook was not written.\n{error}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        except KeyboardInterrupt as error:
            print(f"\nInterrupted: {path}, {_where(error)}. The notebook was not written.", file=sys.stderr, flush=True)
            return 130
        except BaseException as error:
            print(f"\nFAILED: {path}, {_where(error)}: {type(error).__name__}", file=sys.stderr, flush=True)
            raise
        print(f"[{number}/{len(paths)}] {path}: done in {_duration(time.perf_counter() - notebook_start)}", flush=True)
    if len(paths) > 1:
        print(f"All {len(paths)} notebooks executed in {_duration(time.perf_counter() - start)}", flush=True)
    return 0


def _where(error: BaseException) -> str:
    index, count = getattr(error, "cell_index", None), getattr(error, "cell_count", None)
    if index is None:
        return "before the first cell ran"
    return f"cell {index + 1}" + (f" of {count}" if count else "") + " (counting all cells from 1)"


if __name__ == "__main__":
    sys.exit(main())
