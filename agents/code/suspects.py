"""Which functions a failing repository most likely breaks in: suspects, best first.

The issue graph's ranking (agents.code.localise.rank) reads the issue's words and any
traceback in it. A synthesized bug, or any wrong result that is not a crash, leaves no frame
in the code: the traceback ends in the test's `assert`. What the failing test *calls* then
points at the fault, so here the failing tests add call edges: every function a failing test
calls, and (less) every function those call in turn. A call is followed where the code says
where it lands (a class called by name runs its own constructor; `getattr(self, "visit_" + x)`
runs the methods so named), by bare name where the receiver is unknown, and through the tests'
own helpers and setUp (a helper is no suspect, what it calls is the test's). On top come the
failing tests' own tracebacks (a frame inside a function weighs most) and the issue's words.
A crash site is often not the fault: each failing test's error and crash statement also
point back at what should have set what was missing, or made the bad value (agents.code.crash).
Where the tests were run with a tracer (what each test executed, sandbox.spectrum), the
spectrum ranks first: a function's Ochiai score, ef / sqrt(F * (ef + ep)) for the ef of the F
failing tests and the ep passing tests that executed it, weighs more than any static evidence,
which then breaks ties (functions every failing test runs, as the package's entry point does).
Only functions and methods outside test files are suspects: they are what gets repaired.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from selfrepair.agents.code.crash import leads
from selfrepair.agents.code.localise import Definition, Ranked, rank, repository_map

from selfrepair.paths import is_test_file
from selfrepair.types import TestCase

CALLED_BY_TEST = 40.0  # a failing test calls it by name
CALLED_FURTHER = 10.0  # two calls away (a function a failing test calls, calls it); /4 a hop
MAX_HOPS = 3
# Per failing test, shared by the functions its crash points back to. What was missing (an
# attribute nobody set) outweighs the crash site's frame (100-200): the reader is rarely wrong.
CRASH_MISSING = 250.0
CRASH_PRODUCED = 60.0  # what the crash statement read or called: it may have made the value
SPECTRUM = 1000.0  # times the Ochiai score: above the static evidence, which breaks its ties
_TEST_ID = re.compile(r"^(?P<path>[^:]+\.py)(?:::(?P<rest>.*))?$")


def suspects(
    root: Path,
    issue: str,
    failing: list[TestCase] = (),
    *,
    limit: int = 10,
    follow_crashes: bool = True,
    executed: Mapping[str, Collection[tuple[str, int]]] | None = None,
    failed: Collection[str] = (),
) -> list[Ranked]:
    """Functions and methods of the repository at `root`, ranked against the issue and the
    failing tests (their tracebacks, the functions they call and, with `follow_crashes`, what
    their crashes point back to); at most `limit`, each with a positive score. `executed`
    (test id -> the (path, first line) of each function it ran, as Python's code objects
    give it) with `failed` (those of its tests that failed) adds each function's Ochiai score."""
    root = Path(root)
    defs = repository_map(root)
    evidence = "\n".join([issue, *(f"{c.message}\n{c.traceback}" for c in failing)])
    ranked = {(r.definition.path, r.definition.qualname): r for r in rank(defs, evidence)}
    index = _Index.of(defs)
    called = _called_by_tests(root, defs, index, failing)
    reached = _reached_from(root, index, set(called))
    crashed = _crash_leads(root, defs, failing) if follow_crashes else {}
    ochiai = _ochiai(root, defs, executed or {}, set(failed))

    found = []
    for d in defs:
        if d.kind == "class" or is_test_file(d.path):
            continue
        key = (d.path, d.qualname)
        item = ranked[key]
        score, reasons = item.score, list(item.reasons)
        if called[key]:
            # Once, however many tests call it: a function every test calls (the package's
            # entry point) must not drown the frames that show where it broke.
            score += CALLED_BY_TEST
            reasons.append(f"called by {called[key]} failing test(s)")
        elif key in reached:
            hops = reached[key]
            score += CALLED_FURTHER / 4 ** (hops - 2)
            reasons.append(f"{hops} calls away from a failing test")
        if (d.path, d.qualname) in crashed:
            extra, reason = crashed[(d.path, d.qualname)]
            score += extra
            reasons.append(reason)
        if ochiai.get(key):
            value, ef, ep = ochiai[key]
            score += SPECTRUM * value
            reasons.append(f"run by {ef} failing and {ep} passing test(s) (Ochiai {value:.2f})")
        if score > 0:
            found.append(Ranked(d, round(score, 3), tuple(reasons)))
    found.sort(key=lambda r: -r.score)  # stable: ties keep source order
    return found[:limit]


