"""Which functions a failing repository most likely breaks in: suspects, best first.

The issue graph's ranking (agents.code.localise.rank) reads the issue's words and any
traceback in it. A synthesized bug, or any wrong result that is not a crash, leaves no frame
in the code: the traceback ends in the test's `assert`. What the failing test *calls* then
points at the fault, so here the failing tests add call edges: every function a failing test
calls, and (less) every function those call in turn. On top come the failing tests' own
tracebacks (a frame inside a function weighs most) and the issue's words, as ranked before.
A crash site is often not the fault: each failing test's error and crash statement also
point back at what should have set what was missing, or made the bad value (agents.code.crash).
Only functions and methods outside test files are suspects: they are what gets repaired.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
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
_TEST_ID = re.compile(r"^(?P<path>[^:]+\.py)(?:::(?P<rest>.*))?$")


def suspects(
    root: Path,
    issue: str,
    failing: list[TestCase] = (),
    *,
    limit: int = 10,
    follow_crashes: bool = True,
) -> list[Ranked]:
    """Functions and methods of the repository at `root`, ranked against the issue and the
    failing tests (their tracebacks, the functions they call and, with `follow_crashes`, what
    their crashes point back to); at most `limit`, each with a positive score."""
    root = Path(root)
    defs = repository_map(root)
    evidence = "\n".join([issue, *(f"{c.message}\n{c.traceback}" for c in failing)])
    ranked = {(r.definition.path, r.definition.qualname): r for r in rank(defs, evidence)}
    called = _called_by_tests(root, defs, failing)
    reached = _reached_from(root, defs, set(called))
    crashed = _crash_leads(root, defs, failing) if follow_crashes else {}

    found = []
    for d in defs:
        if d.kind == "class" or is_test_file(d.path):
            continue
        item = ranked[(d.path, d.qualname)]
        score, reasons = item.score, list(item.reasons)
        if called[d.name]:
            # Once, however many tests call it: a function every test calls (the package's
            # entry point) must not drown the frames that show where it broke.
            score += CALLED_BY_TEST
            reasons.append(f"called by {called[d.name]} failing test(s)")
        elif d.name in reached:
            hops = reached[d.name]
            score += CALLED_FURTHER / 4 ** (hops - 2)
            reasons.append(f"{hops} calls away from a failing test")
        if (d.path, d.qualname) in crashed:
            extra, reason = crashed[(d.path, d.qualname)]
            score += extra
            reasons.append(reason)
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


def _called_by_tests(root: Path, defs: list[Definition], failing: list[TestCase]) -> Counter:
    """How many failing tests call each name (a function's, or a method's by attribute)."""
    counts: Counter[str] = Counter()
    for path, function in failing_test_ids(failing):
        test = next(
            (
                d
                for d in defs
                if d.name == function and (d.path == path or d.path.endswith("/" + path))
            ),
            None,
        )
        if test is not None:
            counts.update(set(_calls_in(root, test)))
    return counts


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


def _reached_from(root: Path, defs: list[Definition], names: set[str]) -> dict[str, int]:
    """Names reached through calls from `names` (what the failing tests call), with the
    number of calls from a test (2 or more): calling a class reaches its __init__."""
    by_name: dict[str, list[Definition]] = {}
    methods: dict[str, list[Definition]] = {}
    for d in defs:
        if is_test_file(d.path):
            continue
        by_name.setdefault(d.name, []).append(d)
        if d.kind == "method" and d.name == "__init__":
            methods.setdefault(d.qualname.rsplit(".", 1)[0].split(".")[-1], []).append(d)
    reached: dict[str, int] = {}
    frontier = set(names)
    for hops in range(2, MAX_HOPS + 1):
        following = set()
        for name in frontier:
            bodies = [d for d in by_name.get(name, []) if d.kind != "class"]
            bodies += methods.get(name, [])
            if methods.get(name):
                following.add("__init__")
            for d in bodies:
                following.update(_calls_in(root, d))
        following -= names | set(reached)
        for name in following:
            reached[name] = hops
        frontier = following
    return reached


def _calls_in(root: Path, definition: Definition) -> list[str]:
    """The names a definition calls: f(...) and obj.f(...) give f."""
    lines = (root / definition.path).read_text(encoding="utf-8", errors="replace").splitlines()
    source = "\n".join(lines[definition.start_line - 1 : definition.end_line])
    try:
        tree = ast.parse(_dedent(source))
    except SyntaxError:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.append(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                names.append(node.func.attr)
    return names


def _dedent(source: str) -> str:
    lines = source.splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines)
