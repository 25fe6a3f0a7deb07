"""Defence in depth for runs where the candidate's code shares a process with the tests.

A repository's test suite imports the candidate's code into pytest's own process, so no
judge can stand outside it. There, before any candidate code runs (at interpreter start,
from `sitecustomize`, or by the sandbox's fork server), `arm()`:

  - installs an audit hook (PEP 578; it cannot be removed) that refuses, while the
    candidate's files are on the stack, `ctypes`, the garbage collector's object lists,
    trace and profile functions, reads of process memory, the report channel's descriptor,
    and patches to the classes of pytest, pluggy, unittest and this harness; every refusal
    is reported;
  - opens the report channel: a socket only the sandbox reads, which learns from the kernel
    the pid of the process that wrote each message. No key or other secret is in the
    candidate's process; a process can write only as itself (see `sandbox/verdict.py`).

`reporting` is the pytest plugin that reports through `emit`: what was collected, each
test's outcome, whether each test's own body ran to its end, and the session's end.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import random
import stat
import sys
import threading

CHANNEL_ENV = "SELFREPAIR_CHANNEL"  # the report channel's descriptor number
SUSPECTS_ENV = (
    "SELFREPAIR_SUSPECTS"  # the candidate's files, os.pathsep-separated, workspace-relative
)
PROTECTED = ("_pytest", "pytest", "pluggy", "unittest", "selfrepair_harness")
SENSITIVE = (
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "sys.settrace",
    "sys.setprofile",
    "sys._current_frames",
)
CANARY_ENV = "SELFREPAIR_CANARY"  # the host's seed for this run's canaries (see `reporting`)
CANARY_PAIRS = 2  # real tests that get a pair of twins
LINE_BYTES = 4000  # below PIPE_BUF: a line is written whole even when processes share the pipe


def canary_token(seed: str, nodeid: str, kind: str) -> str:
    """The id suffix of a twin of `nodeid` (kind "fail" or "pass"); the host recomputes it."""
    return hmac.new(seed.encode(), f"{nodeid}|{kind}".encode(), hashlib.sha256).hexdigest()[:10]


def canary_plan(seed: str, collected: list[tuple[str, bool]]) -> list[str]:
    """The real tests that get twins: up to CANARY_PAIRS watched, unparametrized ones, drawn
    by `seed` from `collected` ((node id, watched) pairs) in an order no plugin can change."""
    eligible = sorted(nodeid for nodeid, watched in collected if watched and "[" not in nodeid)
    return random.Random(seed).sample(eligible, min(CANARY_PAIRS, len(eligible)))


# A value of the same type as the given one that is not equal to it (for a value no plain
# type has, a fresh object): what a must-fail twin compares with when its expected value is
# computed. One source, defined here and written into a twin script that needs it.
OTHER = "_selfrepair_other"
OTHER_SOURCE = f"""
def {OTHER}(value):
    kind = type(value)
    if kind is bool:
        return not value
    if kind is int:
        return value + 1
    if kind is float:
        if value - value != 0:
            return 0.0
        return value + 1.0 if abs(value) < 1e15 else value * 2
    if kind is str:
        return value + "x"
    if kind is bytes:
        return value + b"x"
    if kind is list:
        return value + [None]
    if kind is tuple:
        return value + (None,)
    if kind is set or kind is frozenset:
        return value | kind([object()])
    if kind is dict:
        return {{**value, object(): None}}
    if value is None:
        return 0
    return object()
"""
_defined: dict = {}
exec(OTHER_SOURCE, _defined)
other_value = _defined[OTHER]
STATIC = (bool, int, float, str, bytes)  # constants altered in the code itself


def alter_first_assert(statements: list) -> bool:
    """Alter, in place, the expected value of the first `assert X == Y` among `statements`
    (top level only: it runs whenever they run to their end): a constant becomes another of
    its type, anything else `_selfrepair_other(Y)` (Y: the side that is not a call, else
    the right). False when there is none. A must-fail canary's making."""
    for statement in statements:
        test = statement.test if isinstance(statement, ast.Assert) else None
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            continue
        if not isinstance(test.ops[0], ast.Eq):
            continue
        sides = [test.left, test.comparators[0]]
        constant = [isinstance(side, ast.Constant) for side in sides]
        if all(constant):
            continue
        if any(constant):
            index = constant.index(True)
            value = sides[index].value
            if type(value) not in STATIC or (type(value) is float and value - value != 0):
                continue
            sides[index] = ast.copy_location(ast.Constant(other_value(value)), sides[index])
        else:
            calls = [isinstance(side, ast.Call) for side in sides]
            index = 0 if calls == [False, True] else 1
            side = sides[index]
            sides[index] = ast.copy_location(
                ast.Call(ast.Name(OTHER, ast.Load()), [side], []), side
            )
        test.left, test.comparators = sides[0], [sides[1]]
        ast.fix_missing_locations(statement)
        return True
    return False


