"""Hostile and broken candidates, on the local sandbox and on Docker.

Each candidate carries a correct solution, so a failed report can only come from what it
does besides: every one must end in a failed TestReport with its reason, the next run in
the same sandbox must pass, and the host must be untouched.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from selfrepair.sandbox.local import LocalSandbox
from selfrepair.sandbox.testing import run_tests

from selfrepair.types import Candidate, Task, TestSpec

SOLUTION = "def double(x):\n    return 2 * x\n"
SCRIPT_TASK = Task(
    task_id="double",
    spec="Return twice x.",
    files={"double.py": "def double(x):\n    return x\n"},
    entry_file="double.py",
    tests=TestSpec(
        kind="script",
        files={"test_double.py": "assert double(2) == 4\nassert double(0) == 0\n"},
        timeout_s=60,
    ),
)
PYTEST_TASK = SCRIPT_TASK.model_copy(
    update={
        "tests": TestSpec(
            kind="pytest",
            files={
                "test_double.py": "from double import double\n\ndef test_double():\n    assert double(2) == 4\n"
            },
            timeout_s=60,
        )
    }
)
AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def local_sandbox():
    box = LocalSandbox()
    yield box
    box.close()


@pytest.fixture(params=["local", "docker"])
def sandbox(request, local_sandbox):
    if request.param == "local":
        return local_sandbox
    return request.getfixturevalue("docker_sandbox")


# Candidates that never end are cut after a few seconds; every other run has a minute, which no
# loaded machine comes near, so what is tested never depends on speed.
ENDLESS_TASK = SCRIPT_TASK.model_copy(
    update={"tests": SCRIPT_TASK.tests.model_copy(update={"timeout_s": 3})}
)


def attempt(sandbox, prelude: str, task: Task = SCRIPT_TASK):
    """Run a hostile candidate, then check that a clean one still passes right after."""
    report = run_tests(sandbox, task, Candidate(files={"double.py": prelude + "\n" + SOLUTION}))
    clean = run_tests(sandbox, task, Candidate(files={"double.py": SOLUTION}))
    assert clean.passed, f"the run after a hostile one failed: {clean.reason}\n{clean.stderr}"
    assert not report.passed
    assert report.reason
    return report


def test_infinite_loop(sandbox):
    report = attempt(sandbox, "while True:\n    pass\n", task=ENDLESS_TASK)
    assert report.timed_out and "timed out" in report.reason


def test_fork_bomb(sandbox):
    report = attempt(
        sandbox,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        task=ENDLESS_TASK,
    )
    assert report.timed_out


def test_memory_bomb(sandbox):
    report = attempt(
        sandbox, "hoard = []\nwhile True:\n    hoard.append(bytearray(16 * 1024 * 1024))\n"
    )
    assert report.out_of_memory and "out of memory" in report.reason


def test_output_beyond_the_cap_is_cut_and_counted(sandbox):
    # 16 MB, far beyond the 64 KB cap, with a timeout no loaded machine comes near: what is
    # tested is the cap, not the speed of the pipe.
    task = SCRIPT_TASK.model_copy(
        update={"tests": SCRIPT_TASK.tests.model_copy(update={"timeout_s": 300})}
    )
    prelude = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(16):\n    sys.stdout.write(chunk)\nsys.stdout.flush()\n"
    report = run_tests(sandbox, task, Candidate(files={"double.py": prelude + SOLUTION}))
    assert not report.timed_out
    assert report.stdout_cut_bytes >= 16 * (1 << 20) - 64 * 1024
    assert len(report.stdout) < 100 * 1024
    assert report.passed, report.reason  # printing is no crime: the answers are right


def test_never_ending_output(sandbox):
    report = attempt(sandbox, "while True:\n    print('spam' * 100)\n", task=ENDLESS_TASK)
    assert report.timed_out and report.stdout_cut_bytes > 0 and len(report.stdout) < 100 * 1024


def test_network_connection_is_refused(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    prelude = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n"
    try:
        report = attempt(sandbox, prelude)
        with pytest.raises(OSError):  # nothing ever connected to the host
            listener.accept()
    finally:
        listener.close()
    assert "Error" in report.reason


def test_host_environment_is_not_visible(sandbox, monkeypatch):
    monkeypatch.setenv("SELFREPAIR_TEST_SECRET", "hunter2-secret")
    report = attempt(
        sandbox,
        "import os\nprint(dict(os.environ))\nassert 'SELFREPAIR_TEST_SECRET' not in os.environ\nraise SystemExit(1)\n",
    )
    assert "hunter2-secret" not in report.stdout + report.stderr
    assert "SystemExit" in report.reason


@pytest.mark.skipif(
    not AS_ROOT,
    reason="the local sandbox hides host files only when it can run as nobody (host user root)",
)
def test_host_files_outside_workspace_are_not_readable(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the-host-secret")
    secret.parent.chmod(0o700)
    report = attempt(sandbox, f"print(open({str(secret)!r}).read())\n")
    assert "the-host-secret" not in report.stdout + report.stderr
    assert "Error" in report.reason


@pytest.mark.skipif(
    not AS_ROOT, reason="the local sandbox fences the host's files only when it can run as nobody"
)
def test_writing_outside_workspace(sandbox, tmp_path):
    target = tmp_path / "planted.txt"
    planted_tmp = Path("/tmp/selfrepair-planted-by-candidate")
    prelude = f"open({str(planted_tmp)!r}, 'w').write('x')\nopen({str(target)!r}, 'w').write('x')\n"
    report = attempt(sandbox, prelude)
    assert not target.exists() and not planted_tmp.exists()
    assert "Error" in report.reason


def test_deleting_or_editing_the_tests(sandbox):
    prelude = (
        "import os, glob\n"
        "for path in glob.glob(os.path.join(os.environ['SELFREPAIR_TESTS'], '*')):\n"
        "    try:\n        os.chmod(path, 0o666)\n    except OSError:\n        pass\n"
        "    try:\n        open(path, 'w').write('def test_double():\\n    pass\\n')\n    except OSError:\n        pass\n"
        "    try:\n        os.remove(path)\n    except OSError:\n        pass\n"
        "def double(x):\n    return x\n"
    )
    # The prelude's own (wrong) double is the one that counts: it ends with a bad definition.
    report = run_tests(sandbox, PYTEST_TASK, Candidate(files={"double.py": prelude}))
    assert not report.passed and report.reason
    assert run_tests(sandbox, PYTEST_TASK, Candidate(files={"double.py": SOLUTION})).passed


@pytest.mark.parametrize("exit_call", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_early_exit_faking_a_pass_script(sandbox, exit_call):
    report = attempt(sandbox, exit_call)
    assert "early exit" in report.suspicious


@pytest.mark.parametrize("exit_call", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_early_exit_faking_a_pass_pytest(sandbox, exit_call):
    attempt(sandbox, exit_call, task=PYTEST_TASK)


def test_killing_its_parent(sandbox):
    report = attempt(
        sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nraise SystemExit(1)\n"
    )
    assert report.reason


def test_leaving_a_background_process(sandbox):
    prelude = "import subprocess\nsubprocess.Popen(['sleep', '60'])\n"
    report = attempt(sandbox, prelude)
    assert "left processes" in report.reason


def test_syntax_error(sandbox):
    report = attempt(sandbox, "def double(x) return x\n")
    assert "SyntaxError" in report.reason


def test_nothing_left_on_the_host_by_local_runs(local_sandbox):
    attempt(local_sandbox, "import subprocess\nsubprocess.Popen(['sleep', '61'])\n")
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid) == "sleep61"]
    assert leftovers == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b"").decode()
    except OSError:
        return ""
