"""The issue graph end to end on the example repository, with a scripted model and the
local sandbox: edits that miss, edits that break the syntax, a partial fix, the real fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import git
import pytest
from selfrepair.agents.models.scripted import ScriptedModel
from selfrepair.graphs import issue
from selfrepair.graphs.run import open_checkpointer
from selfrepair.sandbox import judging
from selfrepair.sandbox.local import LocalSandbox

from selfrepair import types
from selfrepair.errors import SelfRepairError
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore

ISSUE = (
    Path(__file__).resolve().parent.parent / "examples" / "issue_repo" / "ISSUE.md"
).read_text()

NOT_MATCHING = """`parse_price` assumes a decimal point.

shop/money.py
```python
<<<<<<< SEARCH
    dollars, cents = text.split('.')
=======
    dollars, _, cents = text.partition('.')
>>>>>>> REPLACE
```"""
BREAKS_SYNTAX = """shop/money.py
<<<<<<< SEARCH
    dollars, cents = text.split(".")
=======
    dollars, _, cents = text.partition(".")
    cents = (cents or "0"
>>>>>>> REPLACE"""
PARTIAL = """`parse_price` assumes a decimal point.

shop/money.py
```python
<<<<<<< SEARCH
    dollars, cents = text.split(".")
=======
    dollars, _, cents = text.partition(".")
    cents = cents or "0"
>>>>>>> REPLACE
```"""
HANGS = """shop/money.py
<<<<<<< SEARCH
    dollars, cents = text.split(".")
=======
    __import__("time").sleep(100_000)
    dollars, cents = text.split(".")
>>>>>>> REPLACE"""
REVIEW_WRONGLY_ACCEPTS = "VERDICT: accept\nCONFIDENCE: 0.9\nCRITIQUE: looks right"
FIX_ON_TOP = """One decimal digit means tens of cents, so pad the cents to two digits.

shop/money.py
<<<<<<< SEARCH
    cents = cents or "0"
    return int(dollars) * 100 + int(cents)
=======
    return int(dollars) * 100 + int((cents + "00")[:2])
>>>>>>> REPLACE"""


class RecordingSandbox(LocalSandbox):
    """The real local sandbox, remembering the code each run saw."""

    def __init__(self) -> None:
        self.money_seen: list[str] = []
        super().__init__()

    def execute(self, workspace, command, **kwargs):
        if isinstance(workspace, Path):  # not the sandbox's own start-up check
            self.money_seen.append((workspace / "shop" / "money.py").read_text())
        return super().execute(workspace, command, **kwargs)


def shop_task(repo: Path, **tests) -> types.Task:
    return types.Task(
        task_id="shop-1",
        spec=ISSUE,
        repo=str(repo),
        tests=types.TestSpec(kind="command", command="python -m pytest -q", timeout_s=60, **tests),
    )


def scripted(tmp_path: Path, replies: list[str]) -> ScriptedModel:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    return ScriptedModel(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_issue_repaired_end_to_end(issue_repo: Path, tmp_path: Path) -> None:
    before = snapshot(issue_repo)
    model = scripted(tmp_path, [NOT_MATCHING, PARTIAL, REVIEW_WRONGLY_ACCEPTS, FIX_ON_TOP])
    sandbox = RecordingSandbox()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with TrajectoryStore(run_dir) as store:
        trajectory = issue.repair_issue(
            shop_task(issue_repo),
            model,
            sandbox,
            Budget(max_candidates=5),
            store,
            checkpointer=open_checkpointer(store),
            sampling=Sampling(max_tokens=512),
        )
        assert store.get(trajectory.trajectory_id).outcome == "solved", trajectory.error

    assert trajectory.outcome == "solved", trajectory.error
    missed, partial, fixed = trajectory.steps
    assert missed.candidate is None and missed.report is None
    assert "the SEARCH lines do not match" in missed.error and 'text.split(".")' in missed.error
    assert "do not match" in partial.messages[1].content  # the refiner saw the feedback
    assert not partial.report.passed and partial.reviewer_error
    assert "test_parse_price_one_decimal" in partial.report.reason
    assert (
        fixed.parent == partial.index
        and fixed.report.passed
        and trajectory.solution_step == fixed.index
    )
    assert "test_parse_price_one_decimal" in fixed.messages[1].content  # it saw the failing test
    patch = trajectory.metadata["patch"]
    assert '+    return int(dollars) * 100 + int((cents + "00")[:2])' in patch
    assert (
        'cents = cents or "0"' not in patch
    )  # the refinement built on the partial fix and replaced it
    assert trajectory.metadata["localisation"][0]["name"] == "parse_price"
    # The base ran first (the baseline), then each tested candidate; the missed edit never ran.
    assert len(sandbox.money_seen) == 3
    # Sandbox seconds are the host's, as in the other graphs: the checkout's setup and the
    # cleanup besides the test process.
    assert all(s.sandbox_seconds > s.report.wall_seconds for s in (partial, fixed))
    # The user's repository is exactly as it was: files, index, branches.
    assert snapshot(issue_repo) == before
    assert git.Repo(issue_repo).active_branch.name == "main"


def test_syntax_breaking_edit_never_reaches_the_sandbox(issue_repo: Path, tmp_path: Path) -> None:
    sandbox = RecordingSandbox()
    model = scripted(
        tmp_path, [BREAKS_SYNTAX, PARTIAL, "VERDICT: refine\nCRITIQUE: one decimal", FIX_ON_TOP]
    )
    trajectory = issue.repair_issue(shop_task(issue_repo), model, sandbox, Budget(max_candidates=3))
    assert trajectory.outcome == "solved"
    broken = trajectory.steps[0]
    assert broken.report is None and "does not parse" in broken.error
    assert not any("(cents or" in code for code in sandbox.money_seen)


def test_named_tests_decide(issue_repo: Path, tmp_path: Path) -> None:
    """With the failing tests named, a test that fails elsewhere in the suite does not count,
    and a named test that does not run is a failure."""
    (issue_repo / "tests" / "test_unrelated.py").write_text(
        "def test_known_failure():\n    assert False\n"
    )
    repo = git.Repo(issue_repo)
    repo.index.add(["tests/test_unrelated.py"])
    repo.index.commit(
        "A test that fails at the base",
        author=git.Actor("a", "a@b"),
        committer=git.Actor("a", "a@b"),
    )
    task = shop_task(
        issue_repo,
        select=[
            "tests/test_money.py::test_parse_price_whole_dollars",
            "tests/test_money.py::test_parse_price_one_decimal",
        ],
        must_keep_passing=["tests/test_money.py::test_parse_price_with_cents"],
    )
    model = scripted(tmp_path, [PARTIAL.replace('cents or "0"', '(cents + "00")[:2]')])
    trajectory = issue.repair_issue(task, model, LocalSandbox(), Budget(max_candidates=1))
    assert trajectory.outcome == "solved"
    assert [t.name for t in trajectory.steps[0].report.tests] == [
        *task.tests.select,
        *task.tests.must_keep_passing,
    ]

    missing = types.TestReport(exit_code=0, tests=[])
    assert judging.required(task, missing).failing[0].message == "this test did not run"


def test_bad_input(issue_repo: Path, tmp_path: Path) -> None:
    model = scripted(tmp_path, [])
    with pytest.raises(SelfRepairError, match="issue text is empty"):
        issue.repair_issue(
            shop_task(issue_repo).model_copy(update={"spec": "  \n"}), model, LocalSandbox()
        )
    with pytest.raises(SelfRepairError, match="unknown base commit"):
        issue.repair_issue(
            shop_task(issue_repo).model_copy(update={"base_commit": "deadbeef"}),
            model,
            LocalSandbox(),
        )
    (tmp_path / "plain").mkdir()
    with pytest.raises(SelfRepairError, match="not a git repository"):
        issue.repair_issue(shop_task(tmp_path / "plain"), model, LocalSandbox())


def test_graph_shape() -> None:
    mermaid = issue.graph.get_graph().draw_mermaid()
    for edge in (
        "__start__ --> localise",
        "localise --> edit",
        "edit -.-> execute",
        "execute -.-> review",
        "review -.-> refine",
        "refine -.-> execute",
        "finish --> __end__",
    ):
        assert edge in mermaid


# -- the command line: `selfrepair fix REPO --issue`, `selfrepair bench swebench` ------------

FULL_FIX = """shop/money.py
<<<<<<< SEARCH
    dollars, cents = text.split(".")
    return int(dollars) * 100 + int(cents)
=======
    dollars, _, cents = text.partition(".")
    return int(dollars) * 100 + int((cents + "00")[:2])
>>>>>>> REPLACE"""


def invoke(*args: str):
    from typer.testing import CliRunner

    from selfrepair.cli.commands import app

    return CliRunner().invoke(app, list(args))


def test_max_seconds_cuts_a_candidates_test_run(issue_repo: Path, tmp_path: Path) -> None:
    """A candidate whose tests hang is cut at what is left of the time budget, not at the
    task's own timeout (60 s here; fix gives a repository 600 s), and counted as a timeout."""
    sandbox = LocalSandbox()
    try:
        trajectory = issue.repair_issue(
            shop_task(issue_repo),
            scripted(tmp_path, [HANGS, "VERDICT: refine\nCONFIDENCE: 0.5\nCRITIQUE: it hangs"]),
            sandbox,
            Budget(max_candidates=1, max_seconds=10),
        )
    finally:
        sandbox.close()
    [step] = trajectory.steps
    assert step.report.timed_out, step.report.reason
    cut = re.match(r"timed out after ([\d.]+) s", step.report.reason)
    assert cut and float(cut.group(1)) <= 10, step.report.reason
    assert trajectory.outcome == "budget"


def test_cli_fix_repository_commits_on_a_branch(issue_repo: Path, tmp_path: Path) -> None:
    before = snapshot(issue_repo)
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([NOT_MATCHING, FULL_FIX]))
    result = invoke(
        "fix",
        str(issue_repo),
        "--issue",
        ISSUE,
        "--test-cmd",
        "python -m pytest -q",
        "--model",
        f"scripted:{replies}",
        "--sandbox",
        "local",
        "--branch",
        "fix/parse-price",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output.strip().splitlines()[-1])
    assert answer["solved"] and answer["branch"] == "fix/parse-price"
    repo = git.Repo(issue_repo)
    assert (
        repo.active_branch.name == "main"
        and repo.heads["fix/parse-price"].commit.hexsha == answer["commit"]
    )
    assert (tmp_path / "run" / "fix.patch").read_text() == answer["patch"]
    after = snapshot(issue_repo)
    assert {p: v for p, v in after.items() if not p.startswith(".git/")} == {
        p: v for p, v in before.items() if not p.startswith(".git/")
    }
    assert after[".git/index"] == before[".git/index"] and after[".git/HEAD"] == before[".git/HEAD"]
    # Every edit was seeded from --seed (default 0), the task and the step (the editor was not).
    with TrajectoryStore(tmp_path / "run", create=False) as store:
        [trajectory] = store.trajectories()
    sampling, task_id = Sampling(seed=0), trajectory.task.task_id
    assert [s.seed for s in trajectory.steps] == [
        sampling.call_seed(task_id, 0),
        sampling.call_seed(task_id, 1),
    ]


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("plain", ["--issue", "it breaks"], "not a git repository"),
        (None, ["--issue", "  "], "--issue is empty"),
        (
            None,
            ["--issue", "it breaks", "--base", "no-such-rev"],
            "unknown base commit 'no-such-rev'",
        ),
        ("dirty", ["--issue", "it breaks"], "uncommitted changes in shop/money.py"),
        (None, ["--issue", "it breaks", "--branch", "main"], "branch 'main' already exists"),
        (
            None,
            ["--issue", "it breaks", "--spec", "adds"],
            "--spec does not apply to repository mode",
        ),
        (
            None,
            ["--issue", "it breaks", "--strategy", "tree"],
            "--strategy does not apply to repository mode",
        ),
    ],
)
def test_cli_fix_repository_refuses_bad_input(
    issue_repo: Path, tmp_path: Path, setup, args, message
) -> None:
    target = issue_repo
    if setup == "plain":
        target = tmp_path / "plain"
        target.mkdir()
    if setup == "dirty":
        (issue_repo / "shop" / "money.py").write_text("# half-done work\n")
    result = invoke(
        "fix",
        str(target),
        "--test-cmd",
        "python -m pytest -q",
        "--model",
        "scripted:none.json",
        "--out",
        str(tmp_path / "run"),
        *args,
    )
    assert isinstance(result.exception, SelfRepairError) and message in str(result.exception)
    assert not (tmp_path / "run").exists()


