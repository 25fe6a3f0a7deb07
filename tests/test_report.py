"""`selfrepair report`: the HTML page of real (scripted-model) runs, checked in headless
Chromium, and its refusals of run directories it cannot read."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from selfrepair.cli import main
from selfrepair.errors import SelfRepairError
from selfrepair.metrics import result_row, summarize
from selfrepair.report import load_run, write_report
from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Message, Review, Step, Task, Trajectory
from selfrepair.types import TestCase as Case  # renamed: pytest would collect Test* names
from selfrepair.types import TestReport as Report
from selfrepair.types import TestSpec as Spec

ROOT = Path(__file__).resolve().parent.parent
HUMANEVALPACK = ROOT / "tests" / "fixtures" / "humanevalpack.jsonl"  # Python/0 and Python/2


def _code(text: str) -> str:
    return f"```python\n{text}```"


CLOSE = "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
CLOSE_FIXED = CLOSE + (
    "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n"
    "            if idx != idx2:\n                distance = abs(elem - elem2)\n"
    "                if distance < threshold:\n                    return True\n\n    return False\n"
)
CLOSE_WRONG = CLOSE_FIXED.replace("abs(elem - elem2)", "elem2 - elem")
TRUNCATE = "def truncate_number(number: float) -> float:\n"
CRITIQUE_ABS = (
    "VERDICT: refine\nCONFIDENCE: 0.7\nCRITIQUE: the distance can be negative: take <abs>"
)
CRITIQUE_TRUNC = "VERDICT: refine\nCONFIDENCE: 0.6\nCRITIQUE: the result must be below 1"

# The scripted model's replies in call order: code, then the reviewer's verdict on a failing
# candidate, then the refined code. Refine solves Python/0 and runs out of budget on Python/2;
# tree search solves both, Python/0 on its third node.
REPLIES = {
    "refine": [
        _code(CLOSE_WRONG),
        CRITIQUE_ABS,
        _code(CLOSE_FIXED),
        _code(TRUNCATE + "    return number % 1.0 + 0.5\n"),
        CRITIQUE_TRUNC,
        _code(TRUNCATE + "    return number - 1.0\n"),
        CRITIQUE_TRUNC,
        _code(TRUNCATE + "    return number % 2.0\n"),
    ],
    "tree": [
        _code(CLOSE_WRONG),
        CRITIQUE_ABS,
        _code(CLOSE + "    return False\n"),
        CRITIQUE_ABS,
        _code(CLOSE_FIXED),
        _code(TRUNCATE + "    return number % 1.0 + 0.5\n"),
        CRITIQUE_TRUNC,
        _code(TRUNCATE + "    return number % 1.0\n"),
    ],
}


def selfrepair_command(*args: str) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("selfrepair")
    return subprocess.run(
        [str(executable), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def selfrepair_in_process(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """The `selfrepair` entry point (error handling included) in this process: no start-up cost."""
    monkeypatch.setattr(sys, "argv", ["selfrepair", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, Path]:
    """Two real bench runs (refine and tree search) with the scripted model and the local sandbox."""
    base = tmp_path_factory.mktemp("bench")
    runs = {}
    for strategy, replies in REPLIES.items():
        script = base / f"{strategy}.json"
        script.write_text(json.dumps(replies))
        out = base / strategy
        result = selfrepair_command(
            "bench",
            "humanevalfix",
            "--data",
            str(HUMANEVALPACK),
            "--strategy",
            strategy,
            "--budget",
            "3",
            "--model",
            f"scripted:{script}",
            "--sandbox",
            "local",
            "--out",
            str(out),
            "--quiet",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        runs[strategy] = out
    return runs


@pytest.fixture
def run_copy(real_runs: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the refine run, to spoil."""
    return Path(shutil.copytree(real_runs["refine"], tmp_path / "run"))


# ---------------------------------------------------------------- headless Chromium


