"""Bad input as a new user gives it (issue 16): a place a file cannot go, a store that is not
one, a test command that tests nothing, a run directory another process holds. Each is one
line naming the problem, exit 2, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from chat_stub import ChatStub
from stored_runs import reviewed, stored

ROOT = Path(__file__).resolve().parent.parent
SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
FIXED = "```python\ndef plus(a, b):\n    return a + b\n```"
NO_MODEL = (
    "scripted:/nonexistent/replies.json"  # loading it fails: a run that gets that far says so
)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SELFREPAIR, *args], capture_output=True, text=True, timeout=300)


def refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("selfrepair: error: "), (
        result.stderr
    )
    assert message in result.stderr, result.stderr


def quixbugs(folder: Path) -> Path:
    record = {
        "name": "plus",
        "buggy_program": "def plus(a, b):\n    return a - b\n",
        "docstring": "Add a and b.",
        "solution": "def plus(a, b):\n    return a + b\n",
        "tests": "assert plus(1, 2) == 3\n",
    }
    path = folder / "quixbugs.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


def bench(data: Path, model: str, out: Path) -> list[str]:
    return [
        "bench",
        "quixbugs",
        "--data",
        str(data),
        "--model",
        model,
        "--strategy",
        "refine",
        "--budget",
        "2",
        "--sandbox",
        "local",
        "--out",
        str(out),
        "--quiet",
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    replies = folder / "replies.json"
    replies.write_text(json.dumps([FIXED]))
    result = run(*bench(quixbugs(folder), f"scripted:{replies}", folder / "run"))
    assert result.returncode == 0, result.stderr
    return folder / "run"


@pytest.fixture
def corrupt_run(tmp_path) -> Path:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "run.sqlite").write_bytes(
        b"this is not an SQLite database, though it is named like one" * 100
    )
    return folder


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copytree(ROOT / "examples" / "buggy_add", tmp_path / "buggy_add")
    return tmp_path / "buggy_add"


def test_export_to_a_missing_folder_or_onto_a_directory(finished_run, tmp_path):
    refused(
        run("export", str(finished_run), "--out", str(tmp_path / "nodir" / "sub" / "out.jsonl")),
        f"cannot write {tmp_path / 'nodir' / 'sub' / 'out.jsonl'}: no such directory",
    )
    assert not (tmp_path / "nodir").exists()
    (tmp_path / "existing").mkdir()
    refused(
        run("export", str(finished_run), "--out", str(tmp_path / "existing")), "it is a directory"
    )
    assert list((tmp_path / "existing").iterdir()) == []


@pytest.mark.parametrize("command", ["report", "bench", "fix"])
def test_an_unwritable_place_is_one_line(finished_run, project, tmp_path, command):
    if command == "report":
        result = run("report", str(finished_run), "--out", "/proc/report.html")
        message = "cannot write /proc/report.html: /proc does not take new files"
    elif command == "bench":
        replies = tmp_path / "replies.json"
        replies.write_text(json.dumps([FIXED]))
        result = run(
            *bench(quixbugs(tmp_path), f"scripted:{replies}", Path("/proc/selfrepair-run"))
        )
        message = "cannot make the folder /proc/selfrepair-run"
    else:
        replies = tmp_path / "replies.json"
        replies.write_text(json.dumps(["```python\ndef add(a, b):\n    return a + b\n```"]))
        result = run(
            "fix",
            str(project),
            "--test-cmd",
            "python -m pytest -q",
            "--model",
            f"scripted:{replies}",
            "--sandbox",
            "local",
            "--out",
            "/proc/selfrepair-run",
        )
        message = "cannot make the folder /proc/selfrepair-run"
        assert "return a - b" in (project / "calc.py").read_text()  # nothing written
    refused(result, message)
    assert not list(finished_run.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "command", ["export", "train sft", "bench"]
)  # report: tests/test_report.py
def test_a_corrupt_store_is_one_line(corrupt_run, tmp_path, command):
    if command == "export":
        result = run("export", str(corrupt_run), "--out", str(tmp_path / "out.jsonl"))
    elif command == "train sft":
        result = run("train", "sft", "--runs", str(corrupt_run), "--out", str(tmp_path / "adapter"))
    else:
        result = run(*bench(quixbugs(tmp_path), NO_MODEL, corrupt_run))
    refused(result, f"{corrupt_run / 'run.sqlite'} is not a readable trajectory store")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["corrupt"] + (["quixbugs.jsonl"] if command == "bench" else [])
    )
    assert not (corrupt_run / "run.lock").exists()


@pytest.fixture(params=["local", "docker"])
def sandbox(request) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_sandbox")  # skips without Docker (fails in CI)
    return request.param


@pytest.mark.parametrize(
    "tests, test_cmd, message",
    [
        ({}, "python -m pytest -q", "it ran no tests"),
        ({"test_calc.py": None}, "python -m pytest -q -k nomatch", "it ran no tests"),
        ({"test_calc.py": None}, "python -m nosuchmodule", "it cannot start: "),
        ({"test_calc.py": None}, "python nosuch.py", "it cannot start: "),
        (
            {"test_calc.py": None},
            "python -m pytest -q --no-such-option",
            "it cannot start: its arguments are refused: unrecognized arguments: --no-such-option",
        ),
        ({"test_calc.py": None}, "no-such-test-runner", "it cannot start: "),
        (
            {"test_calc.py": None},
            "false",
            "it ran no tests (no Python process ran; exit status 1)",
        ),
    ],
)
def test_a_test_command_that_tests_nothing_is_refused_before_any_model_call(
    project, tmp_path, sandbox, tests, test_cmd, message
):
    if not tests:
        (project / "test_calc.py").unlink()
    out = tmp_path / "run"
    # The model cannot be loaded: a refusal that names the test command came before any model call.
    result = run(
        "fix",
        str(project),
        "--test-cmd",
        test_cmd,
        "--model",
        NO_MODEL,
        "--sandbox",
        sandbox,
        "--out",
        str(out),
    )
    refused(result, f"--test-cmd `{test_cmd}` cannot test {project} in the sandbox: {message}")
    assert not out.exists()


HANGING_TEST = "import time\n\n\ndef test_add():\n    time.sleep(100_000)\n"


@pytest.mark.parametrize("mode", ["files", "repository"])
def test_a_test_command_that_hangs_is_refused_at_max_seconds(
    project, issue_repo, tmp_path, sandbox, mode
):
    """Before, the preflight ran a hanging test to its own timeout (300 s for a folder, 600 s
    for a repository) and then repaired against it; now --max-seconds cuts it and fix refuses."""
    out = tmp_path / "run"
    if mode == "files":
        (project / "test_calc.py").write_text(HANGING_TEST)
        where, extra = str(project), []
    else:
        (issue_repo / "tests" / "test_hang.py").write_text(HANGING_TEST)
        subprocess.run(["git", "add", "-A"], cwd=issue_repo, check=True)
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "hang"],
            cwd=issue_repo,
            check=True,
        )
        where, extra = f"{issue_repo.name} at ", ["--issue", "Totals are wrong."]
        project = issue_repo
    result = run(
        "fix",
        str(project),
        "--test-cmd",
        "python -m pytest -q",
        *extra,
        "--max-seconds",
        "5",
        "--model",
        NO_MODEL,
        "--sandbox",
        sandbox,
        "--out",
        str(out),
    )
    refused(result, f"--test-cmd `python -m pytest -q` did not finish within 5 s on {where}")
    assert not out.exists()


def test_a_second_bench_on_a_run_directory_in_use_is_refused_and_a_killed_run_leaves_it_free(
    tmp_path,
):
    data, out = quixbugs(tmp_path), tmp_path / "run"
    wrong = "```python\ndef plus(a, b):\n    return a * b\n```"
    with ChatStub(
        [wrong, "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it multiplies", FIXED], hold_at=2
    ) as stub:
        first = subprocess.Popen(
            [SELFREPAIR, *bench(data, stub.spec, out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert stub.held.wait(timeout=300), first.communicate()
            # The review's checkpoint is written in the background while the refinement asks.
            while not reviewed(stored(out).get("quixbugs/plus")):
                assert first.poll() is None, first.communicate()
                time.sleep(0.05)
            files = {
                p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("run.sqlite")
            }
            second = run(*bench(data, stub.spec, out))
            refused(second, f"{out} is in use by another selfrepair process (pid {first.pid})")
            assert {
                p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith("run.sqlite")
            } == files
            first.send_signal(signal.SIGKILL)  # no cleanup: the lock goes with the process
            first.wait(timeout=60)
        finally:
            first.kill()
        again = run(*bench(data, stub.spec, out))
    assert again.returncode == 0 and "1/1 solved" in again.stdout, again.stderr


def test_a_second_fix_on_a_run_directory_in_use_is_refused(project, tmp_path):
    out = tmp_path / "run"
    with ChatStub(["```python\ndef add(a, b):\n    return a + b\n```"] * 8, hold_at=0) as stub:
        command = [
            SELFREPAIR,
            "fix",
            str(project),
            "--test-cmd",
            "python -m pytest -q",
            "--model",
            stub.spec,
            "--sandbox",
            "local",
            "--out",
            str(out),
        ]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert stub.held.wait(timeout=300), first.communicate()
            second = subprocess.run(command, capture_output=True, text=True, timeout=300)
            refused(second, f"{out} is in use by another selfrepair process (pid {first.pid})")
        finally:
            first.kill()
            first.wait(timeout=60)


def test_a_second_improve_on_an_out_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "improve"
    # Another process holds OUT as a running `improve` does (the lock is all that matters here).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from selfrepair.files import make_directory; "
            "from selfrepair.rundir import hold_run_dir; make_directory(Path(sys.argv[1])); hold_run_dir(Path(sys.argv[1])); "
            "print('held', flush=True); sys.stdin.read()",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        train, evaluate = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
        shutil.copy(quixbugs(tmp_path), train)
        evaluate.write_text(train.read_text().replace("plus", "total"))
        result = run(
            "improve",
            "--train",
            str(train),
            "--eval",
            str(evaluate),
            "--sandbox",
            "local",
            "--out",
            str(out),
        )
    finally:
        holder.kill()
        holder.wait()
    refused(result, f"{out} is in use by another selfrepair process (pid {holder.pid})")
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]


def test_an_empty_store_file_is_no_store_and_stays_empty(tmp_path):
    (tmp_path / "run.sqlite").write_bytes(b"")  # SQLite would read it as an empty database
    refused(
        run("export", str(tmp_path), "--out", str(tmp_path / "out.jsonl")),
        "is not a trajectory store",
    )
    assert (tmp_path / "run.sqlite").read_bytes() == b"" and not (tmp_path / "out.jsonl").exists()


@contextmanager
def mounted_tmpfs(folder: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real small (or read-only) file system at `folder`; the test is skipped where this
    user cannot mount one (not root, no CAP_SYS_ADMIN)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def input_file(tmp_path: Path, kind: str) -> Path:
    """A file given as an option's value that cannot be read as text."""
    path = tmp_path / f"input-{kind}"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b'["\xff\xfe caf\xe9"]')
    elif kind == "too-large":
        with path.open("wb") as handle:
            handle.truncate(17 * 1024 * 1024)  # sparse: costs no disk
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any file: an unreadable one cannot be made")
        path.write_text("[]")
        path.chmod(0)
    return path


