"""Edits a model writes to a repository, and applying them exactly.

Two forms, as in Aider:

    shop/money.py
    <<<<<<< SEARCH
        dollars, cents = text.split(".")
    =======
        dollars, _, cents = text.partition(".")
    >>>>>>> REPLACE

(an empty SEARCH creates the file, or appends to it), and a whole definition: a path line
followed by a ```python block of `def`s or `class`es, each replacing the definition of the
same name in that file.

Nothing is applied on a guess: a SEARCH that does not match the file's lines exactly, or
matches more than one place, becomes feedback for the model (with the closest lines, so it
can copy them), and so does an edit that leaves a Python file with syntax errors (tree-sitter's
ERROR and MISSING nodes, and Python's own complaint). A reply with any such problem changes
nothing, so nothing broken ever reaches the sandbox.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from selfrepair.agents.code.localise import definitions, python_syntax_error, syntax_errors

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\b.*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\b.*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_PATH = re.compile(r"^[\w./\\-]+\.[\w]+$")

FORMAT_HELP = """Write each change as a SEARCH/REPLACE block: the file's path on its own line, then
<<<<<<< SEARCH
the exact lines to change, copied from the file with their indentation
=======
the new lines
>>>>>>> REPLACE
or give the file's path on its own line followed by a ```python block holding a whole
function or class that replaces the one of the same name in that file."""


@dataclass(frozen=True)
class Edit:
    path: str
    kind: Literal["search_replace", "definition"]
    search: str  # the lines to find (search_replace); "" creates or appends
    replace: str  # the new lines, or the whole new definition
    number: int  # its place in the reply, 1-based, for feedback


@dataclass
class EditResult:
    """What a reply's edits did: the new contents of the files they changed, or the problems
    that stopped them (then `files` is empty: a reply applies whole or not at all)."""

    files: dict[str, str] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.files)

    def feedback(self) -> str:
        """The problems as a message to the model; empty when there are none."""
        if not self.problems:
            return ""
        lines = ["Your edits were not applied and nothing was run:"]
        lines += [f"- {problem}" for problem in self.problems]
        return "\n".join(lines)


def _clean_path(line: str) -> str | None:
    """A path from a line such as `shop/money.py`, `**shop/money.py**` or `File: shop/money.py:`."""
    text = line.strip().strip("*`'\"").strip()
    text = (
        re.sub(r"^(#+\s*)?((file|path)\s*:\s*)?", "", text, flags=re.I)
        .strip()
        .rstrip(":")
        .strip("*`'\"")
    )
    return text.replace("\\", "/").removeprefix("./") if _PATH.match(text) else None


def _path_before(lines: list[str], index: int) -> str | None:
    """The path named just above line `index`, skipping blank lines and a code fence."""
    for line in reversed(lines[max(0, index - 3) : index]):
        if not line.strip() or _FENCE.match(line):
            continue
        return _clean_path(line)
    return None


def parse_edits(reply: str) -> tuple[list[Edit], list[str]]:
    """The edits in a model's reply, in order, and the problems reading them."""
    lines = reply.splitlines()
    edits: list[Edit] = []
    problems: list[str] = []
    consumed: set[int] = set()  # lines inside SEARCH/REPLACE blocks
    last_path: str | None = None
    index = 0
    while index < len(lines):
        if not _SEARCH.match(lines[index]):
            index += 1
            continue
        start = index
        path = _path_before(lines, index) or last_path
        number = len(edits) + len(problems) + 1
        divider = next((i for i in range(index + 1, len(lines)) if _DIVIDER.match(lines[i])), None)
        end = (
            next((i for i in range(divider + 1, len(lines)) if _REPLACE.match(lines[i])), None)
            if divider
            else None
        )
        if divider is None or end is None:
            problems.append(
                f"edit {number}: a SEARCH block without its ======= and >>>>>>> REPLACE lines"
            )
            break
        if path is None:
            problems.append(f"edit {number}: no file path on the line before <<<<<<< SEARCH")
        else:
            edits.append(
                Edit(
                    path,
                    "search_replace",
                    "\n".join(lines[index + 1 : divider]),
                    "\n".join(lines[divider + 1 : end]),
                    number,
                )
            )
            last_path = path
        consumed.update(range(start, end + 1))
        index = end + 1

    # Whole definitions: a fenced block right after a path line, outside any SEARCH block.
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence or index in consumed:
            index += 1
            continue
        close = next(
            (i for i in range(index + 1, len(lines)) if lines[i].strip() == fence.group(1)), None
        )
        if close is None:
            break
        inside = set(range(index, close + 1))
        path = _path_before(lines, index)
        if path and not inside & consumed and fence.group(2).lower() in ("", "python", "py"):
            code = textwrap.dedent("\n".join(lines[index + 1 : close]))
            if re.match(r"(@|def |async def |class )", code.lstrip()):
                edits.append(Edit(path, "definition", "", code, len(edits) + len(problems) + 1))
        index = close + 1
    edits.sort(key=lambda e: e.number)
    return edits, problems


def _closest(file_lines: list[str], search_lines: list[str]) -> tuple[int, list[str]]:
    """The window of the file most like the SEARCH lines: (first line number, its lines)."""
    size = max(1, len(search_lines))
    target = "\n".join(search_lines)
    best, best_start = -1.0, 0
    for start in range(0, max(1, len(file_lines) - size + 1)):
        window = "\n".join(file_lines[start : start + size])
        matcher = difflib.SequenceMatcher(None, target, window, autojunk=False)
        if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, best_start = ratio, start
    return best_start + 1, file_lines[best_start : best_start + size]


