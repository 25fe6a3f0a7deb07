"""The local sandbox: a subprocess on the host, fenced in as far as the host allows.

Used where no Docker daemon answers. Each run gets its own session and process group
(killed whole at the end), rlimits (CPU, address space, file size, processes), a scrubbed
environment, a fresh temporary workspace and the tests in a separate read-only directory.
Where the kernel permits `unshare`, the run has no network and a private /tmp and /dev/shm;
when the host user is root, the code runs as `nobody`, so it can neither edit the tests nor
read root's files. What it cannot do, it says in `isolation()`.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from selfrepair.errors import SelfRepairError
from selfrepair.sandbox import supervise
from selfrepair.sandbox.core import Execution, Limits, Workspace, expand_command, safe_relative

NOBODY = 65534
ARTIFACT_BYTES = 16 * 1024 * 1024  # a collected file (JUnit XML) is read up to this size
# The in-namespace prologue: a private /tmp and /dev/shm, then drop to nobody. `$0` is setpriv.
ROOT_PROLOGUE = (
    "mount -t tmpfs -o size=64m tmpfs /tmp && mount -t tmpfs -o size=16m tmpfs /dev/shm && "
    'exec "$0" "$@"'
)
DROP_TO_NOBODY = [
    "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
]


class LocalSandbox:
    name = "local"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.as_root = os.geteuid() == 0
        self.prefix, self.network_note = _probe_isolation(self.as_root)
        self.private_tmp = "sh" in self.prefix
        self.python, self.python_path = _find_python(self.prefix)

    def isolation(self) -> list[str]:
        """What this sandbox isolates and how, one line each (for `selfrepair sandbox check`)."""
        user = (
            "runs as nobody (uid 65534): tests and root's files are out of reach"
            if self.as_root
            else "runs as the invoking user: tests are read-only by mode and checked by hash after the run"
        )
        return [
            "process: own session and process group, killed whole at the end or on timeout",
            "rlimits: CPU seconds, address space, file size, processes, no core files",
            "environment: scrubbed (PATH, HOME, LANG and the sandbox's own variables only)",
            "workspace: a fresh temporary directory; tests in a separate read-only directory",
            self.network_note,
            user,
        ]

    def execute(
        self,
        workspace: Workspace,
        command: Sequence[str],
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        collect: Sequence[str] = (),
    ) -> Execution:
        limits = limits or self.limits
        # A private /tmp would hide a run directory under /tmp, so those runs live in /var/tmp.
        base = "/var/tmp" if self.private_tmp else None
        root = Path(tempfile.mkdtemp(prefix="selfrepair-local-", dir=base))
        try:
            return self._run(root, workspace, command, tests or {}, limits, collect)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def close(self) -> None:
        """Nothing outlives a run: each run's directory and processes are gone when it returns."""

    def _run(
        self,
        root: Path,
        workspace: Workspace,
        command: Sequence[str],
        tests: Mapping[str, str],
        limits: Limits,
        collect: Sequence[str],
    ) -> Execution:
        work, tests_dir, out, tmp = (root / name for name in ("work", "tests", "out", "tmp"))
        for folder in (work, tests_dir, out, tmp):
            folder.mkdir()
        _fill_workspace(work, workspace)
        for rel, text in tests.items():
            target = tests_dir / safe_relative(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        tests_digest = _digest(tests_dir)
        _make_read_only(tests_dir)
        if self.as_root:
            root.chmod(0o755)
            for folder in (work, out, tmp):
                _chown_tree(folder, NOBODY)

        paths = {"workspace": str(work), "tests": str(tests_dir), "out": str(out)}
        argv = expand_command(command, paths)
        # `python` in the command, or in a shell line it runs, is the interpreter found usable.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name in ("python", "python3"):
            (bin_dir / name).symlink_to(self.python)
        # A bare `pytest` in a test command works as in the Docker image, whose pytest is on PATH.
        launcher = bin_dir / "pytest"
        launcher.write_text('#!/bin/sh\nexec python -m pytest "$@"\n')
        launcher.chmod(0o755)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python
        env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join([str(work), *self.python_path]),
            "SELFREPAIR_WORKSPACE": str(work),
            "SELFREPAIR_TESTS": str(tests_dir),
            "SELFREPAIR_OUT": str(out),
        }

        # RLIMIT_NPROC counts every process of the user; as root the code runs as nobody.
        processes = limits.pids if self.as_root else limits.pids + _processes_of(os.getuid())
        started = time.monotonic()
        try:
            child = subprocess.Popen(
                self.prefix + argv,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=lambda: _set_rlimits(limits, processes),
            )
        except OSError as error:
            return Execution(exit_code=127, stderr=f"cannot start {argv[0]!r}: {error}", sandbox=self.name)
        # The pipes belong to watch() from here on; Popen must not close them a second time.
        out_fd, err_fd = os.dup(child.stdout.fileno()), os.dup(child.stderr.fileno())
        child.stdout.close()
        child.stderr.close()
        seen = supervise.watch(child.pid, out_fd, err_fd, started + limits.wall_seconds, limits.output_bytes)
        if seen["timed_out"]:
            supervise.kill_group(child.pid)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = supervise.exit_code_of(status)  # so Popen does not reap it again
        wall = time.monotonic() - started
        notes = []
        if supervise.kill_group(child.pid) and not seen["timed_out"]:
            notes.append("left processes behind; killed them")
        if _digest(tests_dir) != tests_digest:
            notes.append("the tests were modified during the run")

        return Execution(
            exit_code=None if seen["timed_out"] else supervise.exit_code_of(status),
            stdout=seen["stdout"],
            stderr=seen["stderr"],
            stdout_cut_bytes=seen["stdout_cut"],
            stderr_cut_bytes=seen["stderr_cut"],
            wall_seconds=wall,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            timed_out=seen["timed_out"],
            out_of_memory=supervise.died_of_memory(seen["stderr"]),
            artifacts=_collect(out, collect),
            sandbox=self.name,
            notes=notes,
        )


