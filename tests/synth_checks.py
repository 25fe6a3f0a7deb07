"""Checks shared by the synth tests: every emitted task fails before its fix and passes after
it, run in a sandbox exactly as `bench` judges it."""

from __future__ import annotations

import json
from pathlib import Path

from selfrepair.agents.code.repo import checkout, open_repository
from selfrepair.graphs.issue import run_candidate_tests
from selfrepair.sandbox.testing import run_tests

from selfrepair.cli.bench import find_mirror
from selfrepair.loaders import load_swebench, load_synth
from selfrepair.types import Candidate


def check_function_tasks(sandbox, out: Path) -> int:
    tasks = load_synth(out / "functions.jsonl")
    for task in tasks:
        before = run_tests(sandbox, task)
        assert not before.passed, f"{task.task_id} passes with its bug"
        failing = {case.name for case in before.failing}
        assert set(task.tests.select) <= failing, (task.task_id, task.tests.select, before.reason)
        after = run_tests(
            sandbox, task, Candidate(files={task.entry_file: task.metadata["solution"]})
        )
        assert after.passed, (
            f"{task.task_id} fails with its fix: {after.reason}\n{after.stderr[-2000:]}"
        )
        assert {case.name for case in after.tests} == {
            *task.tests.select,
            *task.tests.must_keep_passing,
        }
    return len(tasks)


def check_instances(sandbox, out: Path) -> int:
    """Each instance as `bench swebench --repos` tests it: a private checkout of the mirror at
    the base commit, the test patch (and the fix) applied, the tests the patch brings run."""
    tasks = load_swebench(out / "instances.jsonl")
    rows = {
        json.loads(line)["instance_id"]: json.loads(line)
        for line in (out / "instances.jsonl").read_text().splitlines()
    }
    for task in tasks:
        row = rows[task.task_id]
        task = task.model_copy(update={"repo": str(find_mirror(out / "repos", task))})
        with checkout(open_repository(task.repo), task.base_commit) as work:
            before = run_candidate_tests(sandbox, work, task, None)
            after = run_candidate_tests(sandbox, work, task, Candidate(diff=row["patch"]))
        assert not before.passed, f"{task.task_id} passes with its bug"
        assert after.passed, f"{task.task_id} fails with its fix: {after.reason}"
    return len(tasks)