def altered_script(source: str) -> str | None:
    """`source` with its first top-level `assert X == Y` altered (and the helper it may call
    defined after its `__future__` imports), or None when it has none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    if not alter_first_assert(tree.body):
        return None
    at = 0
    while (
        at < len(tree.body)
        and isinstance(tree.body[at], ast.ImportFrom)
        and (tree.body[at].module == "__future__")
    ):
        at += 1
    if any(isinstance(node, ast.Name) and node.id == OTHER for node in ast.walk(tree)):
        tree.body[at:at] = ast.parse(OTHER_SOURCE).body
    return ast.unparse(tree) + "\n"


def emit(record: dict) -> None:
    """Report one record on the channel (replaced by `arm`; a no-op until then)."""


def arm_from_environment(argv: list[str] | None = None) -> None:
    channel = os.environ.get(CHANNEL_ENV, "")
    workspace = os.environ.get("SELFREPAIR_WORKSPACE", ".")
    suspects = [
        os.path.join(workspace, p) for p in os.environ.get(SUSPECTS_ENV, "").split(os.pathsep) if p
    ]
    arm(int(channel) if channel.isdigit() else None, suspects, argv, workspace)


_armed = False
_seed: list[str] = []  # this process's canary seed, until the plugin takes it (`take_seed`)


def under_suspicion() -> bool:
    """Whether this process runs the candidate's code (rather than the code as given)."""
    return _suspected


_suspected = False


def take_seed() -> str:
    """The host's canary seed, once: the reporting plugin takes it when pytest loads it, before
    any conftest or test module; whoever asks later gets "" (and a plugin that finds it taken
    makes no canaries, which the host sees as missing twins)."""
    return _seed.pop() if _seed else ""


def arm(
    channel_fd: int | None,
    suspects: list[str],
    argv: list[str] | None = None,
    workspace: str = ".",
) -> None:
    """Install the audit hook and open the report channel; `argv` is the command this process
    runs (the interpreter's own by default), so the host knows which processes ran pytest.

    No key signs the records (a key in this process would be no secret). The channel is a socket whose reader
    learns from the kernel which process wrote each message (`supervise.report_channel`), so
    no process can write as another. The canary seed leaves the environment here, before any
    of the candidate's code runs, so neither it nor a process it starts can read it there."""
    global _armed, _suspected, emit
    if _armed:
        return
    _armed = True
    seed = os.environ.pop(CANARY_ENV, "")
    if seed:
        _seed.append(seed)
    if channel_fd is not None and not _is_channel(channel_fd):
        channel_fd = None
    suspect_files = frozenset(os.path.realpath(p) for p in suspects)
    _suspected = bool(suspect_files)
    command = list(argv if argv is not None else getattr(sys, "orig_argv", sys.argv))
    said_hello = {"pid": None}
    writing = threading.Lock()

    def send(message: dict) -> None:
        try:
            os.write(channel_fd, (json.dumps(message, separators=(",", ":")) + "\n").encode())
        except OSError:
            pass

    def report(record: dict) -> None:
        if channel_fd is None:
            return
        with writing:
            if said_hello["pid"] != os.getpid():  # a forked child says its own hello first
                send({"hello": 1, "forked": 1, "argv": [str(a)[:200] for a in command[:20]]})
                said_hello["pid"] = os.getpid()
            send(_fit(dict(record)))

    if channel_fd is not None:
        send({"hello": 1, "argv": [str(a)[:200] for a in command[:20]]})
        said_hello["pid"] = os.getpid()

    busy = threading.local()

    def refuse(event: str, detail: str) -> None:
        report({"type": "refused", "event": event, "detail": detail[:300]})
        raise PermissionError(f"refused by the sandbox: {event} {detail}".strip())

    def audit(event: str, args: tuple) -> None:
        if not suspect_files or getattr(busy, "on", False):
            return  # the code as given is not under suspicion; nested events are the hook's own
        busy.on = True
        try:
            # The frame that raised the event (None for events raised outside any Python code).
            reason = _judge_event(event, args, channel_fd, sys._getframe(0).f_back, suspect_files)
        finally:
            busy.on = False
        if reason is not None:
            refuse(event, reason)

    sys.addaudithook(audit)
    emit = report
    _watch_exits(report, suspect_files)
    if suspect_files:
        for path in _stand_ins(workspace):
            report({"type": "refused", "event": "stand-in", "detail": path})


