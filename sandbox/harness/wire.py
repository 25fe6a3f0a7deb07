"""What crosses between the judge and the worker: framed JSON messages holding plain data.

A message is a 4-byte big-endian length and a JSON object. Values inside it are JSON trees
tagged with "$" for what JSON lacks (tuples, sets, bytes, floats that are not finite, shared
and cyclic containers, objects of the tests' own classes, and handles to objects that stay on
the other side). Decoding builds every value afresh from the judge's own types and never
calls code of the sender: an object with a rigged `__eq__`, an `int` subclass that equals
everything, a list that lies about its length all arrive as plain builtins, or as a handle
the judge only compares by identity.

Identity survives one call: the judge numbers the containers and objects it sends, the worker
numbers what it sends back after them, and a value the worker hands back that came from the
judge's arguments (or an argument it mutated) is the judge's own object again.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import fractions
import json
import math
import struct
import sys

MAX_MESSAGE = 256 << 20
MAX_DEPTH = 2000  # nesting beyond this is refused rather than risk the judge's stack

# Builtin types that cross by name (a test passing `key=str`, a candidate returning `int`).
BUILTIN_TYPES = {
    t.__name__: t
    for t in (
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        bool,
        list,
        tuple,
        dict,
        set,
        frozenset,
        object,
        type,
        range,
        slice,
        memoryview,
        BaseException,
        Exception,
    )
}
BUILTIN_TYPES["NoneType"] = type(None)

# Classes of plain data the candidate's code may hand the tests by name (`from collections
# import deque` in a script): a fixed table, never a module walked on the sender's word.
STANDARD_CLASSES = {
    (cls.__module__, cls.__qualname__): cls
    for cls in (
        collections.deque,
        collections.OrderedDict,
        collections.Counter,
        collections.defaultdict,
        decimal.Decimal,
        fractions.Fraction,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
    )
} | {("builtins", name): cls for name, cls in BUILTIN_TYPES.items()}


class WireError(Exception):
    """A message or value that breaks the protocol: the other side misbehaved."""


def lift_limits() -> None:
    """Integers of any size cross (Python 3.11 refuses str() of ints over 4300 digits)."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)


def send(sock, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise WireError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock) -> dict:
    (size,) = struct.unpack(">I", _exactly(sock, 4))
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
    try:
        message = json.loads(_exactly(sock, size))
    except (ValueError, RecursionError) as error:
        raise WireError(f"unreadable message: {type(error).__name__}") from None
    if type(message) is not dict:
        raise WireError("a message must be a JSON object")
    return message


class Closed(Exception):
    """The other side closed the connection (it exited or was killed)."""