@pytest.mark.parametrize("kind", ["directory", "not-utf8", "too-large", "unreadable"])
@pytest.mark.parametrize("option", ["--model scripted:", "--trl-config", "fix --spec"])
def test_an_input_file_that_cannot_be_read_is_one_line(
    finished_run, project, tmp_path, option, kind
):
    if option == "fix --spec" and kind == "directory":
        pytest.skip("--spec is a file when a file of that name exists, else the text itself")
    path = input_file(tmp_path, kind)
    if option == "--model scripted:":
        result = run(*bench(quixbugs(tmp_path), f"scripted:{path}", tmp_path / "run"))
    elif option == "--trl-config":
        result = run(
            "train", "sft", "--runs", str(finished_run), "--out", str(tmp_path / "adapter"),
            "--trl-config", str(path),
        )  # fmt: skip
    else:
        result = run(
            "fix", str(project), "--test-cmd", "python -m pytest -q", "--spec", str(path),
            "--model", NO_MODEL, "--sandbox", "local", "--out", str(tmp_path / "run"),
        )  # fmt: skip
    refused(result, str(path))
    assert not (tmp_path / "adapter").exists()
    assert "return a - b" in (project / "calc.py").read_text()


def test_a_full_disk_during_bench_is_one_line_and_the_run_resumes_once_there_is_room(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["```python\ndef plus(a, b):\n    return a * b\n```", FIXED]))
    with mounted_tmpfs(tmp_path / "disk", "160k") as disk:
        command = bench(quixbugs(tmp_path), f"scripted:{replies}", disk / "run")
        refused(run(*command), "no space left on the device")
        remount(disk, "size=64m")
        result = run(*command)
    assert result.returncode == 0, result.stderr
    assert "1/1 solved" in result.stdout