def _stand_ins(workspace: str) -> list[str]:
    """Files in the workspace (or the working folder, or a folder of PYTHONPATH inside it)
    that would be imported in place of pytest, pluggy, unittest or this harness: a `pytest.py`
    there runs instead of pytest and reports whatever it likes. Checked before any of the
    candidate's code runs; each one makes the run suspicious."""
    root = os.path.realpath(workspace)
    folders = {root, os.path.realpath(os.getcwd())}
    folders |= {
        os.path.realpath(entry)
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry and os.path.realpath(entry).startswith(root + os.sep)
    }
    found = []
    for folder in sorted(folders):
        if folder != root and not folder.startswith(root + os.sep):
            continue
        for name in PROTECTED:
            for entry in (name + ".py", name):
                path = os.path.join(folder, entry)
                if os.path.exists(path):
                    found.append(os.path.relpath(path, root))
    return found


def _on_stack(frame, files: frozenset) -> bool:
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


def _watch_exits(report, suspect_files: frozenset) -> None:
    """An exit the candidate's own code calls ends the process before the tests could fail:
    `os._exit` and `sys.exit` called with the candidate's files on the stack are reported."""
    if not suspect_files:
        return  # the code as given is not under suspicion
    import posix

    def called_by_candidate() -> bool:
        exit_frame = sys._getframe(0).f_back  # exit_now's or exit_by_raising's
        return _on_stack(exit_frame.f_back if exit_frame is not None else None, suspect_files)

    real_exit, real_sys_exit = os._exit, sys.exit

    def exit_now(code):
        if called_by_candidate():
            report({"type": "exit", "how": "os._exit", "code": code if type(code) is int else 1})
        real_exit(code)

    def exit_by_raising(code=None):
        if called_by_candidate():
            report(
                {
                    "type": "exit",
                    "how": "sys.exit",
                    "code": code if type(code) is int else (0 if code is None else 1),
                }
            )
        real_sys_exit(code)

    os._exit = posix._exit = exit_now
    sys.exit = exit_by_raising


def _judge_event(event: str, args: tuple, channel_fd, caller, suspects: frozenset) -> str | None:
    """Why `event`, raised by the Python frame `caller`, is refused, or None. Touches no object
    of the candidate's beyond its type."""
    if event == "open" and args:
        path = args[0]
        if type(path) is int and path == channel_fd:
            return f"the report channel (descriptor {path})"
        if type(path) is str and _secret_path(path, channel_fd):
            return path
        return None
    if event.startswith("ctypes.") or event in SENSITIVE:
        return "" if _on_stack(caller, suspects) else None
    if event in ("object.__setattr__", "object.__delattr__") and args:
        target = args[0]
        if not isinstance(target, type):
            return None
        module = type.__dict__["__dict__"].__get__(target).get("__module__")
        if type(module) is not str or module.split(".")[0] not in PROTECTED:
            return None
        if not _on_stack(caller, suspects):
            return None
        name = args[1] if len(args) > 1 and type(args[1]) is str else "?"
        return f"{module}.{type.__dict__['__name__'].__get__(target)}.{name}"
    return None


def _secret_path(path: str, channel_fd) -> bool:
    if path.startswith("/proc/") and path.endswith(("/mem", "/environ")):
        return True
    for prefix in ("/proc/self/fd/", "/dev/fd/", f"/proc/{os.getpid()}/fd/"):
        if path.startswith(prefix) and path[len(prefix) :] == str(channel_fd):
            return True
    return False


def _is_channel(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)


def _fit(record: dict) -> dict:
    """The record, short enough for one message; long texts are cut."""
    for name in ("longrepr", "message", "detail"):
        body = json.dumps(record, separators=(",", ":"))
        if len(body) <= LINE_BYTES - 200:
            break
        if isinstance(record.get(name), str):
            excess = len(body) - (LINE_BYTES - 200)
            record[name] = "..." + record[name][excess + 3 :]
    return record
