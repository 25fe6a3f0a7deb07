"""The local sandbox: processes on this host, fenced in with bubblewrap.

Used where no Docker daemon answers. Each run gets a root of its own (bubblewrap): the host's
/usr and /etc read-only, the Python environment read-only, a fresh /tmp, /var/tmp and
/dev/shm that vanish with the run, /sandbox/work (the workspace), /sandbox/tests (read-only),
/sandbox/out and /sandbox/harness, no network, and its own process, IPC and UTS namespaces, so nothing it writes
outside /work and /out reaches the host or the next run, and it can see no host process.
As root the code runs as `nobody` with no capabilities (and a judge as another user, who
alone can read the tests); otherwise as the invoking user inside a user namespace. Each run
also has rlimits (CPU, address space, file size, processes), a scrubbed environment, and a
session of its own that is killed whole at the end.

Without bubblewrap (`apt-get install bubblewrap`) the run is a bare subprocess with rlimits
and a scrubbed environment only; `isolation()` says so, line by line.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from selfrepair.sandbox import supervise
from selfrepair.sandbox.core import (
    GUARD_PLUGIN,
    Execution,
    Limits,
    Workspace,
    expand_command,
    harness_files,
    safe_relative,
)

from selfrepair.errors import SelfRepairError

NOBODY = 65534
JUDGE_UID = 65533  # as root, the judge is a user of its own: the candidate cannot read the tests
ARTIFACT_BYTES = 16 * 1024 * 1024  # a collected file (JUnit XML) is read up to this size
WORKER_GRACE_SECONDS = 2.0
TMPFS_BYTES = 64 * 1024 * 1024  # each private /tmp, /var/tmp and /dev/shm
# Inside a run, under a folder no host path it binds can collide with (a project may live in /work).
INSIDE = {
    "workspace": "/sandbox/work",
    "tests": "/sandbox/tests",
    "out": "/sandbox/out",
    "harness": "/sandbox/harness",
}
DROP_TO = ["setpriv", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
# `bash -c REAPER reaper FD COMMAND...` runs the command, then tells (on descriptor FD) how
# many processes are left: in the run's own PID namespace /proc lists only the run's, and this
# shell and bubblewrap's init are all that should remain. The command never gets FD.
REAPER = (
    'fd=$1; shift; "$@" {fd}>&-; status=$?; count=0; '
    'for entry in /proc/[0-9]*; do count=$((count + 1)); done; echo "$count" >&"$fd"; exit $status'
)
EXPECTED_PROCESSES = 2  # bubblewrap's init and the reaper shell

# The process groups of runs under way, in any thread: a command stopped while threads of
# its run are inside test runs ends without waiting for them, and these go with it.
_running: set[int] = set()
_running_lock = threading.Lock()


@atexit.register
def _end_running() -> None:
    with _running_lock:
        groups = list(_running)
        _running.clear()
    for pgid in groups:
        supervise.kill_group(pgid)


class LocalSandbox:
    name = "local"

    def __init__(self, limits: Limits | None = None, python_path: Sequence[Path] = ()) -> None:
        self.limits = limits or Limits()
        self.as_root = os.geteuid() == 0
        self.python_path = [Path(p).resolve() for p in python_path]
        for folder in self.python_path:
            if not folder.is_dir():
                raise SelfRepairError(f"python path {folder} is not a directory")
        self.bwrap = shutil.which("bwrap") if _bwrap_works() else None
        self.python = self._python()
        self.harness = Path(tempfile.mkdtemp(prefix="selfrepair-harness-"))
        # Removed by close(), else when the sandbox is collected or the process exits: a sandbox
        # left unclosed (or whose start-up check failed) leaves no folder behind.
        self._remove_harness = weakref.finalize(self, shutil.rmtree, self.harness, True)
        write_harness(self.harness, self.python)
        self._preflight()

    # -- what it isolates -----------------------------------------------------------------

    def isolation(self) -> list[str]:
        if self.bwrap is None:
            return [
                "process: own session and process group, killed whole at the end or on timeout",
                "rlimits: CPU seconds, address space, file size, processes, no core files",
                "environment: scrubbed (PATH, HOME, LANG and the sandbox's own variables only)",
                "filesystem: NOT isolated: no bubblewrap here (apt-get install bubblewrap); the code "
                "can read and write whatever the user running selfrepair can, /tmp included",
                "network: NOT isolated (no bubblewrap)",
                "judge: a separate process of the same user; the candidate could read the tests",
            ]
        user = (
            f"user: code runs as nobody (uid {NOBODY}) with no capabilities; the judge as uid {JUDGE_UID}, "
            "the only one who can read the tests"
            if self.as_root
            else "user: the invoking user inside a user namespace; the judge runs in namespaces of its "
            "own, with the tests, where the candidate cannot see them"
        )
        return [
            "bubblewrap: a root of its own per run; host /usr and /etc read-only, the Python "
            "environment read-only, nothing else of the host's files",
            "filesystem: writable workspace and output folders only; fresh /tmp, /var/tmp and /dev/shm per run, "
            "gone with it (nothing reaches the host or the next run)",
            "network: none (own network namespace)",
            "processes: own PID, IPC and UTS namespaces; the whole run is killed at the end or on timeout",
            "rlimits: CPU seconds, address space, file size, processes, no core files",
            "environment: scrubbed (PATH, HOME, LANG and the sandbox's own variables only)",
            user,
            "verdict: a judge process calls the candidate through a socket on plain data and writes the "
            "verdict to a pipe only the supervisor reads",
        ]

    # -- runs -----------------------------------------------------------------------------

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
        """Run `command` as the candidate in the workspace; descriptor 3 is the channel."""
        limits = limits or self.limits
        with _RunDirectory(self, workspace, tests or {}, judged=False) as run:
            argv = expand_command(command, run.paths)
            if argv and argv[0] in ("python", "python3"):
                argv[0] = self.python
            before = supervise.test_files(str(run.work))
            reader, writer = supervise.report_channel()
            channel_r, channel_w = reader.detach(), writer.detach()
            environment = run.environment(
                extra={"SELFREPAIR_CHANNEL": str(channel_w), **(env or {})}
            )
            environment["PYTHONPATH"] = os.pathsep.join(
                [run.paths["harness"], run.paths["workspace"], *run.deps]
            )
            try:
                candidate = self._start(
                    run, argv, environment, limits, pass_fds=[channel_w], judge=False
                )
            except OSError as error:
                os.close(channel_r)
                os.close(channel_w)
                return Execution(
                    exit_code=127, stderr=f"cannot start {argv[0]!r}: {error}", sandbox=self.name
                )
            os.close(channel_w)
            return self._supervise(run, candidate, None, limits, channel_r, collect, before)

    def judge(
        self,
        workspace: Workspace,
        config: dict,
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Execution:
        """Run the judge (with the tests) and the harness's worker (with the workspace)."""
        limits = limits or self.limits
        with _RunDirectory(self, workspace, tests or {}, judged=True) as run:
            judge_end, worker_end = socket.socketpair()
            verdict_r, verdict_w = os.pipe()
            harness = run.paths["harness"]
            worker_argv = [
                self.python,
                "-I",
                "-c",
                _WORKER_START,
                harness,
                str(worker_end.fileno()),
                json.dumps([run.paths["workspace"], *run.deps]),
            ]
            judge_argv = [
                self.python,
                "-I",
                "-c",
                _JUDGE_START,
                harness,
                str(verdict_w),
                str(judge_end.fileno()),
                json.dumps({**config, "path": run.deps}),
            ]
            try:
                worker = self._start(
                    run,
                    worker_argv,
                    run.environment(),
                    limits,
                    pass_fds=[worker_end.fileno()],
                    judge=False,
                )
                judge = self._start(
                    run,
                    judge_argv,
                    run.environment(judge=True),
                    limits,
                    pass_fds=[verdict_w, judge_end.fileno()],
                    judge=True,
                )
            finally:
                worker_end.close()
                judge_end.close()
                os.close(verdict_w)
            return self._supervise(run, judge, worker, limits, verdict_r, ())

    def close(self) -> None:
        """Nothing outlives a run; the harness folder goes with the sandbox."""
        self._remove_harness()

    # -- the parts ------------------------------------------------------------------------

    def _start(self, run, argv, environment, limits, *, pass_fds, judge: bool) -> _Started:
        status_r = status_w = None
        prefix: list[str] = []
        if self.bwrap is not None:
            prefix = run.bubblewrap(judge)
            if not judge:
                status_r, status_w = os.pipe()
                prefix += ["bash", "-c", REAPER, "reaper", str(status_w)]
        # RLIMIT_NPROC counts every process of the user; as root the code runs as another user.
        processes = (
            limits.pids if self.as_root and self.bwrap else limits.pids + _processes_of(os.getuid())
        )
        fds = list(pass_fds) + ([status_w] if status_w is not None else [])

        def prepare() -> None:
            _set_rlimits(limits, processes)

        try:
            process = subprocess.Popen(
                prefix + argv,
                cwd=run.host_cwd(judge),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=run.out_w,
                stderr=run.err_w,
                start_new_session=True,
                pass_fds=fds,
                preexec_fn=prepare,
            )
            with _running_lock:
                _running.add(process.pid)
        finally:
            if status_w is not None:
                os.close(status_w)
        return _Started(process, status_r)

    def _supervise(
        self,
        run,
        main: _Started,
        worker: _Started | None,
        limits,
        channel_r,
        collect,
        workspace_tests: dict[str, str] | None = None,
    ) -> Execution:
        os.close(run.out_w)
        os.close(run.err_w)
        run.out_w = run.err_w = -1
        started = run.started
        out_r, err_r = run.out_r, run.err_r
        run.out_r = (
            run.err_r
        ) = -1  # watch closes them however it ends (a signal's exception included)
        seen = supervise.watch(
            main.process.pid,
            out_r,
            err_r,
            started + limits.wall_seconds,
            limits.output_bytes,
            channel_r,
        )
        if seen["timed_out"]:
            supervise.kill_group(main.process.pid)
        _pid, status, usage = os.wait4(main.process.pid, 0)
        main.process.returncode = supervise.exit_code_of(status)  # so Popen does not reap it again
        notes = []
        if worker is not None:
            if not seen["timed_out"]:
                try:
                    worker.process.wait(timeout=WORKER_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    notes.append("left processes behind; killed them")
            supervise.kill_group(worker.process.pid)
            worker.process.wait()
            leftovers = worker.leftovers()
        else:
            leftovers = main.leftovers()
        wall = time.monotonic() - started
        if supervise.kill_group(main.process.pid) and not seen["timed_out"] and self.bwrap is None:
            notes.append("left processes behind; killed them")
        with _running_lock:
            _running.difference_update(
                [main.process.pid] + ([worker.process.pid] if worker is not None else [])
            )
        if leftovers and not seen["timed_out"] and not notes:
            notes.append("left processes behind; killed them")
        if run.tests_changed():
            notes.append("the tests were modified during the run")
        if workspace_tests is not None:
            changed = supervise.changed_test_files(
                workspace_tests, supervise.test_files(str(run.work))
            )
            if changed:
                notes.append(
                    f"the tests were modified during the run (in the workspace: {', '.join(changed[:5])})"
                )
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
            artifacts=_collect(run.out, collect),
            channel=seen["channel"],
            sandbox=self.name,
            notes=notes,
        )

    def _python(self) -> str:
        """The interpreter as seen inside a run: the environment's own, bound read-only."""
        if self.bwrap is None:
            return sys.executable
        return (
            VENV + "/bin/python"
            if sys.prefix != sys.base_prefix
            else os.path.realpath(sys.executable)
        )

    def _preflight(self) -> None:
        """The same user, environment and interpreter as a real run must be able to import
        pytest; otherwise every candidate would be judged failed for the sandbox's sake."""
        probe = self.execute(
            {}, ["python", "-I", "-c", "import pytest"], limits=Limits(wall_seconds=60)
        )
        if probe.exit_code != 0:
            detail = (probe.stderr.strip().splitlines() or [f"exit status {probe.exit_code}"])[-1]
            who = "nobody" if self.as_root else "the sandbox"
            raise SelfRepairError(
                f"the local sandbox cannot run {self.python} with pytest as {who}: {detail}; "
                + (
                    "install bubblewrap (apt-get install bubblewrap) so the sandbox can reach this environment read-only, "
                    "or install selfrepair in an environment every user can read"
                    if self.bwrap is None
                    else "check that this Python environment is complete (pytest installed)"
                )
            )


