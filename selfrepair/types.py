"""The core nouns: Task, Candidate, TestReport, Review, Trajectory.

All are pydantic models: typed, validated (a bad field is named in the error) and
JSON round-trippable with `model_dump_json()` / `model_validate_json()`.
A Trajectory is exactly what training reads; there is no second format.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Record(BaseModel):
    """Base for every core type: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class TestSpec(Record):
    """How a task is tested.

    kind:
      script   the candidate's program and `files[script]` are joined into one file and
               run with python; exit status 0 means every test passed (QuixBugs,
               HumanEval, HumanEvalPack).
      pytest   `files` are test files placed read-only beside the workspace and run with
               pytest; results come from its JUnit XML. `select` narrows to test ids.
      command  `command` runs in the workspace (a shell command line); pytest commands
               get JUnit XML, anything else is judged by its exit status.
    """

    __test__ = False  # a core type, not a pytest test class

    kind: Literal["script", "pytest", "command"]
    files: dict[str, str] = Field(default_factory=dict)
    command: str | None = None
    select: list[str] = Field(default_factory=list)
    must_keep_passing: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_kind(self) -> TestSpec:
        if self.kind == "command" and not (self.command or "").strip():
            raise ValueError("command: a 'command' test spec needs a command")
        if self.kind == "script" and len(self.files) != 1:
            raise ValueError("files: a 'script' test spec needs exactly one test file")
        return self


TASK_ID_CHARS = 200


def check_task_id(value: str) -> str:
    """A task id names folders and rows (`quixbugs/plus`, `django__django-11099`): refused
    when it could name a place outside them (`../../etc/evil`, `/etc`) or hides characters."""
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\\" in value or not value.isprintable():
        raise ValueError(
            f"task id {value!r} is not a plain name (segments joined by '/', none empty, "
            "'.' or '..', printable, no backslash)"
        )
    return value


class Task(Record):
    """What to repair: a specification, the code, how to test it."""

    task_id: str = Field(min_length=1, max_length=TASK_ID_CHARS)
    spec: str  # docstring or issue text
    files: dict[str, str] = Field(default_factory=dict)  # path -> content of the code to repair
    entry_file: str | None = None  # the file a whole-program candidate replaces
    entry_point: str | None = None  # the function under repair, where known
    tests: TestSpec
    repo: str | None = None  # a git repository (path or URL) for repository tasks
    base_commit: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task_id")
    @classmethod
    def _check_task_id(cls, value: str) -> str:
        return check_task_id(value)

    @model_validator(mode="after")
    def _check_code(self) -> Task:
        if not self.files and not self.repo:
            raise ValueError("files: a task needs code: files or a repo")
        if self.entry_file is not None and self.entry_file not in self.files:
            raise ValueError(f"entry_file: {self.entry_file!r} is not one of the task's files")
        return self


class Candidate(Record):
    """A proposed change: whole files (new contents by path), a unified diff, or both."""

    files: dict[str, str] = Field(default_factory=dict)
    diff: str = ""
    explanation: str = ""

    @model_validator(mode="after")
    def _check_change(self) -> Candidate:
        if not self.files and not self.diff.strip():
            raise ValueError("files: a candidate changes something: files or a diff")
        return self


Outcome = Literal["passed", "failed", "error", "skipped"]


class TestCase(Record):
    __test__ = False

    name: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0


class TestReport(Record):
    """What the sandbox saw when it ran a candidate's tests. The only ground truth."""

    __test__ = False

    tests: list[TestCase] = Field(default_factory=list)
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_cut_bytes: int = Field(default=0, ge=0)  # how much output was dropped by the cap
    stderr_cut_bytes: int = Field(default=0, ge=0)
    wall_seconds: float = Field(default=0.0, ge=0)
    cpu_seconds: float = Field(default=0.0, ge=0)
    timed_out: bool = False
    out_of_memory: bool = False
    sandbox: str = ""  # "docker" or "local"
    reason: str = ""  # why it failed, in one line, when it did
    # Why the run looks like an attempt on the verdict (a forged or missing report, an early
    # exit, a refused reach for the harness, tampering with the tests); such a run never passes,
    # and training leaves its step out.
    suspicious: str = ""
    verdict: str = ""  # who decided: "judge" (out of the candidate's reach), "guard", "exit status"

    @property
    def passed(self) -> bool:
        """Every expected test ran and passed, nothing less: a skipped test is not a pass (the
        sandbox leaves out of `tests` only those that did not run on the code as given either,
        see `sandbox/judging.py`), a run that tested nothing is not a pass, and a suspicious
        run never passes."""
        if self.suspicious or self.timed_out or self.out_of_memory or self.exit_code != 0:
            return False
        return bool(self.tests) and all(t.outcome == "passed" for t in self.tests)

    @property
    def fraction_passed(self) -> float:
        if self.suspicious:
            return 0.0  # an attempt on the verdict earns nothing, GRPO's reward included
        if not self.tests:
            return 1.0 if self.passed else 0.0
        return sum(t.outcome == "passed" for t in self.tests) / len(self.tests)

    @property
    def failing(self) -> list[TestCase]:
        return [t for t in self.tests if t.outcome in ("failed", "error")]