def _exactly(sock, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise Closed()
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def items(value) -> list:
    """A message's list field (absent: empty)."""
    if value is None:
        return []
    if type(value) is not list:
        raise WireError("expected a list")
    return value


def arguments(codec: Codec, args, kwargs) -> dict:
    """A call's arguments as message fields."""
    return {
        "args": [codec.encode(a) for a in args],
        "kwargs": [[k, codec.encode(v)] for k, v in kwargs.items()],
    }


def called_with(codec: Codec, message: dict) -> tuple[list, dict]:
    """The arguments a call message carries, decoded."""
    args = [codec.decode(a) for a in items(message.get("args"))]
    kwargs = {}
    for pair in items(message.get("kwargs")):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            raise WireError("keyword arguments are name-value pairs")
        kwargs[pair[0]] = codec.decode(pair[1])
    return args, kwargs


# -- values --------------------------------------------------------------------------------

MUTABLE = (list, dict, set, bytearray, collections.deque)


class Codec:
    """Encodes and decodes the values of one message.

    `shared` maps class names to the local classes whose instances cross by their attributes
    (the tests' own classes, known on both sides). `export(obj)` gives the tagged node of any
    other object (a handle, a callback, or a refusal); `resolve(node)` turns such a node back.
    `numbered` carries identities from an earlier message of the same call.
    """

    def __init__(self, shared: dict, export, resolve, numbered: dict | None = None) -> None:
        self.shared = shared
        self.export = export
        self.resolve = resolve
        self.by_number: dict[int, object] = dict(numbered or {})
        self.numbers: dict[int, int] = {id(obj): n for n, obj in self.by_number.items()}
        self.next_number = max(self.by_number, default=0) + 1

    # encoding ---------------------------------------------------------------------------

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply to cross")
        kind = type(value)
        if value is None or kind is bool or kind is str or kind is int:
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        number = self.numbers.get(id(value))
        if number is not None:
            return {"$": "ref", "id": number}
        array = _array_node(value)
        if array is not None:
            return array
        if isinstance(value, int):
            return int.__index__(value)
        if isinstance(value, float):
            return self.encode(float.__float__(value), depth)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, complex):
            return {"$": "complex", "v": [self.encode(value.real), self.encode(value.imag)]}
        if isinstance(value, bytes):
            return {"$": "bytes", "v": base64.b64encode(value).decode()}
        if isinstance(value, (range, slice)):
            kind_name = "range" if isinstance(value, range) else "slice"
            return {
                "$": kind_name,
                "v": [self.encode(value.start), self.encode(value.stop), self.encode(value.step)],
            }
        if value is Ellipsis:
            return {"$": "ellipsis"}
        if isinstance(value, decimal.Decimal):
            return {"$": "decimal", "v": str(value)}
        if isinstance(value, fractions.Fraction):
            return {"$": "fraction", "v": [value.numerator, value.denominator]}
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time, datetime.timedelta)):
            return self._encode_time(value)
        shared = self.shared.get(getattr(kind, "__name__", None))
        is_container = isinstance(
            value, (list, tuple, dict, set, frozenset, bytearray, collections.deque)
        )
        if not is_container and (shared is None or shared is not kind):
            return self.export(value)
        number = self._number(value)
        return self._encode_container(value, number, depth)

    def _number(self, value) -> int:
        number = self.next_number
        self.next_number += 1
        self.numbers[id(value)] = number
        self.by_number[number] = value  # also keeps it alive: ids stay unique for the message
        return number

    def _encode_container(self, value, number: int, depth: int) -> dict:
        node = {"id": number}
        node.update(self.state(value, depth))
        return node

    def state(self, value, depth: int = 0) -> dict:
        """A container's or shared object's contents (its tag and "v"), without its number."""
        items = lambda seq: [self.encode(item, depth + 1) for item in seq]  # noqa: E731
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            return {
                "$": "namedtuple",
                "cls": type(value).__name__,
                "fields": list(type(value)._fields),
                "v": items(value),
            }
        if isinstance(value, tuple):
            return {"$": "tuple", "v": items(value)}
        if isinstance(value, list):
            return {"$": "list", "v": items(value)}
        if isinstance(value, collections.deque):
            return {"$": "deque", "v": items(value), "maxlen": value.maxlen}
        if isinstance(value, bytearray):
            return {"$": "bytearray", "v": base64.b64encode(bytes(value)).decode()}
        if isinstance(value, (set, frozenset)):
            return {"$": "frozenset" if isinstance(value, frozenset) else "set", "v": items(value)}
        if isinstance(value, dict):
            pairs = [
                [self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in dict.items(value)
            ]
            tag = "dict"
            extra = {}
            if isinstance(value, collections.Counter):
                tag = "counter"
            elif isinstance(value, collections.defaultdict):
                tag = "defaultdict"
                factory = value.default_factory
                extra["factory"] = factory.__name__ if factory in BUILTIN_TYPES.values() else None
            elif isinstance(value, collections.OrderedDict):
                tag = "ordereddict"
            return {"$": tag, "v": pairs, **extra}
        attributes = object.__getattribute__(value, "__dict__")
        pairs = [
            [name, self.encode(item, depth + 1)]
            for name, item in dict.items(attributes)
            if type(name) is str
        ]
        return {"$": "obj", "cls": type(value).__name__, "v": pairs}

    def _encode_time(self, value) -> dict:
        if isinstance(value, datetime.timedelta):
            return {"$": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
        if getattr(value, "tzinfo", None) is not None:
            return self.export(value)  # a time zone is an object of its own
        tag = (
            "datetime"
            if isinstance(value, datetime.datetime)
            else "date"
            if isinstance(value, datetime.date)
            else "time"
        )
        return {"$": tag, "v": value.isoformat()}

    # decoding ---------------------------------------------------------------------------

    def decode(self, node, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        kind = type(node)
        if node is None or kind is bool or kind is int or kind is str or kind is float:
            return node
        if kind is not dict:
            raise WireError(f"unexpected {kind.__name__} in a value")
        tag = node.get("$")
        if tag == "ref":
            number = node.get("id")
            if type(number) is not int or number not in self.by_number:
                raise WireError("a reference to nothing")
            return self.by_number[number]
        handler = _DECODERS.get(tag)
        if handler is not None:
            return handler(self, node, depth)
        return self.resolve(node)

    def _register(self, node, value):
        number = node.get("id")
        if number is not None:
            if type(number) is not int or number in self.by_number:
                raise WireError("a container number used twice")
            self.by_number[number] = value
            self.numbers[id(value)] = number
            self.next_number = max(self.next_number, number + 1)
        return value

    def _items(self, node, depth: int) -> list:
        values = node.get("v")
        if type(values) is not list:
            raise WireError(f"{node.get('$')}: its items must be a list")
        return [self.decode(item, depth + 1) for item in values]

    def _pairs(self, node, depth: int) -> list:
        values = node.get("v")
        if type(values) is not list or any(type(p) is not list or len(p) != 2 for p in values):
            raise WireError(f"{node.get('$')}: its items must be pairs")
        return [(self.decode(k, depth + 1), self.decode(v, depth + 1)) for k, v in values]

    def fill(self, target, node, depth: int = 0) -> None:
        """Make `target` (a container or shared object of the same kind) hold what `node` says."""
        tag = node.get("$")
        if isinstance(target, (list, collections.deque)) and tag in ("list", "deque"):
            items = self._items(node, depth)
            target.clear()
            target.extend(items)
        elif isinstance(target, bytearray) and tag == "bytearray":
            target[:] = _b64(node.get("v"))
        elif isinstance(target, set) and tag == "set":
            items = self._items(node, depth)
            target.clear()
            target.update(items)
        elif isinstance(target, dict) and tag in ("dict", "ordereddict", "defaultdict", "counter"):
            pairs = self._pairs(node, depth)
            dict.clear(target)
            for key, value in pairs:
                dict.__setitem__(target, key, value)
        elif tag == "obj" and not isinstance(target, (list, dict, set, tuple)):
            pairs = self._pairs(node, depth)
            attributes = object.__getattribute__(target, "__dict__")
            attributes.clear()
            for key, value in pairs:
                if type(key) is not str:
                    raise WireError("attribute names are strings")
                attributes[key] = value
        else:
            raise WireError(f"cannot write {tag!r} back into a {type(target).__name__}")


ARRAY_KINDS = "biufc"  # bools and numbers: an array of them crosses as dtype, shape and bytes


def _array_node(value) -> dict | None:
    """A numpy array or scalar of numbers as plain data (its dtype, shape and bytes), or None
    for anything else. Never imports numpy: a value can only be one if numpy is loaded. An
    array of objects, a structured one or a subclass is no plain data (a handle)."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    kind = type(value)
    scalar = issubclass(kind, numpy.generic)
    if not (kind is numpy.ndarray or scalar):
        return None
    dtype = value.dtype
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        return None
    data = numpy.ascontiguousarray(value).tobytes()
    return {
        "$": "ndarray",
        "dtype": dtype.str,
        "shape": [int(n) for n in numpy.shape(value)],
        "scalar": scalar,
        "v": base64.b64encode(data).decode(),
    }


def _decode_ndarray(codec, node, depth):
    """The array (or scalar) rebuilt by this side's own numpy from dtype, shape and bytes."""
    try:
        import numpy
    except ImportError:
        raise WireError("a numpy array crossed, and numpy is not importable here") from None
    text, shape, scalar = node.get("dtype"), node.get("shape"), node.get("scalar")
    if (
        type(text) is not str
        or type(shape) is not list
        or len(shape) > 32
        or any(type(n) is not int or n < 0 for n in shape)
        or type(scalar) is not bool
        or (scalar and shape)
    ):
        raise WireError("ndarray: bad dtype or shape")
    try:
        dtype = numpy.dtype(text)
    except (TypeError, ValueError):
        raise WireError("ndarray: bad dtype") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError("ndarray: only arrays of bools and numbers cross")
    data = _b64(node.get("v"))
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise WireError("ndarray: its bytes do not fill its shape")
    array = numpy.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return array[()] if scalar else array


def _b64(text) -> bytes:
    if type(text) is not str:
        raise WireError("bytes must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise WireError("bytes must be base64 text") from None


def _scalar(node, *types):
    value = node.get("v")
    if type(value) not in types:
        raise WireError(f"{node.get('$')}: bad value")
    return value


def _decode_float(codec, node, depth):
    text = _scalar(node, str)
    if text not in ("nan", "inf", "-inf"):
        raise WireError("float: only nan, inf and -inf are tagged")
    return float(text)


def _decode_list_like(make):
    def decode(codec, node, depth):
        value = codec._register(node, make(node))
        codec.fill(value, node, depth)
        return value

    return decode


def _maxlen(node):
    maxlen = node.get("maxlen")
    if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
        raise WireError("deque: bad maxlen")
    return maxlen


def _decode_tuple(codec, node, depth):
    return codec._register(node, tuple(codec._items(node, depth)))


def _decode_namedtuple(codec, node, depth):
    name, fields = node.get("cls"), node.get("fields")
    if (
        type(name) is not str
        or type(fields) is not list
        or not all(type(f) is str and f.isidentifier() for f in fields)
    ):
        raise WireError("namedtuple: bad class")
    items = codec._items(node, depth)
    local = codec.shared.get(name)
    if not (
        isinstance(local, type)
        and issubclass(local, tuple)
        and getattr(local, "_fields", None) == tuple(fields)
    ):
        local = _namedtuple(name if name.isidentifier() else "namedtuple", tuple(fields))
    if len(items) != len(fields):
        raise WireError("namedtuple: wrong number of items")
    return codec._register(node, local(*items))


_NAMEDTUPLES: dict = {}  # per run (see `forget`): a class made for one run is never another's


def _namedtuple(name: str, fields: tuple):
    key = (name, fields)
    if key not in _NAMEDTUPLES:
        _NAMEDTUPLES[key] = collections.namedtuple(name, fields)
    return _NAMEDTUPLES[key]


def _decode_set(frozen: bool):
    def decode(codec, node, depth):
        if frozen:
            return codec._register(node, frozenset(codec._items(node, depth)))
        value = codec._register(node, set())
        codec.fill(value, node, depth)
        return value

    return decode


def _decode_dict(make):
    def decode(codec, node, depth):
        value = codec._register(node, make(node))
        codec.fill(value, node, depth)
        return value

    return decode


def _defaultdict(node):
    factory = node.get("factory")
    if factory is not None and factory not in BUILTIN_TYPES:
        raise WireError("defaultdict: unknown factory")
    return collections.defaultdict(BUILTIN_TYPES.get(factory))


def _decode_obj(codec, node, depth):
    name = node.get("cls")
    if type(name) is not str:
        raise WireError("obj: bad class name")
    cls = codec.shared.get(name)
    if cls is None:
        cls = plain_class(name)
    value = object.__new__(cls)
    codec._register(node, value)
    codec.fill(value, node, depth)
    return value


_PLAIN_CLASSES: dict = {}


def forget() -> None:
    """Drop the classes made for an earlier run's values (a warm judge runs one after another)."""
    _NAMEDTUPLES.clear()
    _PLAIN_CLASSES.clear()


def plain_class(name: str):
    """A bare class for objects of a class this side does not know: attributes, nothing else."""
    if name not in _PLAIN_CLASSES:
        _PLAIN_CLASSES[name] = type(
            name if name.isidentifier() else "Object", (), {"__module__": "sandboxed"}
        )
    return _PLAIN_CLASSES[name]


def _decode_complex(codec, node, depth):
    parts = node.get("v")
    if type(parts) is not list or len(parts) != 2:
        raise WireError("complex: two parts")
    real, imag = (codec.decode(p, depth + 1) for p in parts)
    if type(real) not in (int, float) or type(imag) not in (int, float):
        raise WireError("complex: numbers")
    return complex(real, imag)


def _decode_range(make):
    def decode(codec, node, depth):
        parts = node.get("v")
        if type(parts) is not list or len(parts) != 3:
            raise WireError("range/slice: three parts")
        values = [codec.decode(p, depth + 1) for p in parts]
        if make is range:
            if any(type(v) is not int for v in values):
                raise WireError("range: integers")
            return range(*values)
        return slice(*values)

    return decode


def _decode_fraction(codec, node, depth):
    parts = node.get("v")
    if (
        type(parts) is not list
        or len(parts) != 2
        or any(type(p) is not int for p in parts)
        or parts[1] == 0
    ):
        raise WireError("fraction: two integers")
    return fractions.Fraction(*parts)


def _decode_decimal(codec, node, depth):
    try:
        return decimal.Decimal(_scalar(node, str))
    except decimal.InvalidOperation:
        raise WireError("decimal: bad text") from None


def _decode_iso(cls):
    def decode(codec, node, depth):
        try:
            return cls.fromisoformat(_scalar(node, str))
        except ValueError:
            raise WireError(f"{cls.__name__}: bad text") from None

    return decode


def _decode_timedelta(codec, node, depth):
    parts = node.get("v")
    if type(parts) is not list or len(parts) != 3 or any(type(p) is not int for p in parts):
        raise WireError("timedelta: three integers")
    try:
        return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])
    except OverflowError:
        raise WireError("timedelta: out of range") from None


def _decode_bytearray(codec, node, depth):
    return codec._register(node, bytearray(_b64(node.get("v"))))


_DECODERS = {
    "float": _decode_float,
    "complex": _decode_complex,
    "bytes": lambda codec, node, depth: _b64(node.get("v")),
    "bytearray": _decode_bytearray,
    "ellipsis": lambda codec, node, depth: Ellipsis,
    "range": _decode_range(range),
    "slice": _decode_range(slice),
    "decimal": _decode_decimal,
    "fraction": _decode_fraction,
    "datetime": _decode_iso(datetime.datetime),
    "date": _decode_iso(datetime.date),
    "time": _decode_iso(datetime.time),
    "timedelta": _decode_timedelta,
    "list": _decode_list_like(lambda node: []),
    "deque": _decode_list_like(lambda node: collections.deque(maxlen=_maxlen(node))),
    "tuple": _decode_tuple,
    "namedtuple": _decode_namedtuple,
    "set": _decode_set(frozen=False),
    "frozenset": _decode_set(frozen=True),
    "dict": _decode_dict(lambda node: {}),
    "ordereddict": _decode_dict(lambda node: collections.OrderedDict()),
    "counter": _decode_dict(lambda node: collections.Counter()),
    "defaultdict": _decode_dict(_defaultdict),
    "obj": _decode_obj,
    "ndarray": _decode_ndarray,
}
