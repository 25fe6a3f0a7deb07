"""The Sandbox protocol: run one command over a workspace, under limits, and say what happened.

A sandbox never raises because the code under test misbehaved: a crash, a timeout, a
memory bomb all come back as an Execution with the flags set. It raises only when the
sandbox itself cannot work (no daemon, no image), as a SelfRepairError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Protocol

from selfrepair.errors import SelfRepairError


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 30.0
    memory_mb: int = 512
    cpus: float = 1.0
    pids: int = 128
    output_bytes: int = 64 * 1024  # per stream; the rest is cut and counted
    file_size_mb: int = 64
    workspace_mb: int = 256  # Docker: size of the in-memory workspace (counts against memory)


@dataclass
class Execution:
    """What one command run saw. `artifacts` holds files the caller asked to collect."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_cut_bytes: int = 0
    stderr_cut_bytes: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    timed_out: bool = False
    out_of_memory: bool = False
    artifacts: dict[str, bytes] = field(default_factory=dict)
    # What the run wrote on descriptor 3: in `judge`, the judge's verdict (the candidate cannot
    # reach it); in `execute`, the guard's reports from the candidate's own processes, each
    # line stamped with the pid of the process that wrote it.
    channel: bytes = b""
    sandbox: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. "container recycled: left processes"


# A workspace is either files by relative path, or a directory on the host that is copied in.
Workspace = Mapping[str, str | bytes] | Path


class Sandbox(Protocol):
    name: str  # "docker" or "local"

    def execute(
        self,
        workspace: Workspace,
        command: Sequence[str],
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        collect: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Execution:
        """Run `command` as the candidate, with the workspace as working directory.

        `tests` are written to a separate read-only directory (its path is in the
        environment variable SELFREPAIR_TESTS inside the sandbox) so the candidate can
        neither modify nor delete them. `collect` names files (relative to the tests'
        output directory, SELFREPAIR_OUT) to bring back as artifacts. `env` adds variables.
        `$SELFREPAIR_WORKSPACE`, `$SELFREPAIR_TESTS` and `$SELFREPAIR_OUT` in `command`
        are replaced by the sandbox's own paths (see `expand_command`). The harness folder
        and the workspace are on PYTHONPATH, so every Python process arms the guard
        (`harness/guard.py`) and reports on descriptor $SELFREPAIR_CHANNEL (`Execution.channel`).
        """
        ...

    def judge(
        self,
        workspace: Workspace,
        config: dict,
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Execution:
        """A judged run (`harness/judge.py`): the judge, as its own user with the tests and
        never the workspace, runs `config`; the harness's worker, as the candidate with the
        workspace and never the tests, serves it. `Execution.channel` is the judge's verdict."""
        ...

    def close(self) -> None: ...

    def isolation(self) -> list[str]:
        """What is isolated and how, one line each."""
        ...


PLACEHOLDERS = ("workspace", "tests", "out")
# How every pytest process of a guarded run loads the guard's plugin: by the environment, and
# again by `-p` in PYTEST_ADDOPTS, which pytest reads after a configuration file's `addopts`,
# so a `-p no:selfrepair_harness.reporting` the candidate writes into pytest.ini or
# pyproject.toml cannot block it.
GUARD_PLUGIN = {
    "PYTEST_PLUGINS": "selfrepair_harness.reporting",
    "PYTEST_ADDOPTS": "-p selfrepair_harness.reporting",
}


def expand_command(command: Sequence[str], paths: Mapping[str, str]) -> list[str]:
    """Replace $SELFREPAIR_WORKSPACE / _TESTS / _OUT in each argument by the sandbox's path."""
    argv = []
    for arg in command:
        for name in PLACEHOLDERS:
            arg = arg.replace(f"$SELFREPAIR_{name.upper()}", paths[name])
        argv.append(arg)
    return argv


def safe_relative(path: str) -> str:
    """A workspace or test path, refused when it is absolute or climbs out with '..'."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise SelfRepairError(f"file path {path!r} must be relative and stay inside the workspace")
    return str(PurePosixPath(*parts))


def harness_files() -> dict[str, str]:
    """The harness as it is laid out inside a sandbox: the package `selfrepair_harness`, and
    `sitecustomize.py` beside it, which arms the guard in every Python process of a run."""
    package = resources.files("selfrepair.sandbox").joinpath("harness")
    files = {}
    for entry in package.iterdir():
        if entry.name.endswith(".py"):
            name = (
                entry.name
                if entry.name == "sitecustomize.py"
                else f"selfrepair_harness/{entry.name}"
            )
            files[name] = entry.read_text()
    return files
