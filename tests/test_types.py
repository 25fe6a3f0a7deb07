"""The core types: JSON round trips, and validation errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from selfrepair.types import (
    Candidate,
    Message,
    Review,
    Step,
    Task,
    TestCase,
    TestReport,
    TestSpec,
    Trajectory,
)


def make_task() -> Task:
    return Task(
        task_id="quixbugs/gcd",
        spec="Greatest common divisor.",
        files={"gcd.py": "def gcd(a, b):\n    return gcd(a % b, b)\n"},
        entry_file="gcd.py",
        entry_point="gcd",
        tests=TestSpec(
            kind="script", files={"test_gcd.py": "assert gcd(4, 6) == 2\n"}, timeout_s=5
        ),
        metadata={"solution": "def gcd(a, b): ...", "mode": "repair"},
    )


def make_report() -> TestReport:
    return TestReport(
        tests=[
            TestCase(name="test_a", outcome="passed", seconds=0.1),
            TestCase(
                name="test_b", outcome="failed", message="assert 1 == 2", traceback="Traceback ..."
            ),
        ],
        exit_code=1,
        stdout="out",
        stderr="err",
        stdout_cut_bytes=10,
        wall_seconds=0.5,
        cpu_seconds=0.4,
        sandbox="local",
        reason="1 test failed",
    )


def make_trajectory() -> Trajectory:
    candidate = Candidate(
        files={"gcd.py": "def gcd(a, b):\n    return a if not b else gcd(b, a % b)\n"}
    )
    step = Step(
        index=0,
        kind="solve",
        messages=[
            Message(role="system", content="You repair code."),
            Message(role="user", content="Fix it."),
        ],
        completion="```python\n...\n```",
        candidate=candidate,
        report=make_report(),
        review=Review(verdict="refine", critique="test_b fails", confidence=0.7),
        prompt_tokens=40,
        completion_tokens=12,
        model_seconds=1.5,
        sandbox_seconds=0.5,
    )
    refined = Step(
        index=1, kind="refine", parent=0, candidate=Candidate(diff="--- a/x\n+++ b/x\n"), value=0.5
    )
    return Trajectory(
        task=make_task(),
        strategy="refine",
        model="smollm2",
        steps=[step, refined],
        outcome="solved",
        solution_step=1,
        wall_seconds=3.0,
        metadata={"stop_reason": "tests pass"},
    )


@pytest.mark.parametrize(
    "value",
    [
        make_task(),
        TestSpec(
            kind="pytest",
            files={"tests/test_x.py": "def test_x(): pass\n"},
            select=["tests/test_x.py::test_x"],
        ),
        TestSpec(kind="command", command="make test", must_keep_passing=["t1"]),
        Candidate(files={"a.py": "x = 1\n"}, explanation="set x"),
        Candidate(diff="--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 0\n+x = 1\n"),
        make_report(),
        TestCase(name="t", outcome="error", traceback="boom"),
        Review(verdict="accept", critique="looks right", confidence=0.9),
        Message(role="assistant", content="hello"),
        make_trajectory().steps[0],
        make_trajectory(),
        Task(
            task_id="django-1",
            spec="issue",
            repo="https://github.com/a/b.git",
            base_commit="abc",
            tests=TestSpec(kind="pytest", select=["t"]),
            metadata={"test_patch": "diff"},
        ),
    ],
    ids=lambda value: type(value).__name__,
)
def test_json_round_trip(value) -> None:
    again = type(value).model_validate_json(value.model_dump_json())
    assert again == value
    assert again.model_dump_json() == value.model_dump_json()


def test_trajectory_properties_survive_the_round_trip() -> None:
    trajectory = Trajectory.model_validate_json(make_trajectory().model_dump_json())
    assert trajectory.solved
    assert trajectory.tokens == 52
    assert trajectory.sandbox_seconds == 0.5
    assert [s.index for s in trajectory.candidates] == [0, 1]
    report = trajectory.steps[0].report
    assert not report.passed
    assert report.fraction_passed == 0.5
    assert [t.name for t in report.failing] == ["test_b"]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (
            lambda: Task(
                task_id="",
                spec="s",
                files={"a.py": ""},
                tests=TestSpec(kind="command", command="x"),
            ),
            "task_id",
        ),
        (lambda: Task(task_id="t", spec="s", tests=TestSpec(kind="command", command="x")), "files"),
        (
            lambda: Task(
                task_id="t",
                spec="s",
                files={"a.py": ""},
                entry_file="b.py",
                tests=TestSpec(kind="command", command="x"),
            ),
            "entry_file",
        ),
        (lambda: TestSpec(kind="command"), "command"),
        (lambda: TestSpec(kind="script", files={}), "files"),
        (lambda: TestSpec(kind="shell", command="x"), "kind"),
        (lambda: TestSpec(kind="command", command="x", timeout_s=0), "timeout_s"),
        (lambda: Candidate(), "files"),
        (lambda: Review(verdict="maybe"), "verdict"),
        (lambda: Review(verdict="accept", confidence=1.5), "confidence"),
        (lambda: Message(role="robot", content="hi"), "role"),
        (lambda: TestCase(name="t", outcome="green"), "outcome"),
        (lambda: TestReport(wall_seconds=-1), "wall_seconds"),
        (lambda: Step(index=-1, kind="solve"), "index"),
        (lambda: Message(role="user", content="hi", extra_field=1), "extra_field"),
    ],
)
def test_validation_names_the_field(make, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        make()
    assert field in str(error.value)


def test_bad_json_names_the_nested_field() -> None:
    data = make_trajectory().model_dump(mode="json")
    data["steps"][0]["report"]["tests"][1]["outcome"] = "green"
    with pytest.raises(ValidationError) as error:
        Trajectory.model_validate(data)
    assert error.value.errors()[0]["loc"] == ("steps", 0, "report", "tests", 1, "outcome")