VENV = "/venv"  # where a virtual environment appears inside a run

# `python -I -c START HARNESS_DIR ...`: the harness is imported from its folder, which then
# leaves the path (the worker's path is the workspace's, the judge's the tests').
_WORKER_START = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); from selfrepair_harness import worker; "
    "sys.path.remove(sys.argv[1]); worker.main(int(sys.argv[2]), json.loads(sys.argv[3]))"
)
_JUDGE_START = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); from selfrepair_harness import judge; "
    "sys.path.remove(sys.argv[1]); judge.main(json.loads(sys.argv[4]), verdict_fd=int(sys.argv[2]), sock_fd=int(sys.argv[3]))"
)


class _Started:
    def __init__(self, process: subprocess.Popen, status_r: int | None) -> None:
        self.process, self.status_r = process, status_r

    def leftovers(self) -> bool:
        """Whether the reaper saw processes beyond its own after the command ended."""
        if self.status_r is None:
            return False
        with os.fdopen(self.status_r, "rb") as status:
            text = status.read().decode(errors="replace").strip()
        return text.isdigit() and int(text) > EXPECTED_PROCESSES


class _RunDirectory:
    """A run's folders on the host and how they appear inside the run."""

    def __init__(
        self, sandbox: LocalSandbox, workspace: Workspace, tests: Mapping[str, str], judged: bool
    ) -> None:
        self.sandbox, self.workspace, self.tests, self.judged = sandbox, workspace, tests, judged

    def __enter__(self) -> _RunDirectory:
        self.root = Path(tempfile.mkdtemp(prefix="selfrepair-local-"))
        self.work, self.tests_dir, self.out, self.tmp = (
            self.root / n for n in ("work", "tests", "out", "tmp")
        )
        for folder in (self.work, self.tests_dir, self.out, self.tmp):
            folder.mkdir()
        try:
            _fill_workspace(self.work, self.workspace)
            for rel, text in self.tests.items():
                target = self.tests_dir / safe_relative(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.digest = _digest(self.tests_dir)
        _make_read_only(self.tests_dir, private=self.judged)
        sandbox = self.sandbox
        if sandbox.as_root:
            self.root.chmod(0o755)
            for folder in (self.work, self.out, self.tmp):
                _chown_tree(folder, NOBODY)
            if self.judged:
                _chown_tree(self.tests_dir, JUDGE_UID)
        isolated = sandbox.bwrap is not None
        host = {
            "workspace": str(self.work),
            "tests": str(self.tests_dir),
            "out": str(self.out),
            "harness": str(sandbox.harness),
        }
        self.paths = dict(INSIDE) if isolated else host
        self.deps = (
            [f"/deps/{i}" for i in range(len(sandbox.python_path))]
            if isolated
            else [str(p) for p in sandbox.python_path]
        )
        self.home = "/tmp" if isolated else str(self.tmp)
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        for fd in (self.out_r, self.err_r, self.out_w, self.err_w):
            if fd >= 0:
                os.close(fd)
        _make_writable(self.tests_dir)  # a read-only folder's files cannot be removed otherwise
        shutil.rmtree(self.root, ignore_errors=True)

    def host_cwd(self, judge: bool) -> Path:
        return self.tests_dir if judge else self.work

    def environment(
        self, extra: Mapping[str, str] | None = None, judge: bool = False
    ) -> dict[str, str]:
        environment = {
            "PATH": f"{self.paths['harness']}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "TMPDIR": self.home,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            **GUARD_PLUGIN,
            "SELFREPAIR_WORKSPACE": self.paths["workspace"],
            "SELFREPAIR_TESTS": self.paths["tests"],
            "SELFREPAIR_OUT": self.paths["out"],
        }
        if judge:
            for name in (*GUARD_PLUGIN, "SELFREPAIR_WORKSPACE", "SELFREPAIR_OUT"):
                environment.pop(name)
        return environment | dict(extra or {})

    def bubblewrap(self, judge: bool) -> list[str]:
        sandbox = self.sandbox
        argv = [
            sandbox.bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
        if not sandbox.as_root:
            argv += ["--unshare-user"]
        argv += _system_binds()
        argv += ["--proc", "/proc", "--dev", "/dev"]
        # The private /tmp comes before the environment's folders: one that lives under /tmp
        # (a checkout in `mktemp -d`, a .pth reaching into one) is bound read-only into it,
        # not hidden by it.
        for private in ("/tmp", "/var/tmp", "/dev/shm"):
            argv += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", private]
        if sys.prefix != sys.base_prefix:
            argv += ["--ro-bind", sys.prefix, VENV]
        for folder in _python_folders():
            # Folders made for a mount point would take the host's modes (/root's is 0700).
            for parent in reversed(Path(folder).parents[:-1]):
                argv += ["--perms", "0755", "--dir", str(parent)]
            argv += ["--ro-bind", folder, folder]
        if sandbox.python_path:
            argv += ["--perms", "0755", "--dir", "/deps"]
        for index, folder in enumerate(sandbox.python_path):
            argv += ["--ro-bind", str(folder), f"/deps/{index}"]
        argv += [
            "--perms",
            "0755",
            "--dir",
            str(Path(INSIDE["harness"]).parent),
            "--ro-bind",
            str(sandbox.harness),
            INSIDE["harness"],
        ]
        if judge:
            argv += ["--ro-bind", str(self.tests_dir), INSIDE["tests"], "--chdir", INSIDE["tests"]]
        else:
            argv += [
                "--bind",
                str(self.work),
                INSIDE["workspace"],
                "--bind",
                str(self.out),
                INSIDE["out"],
                "--chdir",
                INSIDE["workspace"],
            ]
            if not self.judged:
                argv += ["--ro-bind", str(self.tests_dir), INSIDE["tests"]]
        argv += ["--remount-ro", "/", "--"]
        if sandbox.as_root:
            uid = JUDGE_UID if judge else NOBODY
            argv += [*DROP_TO, f"--reuid={uid}", f"--regid={uid}", "--"]
        return argv

    def tests_changed(self) -> bool:
        return _digest(self.tests_dir) != self.digest


def _python_folders() -> list[str]:
    """Folders the interpreter needs besides /usr and the environment (bound at /venv): its
    installation, and site-packages a .pth file adds from elsewhere, at their own paths."""
    inside_venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    folders = [os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)]
    folders += [
        os.path.realpath(p)
        for p in sys.path
        if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)
    ]
    kept: list[str] = []
    for folder in dict.fromkeys(folders):
        covered = [f for f in ("/usr", "/etc", inside_venv, *kept) if f]
        if not any(folder == f or folder.startswith(f + "/") for f in covered):
            kept.append(folder)
    return kept