def chromium() -> str:
    """Chromium's path; in CI its absence is a failure (scripts/test.sh installs it)."""
    path = shutil.which("chromium")
    if path is None:
        reason = (
            "chromium is not installed (scripts/test.sh installs it: apt-get install -y chromium)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def open_in_chromium(page: Path, work: Path, action: list[str]) -> subprocess.CompletedProcess:
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *action,
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def console_messages(stderr: str) -> list[str]:
    # Chromium logs every console message (errors included) as ":INFO:CONSOLE"; the page
    # has no script, so any message at all is a problem.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class PageParts(HTMLParser):
    """Summary-table cells (text by class name, in row order), <svg> count, tree nodes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.cells: dict[str, list[str]] = {}
        self.svgs = 0
        self.tree_nodes = 0
        self._cell: str | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class") or ""
        self.svgs += tag == "svg"
        self.tree_nodes += tag == "li" and classes == "tree-node"
        if tag == "td" and classes:
            self._cell = classes
            self.cells.setdefault(classes, []).append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell:
            self.cells[self._cell][-1] += data


def expected_cells(run_dir: Path) -> dict[str, str]:
    """The summary numbers as results.jsonl holds them, formatted as the page shows them."""
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    summary = summarize(rows)
    k = max(summary["pass@k"])
    return {
        "repair-rate": f"{summary['repair_rate']:.1%}",
        "pass-1": f"{summary['pass@1']:.1%}",
        "pass-k": f"{summary['pass@k'][k]:.1%} (k={k})",
        "tokens": f"{summary['tokens']:,}",
        "tokens-per-solved": f"{summary['tokens_per_solved']:,.0f}",
        "sandbox-seconds": f"{summary['sandbox_seconds']:,.2f}",
    }


def test_console_check_catches_a_script_error(tmp_path: Path) -> None:
    """The console check below would see an error if the page had one."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>"
    )
    result = open_in_chromium(page, tmp_path, ["--dump-dom"])
    assert any("undefinedFunction" in line for line in console_messages(result.stderr))


