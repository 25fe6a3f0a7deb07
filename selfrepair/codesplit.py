"""Train and eval tasks split by code, not by name: whole packages (or, with one package, whole
modules) on one side, and eval tasks whose function is a train function in disguise removed.

A twin is found by a normalised-code fingerprint (`fingerprint`): the function's syntax tree
with docstrings dropped, every identifier renamed by order of first use (v0, v1, ...) and
every constant replaced by its type, hashed. `def add(a, b): return a + b` and
`def plus(x, y): return x + y` share it; `a + b` and `a - b` do not (the operators are what
a bug changes, so they stay). The code fingerprinted is the task's correct function where the
task records it (`metadata["solution"]`), else the code shown: the bugs of one function then
share one fingerprint whatever their bug.

Where a task lives: synth tasks name their package, file and function (`metadata["synth"]`);
other tasks may name them as `metadata["package"]`, `["module"]`, `["function"]`; otherwise
the benchmark is the package and the entry point (or the task id) the module and function.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from typing import Any

from selfrepair.errors import SelfRepairError
from selfrepair.types import Task

BY = ("package", "module")


class _Abstract(ast.NodeTransformer):
    """Identifiers renamed by order of first use, constants replaced by their type's name."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def name(self, identifier: str) -> str:
        return self.names.setdefault(identifier, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self.name(node.arg)
        node.annotation = None
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        node.attr = self.name(node.attr)
        return self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        if node.arg is not None:
            node.arg = self.name(node.arg)
        return self.generic_visit(node)

    def visit_alias(self, node: ast.alias) -> ast.AST:
        node.name = self.name(node.name)
        node.asname = node.asname and self.name(node.asname)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Constant(value=type(node.value).__name__)

    def _definition(self, node: Any) -> ast.AST:
        node.name = self.name(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):  # the docstring: what, not how
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None  # annotations are documentation
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition


def fingerprint(code: str) -> str:
    """The normalised-code fingerprint of `code` (see the module's docstring). Code that does
    not parse is fingerprinted by its text with whitespace collapsed."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        normal = " ".join(code.split())
    else:
        normal = ast.dump(_Abstract().visit(tree), annotate_fields=False)
    return hashlib.sha256(normal.encode()).hexdigest()[:16]


def task_code(task: Task) -> str:
    """The code a task's fingerprint is taken from: its correct function where recorded."""
    solution = task.metadata.get("solution")
    if isinstance(solution, str) and solution.strip():
        return solution
    if task.entry_file:
        return task.files[task.entry_file]
    return "\n".join(task.files[path] for path in sorted(task.files))


def place(task: Task) -> tuple[str, str, str]:
    """(package, module, function) of a task."""
    synth = task.metadata.get("synth")
    if isinstance(synth, dict):
        return synth["repo"], synth["file"], synth["function"]
    meta = task.metadata
    function = meta.get("function") or task.entry_point or task.task_id
    package = meta.get("package") or meta.get("benchmark") or "tasks"
    return str(package), str(meta.get("module") or function), str(function)


def function_of(task: Task) -> str:
    """The function a task's bug is in: what the tasks of one cluster share (code, spec, tests)."""
    return ":".join(place(task))


def unit_of(task: Task, by: str) -> str:
    package, module, _ = place(task)
    return package if by == "package" else f"{package}:{module}"


@dataclass
class CodeSplit:
    train: list[Task]
    eval: list[Task]
    twins: list[Task]  # eval tasks removed: a train function in disguise
    by: str  # the unit actually used: "package", or "module" where there was one package
    units: dict[str, list[str]]  # side -> units

    def report(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "train_tasks": len(self.train),
            "eval_tasks": len(self.eval),
            "train_functions": len({function_of(t) for t in self.train}),
            "eval_functions": len({function_of(t) for t in self.eval}),
            "twins_removed": len(self.twins),
            "twin_functions_removed": len({function_of(t) for t in self.twins}),
            "units": {side: len(units) for side, units in self.units.items()},
        }


def split_by_code(
    tasks: list[Task],
    *,
    eval_fraction: float = 0.5,
    by: str = "package",
    eval_packages: tuple[str, ...] = (),
    seed: int = 0,
) -> CodeSplit:
    """Whole units in a seeded order into eval while it stays within `eval_fraction` of the
    tasks (`eval_packages`, where named, go to eval whole instead); then every eval task whose
    fingerprint is a train task's is removed (counted in `twins`). By package where the tasks
    come from two packages or more, else by module."""
    if by not in BY:
        raise SelfRepairError(f"split by must be one of {', '.join(BY)}, not {by!r}")
    if not 0 < eval_fraction < 1:
        raise SelfRepairError(f"eval fraction must be between 0 and 1, got {eval_fraction}")
    if by == "package" and len({unit_of(t, "package") for t in tasks}) < 2:
        by = "module"
    counts: dict[str, int] = {}
    for task in tasks:
        counts[unit_of(task, by)] = counts.get(unit_of(task, by), 0) + 1
    if len(counts) < 2:
        raise SelfRepairError(f"the tasks hold one {by} only: nothing to hold out")
    order = sorted(counts, key=lambda unit: hashlib.sha256(f"{seed}:{unit}".encode()).hexdigest())
    if eval_packages:
        held = {u for u in order if u.split(":", 1)[0] in set(eval_packages)}
    else:
        held, size = set(), 0
        for unit in order:
            if size + counts[unit] <= eval_fraction * len(tasks) and len(held) < len(order) - 1:
                held.add(unit)
                size += counts[unit]
        held = held or {order[0]}
    train = [t for t in tasks if unit_of(t, by) not in held]
    seen = {fingerprint(task_code(t)) for t in train}
    kept, twins = [], []
    for task in (t for t in tasks if unit_of(t, by) in held):
        (twins if fingerprint(task_code(task)) in seen else kept).append(task)
    return CodeSplit(
        train,
        kept,
        twins,
        by,
        {"train": sorted(set(counts) - held), "eval": sorted(held)},
    )
