"""One function of a repository as a function-level task, and its repair back into the file.

A small model repairs a function it is shown far better than it edits a repository. So a
suspect function is cut out of its file (dedented, if it is a method) and becomes the one
file of a function-level Task: the solver and the refiner see that function alone, with the
issue, the names in scope where it lives (agents.code.scope), the lines that call it and the
failing tests, and their reply is extracted and merged into it exactly as in function-level
repair (agents.code.extract). `splice` then puts the
merged function back in place of the original lines, and the candidate is the whole file
plus its diff against the base, which is what the repository's tests run on.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from selfrepair.agents.code.localise import Definition, definitions, python_files
from selfrepair.agents.code.scope import describe, scope_of

from selfrepair.paths import is_test_file
from selfrepair.types import Candidate, Task, TestSpec

MAX_CALLERS = 6


def function_source(text: str, definition: Definition) -> tuple[str, str]:
    """(the definition's code dedented to column 0, the indent it had)."""
    lines = text.splitlines()[definition.start_line - 1 : definition.end_line]
    indent = re.match(r"[ \t]*", lines[0]).group(0) if lines else ""
    code = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines]
    return "\n".join(code).rstrip() + "\n", indent


def splice(text: str, definition: Definition, code: str, indent: str) -> str:
    """`text` with the definition's lines replaced by `code`, indented as the original was."""
    lines = text.splitlines()
    new = [indent + line if line.strip() else "" for line in code.rstrip().splitlines()]
    lines[definition.start_line - 1 : definition.end_line] = new
    return "\n".join(lines) + "\n"


def find(text: str, path: str, qualname: str) -> Definition | None:
    """The definition named `qualname` in a file's (possibly changed) text."""
    return next((d for d in definitions(path, text) if d.qualname == qualname), None)


def callers(root: Path, definition: Definition, *, limit: int = MAX_CALLERS) -> list[str]:
    """Lines of the repository that call the function, 'path:line: code', code files first."""
    pattern = re.compile(rf"(?<![\w]){re.escape(definition.name)}\s*\(")
    found: list[tuple[bool, str]] = []
    for relative in python_files(root):
        lines = (root / relative).read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            inside = relative == definition.path and definition.contains(number)
            if inside or not pattern.search(line) or line.lstrip().startswith(("def ", "#")):
                continue
            found.append((is_test_file(relative), f"{relative}:{number}: {line.strip()}"))
    found.sort(key=lambda pair: pair[0])  # stable: code before tests, then file order
    return [text for _, text in found[:limit]]


def function_task(
    task: Task,
    definition: Definition,
    code: str,
    caller_lines: list[str],
    reproduction: str = "",
    *,
    module: str,
) -> Task:
    """The repository task narrowed to one function: its one file is the function's code,
    keyed by the file's path so the prompt names it; the specification is the issue, the
    names in scope where it lives (read from its `module`'s text), the lines that call it and
    a reproduction test when there is one. Its tests are never run (the repository's are):
    the spec here only satisfies the type."""
    scope = scope_of(definition.path, module, definition.qualname)
    spec = task.spec.strip()
    if scope.text:
        spec += "\n\n" + describe(scope, definition.qualname, definition.path)
    if caller_lines:
        spec += "\n\nThe function is called like this:\n" + "\n".join(caller_lines)
    if reproduction:
        spec += "\n\nA test that shows the issue:\n```python\n" + reproduction.strip() + "\n```"
    spec += f"\n\nFix `{definition.qualname}` in {definition.path}; only this function is shown."
    return Task(
        task_id=f"{task.task_id}:{definition.path}:{definition.qualname}",
        spec=spec,
        files={definition.path: code},
        entry_file=definition.path,
        entry_point=definition.name,
        tests=TestSpec(kind="command", command="true"),
        metadata={"mode": "repair", "in_scope": list(scope.names)},
    )


def repository_candidate(path: str, base: str, new: str) -> Candidate | None:
    """The candidate for a file's new text: the whole file and its diff; None if unchanged."""
    if new == base:
        return None
    diff = "".join(
        difflib.unified_diff(
            base.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
    return Candidate(files={path: new}, diff=diff)