@pytest.mark.slow
def test_report_of_real_runs_renders_in_chromium(
    real_runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    page = tmp_path / "both.html"
    args = ("report", str(real_runs["refine"]), str(real_runs["tree"]), "--out", str(page))
    code, out, err = selfrepair_in_process(capsys, monkeypatch, *args)
    assert code == 0, err
    assert out.strip() == f"wrote {page}"
    # Nothing to fetch: no scripts, stylesheets, images or frames from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b", page.read_text())

    shot = tmp_path / "report.png"
    screenshot = open_in_chromium(
        page, tmp_path, [f"--screenshot={shot}", "--window-size=1280,2000"]
    )
    assert console_messages(screenshot.stderr) == []
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000

    dom = open_in_chromium(page, tmp_path, ["--dump-dom"])
    assert console_messages(dom.stderr) == []
    parts = PageParts(dom.stdout)
    assert parts.svgs == 2  # pass@k and pass@t, one line per run in each
    for row, strategy in enumerate(("refine", "tree")):
        for cell, text in expected_cells(real_runs[strategy]).items():
            assert parts.cells[cell][row] == text, (strategy, cell)
    # Every node of the tree run's trees, with its value; the refine run draws no tree.
    tree_steps = sum(len(t.steps) for t in load_run(real_runs["tree"]).trajectories.values())
    assert parts.tree_nodes == tree_steps > 0
    assert "value <b>" in dom.stdout
    # The critique came from the model: shown as text, never as markup.
    assert "take &lt;abs&gt;" in dom.stdout


def test_default_out_is_the_run_directory(
    real_runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    run = Path(shutil.copytree(real_runs["tree"], tmp_path / "tree"))
    code, out, err = selfrepair_in_process(capsys, monkeypatch, "report", str(run))
    assert code == 0, err
    assert out.strip() == f"wrote {run / 'report.html'}"
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")


# ---------------------------------------------------------------- the page's pieces


def _step(index: int, code: str, passed: bool, *, parent=None, value=None) -> Step:
    report = Report(
        tests=[
            Case(
                name="test_add",
                outcome="passed" if passed else "failed",
                traceback="" if passed else "AssertionError",
            )
        ],
        exit_code=0 if passed else 1,
    )
    return Step(
        index=index,
        kind="expand" if parent is not None else "solve",
        parent=parent,
        messages=[Message(role="user", content="Fix <script>alert(1)</script> this")],
        completion=_code(code),
        candidate=Candidate(files={"add.py": code}),
        report=report,
        review=Review(verdict="accept" if passed else "refine"),
        value=value,
        prompt_tokens=20,
        completion_tokens=10,
    )


def test_a_branching_tree_and_model_text_escaped(tmp_path: Path) -> None:
    """Two children of one node nest under it; a prompt's markup stays text."""
    buggy, fixed = "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return a + b\n"
    task = Task(
        task_id="add",
        spec="Add.",
        files={"add.py": buggy},
        entry_file="add.py",
        tests=Spec(kind="script", files={"test_add.py": "assert add(1, 2) == 3\n"}),
    )
    steps = [
        _step(0, buggy, False, value=0.2),
        _step(1, buggy.replace("a - b", "b - a"), False, parent=0, value=0.1),
        _step(2, fixed, True, parent=0, value=1.0),
    ]
    trajectory = Trajectory(
        task=task, strategy="tree", model="m", steps=steps, outcome="solved", solution_step=2
    )
    run = tmp_path / "run"
    run.mkdir()
    with TrajectoryStore(run) as store:
        store.save(trajectory)
    (run / "results.jsonl").write_text(json.dumps(result_row(trajectory)) + "\n")
    (run / "summary.json").write_text(json.dumps(summarize([result_row(trajectory)])))
    page = write_report([run]).read_text()
    nested = re.search(r"step 0</a>.*?<ul class='tree'>(.*?)</ul>", page, re.S).group(1)
    assert nested.count("<li class='tree-node'>") == 2 and "value <b>1.000</b>" in nested
    assert (
        "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    )
    # Step 2's candidate is diffed against its parent, step 0.
    assert "add.py (step 0)" in page


# ---------------------------------------------------------------- refusals


def _older_store(directory: Path) -> None:
    with sqlite3.connect(directory / "run.sqlite") as connection:
        connection.execute("UPDATE store_meta SET value = '0' WHERE key = 'schema_version'")


def _older_rows(directory: Path) -> None:
    rows = [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]
    for row in rows:
        del row["candidates_to_solve"], row["tokens_to_solve"]
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _older_trajectory(directory: Path) -> None:
    with sqlite3.connect(directory / "run.sqlite") as connection:
        body = json.loads(connection.execute("SELECT body FROM trajectories LIMIT 1").fetchone()[0])
        body["attempts"] = body.pop("steps")
        connection.execute(
            "UPDATE trajectories SET body = ? WHERE trajectory_id = ?",
            (json.dumps(body), body["trajectory_id"]),
        )


def _no_summary(directory: Path) -> None:
    (directory / "summary.json").unlink()


def _no_results(directory: Path) -> None:
    (directory / "results.jsonl").write_text("")


def _not_a_database(directory: Path) -> None:
    for path in directory.glob("run.sqlite*"):
        path.unlink()
    (directory / "run.sqlite").write_text("not sqlite")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_older_store, "store of format 0"),
        (_older_rows, "lacks candidates_to_solve, tokens_to_solve"),
        (_older_trajectory, "cannot read (an older format?)"),
        (_no_summary, "lacks summary.json"),
        (_no_results, "holds no results"),
        (_not_a_database, "is not a readable trajectory store"),
    ],
)
def test_older_or_broken_run_directory_is_refused(run_copy: Path, spoil, message: str) -> None:
    spoil(run_copy)
    with pytest.raises(SelfRepairError, match=re.escape(message)):
        write_report([run_copy])
    assert not (run_copy / "report.html").exists()


def test_empty_run_directory_gets_a_clear_message_and_nonzero_exit(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = selfrepair_in_process(capsys, monkeypatch, "report", str(empty))
    assert code != 0
    assert err == (
        f"selfrepair: error: {empty} is not a run directory: it holds none of run.sqlite, results.jsonl, summary.json\n"
    )
    assert list(empty.iterdir()) == []


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SelfRepairError, match="is not a directory"):
        write_report([tmp_path / "nowhere"])
