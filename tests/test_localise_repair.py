"""localise-repair: suspects from the failing tests, one function at a time, escalation to
the next suspect, reproduction tests written from the issue, and `fix REPO --strategy
localise-repair` end to end. Scripted models (the tests are about control flow); real git
checkouts and the real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from selfrepair.agents import solver
from selfrepair.agents.code import localise
from selfrepair.agents.code.focus import function_source, splice
from selfrepair.agents.code.repo import checkout, open_repository
from selfrepair.agents.code.suspects import suspects
from selfrepair.agents.models.scripted import ScriptedModel
from selfrepair.factory import output
from selfrepair.graphs import localise_repair
from selfrepair.graphs.issue import prepare, run_candidate_tests
from selfrepair.sandbox.local import LocalSandbox

from selfrepair import types
from selfrepair.metrics import result_row
from selfrepair.settings import Budget, Sampling

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).parent / "snapshots"
SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
AUTHOR = git.Actor("Test", "test@example.com")

# `parse` is what the failing test calls; the bug is one call further, in `normalise`.
CORE = '''"""Numbers typed by people."""


def normalise(text):
    """Strip the spaces around a number."""
    return text.strip() + "0"


def parse(text):
    """' 3 ' -> 3."""
    return int(normalise(text))


def render(value):
    """3 -> '3'."""
    return str(value)


def parse_and_render(text):
    """What the report shows for a typed number."""
    return render(parse(text))
'''
TESTS = """from pkg.core import parse, render


def test_parse():
    assert parse(" 3 ") == 3


def test_render():
    assert render(3) == "3"