def swebench_instance(repo_dir: Path) -> dict:
    """An instance in SWE-bench's format: the failing tests arrive with the test patch."""
    repo = git.Repo(repo_dir)
    tests = repo_dir / "tests" / "test_money.py"
    full = tests.read_text()
    kept = (
        full.split("def test_parse_price_whole_dollars")[0]
        + "def test_split_evenly"
        + full.split("def test_split_evenly")[1]
    )
    tests.write_text(kept)
    author = git.Actor("a", "a@b")
    repo.index.add(["tests/test_money.py"])
    base = repo.index.commit("Without the new tests", author=author, committer=author).hexsha
    tests.write_text(full)
    test_patch = repo.git.diff(strip_newline_in_stdout=False)
    repo.git.checkout("--", "tests/test_money.py")
    return {
        "instance_id": "example__shop-1",
        "repo": "example/shop",
        "base_commit": base,
        "problem_statement": ISSUE,
        "test_patch": test_patch,
        "patch": "",
        "version": "0.1",
        "FAIL_TO_PASS": json.dumps(
            [
                "tests/test_money.py::test_parse_price_whole_dollars",
                "tests/test_money.py::test_parse_price_one_decimal",
            ]
        ),
        "PASS_TO_PASS": json.dumps(
            [
                "tests/test_money.py::test_parse_price_with_cents",
                "tests/test_money.py::test_format_price",
            ]
        ),
        "created_at": "2026-01-01T00:00:00Z",
        "hints_text": "",
        "environment_setup_commit": base,
    }