class Review(Record):
    verdict: Literal["accept", "refine"]
    critique: str = ""
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: str


FinishReason = Literal["stop", "length", "time", ""]
# inputs: the label-free mode's test calls; reproduce: a test written from an issue
StepKind = Literal["solve", "refine", "sample", "expand", "edit", "localise", "inputs", "reproduce"]


class Step(Record):
    """One model call and what came of it: the candidate, its test report, its review."""

    index: int = Field(ge=0)
    kind: StepKind
    parent: int | None = None  # the step this one refines; the tree for tree search
    messages: list[Message] = Field(default_factory=list)  # the prompt as sent
    completion: str = ""  # the model's reply
    # Why the reply ended, as the backend said: "stop" (it finished, or hit a stop string) or
    # "length" (cut at max_tokens: a truncated reply, not the model's whole answer) or "time"
    # (cut when the time budget ran out mid-call: never tested); "" in trajectories recorded
    # before it was.
    finish_reason: FinishReason = ""
    # The sampling seed of the model call this reply came from (None: unseeded); the replies
    # of one call are its samples in step order, so (seed, position) names a sample.
    seed: int | None = None
    candidate: Candidate | None = None
    report: TestReport | None = None
    review: Review | None = None
    review_messages: list[Message] = Field(default_factory=list)
    review_completion: str = ""
    review_finish_reason: FinishReason = ""
    reviewer_error: bool = False  # the reviewer accepted a candidate whose tests failed
    # A trained verifier's probability that the candidate passes, given before its tests ran
    # (best-of-n with a verifier tests the most promising first); None: not scored.
    verifier_score: float | None = Field(default=None, ge=0.0, le=1.0)
    value: float | None = None  # tree search: the node's value
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    model_seconds: float = Field(default=0.0, ge=0)
    sandbox_seconds: float = Field(default=0.0, ge=0)
    error: str = ""  # a failed step's reason, e.g. "no code in the reply"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Trajectory(Record):
    """An episode, step by step, and its outcome."""

    trajectory_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    task: Task
    strategy: str
    model: str
    steps: list[Step] = Field(default_factory=list)
    outcome: Literal["running", "solved", "failed", "budget", "error"] = "running"
    solution_step: int | None = None  # index of the step whose candidate passed
    started_at: float = Field(default_factory=time.time)
    wall_seconds: float = Field(default=0.0, ge=0)
    error: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def solved(self) -> bool:
        return self.outcome == "solved"

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.steps)

    @property
    def sandbox_seconds(self) -> float:
        return sum(s.sandbox_seconds for s in self.steps)

    @property
    def candidates(self) -> list[Step]:
        return [s for s in self.steps if s.candidate is not None]

    def pending(self) -> Step | None:
        """The next candidate whose tests have not run yet: the one a verifier scored highest,
        else the first."""
        untested = [s for s in self.steps if s.candidate is not None and s.report is None]
        if not untested:
            return None
        return max(
            untested,
            key=lambda s: (s.verifier_score if s.verifier_score is not None else -1.0, -s.index),
        )

    def executed(self) -> list[Step]:
        """The steps whose candidate's tests ran, in order."""
        return [s for s in self.steps if s.report is not None]

    def passing(self) -> list[Step]:
        """The steps whose candidate passed the tests, in order."""
        return [s for s in self.steps if s.report is not None and s.report.passed]
