"""The fork server that runs inside each warm sandbox container (standard library only).

It is the container's PID 1: it starts once, imports pytest once, then serves requests,
one JSON line each on stdin, answering one JSON line on stdout. Per request it lays out
the tests (owned by root, read-only), forks a child that drops to uid 1000 with no
capabilities, starts its own session, writes the workspace and runs the command, and then:
kills everything left in the container, reaps it, wipes /work, /out and /tmp, and tells
the host whether the container misbehaved (and so must be replaced).

A command `python [-P|-u|-B|-E|-s] (SCRIPT | -m MODULE | -c CODE) ARGS` runs inside the forked child
itself, with no new interpreter: that is what makes a warm run cheaper than a bare
`python` on the host. Anything else is exec'd.

The host sends this file's source (with supervise.py's) as `python3 -c`; see container.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import resource
import runpy
import signal
import sys
import tarfile
import time
import traceback

if "supervise" not in globals():  # on the host; in a container the launcher provides it
    from selfrepair.sandbox import supervise

SANDBOX_UID = 1000
WORK, TESTS, OUT, TMP = "/work", "/tests", "/out", "/tmp"
SHM = "/dev/shm"
PYTHON_NAMES = ("python", "python3")
PYTHON_FLAGS = ("-P", "-u", "-B", "-E", "-s")
ARTIFACT_BYTES = 16 * 1024 * 1024
SKIP_FRAMES = {runpy.__file__, "<frozen runpy>", "<forkserver>"}


def main() -> None:
    _warm_imports()
    protocol_out = os.fdopen(os.dup(1), "w")
    for line in sys.stdin.buffer:
        try:
            reply = handle(json.loads(line))
        except Exception as error:  # the server must answer; the host recycles the container
            reply = {"error": f"{type(error).__name__}: {error}", "recycle": True}
        protocol_out.write(json.dumps(reply) + "\n")
        protocol_out.flush()


def _warm_imports() -> None:
    """Import what test runs need once, so every forked child starts with it loaded."""
    try:
        import pytest  # noqa: F401
        import _pytest.junitxml  # noqa: F401
    except ImportError:
        pass


def handle(request: dict) -> dict:
    notes: list[str] = []
    _wipe(notes)
    tests_digest = _write_tests(request.get("tests", {}))
    for folder in (WORK, OUT):
        os.chown(folder, SANDBOX_UID, SANDBOX_UID)
    os.chmod(TMP, 0o1777)
    oom_before = _oom_kills()

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        _child(request, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    seen = supervise.watch(pid, out_r, err_r, started + request["wall_seconds"], request["output_bytes"])
    if seen["timed_out"]:
        os.kill(-1, signal.SIGKILL)  # from PID 1: every other process in the container
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started

    recycle = seen["timed_out"]
    if _left_processes():
        if not seen["timed_out"]:
            notes.append("left processes behind; killed them (container recycled)")
        os.kill(-1, signal.SIGKILL)
        recycle = True
    _reap_all()
    out_of_memory = _oom_kills() > oom_before or supervise.died_of_memory(seen["stderr"])
    if out_of_memory:
        recycle = True
    if os.listdir(SHM):
        notes.append("wrote outside its workspace (/dev/shm); container recycled")
        recycle = True
    if _digest(TESTS) != tests_digest:
        notes.append("the tests were modified during the run")
        recycle = True
    artifacts = _collect(request.get("collect", []))
    _wipe(notes)
    if any("wipe" in note for note in notes):
        recycle = True
    return {
        "exit_code": None if seen["timed_out"] else supervise.exit_code_of(status),
        "stdout": seen["stdout"],
        "stderr": seen["stderr"],
        "stdout_cut_bytes": seen["stdout_cut"],
        "stderr_cut_bytes": seen["stderr_cut"],
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "timed_out": seen["timed_out"],
        "out_of_memory": out_of_memory,
        "artifacts": {name: base64.b64encode(data).decode() for name, data in artifacts.items()},
        "notes": notes,
        "recycle": recycle,
    }


def _child(request: dict, out_w: int, err_w: int) -> None:
    """In the forked child: become the sandbox user, lay out the workspace, run. Never returns."""
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")  # the child, not this server, is what the OOM killer takes
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)  # drops every capability this server still had
        cpu = int(request["wall_seconds"]) + 1
        file_size = request["file_size_mb"] * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o022)
        _write_workspace(request)
        os.chdir(WORK)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdin = open(os.devnull)
        argv = request["argv"]
        if argv and os.path.basename(argv[0]) in PYTHON_NAMES and _python_in_process(argv[1:]) is not None:
            code = _python_in_process(argv[1:], run=True)
        else:
            os.execvpe(argv[0], argv, request["env"])
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


_started_python = False


def _python_in_process(args: list[str], run: bool = False) -> int | None:
    """Run `python ARGS` in this process. Without `run`: None when ARGS is not a form it serves."""
    global _started_python
    flags = []
    while args and args[0] in PYTHON_FLAGS:
        flags.append(args[0])
        args = args[1:]
    if not args or (args[0] in ("-m", "-c") and len(args) < 2) or (args[0].startswith("-") and args[0] not in ("-m", "-c")):
        return None
    if not run:
        return 0
    _started_python = True
    isolated_path = "-P" in flags
    base = [entry for entry in sys.path if entry not in ("", ".")]
    extra = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
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
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
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


def _write_tests(tests: dict) -> str:
    for rel, text in tests.items():
        path = os.path.join(TESTS, _safe(rel))
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o444)
    return _digest(TESTS)


def _write_workspace(request: dict) -> None:
    if request.get("tar"):
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(request["tar"]))) as archive:
            members = [m for m in archive.getmembers() if (m.isfile() or m.isdir() or m.issym()) and _safe(m.name)]
            archive.extractall(WORK, members=members)
    for rel, encoded in request.get("files", {}).items():
        path = os.path.join(WORK, _safe(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(encoded))


def _safe(rel: str) -> str:
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if rel.startswith("/") or ".." in parts or not parts:
        raise ValueError(f"path {rel!r} leaves the workspace")
    return "/".join(parts)


def _left_processes() -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except OSError:
                continue
    return False


def _reap_all() -> None:
    """As PID 1, collect every child and orphan; SIGKILLed ones go quickly."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
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
    for folder in (WORK, OUT, TMP, TESTS, SHM):
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
