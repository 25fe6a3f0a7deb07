"""The tests' side of a judged run: run the tests, reach the candidate only through the wire,
and write the verdict where the candidate cannot.

The judge runs as another user than the candidate (or, where the host allows no second user,
in another mount and process namespace, not dumpable), holds the tests, and never imports,
executes or calls candidate code: each name of the candidate's program or module is a proxy
whose calls go to the worker and whose results come back as plain data (see `wire`). So:

  script  the test file runs here, in a namespace where the candidate's top-level names are
          proxies; passed when it runs to its end (QuixBugs, HumanEval)
  pytest  pytest runs here; importing a candidate module gives a proxy module; each test's
          outcome is pytest's own report in this process

The verdict (one JSON object) goes to file descriptor 3, a pipe only the sandbox reads.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import json
import os
import socket
import sys
import time
import traceback
import types

from . import wire
from .worker import shared_statements

CANDIDATE_ENDED = "the candidate's process ended during a call (an early exit, a crash, or a kill)"


class CandidateExited(RuntimeError):
    """The candidate raised SystemExit, KeyboardInterrupt or GeneratorExit in a call, or its
    process ended; mirrored as an error so that it can never end the judge itself."""


CandidateExited.__module__ = "sandbox"  # what a traceback shown to the model calls it


class Link:
    """The judge's end of the wire: requests, replies, proxies and callbacks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proxies: dict[int, object] = {}
        self.callbacks: dict[int, object] = {}
        self.callback_ids: dict[int, int] = {}
        self.shared: dict = {}  # name -> the tests' class, for objects that cross by attributes
        self.exception_classes: dict[int, type] = {}  # the candidate's, made for this run only
        self.notes: list[
            str
        ] = []  # what the candidate did that looks like reaching for the harness
        self.ended = False

    # -- requests -------------------------------------------------------------------------

    def request(self, message: dict) -> dict:
        if self.ended:
            raise CandidateExited(CANDIDATE_ENDED)
        try:
            wire.send(self.sock, message)
            while True:
                reply = wire.recv(self.sock)
                for event in reply.get("refused") or []:
                    self.note(f"refused: {event}")
                if reply.get("reply"):
                    return reply
                if reply.get("op") != "callback":
                    raise wire.WireError("the worker sent a request the judge does not serve")
                self.serve_callback(reply)
        except wire.Closed:
            self.ended = True
            self.note("early exit: " + CANDIDATE_ENDED)
            raise CandidateExited(CANDIDATE_ENDED) from None
        except (OSError, wire.WireError) as error:
            self.ended = True
            self.note(f"the candidate broke the harness's channel ({error})")
            raise CandidateExited(f"the candidate broke the harness's channel: {error}") from None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def codec(self, numbered: dict | None = None) -> wire.Codec:
        return wire.Codec(self.shared, self.export, self.resolve, numbered)

    def call(self, handle: int, args: tuple, kwargs: dict, op: str = "call"):
        codec = self.codec()
        reply = self.request({"op": op, "target": handle, **wire.arguments(codec, args, kwargs)})
        return self.outcome(reply, codec, op)

    def outcome(self, reply: dict, sent: wire.Codec, op: str = "call"):
        """Write back the arguments' new state, then return the value or raise the mirror."""
        back = self.codec(sent.by_number)
        try:
            for pair in wire.items(reply.get("back")):
                if type(pair) is not list or len(pair) != 2 or pair[0] not in sent.by_number:
                    raise wire.WireError("bad write-back")
                back.fill(sent.by_number[pair[0]], pair[1])
            if "raise" in reply:
                raise_mirror(self, reply["raise"], back)
            if reply.get("stop") and op == "next":  # a call's StopIteration would end a map()
                raise StopIteration
            return back.decode(reply.get("value"))
        except wire.WireError as error:
            self.note(f"the candidate sent a malformed value ({error})")
            raise CandidateExited(f"the candidate's reply broke the protocol: {error}") from None

    def serve_callback(self, message: dict) -> None:
        """The candidate calls a callable the tests gave it: run it here, on plain data."""
        codec = self.codec()
        reply: dict = {"reply": True}
        try:
            function = self.callbacks.get(message.get("id"))
            if function is None:
                raise wire.WireError("no such callback")
            args, kwargs = wire.called_with(codec, message)
            received = dict(codec.by_number)
            try:
                reply["value"] = codec.encode(function(*args, **kwargs))
            except Exception as error:
                reply["raise"] = f"{type(error).__name__}: {error}"
            reply["back"] = [
                [n, codec.state(obj)]
                for n, obj in received.items()
                if isinstance(obj, wire.MUTABLE)
            ]
        except wire.WireError as error:
            self.note(f"the candidate sent a malformed callback ({error})")
            reply = {"reply": True, "raise": "malformed callback"}
        wire.send(self.sock, reply)

    # -- values ---------------------------------------------------------------------------

    def export(self, value) -> dict:
        """A judge-side value that is not plain data: only ever a reference the worker can
        call back (never an object it can look into)."""
        if isinstance(value, Remote):
            return {"$": "remote", "id": object.__getattribute__(value, "_handle")}
        remote = getattr(value, "_remote_handle", None) if isinstance(value, type) else None
        if remote is not None:
            return {"$": "remote", "id": remote}
        if isinstance(value, RemoteFunction):
            return {"$": "remote", "id": value.handle}
        if isinstance(value, type) and value in wire.BUILTIN_TYPES.values():
            return {"$": "type", "name": "NoneType" if value is type(None) else value.__name__}
        if callable(value):
            number = self.callback_ids.get(id(value))
            if number is None:
                number = len(self.callbacks) + 1
                self.callbacks[number] = value
                self.callback_ids[id(value)] = number
            return {"$": "callback", "id": number}
        return {"$": "opaque", "type": type(value).__name__}

    def resolve(self, node: dict):
        if node.get("$") == "type":
            name = node.get("name")
            if name not in wire.BUILTIN_TYPES:
                raise wire.WireError("unknown type")
            return wire.BUILTIN_TYPES[name]
        if node.get("$") != "remote" or type(node.get("id")) is not int:
            raise wire.WireError(f"unknown value tag {node.get('$')!r}")
        handle = node["id"]
        if handle in self.proxies:
            return self.proxies[handle]
        kind = node.get("kind")
        name = _text(node.get("name")) or _text(node.get("type")) or "object"
        if kind == "function":
            proxy = RemoteFunction(self, handle, name, _text(node.get("doc")))
        elif kind == "class":
            proxy = standard_class(_text(node.get("module")), name) or remote_class(
                self, handle, name
            )
        elif kind == "exception_class":
            proxy = exception_class(
                self, handle, name, _text(node.get("module")), node.get("bases")
            )
        elif kind == "module":
            proxy = remote_module(
                self, handle, name, bool(node.get("package")), _text(node.get("file"))
            )
        else:
            proxy = Remote._make(self, handle, _text(node.get("type")) or "object", _text(kind))
        self.proxies[handle] = proxy
        return proxy


