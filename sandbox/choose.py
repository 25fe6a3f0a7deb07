"""Pick the sandbox: Docker wherever a daemon answers and the image is built, else local."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from selfrepair.sandbox.core import Limits, Sandbox
from selfrepair.sandbox.local import LocalSandbox

from selfrepair.errors import SelfRepairError

KINDS = ("auto", "docker", "local")
_fallback_said = False


def open_sandbox(
    kind: str = "auto",
    limits: Limits | None = None,
    pool_size: int | None = None,
    python_path: Sequence[Path] = (),
) -> Sandbox:
    """A ready sandbox. "auto" takes Docker when `docker info` answers and the image exists;
    otherwise local, saying once on stderr that it fell back and why. "docker" raises a
    SelfRepairError naming what is missing instead of falling back. `python_path`: host
    folders (a package's dependencies) mounted read-only in every run and put on its path."""
    if kind not in KINDS:
        raise SelfRepairError(f"unknown sandbox kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "local":
        return LocalSandbox(limits, python_path=python_path)
    from selfrepair.sandbox.container import DockerSandbox, docker_unavailable

    problem = docker_unavailable()
    if problem is None:
        return DockerSandbox(limits, pool_size=pool_size, python_path=python_path)
    if kind == "docker":
        raise SelfRepairError(problem)
    _say_fallback(problem)
    return LocalSandbox(limits, python_path=python_path)


def fallback_reason() -> str | None:
    """Why "auto" would run locally, or None when it would use Docker."""
    from selfrepair.sandbox.container import docker_unavailable

    return docker_unavailable()


def _say_fallback(problem: str) -> None:
    global _fallback_said
    if not _fallback_said:
        _fallback_said = True
        print(f"selfrepair: sandbox: using the local sandbox: {problem}", file=sys.stderr)