def failing_test_ids(failing: list[TestCase]) -> list[tuple[str, str]]:
    """(file, test function) of each failing pytest id, e.g. tests/test_x.py::Test::test_y[1]
    -> (tests/test_x.py, test_y); names that are no pytest id are left out."""
    found = []
    for case in failing:
        match = _TEST_ID.match(case.name)
        if match and match["rest"]:
            function = match["rest"].split("::")[-1].split("[")[0]
            found.append((match["path"], function))
    return found


def _called_by_tests(
    root: Path, defs: list[Definition], index: _Index, failing: list[TestCase]
) -> Counter:
    """How many failing tests call each function or method (path, qualname). What a test's
    helpers call (functions and methods of test files it calls, and its class's setUp) counts
    as called by the test: many tests assert through a helper of their own."""
    counts: Counter[tuple[str, str]] = Counter()
    for path, function in failing_test_ids(failing):
        test = next(
            (
                d
                for d in defs
                if d.name == function and (d.path == path or d.path.endswith("/" + path))
            ),
            None,
        )
        if test is None:
            continue
        setup = [
            d
            for d in index.helpers.get("setUp", []) + index.helpers.get("setup_method", [])
            if d.path == test.path and _owner(d) == _owner(test) and _owner(d)
        ]
        called: set[Definition] = set()
        seen = {test}
        pending = [test, *setup]
        while pending:  # through helpers calling helpers, each read once
            body = pending.pop()
            seen.add(body)
            for call in _calls_in(root, body):
                called.update(index.resolve(call))
                pending += [h for h in index.helpers.get(call[1], []) if h not in seen]
        counts.update({(d.path, d.qualname) for d in called})
    return counts


def _ochiai(
    root: Path,
    defs: list[Definition],
    executed: Mapping[str, Collection[tuple[str, int]]],
    failed: set[str],
) -> dict[tuple[str, str], tuple[float, int, int]]:
    """(path, qualname) -> (Ochiai score, failing and passing tests that ran it). A function
    is found by its path and first line; a decorated one's first line is its first decorator's
    (Python's co_firstlineno, as the Definition counts it) or, as some tools give it, its
    `def` line."""
    failing = [test for test in executed if test in failed]
    if not failing:
        return {}
    at: dict[tuple[str, int], tuple[str, str]] = {}
    texts: dict[str, list[str]] = {}
    for d in defs:
        if d.kind == "class":
            continue
        key = (d.path, d.qualname)
        at.setdefault((d.path, d.start_line), key)
        if d.path not in texts:
            texts[d.path] = (root / d.path).read_text(errors="replace").splitlines()
        lines = texts[d.path]
        for number in range(d.start_line, min(d.end_line, len(lines)) + 1):
            if lines[number - 1].lstrip().startswith(("def ", "async def ")):
                at.setdefault((d.path, number), key)
                break
    ef: Counter[tuple[str, str]] = Counter()
    ep: Counter[tuple[str, str]] = Counter()
    for test, places in executed.items():
        keys = {at[place] for place in map(tuple, places) if place in at}
        (ef if test in failed else ep).update(keys)
    return {
        key: (ef[key] / math.sqrt(len(failing) * (ef[key] + ep[key])), ef[key], ep[key])
        for key in ef
    }


def _crash_leads(
    root: Path, defs: list[Definition], failing: list[TestCase]
) -> dict[tuple[str, str], tuple[float, str]]:
    """(path, qualname) -> (score, the first reason) from every failing test's crash; a test's
    weight is shared by the functions it points at, so a name written everywhere says little."""
    scores: dict[tuple[str, str], tuple[float, str]] = {}
    for case in failing:
        found = [lead for lead in leads(root, defs, case) if not is_test_file(lead.definition.path)]
        for kind, weight in (("missing", CRASH_MISSING), ("produced", CRASH_PRODUCED)):
            mine = [lead for lead in found if lead.kind == kind]
            for lead in mine:
                key = (lead.definition.path, lead.definition.qualname)
                score, reason = scores.get(key, (0.0, lead.reason))
                scores[key] = (score + weight / len(mine), reason)
    return scores


