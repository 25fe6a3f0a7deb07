"""The local sandbox's own promises: scrubbed environment, rlimits, layout, isolation report."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Limits
from selfrepair.sandbox.local import LocalSandbox

from selfrepair.errors import SelfRepairError


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    yield box
    box.close()


def test_runs_in_workspace_with_tests_and_artifacts(sandbox):
    run = sandbox.execute(
        {"pkg/mod.py": "VALUE = 41\n"},
        ["python", "$SELFREPAIR_TESTS/check.py"],
        tests={
            "check.py": "import os, pkg.mod\nopen(os.path.join(os.environ['SELFREPAIR_OUT'], 'r.txt'), 'w').write(str(pkg.mod.VALUE + 1))\nprint(os.getcwd())\n"
        },
        collect=["r.txt", "missing.txt"],
    )
    assert run.exit_code == 0, run.stderr
    assert run.artifacts == {"r.txt": b"42"}
    assert run.stdout.strip().endswith("/work")
    assert run.sandbox == "local"


def test_environment_is_scrubbed(sandbox, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    run = sandbox.execute({}, ["python", "-c", "import os; print(sorted(os.environ))"])
    names = eval(run.stdout)
    assert "AWS_SECRET_ACCESS_KEY" not in names
    assert {"PATH", "HOME", "SELFREPAIR_TESTS", "SELFREPAIR_OUT", "SELFREPAIR_WORKSPACE"} <= set(
        names
    )


def test_file_size_limit(sandbox):
    run = sandbox.execute(
        {},
        ["python", "-c", "open('big', 'wb').write(b'x' * (3 * 1024 * 1024))"],
        limits=Limits(file_size_mb=1),
    )
    assert run.exit_code != 0


def test_exit_codes_and_signals(sandbox):
    assert sandbox.execute({}, ["python", "-c", "raise SystemExit(7)"]).exit_code == 7
    assert sandbox.execute({}, ["sh", "-c", "kill -9 $$"]).exit_code == 137
    missing = sandbox.execute({}, ["no-such-program-here"])
    assert missing.exit_code == 127


def test_escaping_paths_are_refused(sandbox):
    with pytest.raises(SelfRepairError):
        sandbox.execute({"../x.py": "x"}, ["true"])
    with pytest.raises(SelfRepairError):
        sandbox.execute({}, ["true"], tests={"/etc/x": "x"})


def test_isolation_report_names_each_fence(sandbox):
    lines = sandbox.isolation()
    assert any(line.startswith("network:") for line in lines)
    assert any(line.startswith("rlimits:") for line in lines)


def test_open_sandbox_local_and_bad_kind():
    assert open_sandbox("local").name == "local"
    with pytest.raises(SelfRepairError):
        open_sandbox("vm")


def test_auto_falls_back_and_says_so_once(monkeypatch, capsys):
    import selfrepair.sandbox.choose as choose
    import selfrepair.sandbox.container as container

    monkeypatch.setattr(container, "docker_unavailable", lambda: "no Docker daemon answers (test)")
    monkeypatch.setattr(choose, "_fallback_said", False)
    assert open_sandbox("auto").name == "local"
    assert open_sandbox("auto").name == "local"
    err = capsys.readouterr().err
    assert err.count("using the local sandbox: no Docker daemon answers (test)") == 1
    with pytest.raises(SelfRepairError, match="no Docker daemon"):
        open_sandbox("docker")


AS_ROOT = os.geteuid() == 0


def test_private_temporary_folders_leave_nothing_on_the_host(sandbox):
    # Each run has its own /tmp, /var/tmp and /dev/shm: what one writes there neither stays on
    # the host nor reaches the next run.
    names = [
        f"/tmp/selfrepair-leak-{os.getpid()}",
        f"/var/tmp/selfrepair-leak-{os.getpid()}",
        f"/dev/shm/selfrepair-leak-{os.getpid()}",
    ]
    plant = "".join(f"open({name!r}, 'w').write('x')\n" for name in names)
    planted = sandbox.execute({}, ["python", "-c", plant])
    assert planted.exit_code == 0, planted.stderr
    assert not any(Path(name).exists() for name in names)
    look = f"import os, sys\nsys.exit(sum(os.path.exists(n) for n in {names!r}))\n"
    assert sandbox.execute({}, ["python", "-c", look]).exit_code == 0


def test_isolation_report_names_what_is_isolated(sandbox):
    lines = "\n".join(sandbox.isolation())
    assert "bubblewrap" in lines
    assert "/tmp, /var/tmp and /dev/shm" in lines and "network: none" in lines


@pytest.mark.skipif(
    not AS_ROOT,
    reason="a private folder keeps out other users only; the sandbox user differs from the caller only as root",
)
def test_an_environment_in_a_private_folder_runs_tests_as_root(tmp_path):
    # The project installed under a 0700 folder (root's home, a mktemp -d checkout): the
    # sandbox user could not read it, and every candidate would fail for the sandbox's sake.
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    venv = private / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site_packages / "ours.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    )
    program = (
        "from selfrepair.sandbox.local import LocalSandbox\n"
        "from selfrepair.sandbox.testing import run_tests\n"
        "from selfrepair.types import Candidate, Task, TestSpec\n"
        "task = Task(task_id='t', spec='', files={'calc.py': 'def add(a, b):\\n    return a - b\\n'},\n"
        "            tests=TestSpec(kind='pytest', files={'test_calc.py': 'from calc import add\\ndef test_add():\\n    assert add(1, 2) == 3\\n'}))\n"
        "box = LocalSandbox()\n"
        "assert not run_tests(box, task).passed\n"
        "report = run_tests(box, task, Candidate(files={'calc.py': 'def add(a, b):\\n    return a + b\\n'}))\n"
        "box.close()\n"
        "print('passed' if report.passed else report.reason)\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("passed"), done.stdout[-2000:]


@pytest.mark.skipif(not shutil.which("bwrap"), reason="the private /tmp is bubblewrap's")
def test_an_environment_that_reaches_into_tmp_runs_tests():
    # An environment whose .pth adds a folder under /tmp (a checkout in `mktemp -d`, where
    # `make test` runs): each run has a private /tmp, which must not hide that folder.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        root = Path(folder)
        root.chmod(0o755)  # as root the tests run as nobody, who must read the environment
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        extra = root / "extra" / "site-packages"
        extra.mkdir(parents=True)
        (extra / "probe_under_tmp.py").write_text("VALUE = 41\n")
        site_packages = next((venv / "lib").glob("python3*/site-packages"))
        ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
        (site_packages / "ours.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in [*ours, str(extra)])
        )
        program = (
            "from selfrepair.sandbox.local import LocalSandbox\n"
            "box = LocalSandbox()\n"
            "run = box.execute({}, ['python', '-c', 'import probe_under_tmp as p; print(p.VALUE + 1)'])\n"
            "box.close()\n"
            "print(run.exit_code, run.stdout.strip(), run.stderr.strip()[-500:])\n"
        )
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", program],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("0 42"), done.stdout[-2000:]


def test_a_sandbox_never_closed_leaves_no_harness_folder():
    # A program that opens the local sandbox and exits without closing it (an error, a
    # forgotten close) must not leave the harness's temporary folder on the host.
    code = "from selfrepair.sandbox.local import LocalSandbox; print(LocalSandbox().harness)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    harness = Path(result.stdout.strip().splitlines()[-1])
    assert harness.name.startswith("selfrepair-harness-")
    assert not harness.exists()