# -- proxies -------------------------------------------------------------------------------


class RemoteFunction:
    """A candidate function: calling it runs it in the worker."""

    def __init__(self, link: Link, handle: int, name: str, doc: str) -> None:
        self.link, self.handle = link, handle
        self.__name__ = self.__qualname__ = name.rsplit(".", 1)[-1] if name else "function"
        self.__doc__ = doc or None

    def __call__(self, *args, **kwargs):
        return self.link.call(self.handle, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"

    def __get__(self, instance, owner=None):
        # Stored on a test's class, it binds like a function does.
        return self if instance is None else types.MethodType(self, instance)


class Remote:
    """An object that is not plain data and stays in the worker: an opaque handle. The tests
    may read and set its attributes, call it, iterate it and print it (each an explicit act
    of the test's, answered with plain data); everything else (arithmetic, order, `abs`,
    `len`, truth, `int`/`float`, indexing, `==` other than identity) fails here, so no test
    ever hands the candidate its operand and asks it for the answer."""

    __slots__ = ("_link", "_handle", "_type", "_kind", "__weakref__")

    @classmethod
    def _make(cls, link: Link, handle: int, type_name: str, kind: str) -> Remote:
        proxy = object.__new__(cls)
        for slot, value in (
            ("_link", link),
            ("_handle", handle),
            ("_type", type_name),
            ("_kind", kind),
        ):
            object.__setattr__(proxy, slot, value)
        return proxy

    def _op(self, op: str, *args):
        return object.__getattribute__(self, "_link").call(
            object.__getattribute__(self, "_handle"), args, {}, op=op
        )

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._op("getattr", name)

    def __setattr__(self, name: str, value) -> None:
        self._op("setattr", name, value)

    def __delattr__(self, name: str) -> None:
        self._op("delattr", name)

    def __call__(self, *args, **kwargs):
        link = object.__getattribute__(self, "_link")
        return link.call(object.__getattribute__(self, "_handle"), args, kwargs)

    def __iter__(self):
        return self if object.__getattribute__(self, "_kind") == "iterator" else self._op("iter")

    def __next__(self):
        return self._op("next")

    def __repr__(self) -> str:
        try:
            text = self._op("repr")
        except Exception:
            text = None
        return (
            text
            if type(text) is str
            else f"<candidate {object.__getattribute__(self, '_type')} object>"
        )

    def __str__(self) -> str:
        text = self._op("str")
        return text if type(text) is str else repr(self)

    # Identity is the only comparison, and the judge decides it: the candidate never learns
    # what a test compares its object with, so it cannot answer "equal" to anything.
    def __eq__(self, other) -> bool:
        return self is other

    def __ne__(self, other) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __bool__(self) -> bool:
        raise TypeError(
            f"a candidate's {object.__getattribute__(self, '_type')} object is not plain data: "
            "it has no truth value here"
        )

    def __enter__(self):
        return self._op("enter")

    def __exit__(self, *exc):
        return self._op("exit", *(None for _ in exc)) is True


def standard_class(module: str, qualname: str) -> type | None:
    """A class of plain data the candidate's code uses (`from collections import deque`):
    the judge's own, from a fixed table, so the tests compare and build its objects as usual.
    Nothing is imported or looked up on the candidate's word."""
    return wire.STANDARD_CLASSES.get((module, qualname))


def remote_class(link: Link, handle: int, name: str) -> type:
    """A candidate class: calling it makes an object in the worker; isinstance asks the worker."""

    class RemoteType(type):
        def __call__(cls, *args, **kwargs):
            return link.call(handle, args, kwargs)

        def __instancecheck__(cls, value) -> bool:
            return isinstance(value, Remote) and value._op("isinstance", cls) is True

        def __subclasscheck__(cls, other) -> bool:
            return other is cls

        def __getattr__(cls, attribute):
            if attribute.startswith("__") and attribute.endswith("__"):
                raise AttributeError(attribute)
            return link.call(handle, (attribute,), {}, op="getattr")

        def __repr__(cls) -> str:
            return f"<candidate class {name}>"

    short = name.rsplit(".", 1)[-1]
    return RemoteType(
        short if short.isidentifier() else "CandidateClass", (), {"_remote_handle": handle}
    )


# The exceptions a candidate's exception may be mirrored as, fixed when the harness is
# imported: builtin ones only (never unittest's SkipTest, never pytest's outcomes, which are
# not Exceptions of the builtins), and never those that end a process.
ALLOWED_EXCEPTIONS = {
    name: value
    for name, value in vars(builtins).items()
    if isinstance(value, type)
    and issubclass(value, Exception)
    and not issubclass(value, (StopIteration, StopAsyncIteration))
}


def allowed_base(names) -> type:
    """The first allow-listed builtin exception among `names` (the candidate's word), or
    Exception."""
    for name in names if type(names) is list else []:
        if type(name) is str and name in ALLOWED_EXCEPTIONS:
            return ALLOWED_EXCEPTIONS[name]
    return Exception


def exception_class(link: Link, handle: int, name: str, module: str, bases) -> type:
    """A candidate exception class, made here as a real exception class so that tests can
    raise and catch it (`pytest.raises(mod.Error)`); its base is an allow-listed builtin.
    Kept by this run's link only: a later run never sees it."""
    if handle not in link.exception_classes:
        short = name.rsplit(".", 1)[-1]
        cls = type(
            short if short.isidentifier() else "CandidateError",
            (allowed_base(bases),),
            {"__module__": module or "candidate"},
        )
        cls._remote_handle = handle
        link.exception_classes[handle] = cls
    return link.exception_classes[handle]


def raise_mirror(link: Link, described, codec: wire.Codec):
    """Raise here what the candidate raised there, as the judge's own exception: an
    allow-listed builtin by its name, or a class this run made for one of the candidate's
    exception classes; its arguments as plain data."""
    if type(described) is not dict:
        raise wire.WireError("bad exception")
    name, module = _text(described.get("type")), _text(described.get("module"))
    message = _text(described.get("message"))
    try:
        args = [codec.decode(a) for a in wire.items(described.get("args"))]
    except wire.WireError:
        args = [message]
    trace = _text(described.get("traceback"))
    if module == "builtins" and name in ENDING:
        link.note(f"early exit: the candidate raised {name} in a call")
        raise CandidateExited(f"the candidate raised {name}{tuple(args)!r}")
    if module == "builtins" and name in ("StopIteration", "StopAsyncIteration"):
        # As for a generator (PEP 479): out of a call it would end the test's map() or all().
        raise RuntimeError(f"the candidate's code raised {name}")
    cls = None
    if isinstance(described.get("class"), dict):
        found = codec.decode(described["class"])
        if any(found is made for made in link.exception_classes.values()):
            cls = found
    if cls is None:
        cls = (
            ALLOWED_EXCEPTIONS[name]
            if module == "builtins" and name in ALLOWED_EXCEPTIONS
            else allowed_base(described.get("bases"))
        )
    try:
        error = cls(*args)
    except Exception:
        error = cls(message)
    if trace and hasattr(error, "add_note"):  # Python 3.11+
        error.add_note("In the candidate's code:\n" + trace.rstrip())
    raise error


ENDING = ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException")
# Standard-library modules a candidate's module may stand for in the tests' namespace (the
# judge's own copy) unless they are test machinery.
UNSHARED_MODULES = {
    *("unittest", "doctest", "pdb", "bdb", "test", "builtins", "importlib", "sys"),
    *("antigravity", "this", "webbrowser", "turtle", "tkinter", "idlelib"),
}


def remote_module(link: Link, handle: int, name: str, package: bool, file: str) -> types.ModuleType:
    """A candidate module, or a module the candidate imported: attributes come from the worker.
    A standard-library module the candidate imported is this process's own copy."""
    top = name.split(".")[0]
    if top in sys.stdlib_module_names and top not in UNSHARED_MODULES and not top.startswith("_"):
        return importlib.import_module(name)
    module = RemoteModule(name)
    module.__file__ = file or None
    if package:
        module.__path__ = []
    object.__setattr__(module, "_remote", (link, handle))
    return module


class RemoteModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__") and name != "__all__":
            raise AttributeError(name)
        link, handle = self.__dict__["_remote"]
        if name == "__all__":
            # `from calc import *` never binds a builtin's name (`abs`, `all`) or a dunder.
            names = link.call(handle, (), {}, op="names")
            return [
                n
                for n in (names if type(names) is list else [])
                if type(n) is str and n.isidentifier() and not n.startswith("_")
                if not hasattr(builtins, n)
            ]
        try:
            value = link.call(handle, (name,), {}, op="getattr")
        except AttributeError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        if isinstance(value, (RemoteFunction, type, types.ModuleType)):
            self.__dict__[name] = value  # stable objects keep their identity; data is read afresh
        return value

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("__") or "_remote" not in self.__dict__:
            super().__setattr__(name, value)
            return
        link, handle = self.__dict__["_remote"]
        self.__dict__.pop(name, None)
        link.call(handle, (name, value), {}, op="setattr")

    def __delattr__(self, name: str) -> None:
        if name.startswith("__"):
            super().__delattr__(name)
            return
        link, handle = self.__dict__["_remote"]
        self.__dict__.pop(name, None)
        link.call(handle, (name,), {}, op="delattr")


class RemoteFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of the candidate's modules (by top-level name) become proxy modules."""

    def __init__(self, link: Link, names: set[str]) -> None:
        self.link, self.names = link, names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        codec = self.link.codec()
        reply = self.link.request({"op": "import", "name": spec.name})
        value = self.link.outcome(reply, codec)
        if not isinstance(value, types.ModuleType):
            raise ImportError(f"{spec.name} is not a module")
        return value

    def exec_module(self, module) -> None:
        """Nothing runs here: the module ran in the worker."""


# -- the two modes -------------------------------------------------------------------------


def run_script(link: Link, config: dict) -> dict:
    """The test file, run here with the candidate's top-level names as proxies."""
    tests_dir = os.environ.get("SELFREPAIR_TESTS", ".")
    test_path = os.path.join(tests_dir, config["test_file"])
    with open(test_path, encoding="utf-8") as handle:
        test_source = handle.read()
    started = time.monotonic()
    namespace = {"__name__": "__main__", "__file__": test_path, "__builtins__": builtins}
    statements = shared_statements(test_source) if "class" in test_source else []
    link.shared = SharedClasses(namespace, {name for name, _source in statements if name})
    try:
        codec = link.codec()
        # The worker gets the tests' classes (and the imports they need), never their asserts.
        shared = "\n\n".join(source for _name, source in statements)
        reply = link.request({"op": "main", "path": config["entry"], "shared": shared})
        if "raise" in reply:
            link.outcome(reply, codec)
        names = reply.get("names")
        if type(names) is not dict:
            raise wire.WireError("bad names")
        for name, node in names.items():
            # A candidate's `list` or `all` must not stand in for the tests' own builtins, nor
            # its `__builtins__` for their builtins as a whole, nor anything it calls `math`
            # for the standard library's (the judge's own, where the tests use it).
            if (
                type(name) is not str
                or not name.isidentifier()
                or name.startswith("__")
                or hasattr(builtins, name)
            ):
                continue
            if name in sys.stdlib_module_names:
                if (
                    name not in UNSHARED_MODULES
                    and not name.startswith("_")
                    and name in test_source
                ):
                    namespace[name] = importlib.import_module(name)
                continue
            namespace[name] = codec.decode(node)
        exec(compile(test_source, test_path, "exec"), namespace)
    except BaseException as error:
        return {
            "tests": [case(config["name"], error, time.monotonic() - started)],
            "finished": True,
        }
    return {
        "tests": [
            {"name": config["name"], "outcome": "passed", "seconds": time.monotonic() - started}
        ],
        "finished": True,
    }


class SharedClasses:
    """The tests' own top-level classes, looked up in their namespace as they come to exist."""

    def __init__(self, namespace: dict, names: set[str]) -> None:
        self.namespace, self.names = namespace, names

    def get(self, name, default=None):
        value = self.namespace.get(name) if name in self.names else None
        return value if isinstance(value, type) else default


def run_pytest(link: Link, config: dict) -> dict:
    """pytest in this process over the tests directory; candidate modules arrive as proxies."""
    import pytest

    recorder = Recorder()
    finder = RemoteFinder(link, set(config.get("modules") or []))
    sys.meta_path.insert(0, finder)
    tests_dir = os.environ.get("SELFREPAIR_TESTS", ".")
    os.chdir(tests_dir)
    args = [*config.get("args", []), "-p", "no:cacheprovider", f"--rootdir={tests_dir}"]
    try:
        status = int(pytest.main(args, plugins=[recorder]))
    except BaseException as error:  # a broken run is the candidate's failure, never a pass
        recorder.tests.append(case("<pytest>", error, 0.0))
        status = 3
    return {"tests": recorder.results(), "finished": recorder.finished, "exit": status}


class Recorder:
    """Each test's outcome from pytest's own reports, in the judge's process."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict] = {}
        self.tests: list[dict] = []
        self.finished = False

    def pytest_runtest_logreport(self, report) -> None:
        entry = self.by_id.setdefault(
            report.nodeid, {"name": report.nodeid, "outcome": "passed", "seconds": 0.0}
        )
        entry["seconds"] += getattr(report, "duration", 0.0) or 0.0
        if report.when == "call" and report.skipped or (report.when == "setup" and report.skipped):
            entry["outcome"] = "skipped"
        elif report.failed:
            failed = "failed" if report.when == "call" else "error"
            if entry["outcome"] not in ("failed", "error"):
                entry["outcome"] = failed
                entry["message"] = _last_line(report.longreprtext)
                entry["traceback"] = report.longreprtext[-8000:]

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.tests.append(
                {
                    "name": report.nodeid or "<collection>",
                    "outcome": "error",
                    "message": _last_line(report.longreprtext),
                    "traceback": report.longreprtext[-8000:],
                }
            )

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self.finished = True

    def results(self) -> list[dict]:
        return self.tests + list(self.by_id.values())


def case(name: str, error: BaseException, seconds: float) -> dict:
    own = os.path.dirname(os.path.abspath(__file__))
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(own)
    ]
    text = "".join(traceback.StackSummary.from_list(frames).format())
    text += "".join(traceback.format_exception_only(type(error), error))
    return {
        "name": name,
        "outcome": "failed" if isinstance(error, AssertionError) else "error",
        "message": _last_line(text),
        "traceback": text[-8000:],
        "seconds": seconds,
    }


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _text(value) -> str:
    return value if type(value) is str else ""


def main(config: dict, verdict_fd: int = 3, sock_fd: int = 4) -> None:
    """Judge one run; the verdict goes to `verdict_fd` whatever happens."""
    wire.lift_limits()
    wire.forget()  # nothing decoded in an earlier run of a warm judge is seen in this one
    sys.path[:0] = [str(entry) for entry in config.get("path", [])]  # the candidate's dependencies
    verdict: dict = {"tests": [], "finished": False}
    link = Link(socket.socket(fileno=sock_fd))
    try:
        verdict = (run_script if config.get("mode") == "script" else run_pytest)(link, config)
    except BaseException as error:
        verdict = {"tests": [case("<judge>", error, 0.0)], "finished": False}
    finally:
        verdict["suspicious"] = link.notes
        try:
            wire.send(link.sock, {"op": "exit"})
        except OSError:
            pass
        link.sock.close()
        sys.stdout.flush()  # the tests' output is in its pipe before the verdict ends the run
        sys.stderr.flush()
        with os.fdopen(verdict_fd, "w") as channel:
            channel.write(json.dumps(verdict))
