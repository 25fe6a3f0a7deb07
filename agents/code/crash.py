"""From where a test crashed back to where the fault is: what the crash read, and who wrote it.

A crash site is often not the fault. `'Result' object has no attribute 'named'` is raised
where `self.named` is read, but the fault is the constructor that never set it; a TypeError
on a bad value is raised where the value is used, but the fault is where it was made. So a
failing test's error and the statement it crashed in name what to look for, and tree-sitter
finds, in every function of the repository, what writes it:

  no attribute X (of a class C)  the functions that assign `<obj>.X`, and C's constructor
  KeyError: 'X'                  the functions that store key 'X' (`d['X'] = ...`, `{'X': ...}`)
  any failure                    the statement at the innermost frame in the repository: the
                                 functions that write the attributes it reads, and the
                                 functions it calls (they produced what it used)

A NameError is not followed: a local name can only be set in the function that crashed (its
frame already ranks it), and a missing global is set outside any function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from selfrepair.agents.code.localise import (
    Definition,
    parse,
    same_file,
    traceback_frames,
)
from tree_sitter import Node

from selfrepair.types import TestCase

CONSTRUCTORS = ("__init__", "__new__", "__post_init__")
_NO_ATTRIBUTE = re.compile(
    r"(?:'(?P<cls>[\w.]+)' object|type object '(?P<type>[\w.]+)') has no attribute '(?P<attr>\w+)'"
)
_KEY_ERROR = re.compile(r"KeyError: ['\"](?P<key>[^'\"]+)['\"]")


@dataclass(frozen=True)
class Writes:
    """What one function writes: attribute names and string keys."""

    attributes: frozenset[str]
    keys: frozenset[str]


@dataclass(frozen=True)
class Lead:
    """One function to suspect because of a crash, and why."""

    definition: Definition
    kind: str  # "missing" (it should have set what was missing) or "produced"
    reason: str


def leads(root: Path, defs: list[Definition], case: TestCase) -> list[Lead]:
    """The functions and methods (of `defs`, all in `root`) that one failing test's crash
    points back to, each at most once."""
    error = f"{case.message}\n{_error_lines(case.traceback)}"
    functions = [d for d in defs if d.kind != "class"]
    writes = _writes_by_definition(Path(root), functions)
    found: dict[Definition, Lead] = {}

    def add(d: Definition, kind: str, reason: str) -> None:
        if d not in found or (kind == "missing" and found[d].kind != "missing"):
            found[d] = Lead(d, kind, reason)

    if (match := _NO_ATTRIBUTE.search(error)) is not None:
        attribute = match["attr"]
        owner = (match["cls"] or match["type"]).split(".")[-1]
        for d in functions:
            if attribute in writes[d].attributes:
                add(d, "missing", f"sets .{attribute}, which the crash found missing")
            elif d.name in CONSTRUCTORS and d.qualname.split(".")[-2:-1] == [owner]:
                add(d, "missing", f"builds the {owner} that has no .{attribute}")
    if (match := _KEY_ERROR.search(error)) is not None:
        for d in functions:
            if match["key"] in writes[d].keys:
                add(d, "missing", f"stores key {match['key']!r}, which the crash found missing")

    read, called = crash_statement(Path(root), defs, case.traceback)
    for d in functions:
        if read & writes[d].attributes:
            add(d, "produced", "writes ." + ", .".join(sorted(read & writes[d].attributes)))
        elif d.name in called:
            add(d, "produced", f"the crash's statement calls {d.name}")
    return list(found.values())


def crash_statement(root: Path, defs: list[Definition], traceback: str) -> tuple[set, set]:
    """(attributes read, names called) in the statement at the innermost traceback frame that
    lies in the repository; two empty sets when no frame does."""
    files = {d.path for d in defs}
    for frame in reversed(traceback_frames(traceback)):
        path = next((p for p in sorted(files) if same_file(frame.path, p)), None)
        if path is not None:
            return _reads_at(parse((root / path).read_bytes()).root_node, frame.line - 1)
    return set(), set()


def _reads_at(module: Node, row: int) -> tuple[set, set]:
    read, called = set(), set()
    for node in (n for part in _statement_at(module, row) for n in _walk(part)):
        if node.type == "call":
            callee = node.child_by_field_name("function")
            if callee is not None and callee.type == "attribute":
                callee = callee.child_by_field_name("attribute")
            if callee is not None and callee.type == "identifier":
                called.add(_text(callee))
        elif node.type == "attribute" and not _is_callee(node):
            read.add(_text(node.child_by_field_name("attribute")))
    return read, called


def _statement_at(node: Node, row: int) -> list[Node]:
    """The smallest simple statement holding `row`; in a compound statement's header (`if
    x.ready:`, `for a in f():`), the header's parts without the blocks under it."""
    for child in node.children:
        if not child.start_point[0] <= row <= child.end_point[0]:
            continue
        if child.type in _COMPOUND:
            header = [c for c in child.children if c.type not in _BODIES]
            if any(c.start_point[0] <= row <= c.end_point[0] for c in header):
                return header
        elif child.type.endswith("_statement"):
            return [child]
        found = _statement_at(child, row)
        if found:
            return found
    return []


_COMPOUND = {
    "if_statement",
    "elif_clause",
    "while_statement",
    "for_statement",
    "with_statement",
    "try_statement",
    "match_statement",
}
_BODIES = {"block", "elif_clause", "else_clause", "except_clause", "finally_clause", "case_clause"}


def _is_callee(attribute: Node) -> bool:
    parent = attribute.parent
    return (
        parent is not None
        and parent.type == "call"
        and parent.child_by_field_name("function") == attribute
    )


def _writes_by_definition(root: Path, functions: list[Definition]) -> dict[Definition, Writes]:
    """Each function's writes; a write inside a nested function is the innermost one's."""
    by_file: dict[str, list[Definition]] = {}
    for d in functions:
        by_file.setdefault(d.path, []).append(d)
    found: dict[Definition, tuple[set, set]] = {d: (set(), set()) for d in functions}
    for path, local in by_file.items():
        for row, kind, name in _writes_in(parse((root / path).read_bytes()).root_node):
            holding = [d for d in local if d.contains(row + 1)]
            if holding:
                innermost = min(holding, key=lambda d: d.end_line - d.start_line)
                found[innermost][kind].add(name)
    return {d: Writes(*(frozenset(s) for s in sets)) for d, sets in found.items()}


def _writes_in(module: Node) -> Iterable[tuple[int, int, str]]:
    """(row, 0 attribute | 1 key, what) for every attribute or key assigned, and dict keys."""
    for node in _walk(module):
        if node.type in ("assignment", "augmented_assignment"):
            for target in _targets(node.child_by_field_name("left")):
                if target.type == "attribute":
                    yield target.start_point[0], 0, _text(target.child_by_field_name("attribute"))
                elif target.type == "subscript":
                    key = target.child_by_field_name("subscript")
                    if key is not None and key.type == "string":
                        yield target.start_point[0], 1, _string(key)
        elif node.type == "pair":
            key = node.child_by_field_name("key")
            if key is not None and key.type == "string":
                yield key.start_point[0], 1, _string(key)


def _targets(left: Node | None) -> Iterable[Node]:
    if left is None:
        return
    if left.type in ("pattern_list", "tuple_pattern", "list_pattern"):
        for child in left.named_children:
            yield from _targets(child)
    else:
        yield left


def _walk(node: Node) -> Iterable[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _string(node: Node) -> str:
    return "".join(_text(c) for c in node.children if c.type == "string_content")


def _error_lines(traceback: str) -> str:
    """pytest's `E   ...` lines: the error as raised."""
    return "\n".join(line[1:].strip() for line in traceback.splitlines() if line.startswith("E "))
