"""The local sandbox's own promises: scrubbed environment, rlimits, layout, isolation report."""

from __future__ import annotations

import os

import pytest

from selfrepair.errors import SelfRepairError
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Limits
from selfrepair.sandbox.local import LocalSandbox


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    yield box
    box.close()


def test_runs_in_workspace_with_tests_and_artifacts(sandbox):
    run = sandbox.execute(
        {"pkg/mod.py": "VALUE = 41\n"},
        ["python", "$SELFREPAIR_TESTS/check.py"],
        tests={"check.py": "import os, pkg.mod\nopen(os.path.join(os.environ['SELFREPAIR_OUT'], 'r.txt'), 'w').write(str(pkg.mod.VALUE + 1))\nprint(os.getcwd())\n"},
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
    assert {"PATH", "HOME", "SELFREPAIR_TESTS", "SELFREPAIR_OUT", "SELFREPAIR_WORKSPACE"} <= set(names)


def test_file_size_limit(sandbox):
    run = sandbox.execute({}, ["python", "-c", "open('big', 'wb').write(b'x' * (3 * 1024 * 1024))"], limits=Limits(file_size_mb=1))
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
