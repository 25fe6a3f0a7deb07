"""The fork server that runs inside each warm sandbox container (standard library only).

It is the container's PID 1. It starts once, reads the harness (`sandbox/harness`) from its
first line of input, imports pytest and the harness once, then serves requests, one JSON line
each on stdin, answering one JSON line on stdout.

The candidate's process is a *spare*: a child forked before the request arrived, so nothing
of the request (the tests above all) was ever in its memory. It has already dropped to uid
1000 with no capabilities in a session of its own; the request hands it the workspace, its
output pipes and its channel, and it runs the command (or, in a judged run, the harness's
worker). A judged run is handed to the container's judge: one long-lived process as uid 1001,
forked when the server starts (so it is warm, and no candidate ever ran in it). It alone can
read the tests (/tests is its own, mode 0500), it talks to the worker over a socket, writes the
verdict to a pipe only this server reads, and puts its interpreter back as it was after each
run. After the run the server kills everything left in the container but the judge, reaps it,
wipes /work, /out, /tmp and /tests, forks the next spare, and tells the host whether the
container misbehaved (and so must be replaced).

A command `python [-P|-u|-B|-E|-s|-I] (SCRIPT | -m MODULE | -c CODE) ARGS` runs inside the
spare itself, with no new interpreter: that is what makes a warm run cheaper than a bare
`python` on the host. Anything else is exec'd.

The host sends this file's source (with supervise.py's and selfrepair/paths.py's) as
`python3 -c`; see container.py.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import json
import os
import resource
import runpy
import signal
import socket
import struct
import sys
import tarfile
import time
import traceback

if "supervise" not in globals():  # on the host; in a container the launcher provides it
    from selfrepair.sandbox import supervise

SANDBOX_UID = 1000  # the candidate
JUDGE_UID = 1001  # the judge: reads the tests, never runs candidate code
WORK, TESTS, OUT, TMP, HARNESS = "/work", "/tests", "/out", "/tmp", "/harness"
JUDGE_TMP = "/tmp/.judge"
SHM = "/dev/shm"
MQUEUE = "/dev/mqueue"  # POSIX message queues: the container's IPC namespace outlives a run
JUDGE_RSS_BYTES = 512 << 20  # a judge grown beyond this is replaced before the next run
HARNESS_PACKAGE = "selfrepair_harness"
PYTHON_NAMES = ("python", "python3")
PYTHON_FLAGS = ("-P", "-u", "-B", "-E", "-s", "-I")
ARTIFACT_BYTES = 16 * 1024 * 1024
SKIP_FRAMES = {runpy.__file__, "<frozen runpy>", "<forkserver>"}


def main() -> None:
    stdin = sys.stdin.buffer
    _install_harness(json.loads(stdin.readline())["harness"])
    _warm_imports()
    protocol_out = os.fdopen(os.dup(1), "w")
    judge: Judge | None = None
    while True:
        # The candidate's process of the next run is forked here, where no part of a request is
        # left in any frame, and waits: off the path between a request and its answer. The
        # server's objects move to the collector's permanent generation first, so a collection
        # in a child never touches (and copies) the pages it shares with the server.
        gc.freeze()
        if judge is None or not judge.alive():
            judge = Judge()
        reply = _serve_one(stdin, Spare(), judge)
        if reply is None:
            return
        if judge.alive() and _resident_bytes(judge.pid) > JUDGE_RSS_BYTES:
            judge.stop()  # bounded memory: the next run gets a new judge
        protocol_out.write(json.dumps(reply) + "\n")
        protocol_out.flush()
        del reply


def _serve_one(stdin, spare: Spare, judge: Judge) -> dict | None:
    """One request, read and answered within this frame."""
    line = stdin.readline()
    if not line:
        return None
    try:
        return handle(json.loads(line), spare, judge)
    except Exception as error:  # the server must answer; the host recycles the container
        return {"error": f"{type(error).__name__}: {error}", "recycle": True}


def _install_harness(files: dict) -> None:
    """Write the harness under /harness (root's, read-only to everyone) and import it here,
    so every forked child has it loaded."""
    for rel, text in files.items():
        path = os.path.join(HARNESS, _safe(rel))
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o444)
    sys.path.insert(0, HARNESS)
    import selfrepair_harness.guard  # noqa: F401
    import selfrepair_harness.judge  # noqa: F401
    import selfrepair_harness.worker  # noqa: F401

    sys.path.remove(HARNESS)


def _warm_imports() -> None:
    """Import what test runs need once, so every forked child starts with it loaded."""
    try:
        import _pytest.junitxml  # noqa: F401
        import pytest  # noqa: F401
    except ImportError:
        pass


def _handover(control: socket.socket, message: dict, fds: list[int]) -> None:
    """A run's descriptors, then its message, to a waiting child."""
    socket.send_fds(control, [b"x"], fds)
    data = json.dumps(message).encode()
    control.sendall(struct.pack(">I", len(data)) + data)


def _take_over(control: socket.socket) -> tuple[dict, list[int]]:
    """What `_handover` sent; EOFError when the server closed the control socket."""
    msg, fds, _flags, _addr = socket.recv_fds(control, 1, 4)
    if not msg:
        raise EOFError
    (size,) = struct.unpack(">I", _read_exactly(control, 4))
    return json.loads(_read_exactly(control, size)), fds


def _become(uid: int) -> None:
    os.setsid()
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # drops every capability this server had
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fork_with_control(body) -> tuple[int, socket.socket]:
    """A child that runs `body` (which never returns) on its end of a new socket pair: the
    child's pid, and this server's end, over which the child gets its runs."""
    parent, child = socket.socketpair()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        parent.close()
        body(child)
    child.close()
    return pid, parent


class Spare:
    """The candidate's process of the next run, forked ahead of its request: it becomes the
    sandbox user at once, with no capabilities, and waits for its run."""

    def __init__(self) -> None:
        self.pid, self.control = _fork_with_control(_spare)

    def start(self, message: dict, fds: list[int]) -> None:
        """Hand over the run: stdout, stderr and the channel (or the worker's socket)."""
        _handover(self.control, message, fds)
        self.control.close()


def _spare(control: socket.socket) -> None:
    """In a spare: become the sandbox user, wait for the run, run it. Never returns."""
    code = 1
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write(
                "1000"
            )  # the candidate, not this server or the judge, is what the OOM killer takes
        _become(SANDBOX_UID)
        message, fds = _take_over(control)
        control.close()
        null = os.open(os.devnull, os.O_RDONLY)
        supervise.place_fds({0: null, **{fd: source for fd, source in enumerate(fds, start=1)}})
        os.closerange(len(fds) + 1, 1 << 16)
        cpu = int(message["wall_seconds"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        sys.stdin = open(os.devnull)
        code = _run_candidate(message)
    except SystemExit as done:
        code = _exit_status(done)
    except BaseException:
        traceback.print_exc()
        code = 127 if not _started_python else 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Judge:
    """The container's judge: one long-lived process as uid 1001 that judges the runs one
    after another (warm: no fork, start-up or teardown per run). It never runs candidate
    code; what a run's tests change in its interpreter is put back after the run (see
    `_judge_runs`). A sweep after a timeout kills it, and the next run gets a new one."""

    def __init__(self) -> None:
        self.pid, self.control = _fork_with_control(_judge_runs)

    def start(self, message: dict, fds: list[int]) -> None:
        """Hand over a run: stdout, stderr, the verdict's pipe and the worker's socket."""
        _handover(self.control, message, fds)

    def alive(self) -> bool:
        try:
            done, _status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by a sweep
            return False
        return done == 0

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.control.close()


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _close_all_but(*kept: int) -> None:
    """Close every descriptor above 2 but `kept`: nothing of the server's (its protocol
    stream to the host above all), or of an earlier run, stays open in a process."""
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _judge_runs(control: socket.socket) -> None:
    """In the judge: judge each run the server hands over, until it closes the socket."""
    code = 0
    try:
        _become(JUDGE_UID)
        _close_all_but(control.fileno())
        null = os.open(os.devnull, os.O_RDWR)
        supervise.place_fds({0: null, 1: null, 2: null})
        sys.stdin = open(0, closefd=False)  # no descriptor of its own: runs close the rest
        sys.path[:] = [entry for entry in sys.path if entry not in ("", ".")]
        import builtins

        import selfrepair_harness.judge as judge

        kept = (
            dict(sys.modules),
            list(sys.path),
            list(sys.meta_path),
            dict(builtins.__dict__),
            set(sys.path_importer_cache),
        )
        while True:
            try:
                message, (out, err, verdict, sock) = _take_over(control)
            except EOFError:
                return
            supervise.place_fds({1: out, 2: err})
            for fd in (out, err):
                os.close(fd)
            os.chdir(TESTS)
            os.environ.clear()
            os.environ.update(
                {
                    "PATH": "/usr/local/bin:/usr/bin:/bin",
                    "HOME": JUDGE_TMP,
                    "TMPDIR": JUDGE_TMP,
                    "LANG": "C.UTF-8",
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "SELFREPAIR_TESTS": TESTS,
                }
            )
            try:
                judge.main(message["judge"], verdict_fd=verdict, sock_fd=sock)
            finally:
                supervise.place_fds({1: null, 2: null})
                _close_all_but(control.fileno(), null)  # what the run's tests left open
                _restore(*kept)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _restore(modules: dict, path: list, meta_path: list, builtin_names: dict, finders: set) -> None:
    """What a run's tests changed in the judge's interpreter, put back for the next run."""
    import builtins

    for name in set(sys.modules) - set(modules):
        del sys.modules[name]
    sys.path[:] = path
    sys.meta_path[:] = meta_path
    for folder in set(sys.path_importer_cache) - finders:  # the run's folders, their listings
        del sys.path_importer_cache[folder]
    builtins.__dict__.clear()
    builtins.__dict__.update(builtin_names)
    gc.collect()


def _run_candidate(request: dict) -> int:
    """The candidate's side: the workspace, then the command (or, judged, the worker)."""
    import selfrepair_harness.guard as guard
    import selfrepair_harness.worker as worker

    file_size = request["file_size_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    os.umask(0o022)
    _write_workspace(request)
    os.chdir(WORK)
    os.environ.clear()
    os.environ.update(request["env"])
    if request["judged"]:
        deps = [
            e
            for e in request["env"].get("PYTHONPATH", "").split(os.pathsep)
            if e.startswith("/deps/")
        ]
        worker.main(3, [WORK, *deps])
        return 0
    argv = request["argv"]
    if (
        argv
        and os.path.basename(argv[0]) in PYTHON_NAMES
        and _python_in_process(argv[1:]) is not None
    ):
        guard.arm_from_environment(argv)
        return _python_in_process(argv[1:], run=True)
    os.execvpe(argv[0], argv, request["env"])
    return 127


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the server closed the spare's control socket")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def handle(request: dict, candidate: Spare, judge: Judge) -> dict:
    notes: list[str] = []
    _wipe(notes)
    judged = request.get("judge") is not None
    tests_digest = _write_tests(request.get("tests", {}), owner=JUDGE_UID if judged else 0)
    for folder in (WORK, OUT):
        os.chown(folder, SANDBOX_UID, SANDBOX_UID)
    os.chmod(TMP, 0o1777)
    oom_before = _oom_kills()

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if judged:  # the judge's verdict
        channel_r, channel_w = os.pipe()
    else:  # the guard's reports from the candidate's processes, each stamped with its writer
        reader, writer = supervise.report_channel()
        channel_r, channel_w = reader.detach(), writer.detach()
    started = time.monotonic()
    # The candidate's side gets neither the tests nor the judge's configuration.
    for_candidate = {key: value for key, value in request.items() if key not in ("tests", "judge")}
    for_candidate["judged"] = judged
    if judged:
        os.makedirs(JUDGE_TMP, mode=0o700, exist_ok=True)
        os.chown(JUDGE_TMP, JUDGE_UID, JUDGE_UID)
        judge_end, worker_end = socket.socketpair()
        candidate.start(for_candidate, [out_w, err_w, worker_end.fileno()])
        judge.start({"judge": request["judge"]}, [out_w, err_w, channel_w, judge_end.fileno()])
        worker_end.close()
        judge_end.close()
    else:
        candidate.start(for_candidate, [out_w, err_w, channel_w])
    for fd in (out_w, err_w, channel_w):
        os.close(fd)
    # A judged run ends when the judge has written its verdict and closed the pipe; any other
    # when the candidate's process ends.
    seen = supervise.watch(
        None if judged else candidate.pid,
        out_r,
        err_r,
        started + request["wall_seconds"],
        request["output_bytes"],
        channel_r,
    )
    if seen["timed_out"]:
        os.kill(
            -1, signal.SIGKILL
        )  # from PID 1: every other process in the container, the judge too
    if judged:
        # The verdict is in: the worker has nothing left to do (its output is flushed after
        # every answer), and what it started is still found and flagged below.
        try:
            os.kill(candidate.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _pid, status, usage = os.wait4(candidate.pid, 0)
    exit_code = None if seen["timed_out"] else 0 if judged else supervise.exit_code_of(status)
    wall = time.monotonic() - started

    recycle = seen["timed_out"]
    if _left_processes(keep=judge.pid):
        if not seen["timed_out"]:
            notes.append("left processes behind; killed them (container recycled)")
        os.kill(-1, signal.SIGKILL)
        recycle = True
    _reap_all(keep=judge.pid)
    out_of_memory = _oom_kills() > oom_before or supervise.died_of_memory(seen["stderr"])
    if out_of_memory:
        recycle = True
    if os.listdir(SHM):
        notes.append("wrote outside its workspace (/dev/shm); container recycled")
        recycle = True
    if _digest(TESTS) != tests_digest:
        notes.append("the tests were modified during the run")
        recycle = True
    workspace_tests = None if judged else supervise.test_files(WORK)
    artifacts = _collect(request.get("collect", []))
    _wipe(notes)
    if any("wipe" in note for note in notes):
        recycle = True
    return {
        "exit_code": exit_code,
        "stdout": seen["stdout"],
        "stderr": seen["stderr"],
        "stdout_cut_bytes": seen["stdout_cut"],
        "stderr_cut_bytes": seen["stderr_cut"],
        "channel": base64.b64encode(seen["channel"]).decode(),
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "timed_out": seen["timed_out"],
        "out_of_memory": out_of_memory,
        "artifacts": {name: base64.b64encode(data).decode() for name, data in artifacts.items()},
        "notes": notes,
        "recycle": recycle,
        "workspace_tests": workspace_tests,
    }


_started_python = False


def _python_in_process(args: list[str], run: bool = False) -> int | None:
    """Run `python ARGS` in this process. Without `run`: None when ARGS is not a form it serves."""
    global _started_python
    flags = []
    while args and args[0] in PYTHON_FLAGS:
        flags.append(args[0])
        args = args[1:]
    if (
        not args
        or (args[0] in ("-m", "-c") and len(args) < 2)
        or (args[0].startswith("-") and args[0] not in ("-m", "-c"))
    ):
        return None
    if not run:
        return 0
    _started_python = True
    isolated_path = "-P" in flags or "-I" in flags
    base = [entry for entry in sys.path if entry not in ("", ".")]
    extra = (
        []
        if "-I" in flags or "-E" in flags
        else [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    )
    if "-u" in flags:
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            sys.path[:] = ([] if isolated_path else [os.getcwd()]) + extra + base
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c":
            sys.argv = ["-c", *args[2:]]
            sys.path[:] = ([] if isolated_path else [""]) + extra + base
            exec(
                compile(args[1], "<string>", "exec"),
                {"__name__": "__main__", "__builtins__": __builtins__},
            )
        else:
            sys.argv = list(args)
            script_dir = os.path.dirname(os.path.abspath(args[0]))
            sys.path[:] = ([] if isolated_path else [script_dir]) + extra + base
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as done:
        return _exit_status(done)
    except BaseException as error:
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in SKIP_FRAMES:
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb)
        return 1
    return 0


def _exit_status(done: SystemExit) -> int:
    if done.code is None:
        return 0
    if isinstance(done.code, int):
        return done.code & 0xFF
    print(done.code, file=sys.stderr)
    return 1


def _write_tests(tests: dict, owner: int) -> str:
    """The tests, read-only. In a judged run they belong to the judge alone (mode 0500/0400),
    so the candidate can neither read nor list them; otherwise root's, readable by all."""
    directory_mode, file_mode = (0o500, 0o400) if owner else (0o755, 0o444)
    for rel, text in tests.items():
        path = os.path.join(TESTS, _safe(rel))
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, file_mode)
        os.chown(path, owner, owner)
    for root, dirs, _files in os.walk(TESTS):
        for name in dirs:
            os.chmod(os.path.join(root, name), directory_mode)
            os.chown(os.path.join(root, name), owner, owner)
    os.chown(TESTS, owner, owner)
    os.chmod(TESTS, directory_mode)
    return _digest(TESTS)


def _write_workspace(request: dict) -> None:
    if request.get("tar"):
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(request["tar"]))) as archive:
            members = [
                m
                for m in archive.getmembers()
                if (m.isfile() or m.isdir() or m.issym()) and _inside(m.name)
            ]
            archive.extractall(WORK, members=members)
    for rel, encoded in request.get("files", {}).items():
        path = os.path.join(WORK, _safe(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(encoded))


def _inside(rel: str) -> bool:
    """An archive member that lands in the workspace (its root "." included)."""
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    return not rel.startswith("/") and ".." not in parts


def _safe(rel: str) -> str:
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if rel.startswith("/") or ".." in parts or not parts:
        raise ValueError(f"path {rel!r} leaves the workspace")
    return "/".join(parts)


def _left_processes(keep: int) -> bool:
    """Whether a process is alive in the container besides this server and the judge."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (os.getpid(), keep):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except OSError:
                continue
    return False


def _reap_all(keep: int) -> None:
    """As PID 1, collect every child and orphan but the judge; SIGKILLed ones go quickly."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not _left_processes(keep):
                return
            time.sleep(0.001)


def _oom_kills() -> int:
    """The memory cgroup's OOM-kill counter (cgroup v2 memory.events or v1 memory.oom_control)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return 0


def _digest(folder: str) -> str:
    digest = hashlib.sha256()
    try:
        for root, dirs, files in sorted(os.walk(folder)):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(path.encode())
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    except OSError as error:
        return f"unreadable: {error}"
    return digest.hexdigest()


def _collect(names: list) -> dict:
    found = {}
    for name in names:
        try:
            fd = os.open(os.path.join(OUT, _safe(name)), os.O_RDONLY | os.O_NOFOLLOW)
        except (OSError, ValueError):
            continue
        with os.fdopen(fd, "rb") as handle:
            found[name] = handle.read(ARTIFACT_BYTES)
    return found


def _wipe(notes: list) -> None:
    for folder in (WORK, OUT, TMP, TESTS, SHM, MQUEUE):
        if folder == MQUEUE and not os.path.isdir(folder):
            continue  # a runtime that mounts no message queues leaves none to wipe
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    _remove_tree(path)
                else:
                    os.unlink(path)
            except OSError as error:
                notes.append(f"could not wipe {path}: {error}")


def _remove_tree(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


if __name__ == "__main__":
    main()
