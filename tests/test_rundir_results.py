"""A run's results files as its tasks finish (rundir.ResultsWriter): each row appended as one
line, summary.json every few seconds and at the end, a line cut short by a kill not read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfrepair import rundir
from selfrepair.errors import SelfRepairError
from selfrepair.metrics import result_row
from selfrepair.report import load_run
from selfrepair.rundir import RESULTS, SUMMARY, ResultsWriter, read_results
from selfrepair.store import TrajectoryStore
from selfrepair.types import Task, TestSpec, Trajectory


def trajectory(name: str, outcome: str = "solved") -> Trajectory:
    task = Task(
        task_id=name,
        spec="Add.",
        files={"add.py": "def add(a, b):\n    return a - b\n"},
        entry_file="add.py",
        tests=TestSpec(kind="script", files={"test_add.py": "assert add(1, 2) == 3\n"}),
    )
    return Trajectory(task=task, strategy="refine", model="m", outcome=outcome)


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / RESULTS).read_text().splitlines()]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text())


def test_rows_are_appended_and_the_summary_follows_at_its_pace(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "SUMMARY_SECONDS", 3600.0)
    results = ResultsWriter(tmp_path, {"command": "bench"})
    results.add(result_row(trajectory("a")))
    assert [r["task_id"] for r in lines(tmp_path)] == ["a"]
    assert summary(tmp_path)["tasks"] == 1 and summary(tmp_path)["config"] == {"command": "bench"}

    results.add(result_row(trajectory("b", "budget")))
    results.add(result_row(trajectory("c")))
    assert [r["task_id"] for r in lines(tmp_path)] == ["a", "b", "c"]
    assert summary(tmp_path)["tasks"] == 1  # not yet: at most every SUMMARY_SECONDS

    closed = results.close()
    assert closed == summary(tmp_path)
    assert closed["tasks"] == 3 and closed["solved"] == 2


def test_the_summary_is_rewritten_once_its_seconds_are_up(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "SUMMARY_SECONDS", 0.0)
    results = ResultsWriter(tmp_path, {})
    for name in ("a", "b"):
        results.add(result_row(trajectory(name)))
        assert summary(tmp_path)["tasks"] == len(lines(tmp_path))
    assert summary(tmp_path)["tasks"] == 2


def test_a_resumed_run_makes_the_files_anew_from_its_first_row(tmp_path):
    first = ResultsWriter(tmp_path, {})
    for name in ("a", "b"):
        first.add(result_row(trajectory(name, "error")))
    first.close()
    again = ResultsWriter(tmp_path, {})
    again.add(result_row(trajectory("a")))
    assert [(r["task_id"], r["outcome"]) for r in lines(tmp_path)] == [("a", "solved")]
    assert summary(tmp_path)["tasks"] == 1 and summary(tmp_path)["errors"] == 0


def test_a_run_of_no_task_still_leaves_both_files(tmp_path):
    assert ResultsWriter(tmp_path, {}).close()["tasks"] == 0
    assert (tmp_path / RESULTS).read_text() == "" and summary(tmp_path)["tasks"] == 0


def test_a_row_cut_short_by_a_kill_is_not_read(tmp_path):
    finished = [trajectory(name) for name in ("a", "b")]
    rows = [result_row(t) for t in finished]
    with TrajectoryStore(tmp_path) as store:
        store.save(finished[0])
    results = ResultsWriter(tmp_path, {"command": "bench"})
    results.add(rows[0])
    with open(tmp_path / RESULTS, "a") as handle:
        handle.write(json.dumps(rows[1])[:40])  # the kill came mid-line
    assert read_results(tmp_path) == [rows[0]]
    assert [r["task_id"] for r in load_run(tmp_path).rows] == ["a"]


def test_a_last_line_without_its_newline_is_read_when_whole(tmp_path):
    rows = [result_row(trajectory(name)) for name in ("a", "b")]
    (tmp_path / RESULTS).write_text("\n".join(json.dumps(r) for r in rows))  # made by hand
    assert read_results(tmp_path) == rows


def test_a_broken_line_before_the_last_is_still_refused(tmp_path):
    finished = trajectory("a")
    rows = [result_row(finished)]
    with TrajectoryStore(tmp_path) as store:
        store.save(finished)
    (tmp_path / RESULTS).write_text('{"task_id": \n' + json.dumps(rows[0]) + "\n")
    (tmp_path / SUMMARY).write_text("{}")
    with pytest.raises(SelfRepairError, match="results.jsonl:1: not valid JSON"):
        load_run(tmp_path)


def test_a_stopped_run_leaves_a_summary_of_every_task_it_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "SUMMARY_SECONDS", 3600.0)
    with pytest.raises(KeyboardInterrupt):
        with ResultsWriter(tmp_path, {}) as results:
            for name in ("a", "b"):
                results.add(result_row(trajectory(name)))
            raise KeyboardInterrupt  # a stop signal, as the CLI raises it
    assert summary(tmp_path)["tasks"] == 2