"""
ISSUE = "A number typed as ' 3 ' comes out as 30."
# The issue's words name the function the report calls, not the one that is wrong.
ISSUE_NAMES_ANOTHER = "parse_and_render(' 3 ') shows 30 on the report instead of 3."


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add("--all")
    repo.index.commit("base", author=AUTHOR, committer=AUTHOR)
    return root


def numbers_repo(tmp_path: Path, core: str = CORE, tests: str = TESTS) -> Path:
    return make_repo(
        tmp_path / "numbers",
        {"pkg/__init__.py": "", "pkg/core.py": core, "tests/test_core.py": tests},
    )


def numbers_task(repo: Path, spec: str = ISSUE) -> types.Task:
    return types.Task(
        task_id="numbers-1",
        spec=spec,
        repo=str(repo),
        tests=types.TestSpec(kind="command", command="python -m pytest -q", timeout_s=60),
    )


def keyed_model(tmp_path: Path, replies: dict[str, list[str]] | list[str]) -> ScriptedModel:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    return ScriptedModel(path)


def reply(code: str) -> str:
    return f"Here is the fix.\n```python\n{code}```"


def test_the_function_the_failing_test_calls_ranks_first_where_the_issue_words_point_elsewhere(
    tmp_path,
):
    """A wrong result leaves no frame in the code (the traceback ends in the test's assert):
    the call edge from the failing test finds the function, where the issue's words name
    another one (today's ranking puts that one first)."""
    core = CORE.replace('text.strip() + "0"', "text.strip()").replace(
        "int(normalise(text))", "int(normalise(text)) * 10"
    )
    repo = numbers_repo(tmp_path, core=core)
    task = numbers_task(repo, ISSUE_NAMES_ANOTHER)
    sandbox = LocalSandbox()
    with checkout(open_repository(repo)) as work:
        baseline = run_candidate_tests(sandbox, work, task, None)
        assert [c.name for c in baseline.failing] == ["tests/test_core.py::test_parse"]
        defs = localise.repository_map(work.path)
        today = [r.definition.qualname for r in localise.rank(defs, ISSUE_NAMES_ANOTHER)]
        ranked = suspects(work.path, ISSUE_NAMES_ANOTHER, baseline.failing)
    assert today[0] == "parse_and_render"
    assert ranked[0].definition.qualname == "parse"
    assert any("called by 1 failing test" in reason for reason in ranked[0].reasons)
    assert all(not r.definition.path.startswith("tests/") for r in ranked)


def test_the_innermost_frame_of_a_crash_ranks_first(issue_repo):
    """The example's crash: the traceback runs through Cart.add_from_text into parse_price."""
    task = types.Task(
        task_id="shop",
        spec=(ROOT / "examples" / "issue_repo" / "ISSUE.md").read_text(),
        repo=str(issue_repo),
        tests=types.TestSpec(kind="command", command="python -m pytest -q", timeout_s=60),
    )
    with checkout(open_repository(issue_repo)) as work:
        baseline = run_candidate_tests(LocalSandbox(), work, task, None)
        prepare(work, task, "")
        ranked = suspects(work.path, task.spec, baseline.failing)
    assert [r.definition.qualname for r in ranked[:2]] == ["parse_price", "Cart.add_from_text"]


def test_a_method_is_cut_out_dedented_and_spliced_back_indented():
    text = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    [_, f, _] = localise.definitions("a.py", text)
    code, indent = function_source(text, f)
    assert code == "def f(self):\n    return 1\n" and indent == "    "
    new = splice(text, f, "def f(self):\n    return 3\n", indent)
    assert new == text.replace("return 1", "return 3")


def test_escalates_to_the_next_suspect_when_the_first_ones_budget_is_spent(tmp_path):
    repo = numbers_repo(tmp_path)
    model = keyed_model(
        tmp_path,
        {
            # `parse` is suspected first; rewriting it cannot help.
            "def parse(text):\n": [
                reply("def parse(text):\n    return int(normalise(text).strip())\n")
            ],
            "def normalise(text):\n": [reply("def normalise(text):\n    return text.strip()\n")],
        },
    )
    trajectory = localise_repair.repair_localised(
        numbers_task(repo),
        model,
        LocalSandbox(),
        Budget(max_candidates=2),  # one candidate for each suspect
        sampling=Sampling(samples=1),
        suspects=2,
    )
    assert trajectory.outcome == "solved", trajectory.error
    assert trajectory.strategy == "localise-repair"
    names = [s["name"] for s in trajectory.metadata["suspects"]]
    assert names[:2] == ["parse", "normalise"]
    wrong, fixed = trajectory.steps
    assert trajectory.metadata["focus"] == {"0": 0, "1": 1}
    assert not wrong.report.passed and wrong.kind == "sample"
    assert fixed.report.passed and trajectory.solution_step == fixed.index
    prompt = fixed.messages[-1].content
    # One function is shown, headed by where it lives, with the failing test, which the
    # issue does not name (the others by their signatures only, among the names in scope).
    assert (
        "Buggy code (_function/normalise.py):\n```python\n# pkg/core.py\ndef normalise(text):\n"
        in prompt
    )
    assert "def parse(text):\n" not in prompt
    assert "Functions: parse(text); " in prompt
    assert "The tests fail:" in prompt and "tests/test_core.py::test_parse" in prompt
    patch = trajectory.metadata["patch"]
    assert '-    return text.strip() + "0"' in patch and "+    return text.strip()" in patch
    changed = [line for line in patch.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert len(changed) == 2  # one line out, one in: the rest of the file is as it was


def test_a_suspect_is_shown_as_the_same_function_task_would_be_with_its_seeds(tmp_path):
    """localise-repair's prompt for a suspect is the one `synth` writes for the same function
    as a function task, and a suspect's calls are seeded as that task's are: on the same
    function the two strategies draw the same samples. An issue that names its failing tests
    (as a synthesized one does, with their output) does not get them a second time."""
    repo = numbers_repo(tmp_path)
    issue = ISSUE + "\n\n`tests/test_core.py::test_parse` fails: ValueError: 30 is not 3"
    model = keyed_model(
        tmp_path,
        {
            "def parse(text):\n": [reply("def parse(text):\n    return int(normalise(text))\n")],
            "def normalise(text):\n": [reply("def normalise(text):\n    return text.strip()\n")],
        },
    )
    sampling = Sampling(samples=1, seed=7)
    trajectory = localise_repair.repair_localised(
        numbers_task(repo, issue),
        model,
        LocalSandbox(),
        Budget(max_candidates=2),
        sampling=sampling,
        suspects=2,
    )
    assert trajectory.solved, trajectory.error
    first, second = trajectory.steps
    assert first.seed == second.seed == sampling.call_seed("numbers-1", 0)

    normalise = '    """Strip the spaces around a number."""\n    return text.strip() + "0"\n'
    buggy = "def normalise(text):\n" + normalise
    start = CORE.index(buggy)
    bug = output.Bug(
        instance_id="numbers-1",
        source="local/numbers",
        path="pkg/core.py",
        function="normalise",
        def_line=CORE[:start].count("\n") + 1,
        indent="",
        family="change_constant",
        note="",
        mutation_key="",
        span=(start, start + len(buggy)),
        replacement=buggy,
        original_function=buggy.replace(' + "0"', ""),
        buggy_function=buggy,
        fail_to_pass=["tests/test_core.py::test_parse"],
        pass_to_pass=["tests/test_core.py::test_render"],
        failures=[],
        problem_statement=issue,
    )
    as_function = output.function_task(bug, "mirror", "base", "original", 60.0, CORE.encode())
    assert second.messages == solver.solve_messages(as_function)
    assert "The tests fail:" not in second.messages[-1].content


def test_a_suspect_is_refined_before_the_next_one_is_tried(tmp_path):
    repo = numbers_repo(tmp_path)
    model = keyed_model(
        tmp_path,
        {
            "def normalise(text):\n": [
                reply('def normalise(text):\n    return text.strip() + "1"\n'),
                reply("def normalise(text):\n    return text.strip()\n"),
            ],
            "def parse(text):\n": [
                reply("def parse(text):\n    return int(normalise(text).strip())\n")
            ]
            * 2,
        },
    )
    trajectory = localise_repair.repair_localised(
        numbers_task(repo),
        model,
        LocalSandbox(),
        Budget(max_candidates=4),
        sampling=Sampling(samples=1),
        suspects=2,
    )
    # parse's share (2) goes to a sample and its refinement; then normalise's sample fails,
    # and its refinement passes.
    assert [(s.kind, s.parent) for s in trajectory.steps] == [
        ("sample", None),
        ("refine", 0),
        ("sample", None),
        ("refine", 2),
    ]
    assert trajectory.solved and trajectory.solution_step == 3
    assert "This attempt is still wrong" in trajectory.steps[3].messages[-1].content


REPRODUCTION_PASSES = reply(
    'from pkg.core import parse\n\n\ndef test_zero():\n    assert parse("0") == 0\n'
)
REPRODUCTION_BROKEN = reply(
    "from pkg.core import no_such_name\n\n\ndef test_missing():\n    assert no_such_name()\n"
)
REPRODUCTION = reply(
    'from pkg.core import parse\n\n\ndef test_spaces():\n    assert parse(" 3 ") == 3\n'
)


def test_with_no_failing_test_a_reproduction_test_is_written_and_must_pass_with_the_suite(
    tmp_path,
):
    """The suite passes on the bug; the tester writes a test from the issue. One that cannot
    be collected, or passes on the base, reproduces nothing and is dropped; the next one
    fails there and is kept. A
    candidate that makes it pass by breaking a passing test fails; the refinement passes both."""
    core = CORE.replace('text.strip() + "0"', "text.strip()").replace(
        "int(normalise(text))", "int(normalise(text)) * 10"
    )
    tests = TESTS.replace('assert parse(" 3 ") == 3', 'assert parse("0") == 0')
    repo = numbers_repo(tmp_path, core=core, tests=tests)
    model = keyed_model(
        tmp_path,
        [
            REPRODUCTION_BROKEN,
            REPRODUCTION_PASSES,
            REPRODUCTION,
            reply("def parse(text):\n    return 3\n"),
            reply("def parse(text):\n    return int(normalise(text))\n"),
        ],
    )
    run_dir = tmp_path / "run"
    trajectory = localise_repair.repair_localised(
        numbers_task(repo, "parse(' 3 ') gives 30, not 3."),
        model,
        LocalSandbox(),
        Budget(max_candidates=7),
        sampling=Sampling(samples=1),
    )
    assert trajectory.outcome == "solved", trajectory.error
    broken, dropped, kept, cheat, fixed = trajectory.steps
    assert broken.kind == dropped.kind == kept.kind == "reproduce"
    assert "the reproduction test does not run" in broken.error
    assert "passes on the code as given" in dropped.error and not kept.error
    reproduction = trajectory.metadata["reproduction"]
    assert reproduction["step"] == kept.index and "def test_spaces" in reproduction["code"]
    assert reproduction["path"] == "tests/test_issue_reproduction.py"
    assert reproduction["tests"] == ["tests/test_issue_reproduction.py::test_spaces"]
    assert "tests/test_core.py::test_parse" in reproduction["keep_passing"]
    assert not cheat.report.passed and "test_parse" in cheat.report.reason
    assert fixed.report.passed and fixed.parent == cheat.index
    assert "def test_spaces" in cheat.messages[-1].content  # the solver saw the reproduction
    assert "test_issue_reproduction" not in trajectory.metadata["patch"]
    assert result_row(trajectory)["samples"] == 2  # the reproduction replies are no fixes
    assert not run_dir.exists()


def test_a_reproduction_that_never_fails_ends_the_task_unsolved_with_the_reason(tmp_path):
    repo = numbers_repo(tmp_path, tests=TESTS.replace('parse(" 3 ") == 3', 'parse("0") == 0'))
    model = keyed_model(tmp_path, [REPRODUCTION_PASSES] * 2)
    trajectory = localise_repair.repair_localised(
        numbers_task(repo, "parse(' 3 ') is wrong."),
        model,
        LocalSandbox(),
        Budget(max_candidates=2),
    )
    assert trajectory.outcome == "budget" and not trajectory.candidates
    assert trajectory.metadata["stop_reason"] == "no reproduction test fails on the code as given"


def test_graph_shape_matches_the_snapshot():
    drawn = localise_repair.graph.get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / "localise-repair.mmd"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(drawn)
    assert drawn == snapshot.read_text(), "graph changed shape; rerun with UPDATE_SNAPSHOTS=1"


FIX_PARSE_PRICE = reply(
    'def parse_price(text: str) -> int:\n    text = text.strip().lstrip("$")\n'
    '    dollars, _, cents = text.partition(".")\n'
    '    return int(dollars) * 100 + int((cents + "00")[:2])\n'
)


@pytest.mark.docker
def test_fix_repo_with_localise_repair_end_to_end_in_the_docker_sandbox(
    issue_repo, tmp_path, docker_sandbox
):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([FIX_PARSE_PRICE] * 3))  # best-of-3 at the default budget
    before = issue_repo.joinpath("shop", "money.py").read_text()
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            SELFREPAIR,
            "fix",
            str(issue_repo),
            "--issue",
            str(ROOT / "examples" / "issue_repo" / "ISSUE.md"),
            "--test-cmd",
            "python -m pytest -q",
            "--strategy",
            "localise-repair",
            "--model",
            f"scripted:{replies}",
            "--sandbox",
            "docker",
            "--branch",
            "fix/parse-price",
            "--out",
            str(run_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    answer = json.loads(result.stdout)
    assert answer["solved"] and answer["result"]["strategy"] == "localise-repair"
    assert '+    return int(dollars) * 100 + int((cents + "00")[:2])' in answer["patch"]
    assert json.loads((run_dir / "summary.json").read_text())["config"]["strategy"] == (
        "localise-repair"
    )
    repo = git.Repo(issue_repo)
    assert "partition" in repo.git.show("fix/parse-price:shop/money.py")
    assert issue_repo.joinpath("shop", "money.py").read_text() == before  # untouched


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "localise-repair"], "needs repository mode (--issue)"),
        (["--issue", "x", "--strategy", "tree"], "except localise-repair (got tree)"),
    ],
)
def test_fix_refuses_a_strategy_for_the_wrong_mode_in_one_line(tmp_path, args, message):
    (tmp_path / "a.py").write_text("def f():\n    return 1\n")
    result = subprocess.run(
        [SELFREPAIR, "fix", str(tmp_path / "a.py"), "--test-cmd", "pytest -q", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_bench_swebench_runs_localise_repair_on_the_instances_mirror(issue_repo, tmp_path):
    """SWE-bench's shape: the failing tests arrive with the test patch, so the suspects come
    from the tests the patch adds; the fix is judged by FAIL_TO_PASS and PASS_TO_PASS."""
    from test_issue_graph import invoke, swebench_instance

    instance = swebench_instance(issue_repo)
    mirrors = tmp_path / "mirrors"
    git.Repo.clone_from(str(issue_repo), mirrors / "example__shop.git", mirror=True)
    data = tmp_path / "instances.json"
    data.write_text(json.dumps([instance]))
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([FIX_PARSE_PRICE] * 3))
    run_dir = tmp_path / "run"
    result = invoke(
        "bench",
        "swebench",
        "--strategy",
        "localise-repair",
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
    row = json.loads((run_dir / "results.jsonl").read_text())
    assert row["solved"] and row["strategy"] == "localise-repair"
    [prediction] = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert "partition" in prediction["model_patch"]
    assert "tests/" not in prediction["model_patch"]


def test_bench_refuses_localise_repair_for_function_tasks(tmp_path):
    from test_issue_graph import invoke

    result = invoke(
        "bench", "quixbugs", "--strategy", "localise-repair", "--out", str(tmp_path / "run")
    )
    assert "localise-repair is for repository tasks" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_when_every_suspect_is_spent_before_the_budget_the_reason_says_so(tmp_path):
    repo = numbers_repo(tmp_path)
    wrong = reply("def parse(text):\n    return int(normalise(text).strip())\n")
    trajectory = localise_repair.repair_localised(
        numbers_task(repo),
        keyed_model(tmp_path, {"def parse(text):\n": [wrong]}),
        LocalSandbox(),
        Budget(max_candidates=8),
        sampling=Sampling(samples=4),
        suspects=1,
        function_budget=1,
    )
    assert [(s.kind, s.report.passed) for s in trajectory.steps] == [("sample", False)]
    assert trajectory.outcome == "budget"
    assert trajectory.metadata["stop_reason"] == "every suspect tried (1)"


def test_calls_are_followed_through_a_class_into_its_init_and_what_that_calls(tmp_path):
    """The failing test builds a Parser; the bug is in a helper its __init__ calls, two calls
    from the test; an unrelated function that shares the issue's words ranks below it."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "fmt.py").write_text(
        "def compile_pattern(text):\n    return text.upper()\n\n\n"
        "class Parser:\n    def __init__(self, text):\n"
        "        self.pattern = compile_pattern(text)\n\n"
        "    def run(self):\n        return self.pattern\n\n\n"
        "def pattern_help():\n    return 'pattern'\n"
    )
    (root / "tests" / "test_fmt.py").write_text(
        "from fmt import Parser\n\n\ndef test_run():\n    assert Parser('a').run() == 'a'\n"
    )
    failing = types.TestCase(
        name="tests/test_fmt.py::test_run",
        outcome="failed",
        traceback="tests/test_fmt.py:5: in test_run\nE   AssertionError: assert 'A' == 'a'",
    )
    ranked = [r.definition.qualname for r in suspects(root, "The pattern is wrong.", [failing])]
    assert ranked.index("compile_pattern") < ranked.index("pattern_help")
    assert {"Parser.__init__", "Parser.run"} <= set(ranked[:3])


READER = '''"""Numbers read from text."""
import re

from pkg.errors import ParseError

DIGITS = re.compile(r"[0-9]+")


class Reader:
    base = 10

    def __init__(self, text):
        self.text = text
        self.position = 0

    def number(self):
        """The next number; ParseError where there is none."""
        found = DIGITS.match(self.text, self.position)
        if found is None:
            return None
        self.position = found.end()
        return int(found.group(), self.base)

    def rest(self):
        return self.text[self.position :]
'''
READER_TESTS = """import pytest
from pkg.errors import ParseError
from pkg.reader import Reader


def test_no_number_is_an_error():
    with pytest.raises(ParseError):
        Reader("x").number()


def test_a_number():
    assert Reader("12x").number() == 12
"""
# The fix raises a name the module imports; the reply restates the imports, the constant and
# the class with its other methods' stubs around the fixed method.
RESTATING_FIX = reply(
    "import re\nfrom pkg.errors import ParseError\n\n"
    'DIGITS = re.compile(r"[0-9]+")\n\n\n'
    "class Reader:\n    base = 10\n\n    def __init__(self, text): ...\n\n"
    "    def number(self):\n"
    '        """The next number; ParseError where there is none."""\n'
    "        found = DIGITS.match(self.text, self.position)\n"
    "        if found is None:\n"
    '            raise ParseError("no number at %d" % self.position)\n'
    "        self.position = found.end()\n"
    "        return int(found.group(), self.base)\n\n"
    "    def rest(self): ...\n"
)


def test_the_function_task_shows_the_names_in_scope_and_the_fix_comes_back_alone(tmp_path):
    repo = make_repo(
        tmp_path / "reader",
        {
            "pkg/__init__.py": "",
            "pkg/errors.py": "class ParseError(ValueError):\n    pass\n",
            "pkg/reader.py": READER,
            "tests/test_reader.py": READER_TESTS,
        },
    )
    task = numbers_task(repo, "Reader('x').number() returns None; it should raise ParseError.")
    # Keyed by a line of number's body: the other suspects' prompts show its signature only.
    model = keyed_model(tmp_path, {"if found is None:": [RESTATING_FIX]})
    trajectory = localise_repair.repair_localised(
        task, model, LocalSandbox(), Budget(max_candidates=1), sampling=Sampling(samples=1)
    )
    assert trajectory.outcome == "solved", trajectory.error
    prompt = trajectory.steps[0].messages[-1].content
    assert "Names already in scope in pkg/reader.py, where `Reader.number` lives" in prompt
    for line in (
        "Imports: import re; from pkg.errors import ParseError",
        "Attributes of class Reader: base",
        "Set on self in Reader.__init__: self.text; self.position",
        "Other methods of Reader: __init__(self, text); rest(self)",
        "Constants and other module names: DIGITS",
    ):
        assert f"\n{line}\n" in prompt
    # Only the method's two lines change: nothing of the restated scope enters the file.
    patch = trajectory.metadata["patch"]
    changed = [line for line in patch.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [
        "-            return None",
        '+            raise ParseError("no number at %d" % self.position)',
    ]
