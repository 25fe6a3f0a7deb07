"""`selfrepair synth` on a small fixture package (tests/fixtures/synth_pkg), in the Docker
sandbox: what it writes, that every task fails before its fix and passes after it, that a
run resumes, and that bad input is refused in one line with nothing written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synth_checks import check_function_tasks, check_instances

FIXTURE = Path(__file__).parent / "fixtures" / "synth_pkg"
SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
OUTPUTS = [
    "instances.jsonl",
    "instances.train.jsonl",
    "instances.eval.jsonl",
    "functions.jsonl",
    "functions.train.jsonl",
    "functions.eval.jsonl",
    "manifest.json",
]

pytestmark = pytest.mark.docker


def synth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SELFREPAIR, "synth", *args, "--sandbox", "docker"], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The fixture package as a git repository with two modules (so a module split has two sides)."""
    root = tmp_path_factory.mktemp("src") / "minicalc-repo"
    shutil.copytree(FIXTURE, root)
    (root / "minicalc" / "text.py").write_text(
        'def shout(word, times=1):\n    """WORD!, `times` times."""\n    if times < 1:\n        return ""\n'
        '    return " ".join([word.upper() + "!"] * times)\n'
    )
    (root / "tests" / "test_text.py").write_text(
        "from minicalc.text import shout\n\n\ndef test_shout():\n    assert shout('hi') == 'HI!'\n"
        "    assert shout('hi', 2) == 'HI! HI!'\n    assert shout('hi', 0) == ''\n"
    )
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "minicalc"],
    ):
        subprocess.run(["git", "-C", str(root), *command], check=True)
    return root


@pytest.fixture(scope="module")
def run(package, tmp_path_factory, docker_sandbox) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "out"
    result = synth(
        str(package),
        "--out",
        str(out),
        "--per-function",
        "2",
        "--attempts",
        "5",
        "--eval-fraction",
        "0.3",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)["manifest"]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synth_writes_instances_tasks_splits_and_a_manifest(run):
    out, manifest = run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    instances, tasks = lines(out / "instances.jsonl"), lines(out / "functions.jsonl")
    assert manifest["tasks"]["instances"] == len(instances) >= 6
    assert manifest["tasks"]["functions"] == len(tasks) == len(instances)
    families = {row["synth"]["family"] for row in instances}
    assert len(families) >= 4, families
    assert sum(c["bugs"] for c in manifest["families"].values()) == len(instances)
    assert manifest["packages"] == {
        "local/minicalc-repo": {
            "instances": len(instances),
            "functions": len(tasks),
            "train": manifest["tasks"]["train"]["instances"],
            "eval": manifest["tasks"]["eval"]["instances"],
        }
    }
    for row in instances:
        assert row["repo"] == "local/minicalc-repo" and len(row["base_commit"]) == 40
        assert row["FAIL_TO_PASS"] and not set(row["FAIL_TO_PASS"]) & set(row["PASS_TO_PASS"])
        assert (
            row["patch"].startswith("diff --git a/minicalc/")
            and "+++ b/tests/" in row["test_patch"]
        )
    # one function's bugs fail different sets of tests (duplicates are dropped)
    seen = set()
    for row in instances:
        key = (row["synth"]["function"], tuple(sorted(row["FAIL_TO_PASS"])))
        assert key not in seen
        seen.add(key)


def test_the_problem_statement_comes_from_the_tests_and_never_shows_the_fix(run, package):
    out, _ = run
    for row in lines(out / "instances.jsonl"):
        statement = row["problem_statement"]
        assert row["FAIL_TO_PASS"][0] in statement
        buggy = (
            package / row["synth"]["file"]
        ).read_text()  # the file, less its bug, shares most lines
        for line in row["patch"].splitlines():
            fixed = line[1:].strip()
            if (
                line.startswith("+")
                and not line.startswith("+++")
                and len(fixed) > 6
                and fixed not in buggy_lines(row, out)
            ):
                assert fixed not in statement, (row["instance_id"], fixed)
        assert buggy


def buggy_lines(row: dict, out: Path) -> str:
    shown = {t["task_id"]: t for t in lines(out / "functions.jsonl")}[row["instance_id"]]
    return shown["files"][shown["entry_file"]]


