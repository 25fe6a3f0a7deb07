"""SIGTERM and SIGHUP (a `kill`, a supervisor, a closed terminal) stop `bench` and `fix` as
Ctrl-C would: the command exits 128 + the signal with one line, and nothing it started is
left running: no sandbox process, no container. The signal goes to the selfrepair process
alone, as `kill PID` sends it. (`serve` is in test_serve.py; resuming in test_repair_resume.py.)"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from chat_stub import ChatStub

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
OWNER_LABEL = "selfrepair.sandbox.owner"
PATIENCE_S = 300  # generous: how long a busy machine may take to reach the point a test waits for


def containers_of(process: subprocess.Popen, started: float) -> list:
    """The sandbox containers the process made: labelled with its pid, and made after it
    started (a container another process of the same pid, long gone, left is not its)."""
    import docker

    owner = f"{socket.gethostname()}:{process.pid}"
    found = docker.from_env().containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    return [c for c in found if created(c) >= started]


def created(container) -> float:
    # Docker's ISO time in UTC with nanoseconds, e.g. 2026-11-22T05:05:26.123456789Z
    return datetime.fromisoformat(container.attrs["Created"][:26] + "+00:00").timestamp()


@pytest.fixture(params=["local", "docker"])
def sandbox(request) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_sandbox")  # skips without Docker (fails in CI)
    return request.param


def wait_for(condition, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ended before {what}: {process.communicate()}"
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


def stop_and_check_nothing_is_left(
    process: subprocess.Popen, started: float, signum: int, sandbox: str, children: list
) -> None:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"selfrepair: stopped by {signum.name}")
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    if sandbox == "docker":
        assert containers_of(process, started) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_bench_and_leaves_nothing_running(tmp_path, sandbox, signum):
    record = {
        "name": "plus",
        "buggy_program": "def plus(a, b):\n    return a - b\n",
        "docstring": "Add a and b.",
        "solution": "def plus(a, b):\n    return a + b\n",
        "tests": "assert plus(1, 2) == 3\n",
    }
    data = tmp_path / "quixbugs.jsonl"
    data.write_text(json.dumps(record) + "\n")
    wrong = "```python\ndef plus(a, b):\n    return a * b\n```"
    # Held at the refinement: the first candidate has run, so Docker's pool holds a container.
    with ChatStub(
        [wrong, "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: no", wrong], hold_at=2
    ) as stub:
        started = time.time() - 1  # Docker's clock and this one may round differently
        process = subprocess.Popen(
            [
                SELFREPAIR,
                "bench",
                "quixbugs",
                "--data",
                str(data),
                "--model",
                stub.spec,
                "--strategy",
                "refine",
                "--sandbox",
                sandbox,
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(stub.held.is_set, "the held model call", process)
            if sandbox == "docker":
                assert containers_of(process, started), (
                    "the warm pool holds a container while the run goes on"
                )
            children = psutil.Process(process.pid).children(recursive=True)
            stop_and_check_nothing_is_left(process, started, signum, sandbox, children)
        finally:
            process.kill()


def test_sigterm_during_a_test_run_stops_the_run_and_its_sandbox(tmp_path, sandbox):
    project = tmp_path / "project"
    project.mkdir()
    (project / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    # The tests of the code as given (fix's baseline, before any model call) never end. The
    # script's name is this test's own, so no other run's process is taken for it.
    script = f"check_slowly_{secrets.token_hex(4)}.py"
    (project / script).write_text("import time\ntime.sleep(3600)\n")
    started = time.time() - 1
    process = subprocess.Popen(
        [
            SELFREPAIR,
            "fix",
            str(project),
            "--test-cmd",
            f"python {script}",
            "--model",
            "scripted:/nonexistent",
            "--sandbox",
            sandbox,
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: script in running(process, started, sandbox),
            "the test command running",
            process,
        )
        stop_and_check_nothing_is_left(
            process, started, signal.SIGTERM, sandbox, descendants(process.pid)
        )
    finally:
        process.kill()
    assert not (tmp_path / "run").exists()  # stopped before a run directory was made


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(process: subprocess.Popen, started: float, sandbox: str) -> str:
    """The command lines running for the selfrepair process: in its containers, or under it."""
    import docker

    lines = []
    if sandbox == "docker":
        for container in containers_of(process, started):
            try:
                lines += [" ".join(row) for row in container.top().get("Processes") or []]
            except docker.errors.APIError:  # not running (yet, or any more)
                pass
    for child in descendants(process.pid):
        try:
            lines.append(" ".join(child.cmdline()))
        except psutil.Error:
            pass
    return "\n".join(lines)