def _reached_from(
    root: Path, index: _Index, called: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Functions and methods (path, qualname) reached through calls from those the failing
    tests call, with the number of calls from a test (2 or more)."""
    reached: dict[tuple[str, str], int] = {}
    frontier = [index.by_key[key] for key in called if key in index.by_key]
    for hops in range(2, MAX_HOPS + 1):
        known = called | reached.keys()
        following = {
            target
            for d in frontier
            for call in _calls_in(root, d)
            for target in index.resolve(call)
            if (target.path, target.qualname) not in known
        }
        for d in following:
            reached[(d.path, d.qualname)] = hops
        frontier = list(following)
    return reached


@dataclass(frozen=True)
class _Index:
    """Where a call can land. Calling a class by name reaches that class's constructor only;
    `obj.f(...)`, whose receiver's class is unknown here, reaches every function and method
    named f; a method looked up by a prefix (`getattr(self, "visit_" + kind)`, a visitor's
    or a parser's dispatch) reaches every method named so."""

    functions: dict[str, list[Definition]]  # outside test files, by name
    constructors: dict[str, list[Definition]]  # Class.__init__, by class name
    helpers: dict[str, list[Definition]]  # functions and methods of test files, by name
    by_key: dict[tuple[str, str], Definition]

    @classmethod
    def of(cls, defs: list[Definition]) -> _Index:
        functions: dict[str, list[Definition]] = {}
        constructors: dict[str, list[Definition]] = {}
        helpers: dict[str, list[Definition]] = {}
        for d in defs:
            if d.kind == "class":
                continue
            if is_test_file(d.path):
                helpers.setdefault(d.name, []).append(d)
                continue
            functions.setdefault(d.name, []).append(d)
            if d.kind == "method" and d.name == "__init__":
                constructors.setdefault(_owner(d), []).append(d)
        by_key = {(d.path, d.qualname): d for ds in functions.values() for d in ds}
        return cls(functions, constructors, helpers, by_key)

    def resolve(self, call: tuple[str, str]) -> list[Definition]:
        kind, name = call
        if kind == "prefix":
            return [
                d for d in self.by_key.values() if d.kind == "method" and d.name.startswith(name)
            ]
        found = list(self.constructors.get(name, []))  # Class(...) and module.Class(...)
        if kind == "name":  # a bare f(...) is a function's call, never a method's
            found += [d for d in self.functions.get(name, []) if d.kind == "function"]
        elif name not in CONSTRUCTOR_CALLS:
            found += self.functions.get(name, [])
        return found


# super().__init__(...) names no class: the constructor of the class being built is reached
# where the class is called, and crediting every __init__ in the repository says nothing.
CONSTRUCTOR_CALLS = ("__init__", "__new__")


def _owner(definition: Definition) -> str:
    """The class a method is defined in ("" for a function at module level)."""
    parts = definition.qualname.split(".")
    return parts[-2] if len(parts) > 1 else ""


def _calls_in(root: Path, definition: Definition) -> list[tuple[str, str]]:
    """What a definition calls: ("name", f) for f(...), ("attribute", f) for obj.f(...), and
    ("prefix", p) for a method looked up as getattr(obj, "p" + ...) or "p%s" % ...."""
    lines = (root / definition.path).read_text(encoding="utf-8", errors="replace").splitlines()
    source = "\n".join(lines[definition.start_line - 1 : definition.end_line])
    try:
        tree = ast.parse(_dedent(source))
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                calls.append(("name", node.func.id))
                if node.func.id == "getattr" and len(node.args) >= 2:
                    if prefix := _constant_prefix(node.args[1]):
                        calls.append(("prefix", prefix))
            elif isinstance(node.func, ast.Attribute):
                calls.append(("attribute", node.func.attr))
    return calls


def _constant_prefix(node: ast.expr) -> str:
    """The constant start of a name built at run time: "visit_" + x, "_nud_%s" % x,
    f"on_{x}"; "" where the whole name is unknown (a prefix that short matches anything)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        node = node.left
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.split("%")[0]
            return text if len(text) >= 3 else ""
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and len(first.value) >= 3:
            return first.value
    return ""


def _dedent(source: str) -> str:
    lines = source.splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines)
