"""One KerasTuner search over several processes or machines: a chief serves the oracle, workers run the trials
(notebook 07; docs/scaling.md).

KerasTuner's distributed mode is set by three environment variables, read when a tuner is created:
``KERASTUNER_TUNER_ID`` (``"chief"`` for the process that holds the oracle, a unique name such as ``"worker0"``
for each worker), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (where the chief listens over gRPC and
the workers connect). Every process builds the same tuner; the chief's ``search`` serves the oracle and returns
only when every trial has ended, each worker's ``search`` asks the chief for a trial, trains it and reports it
until the chief says stop. This module writes one :class:`SearchJob` to a JSON file that every process reads, and
:func:`launch` starts a chief and N workers on this machine. Workers on other machines run
``python -m fmnist_utils.distributed run JOB.json`` with the three variables set (docs/scaling.md).

A worker that dies in the middle of a trial leaves that trial RUNNING in the oracle, under its tuner ID: the
other workers go on with the remaining trials, but the chief waits for it. Starting a worker with the same
``KERASTUNER_TUNER_ID`` again (:meth:`LocalSearch.restart`) hands it the same trial, which it trains from the
start; finished trials are kept by the chief and never run again.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WORKER_LOG = "worker_log.jsonl"
"""One JSON line per trial event, written by the worker that ran it, in the tuner's project folder."""


@dataclass(frozen=True)
class SearchJob:
    """Everything each process needs to build the same tuner and data.

    Attributes:
        directory, project_name: the tuner's folder, ``<directory>/<project_name>``; workers on other machines
            need it on a shared file system (the trial checkpoints are written there).
        space: :class:`fmnist_utils.tuning.SearchSpace` fields, e.g. ``{"learning_rate": (3e-4, 1e-2), ...}``.
        base_filters: filters per stage at width 1, e.g. ``(16, 32, 64)``. epochs: per trial. trials: in all.
        train_images, val_images: stratified subsets of the seed's training and validation splits (None: all).
        seed: of the split, the subsets, the oracle and every trial.
        precision: the Keras dtype policy every worker trains in, e.g. ``"mixed_bfloat16"``.
    """

    directory: str
    project_name: str
    space: dict[str, Any]
    base_filters: tuple[int, ...]
    epochs: int
    trials: int
    train_images: int | None = None
    val_images: int | None = None
    seed: int = 42
    precision: str = "float32"

    @property
    def project_dir(self) -> Path:
        return Path(self.directory) / self.project_name

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SearchJob:
        values = json.loads(Path(path).read_text())
        values["space"] = {k: tuple(v) for k, v in values["space"].items()}
        values["base_filters"] = tuple(values["base_filters"])
        return cls(**values)


def build_tuner(job: SearchJob):
    """The job's ``keras_tuner.RandomSearch`` (``overwrite=False``: a restarted process reloads its state)."""
    import keras_tuner

    from fmnist_utils import tuning

    class LoggedRandomSearch(keras_tuner.RandomSearch):
        """RandomSearch whose workers write which of them ran each trial to :data:`WORKER_LOG`."""

        def log(self, event: str, trial: Any) -> None:
            line = {"event": event, "trial": trial.trial_id, "worker": self.tuner_id, "time": time.time()}
            with open(Path(self.project_dir) / WORKER_LOG, "a") as log:
                log.write(json.dumps(line) + "\n")

        def on_trial_begin(self, trial: Any) -> None:
            super().on_trial_begin(trial)
            self.log("begin", trial)

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            self.log("end", trial)

    space = tuning.SearchSpace(**{k: tuple(v) for k, v in job.space.items()})
    return LoggedRandomSearch(
        tuning.CNNHyperModel(space, job.base_filters, job.epochs, job.seed),
        objective="val_accuracy",
        max_trials=job.trials,
        seed=job.seed,
        directory=job.directory,
        project_name=job.project_name,
        overwrite=False,
    )