def _system_binds() -> list[str]:
    """The host's system folders, read-only; /bin and friends as the links they are."""
    binds = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            binds += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            binds += ["--ro-bind", str(path), str(path)]
    return binds


def _bwrap_works() -> bool:
    """bubblewrap is installed and may make namespaces here (as root, or unprivileged)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    argv = [
        bwrap,
        "--unshare-net",
        "--unshare-pid",
        *([] if os.geteuid() == 0 else ["--unshare-user"]),
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "true",
    ]
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def write_harness(folder: Path, python: str) -> None:
    """The harness as it appears inside a sandbox: the package `selfrepair_harness`, the
    `sitecustomize` that arms its guard in every Python process of a run, and `bin/` (first on
    PATH), where `python`, `python3` and `pytest` mean the sandbox's interpreter, as in the
    Docker image."""
    for name, text in harness_files().items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o444)
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    # Scripts, not links: a virtual environment's interpreter reached through a link in
    # another folder finds no pyvenv.cfg beside it and runs without the environment's packages.
    launchers = {name: f'exec {python} "$@"' for name in ("python", "python3")}
    launchers["pytest"] = 'exec python -m pytest "$@"'
    for name, line in launchers.items():
        launcher = bin_dir / name
        launcher.write_text(f"#!/bin/sh\n{line}\n")
        launcher.chmod(0o755)
    for directory in (folder, folder / "selfrepair_harness", bin_dir):
        directory.chmod(0o755)


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


def _make_read_only(folder: Path, private: bool) -> None:
    directory_mode, file_mode = (0o500, 0o400) if private else (0o555, 0o444)
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(directory_mode if path.is_dir() else file_mode)
    folder.chmod(directory_mode)


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)


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