def test_bench_swebench_writes_predictions_the_harness_reads(
    issue_repo: Path, tmp_path: Path
) -> None:
    instance = swebench_instance(issue_repo)
    mirrors = tmp_path / "mirrors"
    git.Repo.clone_from(str(issue_repo), mirrors / "example__shop.git", mirror=True)
    data = tmp_path / "instances.json"
    data.write_text(json.dumps([instance]))
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([FULL_FIX]))
    run_dir = tmp_path / "run"
    result = invoke(
        "bench",
        "swebench",
        "--data",
        str(data),
        "--repos",
        str(mirrors),
        "--model",
        f"scripted:{replies}",
        "--sandbox",
        "local",
        "--out",
        str(run_dir),
        "--json",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert (
        rows[0]["instance_id"] == "example__shop-1"
        and rows[0]["model_name_or_path"] == f"scripted:{replies}"
    )
    assert "+    dollars, _, cents = text.partition" in rows[0]["model_patch"]
    assert (
        "tests/test_money.py" not in rows[0]["model_patch"]
    )  # the test patch is never part of the fix
    assert json.loads((run_dir / "results.jsonl").read_text())["solved"]

    harness = pytest.importorskip("swebench.harness.run_evaluation")
    utils = pytest.importorskip("swebench.harness.utils")
    predictions = utils.get_predictions_from_file(
        str(run_dir / "predictions.jsonl"), str(data), "test"
    )
    by_id = {p["instance_id"]: p for p in predictions}
    dataset = harness.get_dataset_from_preds(
        str(data), "test", [], by_id, "check", rewrite_reports=False, exclude_completed=False
    )
    assert [d["instance_id"] for d in dataset] == ["example__shop-1"]


def test_bench_swebench_refuses_a_strategy(tmp_path: Path) -> None:
    result = invoke(
        "bench",
        "swebench",
        "--strategy",
        "refine",
        "--data",
        "x.json",
        "--out",
        str(tmp_path / "run"),
    )
    assert isinstance(
        result.exception, SelfRepairError
    ) and "--strategy does not apply to swebench" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_bench_swebench_needs_a_mirror(issue_repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "instances.json"
    data.write_text(json.dumps([swebench_instance(issue_repo)]))
    (tmp_path / "mirrors").mkdir()
    result = invoke(
        "bench",
        "swebench",
        "--data",
        str(data),
        "--repos",
        str(tmp_path / "mirrors"),
        "--model",
        "scripted:none.json",
        "--out",
        str(tmp_path / "run"),
    )
    assert isinstance(
        result.exception, SelfRepairError
    ) and "no local mirror of example/shop" in str(result.exception)
    assert not (tmp_path / "run").exists()
