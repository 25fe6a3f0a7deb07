"""A bench run stopped mid-run (SIGKILL, SIGTERM or SIGINT) resumes when the same command runs
again: finished tasks are not redone, the cut-off task keeps its steps and goes on from where
it stood, LangGraph restores the checkpointed state without complaint, and the run ends with
the trajectories an uninterrupted run has.

Stopped in a model call: the model is a stand-in server (chat_stub) through the real `openai`
backend; it holds one model call unanswered, so the run is stopped at a known place: inside
the second task, after its first candidate was tested and reviewed, while it asks for the
refinement. Stopped in a test run: the candidate sleeps, and the run's own sandbox worker is
seen running it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from chat_stub import ChatStub
from stored_runs import reviewed, stored

from selfrepair.types import Trajectory

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
REPLIES = [
    "```python\ndef plus(a, b):\n    return a + b\n```",
    "```python\ndef total(a, b):\n    return a * b\n```",
    "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it multiplies",
    "```python\ndef total(a, b):\n    return a + b\n```",
]
HOLD_AT = 3  # the refinement of the second task
LANGGRAPH_COMPLAINTS = ("Blocked deserialization", "Deserializing unregistered type")
# What differs between two runs of the same work: ids, clocks, and the server's address.
VARYING = {
    "trajectory_id",
    "started_at",
    "seconds",
    "wall_seconds",
    "cpu_seconds",
    "model_seconds",
    "sandbox_seconds",
    "model",
}


def comparable(value: Any) -> Any:
    """A trajectory's content without what varies from run to run."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if key not in VARYING}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def bench(data: Path, model: str, run_dir: Path) -> list[str]:
    return [
        SELFREPAIR,
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        model,
        "--strategy",
        "refine",
        "--budget",
        "4",
        "--sandbox",
        "local",
        "--out",
        str(run_dir),
        "--quiet",
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    records = [
        {
            "name": name,
            "buggy_program": f"def {name}(a, b):\n    return a - b\n",
            "docstring": "Add a and b.",
            "solution": f"def {name}(a, b):\n    return a + b\n",
            "tests": f"assert {name}(1, 2) == 3\n",
        }
        for name in ("plus", "total")
    ]
    path = tmp_path_factory.mktemp("data") / "quixbugs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict[str, Trajectory]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    with ChatStub(REPLIES) as stub:
        result = subprocess.run(
            bench(data, stub.spec, run_dir), capture_output=True, text=True, timeout=300
        )
    assert result.returncode == 0, result.stderr
    return stored(run_dir)


@pytest.mark.parametrize(
    "signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name
)
def test_a_stopped_bench_resumes_to_the_trajectories_of_an_uninterrupted_run(
    data, uninterrupted, tmp_path, signum
):
    run_dir = tmp_path / "run"
    with ChatStub(REPLIES, hold_at=HOLD_AT) as stub:
        command = bench(data, stub.spec, run_dir)
        # A shell that started the tests in the background ignores SIGINT, and a child would
        # inherit that: the run gets Ctrl-C's usual handling, as from a terminal.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        try:
            assert stub.held.wait(timeout=300), process.communicate()
            # A node's checkpoint is written in the background while the next node runs
            # (graphs.run: durability "async"); the kill is to fall after the review is saved.
            while not reviewed(stored(run_dir).get("quixbugs/total")):
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode != 0
        if signum == signal.SIGTERM:
            assert process.returncode == 128 + signum and "stopped by SIGTERM" in stderr
        assert "Traceback" not in stderr
        before = stored(run_dir)
        cut = before["quixbugs/total"]
        assert before["quixbugs/plus"].solved
        assert [s.kind for s in cut.steps] == ["solve"] and cut.steps[0].review is not None

        # The same command again: the stub goes on with the reply the stopped run never got.
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2/2 solved" in result.stdout
    assert not any(complaint in result.stderr for complaint in LANGGRAPH_COMPLAINTS), result.stderr

    after = stored(run_dir)
    assert after["quixbugs/plus"] == before["quixbugs/plus"]  # finished: not redone
    resumed = after["quixbugs/total"]
    assert resumed.trajectory_id == cut.trajectory_id
    assert resumed.steps[0].completion == cut.steps[0].completion  # the step from before the stop
    assert {task: comparable(t.model_dump()) for task, t in after.items()} == {
        task: comparable(t.model_dump()) for task, t in uninterrupted.items()
    }
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["solved"] for r in rows] == [True, True]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_a_bench_stopped_inside_a_test_run_resumes_without_redoing_or_losing_steps(
    data, tmp_path, signum
):
    # The second task's first candidate sleeps inside its test run; once that task is stored
    # and the run's own sandbox worker is seen, the bench is stopped there.
    slow = (
        "```python\ndef total(a, b):\n    import time\n    time.sleep(600)\n    return a - b\n```"
    )
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([REPLIES[0], slow]))
    run_dir = tmp_path / "run"
    command = bench(data, f"scripted:{replies}", run_dir)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not ("quixbugs/total" in stored(run_dir) and worker_runs(process)):
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(
            signum
        )  # SIGKILL: no cleanup, no last save (the sandbox dies with its parent)
        process.communicate(timeout=120)
    finally:
        process.kill()
    before = stored(run_dir)
    cut = before["quixbugs/total"]
    assert before["quixbugs/plus"].solved
    assert len(cut.steps) == 1 and cut.steps[0].report is None  # stopped inside the test run

    # The same command again; the model now has the rest of its replies.
    replies.write_text(
        json.dumps(["VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it subtracts", REPLIES[3]])
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2/2 solved" in result.stdout

    after = stored(run_dir)
    assert after["quixbugs/plus"] == before["quixbugs/plus"]  # finished: not redone
    resumed = after["quixbugs/total"]
    assert resumed.trajectory_id == cut.trajectory_id
    assert resumed.steps[0].completion == cut.steps[0].completion  # the step from before the stop
    assert [s.kind for s in resumed.steps] == ["solve", "refine"] and resumed.solved
    assert resumed.steps[0].report is not None and not resumed.steps[0].report.passed


def worker_runs(process: subprocess.Popen) -> bool:
    """The run's own sandbox worker (its candidate's process) is running, under the bench."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if "selfrepair_harness import worker" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False