@pytest.mark.parametrize("size", ["32k", "96k"])
def test_fix_out_on_a_full_disk_leaves_nothing_that_refuses_the_same_command(
    project, tmp_path, size
):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["```python\ndef add(a, b):\n    return a + b\n```"]))
    with mounted_tmpfs(tmp_path / "disk", size) as disk:
        command = [
            "fix", str(project / "calc.py"), "--test-cmd", "python -m pytest -q", "--model",
            f"scripted:{replies}", "--sandbox", "local", "--strategy", "refine",
            "--out", str(disk / "run"), "--quiet",
        ]  # fmt: skip
        first = run(*command)
        assert first.returncode == 2 and first.stderr.count("\n") == 1, first.stderr
        assert "space" in first.stderr, first.stderr
        remount(disk, "size=64m")
        result = run(*command)
    assert result.returncode == 0, result.stderr


def test_train_to_a_read_only_mount_is_one_line(finished_run, tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "1m", read_only=True) as place:
        result = run("train", "sft", "--runs", str(finished_run), "--out", str(place / "adapter"))
    refused(result, f"cannot write {place / 'adapter'}")


@pytest.mark.parametrize("shared_memory_file", [True, False], ids=["as-left", "without-shm"])
def test_report_and_export_read_a_finished_run_on_a_read_only_mount(
    finished_run, tmp_path, shared_memory_file
):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    if not shared_memory_file:
        (copy / "run.sqlite-shm").unlink(missing_ok=True)
    mount = tmp_path / "ro"
    mount.mkdir()
    bound = subprocess.run(["mount", "--bind", str(copy), str(mount)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.decode().strip()}")
    try:
        remount(mount, "ro,bind")
        exported = run("export", str(mount), "--out", str(tmp_path / "out.jsonl"))
        reported = run("report", str(mount), "--out", str(tmp_path / "report.html"))
        in_place = run("report", str(mount))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert reported.returncode == 0, reported.stderr
    assert "plus" in (tmp_path / "report.html").read_text()
    refused(in_place, "read-only")  # its default place is in the run directory


@pytest.mark.parametrize("name", ["../../etc/evil", "/etc/evil", "a//b", "tab\there"])
def test_a_task_id_that_is_no_plain_name_is_refused(tmp_path, name):
    data = tmp_path / "quixbugs.jsonl"
    data.write_text(json.dumps(json.loads(quixbugs(tmp_path).read_text()) | {"name": name}) + "\n")
    result = run(*bench(data, NO_MODEL, tmp_path / "run"))
    refused(result, f"{data}:1: field 'task_id'")
    assert not (tmp_path / "run").exists()


def test_a_record_over_the_size_limit_is_refused_before_any_work(tmp_path):
    record = json.loads(quixbugs(tmp_path).read_text())
    data = tmp_path / "quixbugs.jsonl"
    data.write_text(
        json.dumps(record) + "\n" + json.dumps(record | {"docstring": "x" * 5_000_000}) + "\n"
    )
    result = run(*bench(data, NO_MODEL, tmp_path / "run"))
    refused(result, f"{data}:2: a record of 5,000,")
    assert not (tmp_path / "run").exists()
