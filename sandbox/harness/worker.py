"""The candidate's side of a judged run: load the candidate's code and answer the judge's calls.

Everything here runs with the candidate's privileges and is trusted by nobody: the judge
decodes what this side sends as plain data and decides on its own. What the worker does for
the verdict's sake is only to be useful to a candidate that plays fair: run its code, send
results and exceptions back, and send the new state of the arguments a call changed.

An audit hook installed before any candidate code runs refuses `ctypes` called by the
candidate's own code and reads of process memory, and reports each refusal to the judge (so
the step is marked suspicious).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import socket
import sys
import traceback
import types

from . import wire

# Operations the judge may ask for on a handle, by name: explicit acts of the tests (reading,
# setting, iterating, printing). Nothing that would hand the candidate a test's operand.
OPERATIONS = {
    "repr": repr,
    "str": str,
    "iter": iter,
    "isinstance": isinstance,
    "getattr": getattr,
    "setattr": setattr,
    "delattr": delattr,
    "next": next,
    "enter": lambda obj: type(obj).__enter__(obj),
    "exit": lambda obj, *exc: type(obj).__exit__(obj, *exc),
}
REFUSED_PREFIXES = ("ctypes.",)
SECRET_PATHS = ("/proc/self/mem", "/proc/self/fd", "/dev/fd", "/proc/self/environ")


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.handles: dict[int, object] = {}
        self.handle_of: dict[int, int] = {}  # id(obj) -> handle
        self.shared: dict[str, type] = {}
        self.stubs: dict[int, object] = {}  # judge callbacks, by their id
        self.refused: list[str] = []
        self.main: types.ModuleType | None = None

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                message = wire.recv(self.sock)
            except wire.Closed:
                return
            if message.get("op") == "exit":
                return
            self.answer(message)

    def answer(self, message: dict) -> None:
        reply = self.handle(message)
        if self.refused:
            reply["refused"], self.refused = self.refused, []
        reply["reply"] = True
        sys.stdout.flush()  # the candidate's output reaches the run before the answer does
        sys.stderr.flush()
        wire.send(self.sock, reply)

    def wait_reply(self) -> dict:
        """The judge's answer to a callback; its own requests in between are served."""
        while True:
            message = wire.recv(self.sock)
            if message.get("reply"):
                return message
            self.answer(message)

    def handle(self, message: dict) -> dict:
        op = message.get("op")
        codec = self.codec()
        try:
            if op == "main":
                return self.load_main(message, codec)
            if op == "import":
                module = importlib.import_module(str(message.get("name")))
                return {
                    "value": codec.encode(module),
                    "file": getattr(module, "__file__", None) or "",
                }
            if op == "names":
                target = self.target(message)
                names = getattr(target, "__all__", None)
                if names is None:
                    names = [n for n in vars(target) if not n.startswith("_")]
                return {"value": codec.encode(list(names))}
            if op == "call":
                return self.call(message, codec)
            if op in OPERATIONS:
                args = [self.target(message)] + [codec.decode(a) for a in message.get("args", [])]
                try:
                    return {"value": codec.encode(OPERATIONS[op](*args))}
                except StopIteration:
                    return {"stop": True}
            return {
                "raise": {
                    "type": "RuntimeError",
                    "module": "builtins",
                    "bases": ["RuntimeError"],
                    "args": [f"unknown operation {op!r}"],
                    "message": f"unknown operation {op!r}",
                }
            }
        except BaseException as error:  # the candidate's exception, whatever it is, goes back
            return {"raise": self.describe(error, codec)}

    # -- operations -----------------------------------------------------------------------

    def load_main(self, message: dict, codec: wire.Codec) -> dict:
        """Run the candidate's program as `__main__`, then the tests' own classes beside it
        (as when the two were one file), and describe every top-level name."""
        path = str(message.get("path"))
        module = types.ModuleType("__main__")
        module.__file__ = os.path.abspath(path)
        module.__builtins__ = builtins
        sys.modules["__main__"] = module
        self.main = module
        with open(path, encoding="utf-8", errors="replace") as handle:
            source = handle.read()
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        for name, statement in shared_statements(str(message.get("shared", ""))):
            try:
                exec(compile(statement, "<tests>", "exec"), module.__dict__)
            except Exception:
                continue  # a class the tests build from their own names; it crosses as attributes
            if name is not None and isinstance(module.__dict__.get(name), type):
                self.shared[name] = module.__dict__[name]
        names = {
            n: codec.encode(v)
            for n, v in vars(module).items()
            if not (n.startswith("__") and n.endswith("__"))
        }
        return {"names": names}

    def call(self, message: dict, codec: wire.Codec) -> dict:
        target = self.target(message)
        args, kwargs = wire.called_with(codec, message)
        received = dict(codec.by_number)
        try:
            result = target(*args, **kwargs)
            outcome = None
        except BaseException as error:
            result, outcome = None, error
        reply = {
            "back": [[n, codec.state(obj)] for n, obj in received.items() if self.mutable(obj)]
        }
        if outcome is not None:
            reply["raise"] = self.describe(outcome, codec)
        else:
            reply["value"] = codec.encode(result)
        return reply

    def mutable(self, value) -> bool:
        if isinstance(value, wire.MUTABLE):
            return True
        return self.shared.get(type(value).__name__) is type(value)

    def target(self, message: dict):
        handle = message.get("target")
        if type(handle) is not int or handle not in self.handles:
            raise wire.WireError("no such handle")
        return self.handles[handle]

    # -- values ---------------------------------------------------------------------------

    def codec(self) -> wire.Codec:
        return wire.Codec(self.shared, self.export, self.resolve)

    def export(self, value) -> dict:
        handle = self.handle_of.get(id(value))
        if handle is None:
            handle = len(self.handles) + 1
            self.handles[handle] = value
            self.handle_of[id(value)] = handle
        node = {"$": "remote", "id": handle, "type": type(value).__name__}
        if isinstance(value, type):
            node["name"] = value.__qualname__
            node["module"] = value.__module__
            if issubclass(value, BaseException):
                node["kind"] = "exception_class"
                node["bases"] = _builtin_bases(value)
            else:
                node["kind"] = "class"
        elif isinstance(value, types.ModuleType):
            node["kind"] = "module"
            node["name"] = value.__name__
            node["package"] = hasattr(value, "__path__")
            node["file"] = getattr(value, "__file__", None) or ""
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            node["kind"] = "function"
            node["name"] = getattr(value, "__qualname__", "") or getattr(value, "__name__", "")
            node["doc"] = value.__doc__ if isinstance(value.__doc__, str) else None
        elif hasattr(type(value), "__next__"):
            node["kind"] = "iterator"
        else:
            node["kind"] = "object"
        return node

    def resolve(self, node: dict):
        tag = node.get("$")
        if tag == "remote":
            handle = node.get("id")
            if type(handle) is not int or handle not in self.handles:
                raise wire.WireError("no such handle")
            return self.handles[handle]
        if tag == "callback":
            number = node.get("id")
            if type(number) is not int:
                raise wire.WireError("bad callback")
            if number not in self.stubs:
                self.stubs[number] = self.callback_stub(number)
            return self.stubs[number]
        if tag == "type":
            name = node.get("name")
            if name not in wire.BUILTIN_TYPES:
                raise wire.WireError("unknown type")
            return wire.BUILTIN_TYPES[name]
        if tag == "opaque":
            return wire.plain_class(f"Opaque_{node.get('type', 'object')}")()
        raise wire.WireError(f"unknown value tag {tag!r}")

    def callback_stub(self, number: int):
        """A function standing for a callable of the tests: calling it asks the judge."""

        def call_judge(*args, **kwargs):
            codec = self.codec()
            wire.send(
                self.sock, {"op": "callback", "id": number, **wire.arguments(codec, args, kwargs)}
            )
            reply = self.wait_reply()
            back = wire.Codec(self.shared, self.export, self.resolve, numbered=codec.by_number)
            for number_, state in wire.items(reply.get("back")):
                back.fill(codec.by_number[number_], state)
            if "raise" in reply:
                raise RuntimeError(f"a callback of the tests raised: {reply['raise']}")
            return back.decode(reply.get("value"))

        return call_judge

    def describe(self, error: BaseException, codec: wire.Codec) -> dict:
        """An exception as plain data: its class (and builtin bases), args and traceback text."""
        kind = type(error)
        try:
            args = [codec.encode(a) for a in error.args]
        except Exception:
            args = [str(a) for a in error.args]
        try:
            message = str(error)
        except Exception:
            message = f"<{kind.__name__}>"
        frames = traceback.extract_tb(error.__traceback__)
        own = os.path.dirname(os.path.abspath(__file__))
        shown = traceback.StackSummary.from_list(
            [f for f in frames if not f.filename.startswith(own)]
        )
        text = "".join(shown.format()) + "".join(traceback.format_exception_only(kind, error))
        described = {
            "type": kind.__name__,
            "module": kind.__module__,
            "bases": _builtin_bases(kind),
            "args": args,
            "message": message[:2000],
            "traceback": text[-6000:],
        }
        if kind.__module__ != "builtins":
            described["class"] = codec.encode(kind)
        return described

    # -- the guard ------------------------------------------------------------------------

    def arm(self, workspace: str) -> None:
        """Refuse the candidate's reach for raw memory and for the harness's descriptors.

        `ctypes` is refused when the candidate's own code calls it, not when a library it
        imports does (numpy loads its libraries through ctypes). Nothing in this process is
        secret (the tests and the verdict are the judge's), so this is detection, not defence:
        a refusal marks the run suspicious."""
        refused = self.refused
        workspace = os.path.realpath(workspace) + os.sep
        libraries = tuple(
            os.path.realpath(entry) + os.sep
            for entry in sys.path
            if os.path.isabs(entry) and not (os.path.realpath(entry) + os.sep).startswith(workspace)
        )

        def by_a_library() -> bool:
            frame = sys._getframe(2)  # the frame that raised the event
            while frame is not None and (
                frame.f_code.co_filename.startswith("<frozen")
                or f"{os.sep}ctypes{os.sep}" in frame.f_code.co_filename
            ):
                frame = frame.f_back
            return frame is not None and frame.f_code.co_filename.startswith(libraries)

        def audit(event: str, args: tuple) -> None:
            if event.startswith(REFUSED_PREFIXES) and not by_a_library():
                refused.append(event)
                raise PermissionError(f"refused by the sandbox: {event}")
            if event in ("open", "os.listdir", "os.scandir") and args and type(args[0]) is str:
                path = args[0]
                if path.startswith(SECRET_PATHS) or (
                    path.startswith("/proc/") and path.endswith(("/mem", "/environ"))
                ):
                    refused.append(f"{event} {path}")
                    raise PermissionError(f"refused by the sandbox: {event} {path}")

        sys.addaudithook(audit)


def shared_statements(source: str):
    """The tests' top-level classes and imports, one by one: (class name or None, source)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((None, ast.get_source_segment(source, node) or ""))
        elif isinstance(node, ast.ClassDef):
            found.append((node.name, ast.get_source_segment(source, node, padded=True) or ""))
    return found


def _builtin_bases(kind: type) -> list[str]:
    return [
        c.__name__
        for c in kind.__mro__
        if c.__module__ == "builtins" and issubclass(c, BaseException)
    ]


def main(sock_fd: int, front: list[str]) -> None:
    """Serve the judge on `sock_fd`; `front` (the workspace, its dependencies) leads the path."""
    wire.lift_limits()
    sys.path[:] = list(dict.fromkeys([*front, *(p for p in sys.path if p not in ("", "."))]))
    sys.argv = ["candidate"]
    worker = Worker(socket.socket(fileno=sock_fd))
    worker.arm(front[0])
    worker.serve()
