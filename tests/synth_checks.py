"""Checks shared by the synth tests: every emitted task fails before its fix and passes after
it, run in a sandbox exactly as `bench` would judge it."""

from __future__ import annotations

import json
from pathlib import Path

from selfrepair.agents.repo import checkout, open_repository
from selfrepair.graphs.issue import judge, workspace_tests
from selfrepair.loaders import load_swebench, load_synth
from selfrepair.sandbox.testing import run_tests
from selfrepair.types import Candidate


def check_function_tasks(sandbox, out: Path) -> int:
    tasks = load_synth(out / "functions.jsonl")
    for task in tasks:
        before = run_tests(sandbox, task)
        assert not before.passed, f"{task.task_id} passes with its bug"
        failing = {case.name for case in before.failing}
        assert set(task.tests.select) <= failing, (task.task_id, task.tests.select, before.reason)
        after = run_tests(sandbox, task, Candidate(files={task.entry_file: task.metadata["solution"]}))
        assert after.passed, f"{task.task_id} fails with its fix: {after.reason}\n{after.stderr[-2000:]}"
        assert {case.name for case in after.tests} == {*task.tests.select, *task.tests.must_keep_passing}
    return len(tasks)


def workspace(mirror: Path, commit: str, patches: list[str]) -> dict[str, str]:
    """The files of `commit` with the patches applied. The checkout is read into a dict rather
    than given to the sandbox as a folder: that keeps this check about the instance, whichever
    way a sandbox copies a folder in."""
    with checkout(open_repository(mirror), commit) as work:
        for patch in patches:
            work.apply_patch(patch)
        return {
            str(path.relative_to(work.path)): path.read_text(encoding="utf-8")
            for path in work.path.rglob("*")
            if path.is_file() and ".git" not in path.relative_to(work.path).parts
        }


def check_instances(sandbox, out: Path) -> int:
    tasks = load_swebench(out / "instances.jsonl")
    rows = {json.loads(line)["instance_id"]: json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()}
    for task in tasks:
        row = rows[task.task_id]
        mirror = out / "repos" / row["repo"].replace("/", "__")
        runnable = workspace_tests(task)  # what `bench swebench` runs: pytest on the test patch's files
        for patches, should_pass in (([row["test_patch"]], False), ([row["patch"], row["test_patch"]], True)):
            files = workspace(mirror, row["base_commit"], patches)
            report = judge(task, run_tests(sandbox, runnable.model_copy(update={"files": files, "repo": None, "base_commit": None})))
            assert report.passed is should_pass, (task.task_id, should_pass, report.reason)
    return len(tasks)