def _probe_isolation(as_root: bool) -> tuple[list[str], str]:
    """The command prefix that isolates the network (and, as root, /tmp and the user)."""
    if shutil.which("unshare") is None:
        return [], "network: NOT isolated (no `unshare` on this host)"
    if as_root:
        prefix = ["unshare", "--net", "--mount", "--", "sh", "-c", ROOT_PROLOGUE, *DROP_TO_NOBODY]
        if shutil.which("setpriv") and _works(prefix + ["true"]):
            return prefix, "network: none (unshare --net); /tmp and /dev/shm private (unshare --mount)"
    # --fork: the code's parent is unshare, not this process, so killing its parent cannot
    # reach the caller; --kill-child: unshare's death takes the code with it.
    prefix = ["unshare", "--user", "--map-root-user", "--net", "--fork", "--kill-child", "--"]
    if _works(prefix + ["true"]):
        return prefix, "network: none (unshare --user --net)"
    return [], "network: NOT isolated (this kernel does not permit unshare here)"


def _find_python(prefix: list[str]) -> tuple[str, list[str]]:
    """An interpreter the sandboxed user can run, and the path that gives it our packages.

    As nobody, this environment's interpreter may sit in a directory nobody cannot enter
    (a pyenv under /root); the system python3 with our site-packages on its path serves then.
    """
    site_packages = [p for p in sys.path if p.endswith("-packages") and Path(p).is_dir()]
    candidates = [sys.executable, os.path.realpath(sys.executable), "/usr/local/bin/python3", "/usr/bin/python3"]
    for python in dict.fromkeys(c for c in candidates if c):
        probe = prefix + ["env", f"PYTHONPATH={os.pathsep.join(site_packages)}", python, "-c", "import pytest"]
        if _works(probe):
            return python, site_packages
    return sys.executable, site_packages


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def _set_rlimits(limits: Limits, processes: int) -> None:
    cpu = int(limits.wall_seconds) + 1
    memory = limits.memory_mb * 1024 * 1024
    file_size = limits.file_size_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _fill_workspace(work: Path, workspace: Workspace) -> None:
    if isinstance(workspace, Path):
        if not workspace.is_dir():
            raise SelfRepairError(f"workspace {workspace} is not a directory")
        shutil.copytree(workspace, work, symlinks=True, dirs_exist_ok=True)
        return
    for rel, content in workspace.items():
        target = work / safe_relative(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def _make_read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)


def _chown_tree(folder: Path, uid: int) -> None:
    os.chown(folder, uid, uid)
    for path in folder.rglob("*"):
        os.lchown(path, uid, uid)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    try:
        for path in sorted(folder.rglob("*")):
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_file() and not path.is_symlink():
                digest.update(path.read_bytes())
    except OSError as error:  # made unreadable: that is a change too
        return f"unreadable: {error}"
    return digest.hexdigest()


def _collect(out: Path, names: Sequence[str]) -> dict[str, bytes]:
    found = {}
    for name in names:
        path = out / safe_relative(name)
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                found[name] = handle.read(ARTIFACT_BYTES)
    return found