def _find(file_lines: list[str], search_lines: list[str]) -> list[int]:
    size = len(search_lines)
    return [
        i for i in range(len(file_lines) - size + 1) if file_lines[i : i + size] == search_lines
    ]


def _split(text: str) -> tuple[list[str], bool]:
    """A file's lines and whether it ends with a newline."""
    return text.splitlines(), text.endswith("\n")


def _join(lines: list[str], newline_at_end: bool) -> str:
    return "\n".join(lines) + ("\n" if newline_at_end and lines else "")


def _apply_search_replace(edit: Edit, content: str | None) -> tuple[str | None, str]:
    """The new content, or None and the reason it did not apply."""
    where = f"edit {edit.number} ({edit.path})"
    search_lines = edit.search.splitlines()
    replace_lines = edit.replace.splitlines()
    if not edit.search.strip():
        if content is None:
            return _join(replace_lines, True), ""
        lines, _ = _split(content)
        return _join(lines + replace_lines, True), ""
    if content is None:
        return None, f"{where}: no such file; to create it, leave the SEARCH part empty"
    lines, newline_at_end = _split(content)
    places = _find(lines, search_lines)
    if len(places) == 1:
        at = places[0]
        return _join(
            lines[:at] + replace_lines + lines[at + len(search_lines) :], newline_at_end
        ), ""
    if places:
        numbers = ", ".join(str(p + 1) for p in places[:5])
        return None, (
            f"{where}: the SEARCH lines match {len(places)} places (lines {numbers}); "
            "include more of the surrounding lines so they match exactly one"
        )
    first, near = _closest(lines, search_lines)
    shown = "\n".join(near)
    return None, (
        f"{where}: the SEARCH lines do not match the file exactly. The closest lines "
        f"(from line {first}) are:\n```\n{shown}\n```\nCopy the lines to change exactly, "
        "with their indentation, into the SEARCH part."
    )


def _apply_definition(edit: Edit, content: str | None) -> tuple[str | None, str]:
    where = f"edit {edit.number} ({edit.path})"
    if content is None:
        return (
            None,
            f"{where}: no such file; to create it, use a SEARCH/REPLACE block with an empty SEARCH",
        )
    new_defs = [d for d in definitions(edit.path, edit.replace) if "." not in d.qualname]
    if not new_defs:
        return None, f"{where}: the code block holds no function or class"
    lines, newline_at_end = _split(content)
    block_lines = edit.replace.splitlines()
    # Replace from the bottom up, so earlier line numbers stay valid.
    existing = definitions(edit.path, content)
    replacements = []
    for new in new_defs:
        is_class = new.kind == "class"
        matches = [d for d in existing if d.name == new.name and (d.kind == "class") == is_class]
        if not matches:
            return None, (
                f"{where}: {edit.path} has no {'class' if is_class else 'function'} "
                f"named {new.name}; to add new code, use a SEARCH/REPLACE block"
            )
        if len(matches) > 1:
            spots = ", ".join(f"{m.qualname} (line {m.start_line})" for m in matches)
            return (
                None,
                f"{where}: {new.name} is defined more than once ({spots}); use a SEARCH/REPLACE block",
            )
        old = matches[0]
        indent = re.match(r"\s*", lines[old.start_line - 1]).group(0)
        body = block_lines[new.start_line - 1 : new.end_line]
        replacements.append((old, [indent + line if line.strip() else "" for line in body]))
    for old, body in sorted(replacements, key=lambda pair: -pair[0].start_line):
        lines[old.start_line - 1 : old.end_line] = body
    return _join(lines, newline_at_end), ""


def new_syntax_errors(text: str, original: str) -> list[str]:
    """The syntax errors an edit brought in: tree-sitter's (ERROR and MISSING nodes), and
    Python's. A check that already failed on the original is not the edit's fault (the file
    may be for another Python version), so it does not count."""
    errors = []
    if not syntax_errors(original):
        errors += syntax_errors(text)
    python_error = python_syntax_error(text)
    if python_error and not python_syntax_error(original):
        errors.append("python says " + python_error)
    return errors


def apply_edits(reply: str, read: Callable[[str], str | None]) -> EditResult:
    """Apply a reply's edits to files read through `read(path)` (None: no such file).

    Returns the changed files' new contents, or the problems (and no files) when any edit
    does not apply exactly or breaks a Python file's syntax.
    """
    edits, problems = parse_edits(reply)
    result = EditResult(edits=edits, problems=problems)
    if not edits and not problems:
        result.problems.append("no edits found in the reply. " + FORMAT_HELP)
        return result
    originals: dict[str, str | None] = {}
    current: dict[str, str] = {}
    for edit in edits:
        if edit.path not in originals:
            originals[edit.path] = read(edit.path)
        content = current.get(edit.path, originals[edit.path])
        apply = _apply_search_replace if edit.kind == "search_replace" else _apply_definition
        new_content, problem = apply(edit, content)
        if new_content is None:
            result.problems.append(problem)
        else:
            current[edit.path] = new_content
    changed = {path: text for path, text in current.items() if text != originals[path]}
    if not result.problems and edits and not changed:
        result.problems.append("the edits change nothing: the REPLACE lines equal the SEARCH lines")
    for path, text in changed.items():
        if path.endswith(".py"):
            errors = new_syntax_errors(text, originals[path] or "")
            if errors:
                result.problems.append(
                    f"{path}: after the edits the file does not parse: " + "; ".join(errors)
                )
    if not result.problems:
        result.files = changed
    return result
