"""One function of a repository as a function-level task, and its repair back into the file.

A small model repairs a function it is shown far better than it edits a repository. So a
suspect function is cut out of its file (dedented, if it is a method) and becomes the one
file of a function-level Task: the solver and the refiner see that function alone, headed by
where it lives, with the issue and the names in scope there (agents.code.scope), and their
reply is extracted and merged into it exactly as in function-level repair
(agents.code.extract). `splice` then puts the merged function back in place of the original
lines, and the candidate is the whole file plus its diff against the base, which is what the
repository's tests run on.

A synthesized bug's function task (factory.output) is shown through the same `shown`,
`shown_file` and `with_scope`: a suspect of localise-repair and the same function given as a
function task make the same prompt, so the two differ only in finding the function.
"""

from __future__ import annotations

import difflib
import re

from selfrepair.agents.code.localise import Definition, definitions
from selfrepair.agents.code.scope import describe, scope_of

from selfrepair.types import Candidate, Task, TestSpec

FUNCTION_DIR = "_function"  # where a function task's one file lives (not importable)


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


def shown_file(qualname: str) -> str:
    """The one file of a function task: named by the function, outside any package."""
    return f"{FUNCTION_DIR}/{qualname}.py"


def header(path: str, qualname: str) -> str:
    """The comment line that heads a shown function: where it lives, and in which class."""
    where = path + (f", in class {qualname.rsplit('.', 1)[0]}" if "." in qualname else "")
    return f"# {where}\n"


def shown(code: str, path: str, qualname: str) -> str:
    """A function at column 0 as the model is shown it: headed by where it lives."""
    return header(path, qualname) + code


def unshown(code: str, path: str, qualname: str) -> str:
    """A reply's function without the header it was shown with, which is not part of it."""
    first = header(path, qualname)
    return code[len(first) :] if code.startswith(first) else code


def with_scope(spec: str, path: str, qualname: str, module: str | bytes) -> tuple[str, list[str]]:
    """The issue followed by the names in scope where the function lives (read from its
    `module`'s text), and those names, which the merge keeps out of a reply."""
    scope = scope_of(path, module, qualname)
    if not scope.text:
        return spec, []
    return spec.strip() + "\n\n" + describe(scope, qualname, path), list(scope.names)


def function_task(
    task: Task, definition: Definition, code: str, reproduction: str = "", *, module: str
) -> Task:
    """The repository task narrowed to one function: its one file is the function's code,
    headed by where it lives; the specification is the issue, the names in scope there (read
    from its `module`'s text) and a reproduction test when there is one. Its tests are never
    run (the repository's are): the spec here only satisfies the type."""
    spec, names = with_scope(task.spec, definition.path, definition.qualname, module)
    if reproduction:
        spec += "\n\nA test that shows the issue:\n```python\n" + reproduction.strip() + "\n```"
    file = shown_file(definition.qualname)
    return Task(
        task_id=f"{task.task_id}:{definition.path}:{definition.qualname}",
        spec=spec,
        files={file: shown(code, definition.path, definition.qualname)},
        entry_file=file,
        entry_point=definition.qualname,
        tests=TestSpec(kind="command", command="true"),
        metadata={"mode": "repair", "in_scope": names},
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