def run(job: SearchJob) -> None:
    """This process's part of the search: the chief's or a worker's, as ``KERASTUNER_TUNER_ID`` says."""
    from fmnist_utils.environment import import_keras_quietly

    keras = import_keras_quietly()
    from fmnist_utils import data

    keras.mixed_precision.set_global_policy(job.precision)  # before the hypermodel reads it
    tuner = build_tuner(job)
    if os.environ.get("KERASTUNER_TUNER_ID", "").startswith("chief"):
        tuner.search()  # serves the oracle; returns when every trial has ended
        return
    train, test = data.load_data(verbose=False)
    splits = data.prepare_splits(
        train, test, seed=job.seed, train_images=job.train_images, validation_images=job.val_images
    )
    tuner.search(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val), verbose=0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class LocalSearch:
    """A chief and workers started by :func:`launch` on this machine; logs in ``<project>-logs/<id>.log``."""

    job_path: Path
    host: str
    port: int
    threads: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.job_path.with_name(self.job_path.stem.removesuffix("-job") + "-logs")

    def start(self, tuner_id: str) -> subprocess.Popen:
        """Start the process ``tuner_id`` (``"chief"`` or a worker's name), or start it again."""
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": self.host,
            "KERASTUNER_ORACLE_PORT": str(self.port),
            # the cores are shared out: each worker gets its own instead of all of them fighting over all
            "TF_NUM_INTRAOP_THREADS": str(self.threads),
            "TF_NUM_INTEROP_THREADS": "1",
            "OMP_NUM_THREADS": str(self.threads),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{tuner_id}.log", "a") as log:
            command = [sys.executable, "-m", "fmnist_utils.distributed", "run", str(self.job_path)]
            self.processes[tuner_id] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self.processes[tuner_id]

    def restart(self, tuner_id: str) -> subprocess.Popen:
        """Start a stopped or killed process again with the same tuner ID: it resumes its unfinished trial."""
        if self.processes[tuner_id].poll() is None:
            raise RuntimeError(f"{tuner_id} is still running (pid {self.processes[tuner_id].pid}); kill it first.")
        return self.start(tuner_id)

    def kill(self, tuner_id: str) -> None:
        """Kill one process at once (SIGKILL), as a crash or a lost machine would."""
        self.processes[tuner_id].send_signal(signal.SIGKILL)
        self.processes[tuner_id].wait()

    def wait(self, timeout: float) -> dict[str, int]:
        """Wait for every process to exit; exit codes by tuner ID.

        Raises:
            TimeoutError: some are still running after ``timeout`` seconds (they are left running; see
                :meth:`stop`). The message names them and where their logs are.
        """
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.processes.values()):
            if time.monotonic() > deadline:
                running = [k for k, p in self.processes.items() if p.poll() is None]
                raise TimeoutError(f"Still running after {timeout:.0f} s: {running}; their logs are in {self.log_dir}.")
            time.sleep(0.5)
        return {k: p.returncode for k, p in self.processes.items()}

    def stop(self) -> None:
        """Kill every process still running."""
        for tuner_id, process in self.processes.items():
            if process.poll() is None:
                self.kill(tuner_id)


