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
    # Sparse: the listing alone, so a container removed while it is read is not an error.
    found = docker.from_env().containers.list(
        all=True, sparse=True, filters={"label": f"{OWNER_LABEL}={owner}"}
    )
    return [c for c in found if c.attrs["Created"] >= int(started)]


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


QUIXBUGS_PLUS = {
    "name": "plus",
    "buggy_program": "def plus(a, b):\n    return a - b\n",
    "docstring": "Add a and b.",
    "solution": "def plus(a, b):\n    return a + b\n",
    "tests": "assert plus(1, 2) == 3\n",
}


def start_bench(tmp_path: Path, spec: str, sandbox: str, *extra: str) -> subprocess.Popen:
    tmp_path.mkdir(exist_ok=True)
    data = tmp_path / "quixbugs.jsonl"
    data.write_text(json.dumps(QUIXBUGS_PLUS) + "\n")
    return subprocess.Popen(
        [
            SELFREPAIR,
            "bench",
            "quixbugs",
            "--data",
            str(data),
            "--model",
            spec,
            "--sandbox",
            sandbox,
            "--out",
            str(tmp_path / "run"),
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that started the tests in the background ignores SIGINT, and a child would
        # inherit that: the run gets Ctrl-C's usual handling, as from a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stopped_cleanly(process: subprocess.Popen, signum: int) -> str:
    """Stop the process; it exits 128 + the signal with one line and no traceback."""
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"selfrepair: stopped by {signum.name}")
    return stderr


@pytest.mark.docker
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_signal_during_the_docker_warm_up_leaves_no_container(tmp_path, signum, docker_sandbox):
    """The pool's containers are made in threads while the main thread waits: a stop at any
    moment of it (some made, some being made, some not yet asked for) leaves none. The
    moments are counted from the first container seen; whichever each lands on, the
    assertion is the same."""
    with ChatStub([], hold_at=0) as stub:
        for offset in (0.0, 0.05, 0.2, 0.5, 1.0):
            started = time.time() - 1
            process = start_bench(tmp_path / f"at-{offset}", stub.spec, "docker", "--jobs", "4")
            try:
                wait_for(lambda p=process, s=started: containers_of(p, s), "a container", process)
                time.sleep(offset)
                stopped_cleanly(process, signum)
            finally:
                process.kill()
                process.wait()
            assert containers_of(process, started) == [], f"left behind when stopped at +{offset}s"


def catches_sighup(pid: int) -> bool:
    """Whether the process has installed selfrepair's stop handlers: Python catches SIGINT
    by itself from start-up, SIGHUP only once the entry point has asked for it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16
    )
    return bool(caught & (1 << (signal.SIGHUP - 1)))


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6, 1.0, 2.0])
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(tmp_path, delay):
    """Ctrl-C while the command still loads its modules (seconds: torch, transformers) or
    sets the run up: exit 130, one line, no traceback; nothing is left running. The moments
    count from the entry point's first lines (before them the interpreter itself starts)."""
    with ChatStub([], hold_at=0) as stub:
        process = start_bench(tmp_path, stub.spec, "local")
        try:
            wait_for(lambda: catches_sighup(process.pid), "the stop handlers", process)
            time.sleep(delay)
            children = descendants(process.pid)
            if process.poll() is not None:
                pytest.fail(f"ended before the signal: {process.communicate()}")
            stopped_cleanly(process, signal.SIGINT)
            _, alive = psutil.wait_procs(children, timeout=30)
            assert not alive, [p.cmdline() for p in alive]
        finally:
            process.kill()
            process.wait()
