"""KerasTuner's distributed mode through fmnist_utils.distributed: a chief and two workers on 127.0.0.1."""

import json
import time

import pytest

from fmnist_utils import distributed

TIMEOUT = 300  # seconds for a whole search; every wait below is bounded by it


def tiny_job(tmp_path, name: str, epochs: int = 1) -> distributed.SearchJob:
    """Four trials of a small CNN on 500 training images, scored on 250 validation images."""
    return distributed.SearchJob(
        str(tmp_path),
        name,
        distributed.NOTEBOOK_07_COARSE_SPACE,
        (4, 8, 16),
        epochs=epochs,
        trials=4,
        train_images=500,
        val_images=250,
    )


def oracle_records(job: distributed.SearchJob) -> dict:
    return json.loads((job.project_dir / "oracle.json").read_text())


def test_job_round_trips_through_its_json_file(tmp_path):
    job = tiny_job(tmp_path, "roundtrip")
    assert distributed.SearchJob.load(job.save(tmp_path / "job.json")) == job


def test_job_command_writes_the_file_that_hand_started_processes_read(tmp_path, capsys):
    distributed.main(["job", "--trials", "16", "--directory", str(tmp_path), "--project", "big"])
    job = distributed.SearchJob.load(tmp_path / "big-job.json")
    assert job.trials == 16 and job.project_dir == tmp_path / "big" and job.base_filters == (16, 32, 64)
    assert job.space == distributed.NOTEBOOK_07_COARSE_SPACE
    assert "big-job.json" in capsys.readouterr().out


def test_job_command_trains_in_the_setup_cells_precision_unless_told(tmp_path, capsys):
    from fmnist_utils.environment import choose_precision, gpu_details

    distributed.main(["job", "--directory", str(tmp_path), "--project", "auto"])
    job = distributed.SearchJob.load(tmp_path / "auto-job.json")
    assert job.precision == choose_precision(gpu_details()).policy
    distributed.main(["job", "--directory", str(tmp_path), "--project", "told", "--precision", "float32"])
    assert distributed.SearchJob.load(tmp_path / "told-job.json").precision == "float32"
    with pytest.raises(SystemExit):
        distributed.main(["job", "--directory", str(tmp_path), "--precision", "float8"])
    assert "not a Keras dtype policy" in capsys.readouterr().err


def test_run_without_the_environment_says_what_to_set(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KERASTUNER_TUNER_ID", raising=False)
    with pytest.raises(SystemExit):
        distributed.main(["run", str(tiny_job(tmp_path, "x").save(tmp_path / "job.json"))])
    assert "set KERASTUNER_TUNER_ID" in capsys.readouterr().err


def test_chief_and_two_workers_run_each_of_four_trials_exactly_once(tmp_path):
    job = tiny_job(tmp_path, "search")
    search = distributed.launch(job, workers=2)
    try:
        codes = search.wait(TIMEOUT)
    finally:
        search.stop()
    assert codes == {"chief": 0, "worker0": 0, "worker1": 0}
    table = distributed.trials_by_worker(job)
    assert sorted(table.index) == ["0", "1", "2", "3"]
    assert (table["status"] == "COMPLETED").all() and (table["runs begun"] == 1).all()
    assert set(table["worker"]) <= {"worker0", "worker1"}
    records = oracle_records(job)
    assert sorted(records["end_order"]) == ["0", "1", "2", "3"]  # each ended once
    assert records["run_times"] == {"0": 1, "1": 1, "2": 1, "3": 1}


def test_a_killed_worker_blocks_the_chief_until_its_restart_finishes_its_trial(tmp_path):
    job = tiny_job(tmp_path, "fault", epochs=3)  # trials of several seconds: the kill lands in one
    search = distributed.launch(job, workers=2)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not any(e["worker"] == "worker0" for e in distributed.worker_log(job)):
            assert time.monotonic() < deadline, "worker0 never began a trial"
            time.sleep(0.2)
        search.kill("worker0")  # in the middle of its first trial
        killed = next(e["trial"] for e in distributed.worker_log(job) if e["worker"] == "worker0")

        # the other worker runs every remaining trial and stops; the chief keeps waiting for the lost one
        while search.processes["worker1"].poll() is None:
            assert time.monotonic() < deadline, "worker1 did not finish the remaining trials"
            time.sleep(0.5)
        assert search.processes["worker1"].returncode == 0
        time.sleep(2)
        assert search.processes["chief"].poll() is None, "the chief should wait for the killed worker's trial"
        before = distributed.trials_by_worker(job)
        assert before.loc[killed, "status"] == "RUNNING"
        finished = before[before["status"] == "COMPLETED"]
        assert len(finished) == 3 and set(finished["worker"]) == {"worker1"}

        search.restart("worker0")  # the documented restart: same KERASTUNER_TUNER_ID
        codes = search.wait(TIMEOUT)
    finally:
        search.stop()
    assert codes["chief"] == 0 and codes["worker0"] == 0
    after = distributed.trials_by_worker(job)
    assert (after["status"] == "COMPLETED").all() and len(after) == 4
    assert after.loc[killed, "worker"] == "worker0" and after.loc[killed, "runs begun"] == 2
    # finished trials are kept, not run again
    assert (after.loc[finished.index, "runs begun"] == 1).all()
    assert after.loc[finished.index, "val_accuracy"].tolist() == finished["val_accuracy"].tolist()
    assert sorted(oracle_records(job)["end_order"]) == ["0", "1", "2", "3"]