def launch(job: SearchJob, workers: int = 2, host: str = "127.0.0.1", port: int | None = None) -> LocalSearch:
    """Start a fresh search: remove ``job.project_dir``, then start a chief and ``workers`` workers here.

    The cores of this machine are shared out between the workers. Returns at once; call
    :meth:`LocalSearch.wait`. Worker names are ``worker0``, ``worker1``, ...
    """
    import shutil

    if workers < 1:
        raise ValueError(f"A search needs at least one worker besides the chief, not {workers}.")
    shutil.rmtree(job.project_dir, ignore_errors=True)
    job_path = job.save(Path(job.directory) / f"{job.project_name}-job.json")
    shutil.rmtree(job_path.with_name(f"{job.project_name}-logs"), ignore_errors=True)
    search = LocalSearch(job_path, host, port or free_port(host), max(1, (os.cpu_count() or 1) // workers))
    search.start("chief")
    for number in range(workers):
        search.start(f"worker{number}")
    return search


def worker_log(job: SearchJob) -> list[dict[str, Any]]:
    """The events of :data:`WORKER_LOG`: ``{"event": "begin" or "end", "trial", "worker", "time"}``, in order."""
    path = job.project_dir / WORKER_LOG
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def trials_by_worker(job: SearchJob):
    """One row per trial in the oracle's records (:func:`fmnist_utils.tuning.trials_table`), with the worker that
    finished it, how many times a worker began it, and its training seconds (from begin to end)."""
    from fmnist_utils import tuning

    table = tuning.trials_table(job.project_dir)
    events = worker_log(job)
    ends = {e["trial"]: e for e in events if e["event"] == "end"}
    begins: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["event"] == "begin":
            begins.setdefault(e["trial"], []).append(e)
    table["worker"] = [ends[t]["worker"] if t in ends else None for t in table.index]
    table["runs begun"] = [len(begins.get(t, [])) for t in table.index]
    table["seconds"] = [
        round(ends[t]["time"] - begins[t][-1]["time"], 1) if t in ends and t in begins else None for t in table.index
    ]
    return table


def search_precision(requested: str | None = None) -> str:
    """The Keras dtype policy of a search's trials: ``requested`` if given, else this machine's choice.

    This machine's choice is the Setup cell's (:func:`fmnist_utils.environment.choose_precision`: by GPU or CPU,
    or ``FMNIST_PRECISION``), so a search started here trains as notebook 07 does on the same machine.

    Raises:
        ValueError: ``requested`` is not a Keras dtype policy name.
    """
    from fmnist_utils.environment import choose_precision, gpu_details, import_keras_quietly

    keras = import_keras_quietly()
    if requested:
        return keras.DTypePolicy(requested.strip()).name
    return choose_precision(gpu_details()).policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_utils.distributed",
        description="A KerasTuner search with a chief and workers (notebook 07, docs/scaling.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="this process's part (chief or worker, from KERASTUNER_TUNER_ID)")
    one.add_argument("job", help="the JSON file of a SearchJob, e.g. runs/distributed/coarse-job.json")
    here = commands.add_parser("launch", help="a fresh search: a chief and N workers on this machine")
    here.add_argument("--workers", type=int, default=2)
    here.add_argument("--timeout", type=float, default=3_600, help="seconds before giving up (default 3600)")
    write = commands.add_parser("job", help="only write the job file, for processes started by hand (docs/scaling.md)")
    for command in (here, write):
        command.add_argument("--trials", type=int, default=8)
        command.add_argument("--epochs", type=int, default=2)
        command.add_argument("--train-images", type=int, default=6_000)
        command.add_argument("--directory", default="runs/distributed")
        command.add_argument("--project", default="coarse")
        command.add_argument(
            "--precision",
            help="Keras dtype policy of every trial, e.g. float32 or mixed_bfloat16 (default: the one the notebooks' "
            "Setup cell chooses on the machine that writes the job: by its GPU or CPU, or FMNIST_PRECISION)",
        )
    args = parser.parse_args(argv)
    if args.command == "run":
        if "KERASTUNER_TUNER_ID" not in os.environ or "KERASTUNER_ORACLE_IP" not in os.environ:
            parser.error(
                "set KERASTUNER_TUNER_ID (chief, or a unique worker name), KERASTUNER_ORACLE_IP and "
                "KERASTUNER_ORACLE_PORT (the chief's address and port) first; see docs/scaling.md"
            )
        run(SearchJob.load(args.job))
        return
    from fmnist_utils import tuning

    try:
        precision = search_precision(args.precision)
    except ValueError:
        parser.error(f"--precision {args.precision!r} is not a Keras dtype policy; use e.g. float32 or mixed_bfloat16")
    job = SearchJob(
        args.directory,
        args.project,
        NOTEBOOK_07_COARSE_SPACE,
        (16, 32, 64),
        args.epochs,
        args.trials,
        train_images=args.train_images,
        precision=precision,
    )
    if args.command == "job":
        print(f"wrote {job.save(Path(job.directory) / f'{job.project_name}-job.json')}")
        return
    search = launch(job, workers=args.workers)
    print(f"chief on {search.host}:{search.port}, {args.workers} workers, {job.precision}; logs in {search.log_dir}")
    try:
        codes = search.wait(args.timeout)
    finally:
        search.stop()
    table = trials_by_worker(job)
    print(table.to_string())
    best = table.loc[table["val_accuracy"].idxmax()]
    print(f"exit codes: {codes}; best trial {best.name}: {tuning.describe(best)}, {best['val_accuracy']:.2%}")
    sys.exit(max(codes.values()))


NOTEBOOK_07_COARSE_SPACE: dict[str, Any] = {
    "learning_rate": (3e-4, 1e-2),
    "width": (0.5, 0.75, 1.0),
    "dropout": (0.0, 0.5),
    "weight_decay": (1e-4, 1e-1),
    "augmentation": ("none", "flip", "flip + shift", "flip + shift + erasing"),
}
"""Notebook 07's coarse space in the quick profile, as :class:`SearchJob` ``space``."""

if __name__ == "__main__":
    main()