def test_train_and_eval_never_share_a_module(run):
    out, manifest = run
    train, evaluation = lines(out / "functions.train.jsonl"), lines(out / "functions.eval.jsonl")
    assert train and evaluation
    modules = lambda rows: {row["metadata"]["synth"]["file"] for row in rows}  # noqa: E731
    assert not modules(train) & modules(evaluation)
    assert {row["metadata"]["split"] for row in train} == {"train"}
    assert (
        len(lines(out / "instances.train.jsonl"))
        == len(train)
        == manifest["tasks"]["train"]["functions"]
    )


def test_every_function_task_fails_before_its_fix_and_passes_after(run, docker_sandbox):
    out, _ = run
    assert check_function_tasks(docker_sandbox, out) >= 6


def test_every_instance_fails_before_its_patch_and_passes_after(run, docker_sandbox):
    out, _ = run
    assert check_instances(docker_sandbox, out) >= 6


def test_the_mirror_hides_the_judging_tests_and_keeps_the_fix_out_of_the_history(run):
    import git

    out, _ = run
    repo = git.Repo(out / "repos" / "local__minicalc-repo")
    original = repo.commit("main")
    for row in lines(out / "instances.jsonl"):
        base = repo.commit(row["base_commit"])
        assert base.parents == () and repo.commit(row["instance_id"]) == base
        hidden = {test.split("::")[0] for test in row["FAIL_TO_PASS"]}
        names = {blob.path for blob in base.tree.traverse()}
        assert not hidden & names and hidden <= {blob.path for blob in original.tree.traverse()}


