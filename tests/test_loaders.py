"""Task loaders: the shared QuixBugs file, fixture files of the other formats, local
directories and git repositories, and broken files refused with file, line and reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfrepair.errors import SelfRepairError
from selfrepair.loaders import (
    load_directory,
    load_humaneval,
    load_humanevalpack,
    load_quixbugs,
    load_swebench,
    load_tasks,
)
from selfrepair.types import Task

ROOT = Path(__file__).resolve().parent.parent
QUIXBUGS = ROOT.parent / "shared" / "benchmarks" / "quixbugs_python.jsonl"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def passes(task: Task, program: str, tmp_path: Path) -> bool:
    """Judge a program the way the benchmarks define it: program and test script as one file."""
    [test] = task.tests.files.values()
    script = tmp_path / "judge.py"
    script.write_text(program + "\n\n" + test)
    try:
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, timeout=task.tests.timeout_s
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


# ---------------------------------------------------------------- QuixBugs


@pytest.mark.skipif(
    not QUIXBUGS.is_file(), reason="the shared benchmarks folder is not beside the repository"
)
def test_quixbugs_gives_40_repair_tasks() -> None:
    tasks = load_quixbugs(QUIXBUGS)
    assert len(tasks) == 40
    assert len({t.task_id for t in tasks}) == 40
    gcd = next(t for t in tasks if t.task_id == "quixbugs/gcd")
    assert gcd.entry_file == "gcd.py" and gcd.entry_point == "gcd"
    assert gcd.files["gcd.py"].startswith("def gcd")
    assert gcd.spec.lstrip('"\n').startswith("Greatest Common Divisor") or "gcd" in gcd.spec.lower()
    assert gcd.tests.kind == "script" and list(gcd.tests.files) == ["test_gcd.py"]
    assert gcd.metadata["mode"] == "repair"
    assert gcd.metadata["solution"] != gcd.files["gcd.py"]
    for task in tasks:
        assert task.tests.timeout_s >= 5


@pytest.mark.skipif(
    not QUIXBUGS.is_file(), reason="the shared benchmarks folder is not beside the repository"
)
def test_quixbugs_reference_passes_and_buggy_program_fails(tmp_path: Path) -> None:
    task = next(t for t in load_quixbugs(QUIXBUGS) if t.task_id == "quixbugs/gcd")
    assert passes(task, task.metadata["solution"], tmp_path)
    assert not passes(task, task.files[task.entry_file], tmp_path)


# ---------------------------------------------------------------- HumanEvalPack and HumanEval


def test_humanevalpack_fixture(tmp_path: Path) -> None:
    tasks = load_humanevalpack(FIXTURES / "humanevalpack.jsonl")
    assert [t.task_id for t in tasks] == ["Python/0", "Python/2"]
    close, truncate = tasks
    assert close.files == {"has_close_elements.py": close.files["has_close_elements.py"]}
    assert close.files["has_close_elements.py"].startswith("from typing import List")
    assert "distance = elem - elem2" in close.files["has_close_elements.py"]
    assert close.spec.startswith("Check if in given list")
    assert close.metadata["mode"] == "repair"
    # Its test calls check() already; the other's gets the call added.
    [close_test] = close.tests.files.values()
    assert close_test.count("\ncheck(has_close_elements)") == 1
    [truncate_test] = truncate.tests.files.values()
    assert truncate_test.rstrip().endswith("check(truncate_number)")
    for task in tasks:
        assert passes(task, task.metadata["solution"], tmp_path)
        assert not passes(task, task.files[task.entry_file], tmp_path)


def test_humaneval_from_the_package_is_a_generation_task(tmp_path: Path) -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164
    first = tasks[0]
    assert first.task_id == "HumanEval/0"
    assert first.metadata["mode"] == "generate"
    assert first.files[first.entry_file] == first.spec  # the prompt to complete
    assert passes(first, first.metadata["solution"], tmp_path)
    assert not passes(first, first.files[first.entry_file], tmp_path)


# ---------------------------------------------------------------- SWE-bench


@pytest.mark.parametrize("name", ["swebench.json", "swebench.jsonl"])
def test_swebench_instances(name: str) -> None:
    requests, shop = load_swebench(FIXTURES / name)
    assert requests.task_id == "psf__requests-1"
    assert requests.repo == "https://github.com/psf/requests.git"
    assert requests.base_commit == "a0df2cbb10419037d11d04352b3175405ab52941"
    assert requests.spec.startswith("Response.iter_content")
    assert requests.files == {}
    assert requests.tests.kind == "pytest"
    # JSON-encoded lists, as the official dataset stores them, are decoded.
    assert requests.tests.select == ["tests/test_requests.py::test_empty_iter_content"]
    assert requests.tests.must_keep_passing == [
        "tests/test_requests.py::test_basic",
        "tests/test_requests.py::test_json",
    ]
    assert requests.metadata["test_patch"].startswith("diff --git")
    assert requests.metadata["solution"].startswith("diff --git")
    assert shop.repo == "/srv/git/shop"  # a path stays a path
    assert shop.tests.select == ["tests/test_cart.py::test_discount"]


def test_swebench_single_object(tmp_path: Path) -> None:
    instance = json.loads((FIXTURES / "swebench.jsonl").read_text().splitlines()[0])
    path = tmp_path / "one.json"
    path.write_text(json.dumps(instance, indent=4))
    [task] = load_swebench(path)
    assert task.task_id == "psf__requests-1"


# ---------------------------------------------------------------- load_tasks


def test_load_tasks_by_benchmark_name() -> None:
    assert len(load_tasks("humanevalfix", FIXTURES / "humanevalpack.jsonl")) == 2
    assert len(load_tasks("swebench", FIXTURES / "swebench.json")) == 2
    assert len(load_tasks("humaneval", None)) == 164
    with pytest.raises(SelfRepairError, match="unknown benchmark 'mbpp'"):
        load_tasks("mbpp", FIXTURES / "humanevalpack.jsonl")
    with pytest.raises(SelfRepairError, match="quixbugs benchmark needs a data file"):
        load_tasks("quixbugs", None)


# ---------------------------------------------------------------- local directories


def test_directory_takes_source_and_skips_the_rest(tmp_path: Path) -> None:
    project = tmp_path / "calc"
    (project / "calc").mkdir(parents=True)
    (project / "calc" / "core.py").write_text("def add(a, b):\n    return a - b\n")
    (project / "README.md").write_text("# calc\n")
    (project / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (project / "data.csv").write_text("x\n" * 200_000)
    for skipped in (".venv/lib", "__pycache__", ".git_like/.pytest_cache"):
        (project / skipped).mkdir(parents=True)
        (project / skipped / "junk.py").write_text("junk = 1\n")
    [task] = load_directory(project, "python -m pytest -q", spec="add subtracts")
    assert task.task_id == "calc"
    assert sorted(task.files) == ["README.md", "calc/core.py"]
    assert task.tests.kind == "command" and task.tests.command == "python -m pytest -q"
    assert task.spec == "add subtracts"
    assert task.repo is None and task.base_commit is None


def test_git_repository_is_the_tasks_repo(issue_repo: Path) -> None:
    (issue_repo / "notes.txt").write_text("untracked but not ignored\n")
    [task] = load_directory(issue_repo, "python -m pytest -q")
    head = subprocess.run(
        ["git", "-C", str(issue_repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert task.repo == str(issue_repo.resolve())
    assert task.base_commit == head.stdout.strip()
    assert "notes.txt" in task.files
    assert any(name.endswith(".py") for name in task.files)
    assert not any(name.startswith(".git/") for name in task.files)


def test_directory_refusals(tmp_path: Path) -> None:
    with pytest.raises(SelfRepairError, match="not a directory"):
        load_directory(tmp_path / "missing", "make test")
    with pytest.raises(SelfRepairError, match="needs a test command"):
        load_directory(tmp_path, "  ")
    with pytest.raises(SelfRepairError, match="holds no source files"):
        load_directory(tmp_path, "make test")


# ---------------------------------------------------------------- broken files


def quixbugs_line(**changes) -> str:
    record = {
        "name": "f",
        "buggy_program": "def f(): return 1",
        "docstring": "d",
        "solution": "def f(): return 2",
        "tests": "assert f() == 2",
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None})


@pytest.mark.parametrize(
    ("lines", "where", "reason"),
    [
        ([quixbugs_line(), '{"name": "g", "buggy_program": '], 2, "bad JSON"),
        (
            [quixbugs_line(), "", quixbugs_line(name="g", tests=None)],
            3,
            "field 'tests': Field required",
        ),
        ([quixbugs_line(name=7)], 1, "field 'name': Input should be a valid string"),
        ([quixbugs_line(), "[1, 2]"], 2, "expected a JSON object, got list"),
        ([quixbugs_line(), quixbugs_line()], 2, "task 'quixbugs/f' appears twice"),
        ([quixbugs_line(name="")], 1, "field 'name': String should have at least 1 character"),
    ],
)
def test_broken_quixbugs_file_is_refused_with_line_and_reason(
    tmp_path: Path, lines, where, reason
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SelfRepairError) as error:
        load_quixbugs(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{where}: ")
    assert reason in message


def test_broken_swebench_list_names_the_line_of_the_item(tmp_path: Path) -> None:
    instances = json.loads((FIXTURES / "swebench.json").read_text())
    instances[1]["FAIL_TO_PASS"] = "not json ["
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(instances, indent=2))
    item_starts = [
        n for n, line in enumerate(path.read_text().splitlines(), start=1) if line == "  {"
    ]
    item_line = item_starts[1]  # the second instance's opening brace
    with pytest.raises(SelfRepairError) as error:
        load_swebench(path)
    assert str(error.value).startswith(f"{path}:{item_line}: field 'FAIL_TO_PASS'")

    path.write_text((FIXTURES / "swebench.json").read_text().rstrip()[:-1])  # no closing ]
    with pytest.raises(SelfRepairError, match="bad JSON: the list is not closed"):
        load_swebench(path)


def test_humanevalpack_missing_field(tmp_path: Path) -> None:
    records = [
        json.loads(line) for line in (FIXTURES / "humanevalpack.jsonl").read_text().splitlines()
    ]
    del records[1]["buggy_solution"]
    path = tmp_path / "pack.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(
        SelfRepairError, match=r"pack\.jsonl:2: field 'buggy_solution': Field required"
    ):
        load_humanevalpack(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(SelfRepairError, match="holds no tasks"):
        load_quixbugs(empty)
    with pytest.raises(SelfRepairError, match="no such file"):
        load_humanevalpack(tmp_path / "missing.jsonl")