def test_running_again_resumes_and_writes_the_same(run, package):
    out, _ = run
    before = {name: (out / name).read_bytes() for name in OUTPUTS if name != "manifest.json"}
    tried = (out / "state" / "local__minicalc-repo" / "tried.jsonl").read_bytes()
    result = synth(
        str(package),
        "--out",
        str(out),
        "--per-function",
        "2",
        "--attempts",
        "5",
        "--eval-fraction",
        "0.3",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert (
        out / "state" / "local__minicalc-repo" / "tried.jsonl"
    ).read_bytes() == tried  # nothing tried again
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_killed_run_resumes_to_the_same_bugs(run, package, tmp_path):
    out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    state = copy / "state" / "local__minicalc-repo"
    # as if killed after the first function: its rows kept (the last one cut mid-write), outputs gone
    first = (state / "tried.jsonl").read_text().splitlines()[0]
    (state / "tried.jsonl").write_text(first + "\n" + '{"path": "cut')
    ids = {row["instance_id"] for row in lines(out / "instances.jsonl")}
    kept = [
        line
        for line in (state / "bugs.jsonl").read_text().splitlines()
        if (json.loads(line)["path"], json.loads(line)["function"])
        == (json.loads(first)["path"], json.loads(first)["function"])
    ]
    (state / "bugs.jsonl").write_text("".join(line + "\n" for line in kept))
    for name in OUTPUTS:
        (copy / name).unlink()
    result = synth(
        str(package),
        "--out",
        str(copy),
        "--per-function",
        "2",
        "--attempts",
        "5",
        "--eval-fraction",
        "0.3",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    assert {row["instance_id"] for row in lines(copy / "instances.jsonl")} == ids


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, docker_sandbox):
    no_tests = tmp_path / "no-tests"
    shutil.copytree(FIXTURE / "minicalc", no_tests / "minicalc")
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    (broken / "minicalc" / "__init__.py").write_text(
        "raise ImportError('this package is broken')\n"
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a synth folder")
    cases = [
        ([str(no_tests)], tmp_path / "out1", "holds no tests"),
        ([str(broken)], tmp_path / "out2", "no test passes on the original code"),
        ([str(FIXTURE)], other, "exists and is not a synth output folder"),
        (
            [str(FIXTURE), "--families", "operator_swap,flip_bits"],
            tmp_path / "out3",
            "unknown mutation families: flip_bits",
        ),
    ]
    for args, out, message in cases:
        result = synth(*args, "--out", str(out))
        assert result.returncode == 2, result.stderr
        lines_out = result.stderr.strip().splitlines()
        assert len(lines_out) == 1 and message in lines_out[0], result.stderr
        assert "Traceback" not in result.stderr
    assert (
        not (tmp_path / "out1").exists()
        and not (tmp_path / "out2").exists()
        and not (tmp_path / "out3").exists()
    )
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_model_rewrites_functions_and_writes_the_issues(tmp_path, docker_sandbox):
    from selfrepair.factory.pipeline import Settings, synthesize

    # one reply holding a wrong version of every fixture function: whichever comes first is rewritten
    rewrite = (
        "```python\n"
        + "\n".join(
            [
                "def clamp(value, low, high):\n    return value",
                "def mean(values):\n    return sum(values) // len(values)",
                "def chunks(seq, size):\n    return [list(seq)]",
                "def push(self, item):\n    self.items.insert(0, item)\n    return len(self.items)",
                "def pop(self):\n    return self.items.pop(0)",
                "def __init__(self):\n    self.items = ()",
            ]
        )
        + "\n```"
    )
    issue = "Wrong results from minicalc\n\nI called the function from the test and it returned a different value than documented."
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([rewrite, issue]))
    out = tmp_path / "out"
    settings = Settings(
        families=(),
        model=f"scripted:{replies}",
        limit=1,
        per_function=1,
        sandbox="docker",
        eval_fraction=0.0,
    )
    manifest = synthesize([str(FIXTURE)], out, settings)
    (row,) = lines(out / "instances.jsonl")
    assert row["synth"]["family"] == "lm_rewrite" and row["synth"]["written_issue"] is True
    assert (
        row["problem_statement"].startswith(issue)
        and row["FAIL_TO_PASS"][0] in row["problem_statement"]
    )
    assert manifest["families"]["lm_rewrite"] == {
        "tried": 1,
        "failing": 1,
        "bugs": 1,
        "validated_fraction": 1.0,
        "failing_fraction": 1.0,
    }
    (task,) = lines(out / "functions.jsonl")
    header = task["files"][task["entry_file"]].split("\n")
    solution = task["metadata"]["solution"].split("\n")
    # the signature and docstring stay the original's: only the body is the model's
    assert header[:3] == solution[:3]
    assert check_function_tasks(docker_sandbox, out) == 1


def test_bench_takes_the_outputs_unchanged(run, tmp_path):
    """`selfrepair bench synth` and `bench swebench --repos` run what synth wrote; a scripted
    model that answers with the original function solves them."""
    out, _ = run
    review = "VERDICT: accept\nCONFIDENCE: 0.9\nCRITIQUE: the tests pass"
    task = lines(out / "functions.jsonl")[0]
    replies = tmp_path / "function.json"
    replies.write_text(
        json.dumps([f"```python\n{task['metadata']['solution']}```", review, review])
    )
    result = subprocess.run(
        [
            SELFREPAIR,
            "bench",
            "synth",
            "--data",
            str(out / "functions.jsonl"),
            "--limit",
            "1",
            "--strategy",
            "refine",
            "--budget",
            "1",
            "--model",
            f"scripted:{replies}",
            "--sandbox",
            "docker",
            "--out",
            str(tmp_path / "f"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["solved"] == 1

    instance = next(
        row for row in lines(out / "instances.jsonl") if "." not in row["synth"]["function"]
    )
    function = next(
        t for t in lines(out / "functions.jsonl") if t["task_id"] == instance["instance_id"]
    )
    fixed = function["metadata"]["solution"].split("\n", 1)[1]  # without its "# path" comment line
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(instance) + "\n")
    replies = tmp_path / "issue.json"
    replies.write_text(
        json.dumps([f"{instance['synth']['file']}\n```python\n{fixed}```", review, review])
    )
    result = subprocess.run(
        [
            SELFREPAIR,
            "bench",
            "swebench",
            "--data",
            str(data),
            "--repos",
            str(out / "repos"),
            "--budget",
            "1",
            "--model",
            f"scripted:{replies}",
            "--sandbox",
            "docker",
            "--out",
            str(tmp_path / "s"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["solved"] == 1
