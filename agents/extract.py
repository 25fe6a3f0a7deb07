"""Code out of a model's reply, merged into the files under repair.

Models answer in many shapes: one fenced block, several, a block cut off by max_tokens, bare
code, the whole program or just the function that changed (often with example calls around
it). Every shape becomes whole new file contents:

- a reply that parses is merged by name: each top-level `def`/`class` replaces the one of the
  same name (a lone method replaces that method in its class), new ones are added after the
  last definition, new imports go after the file's imports; stray statements (example calls,
  prints, asserts) are dropped because running them at import breaks the tests;
- a reply that does not parse replaces the whole target file, so the test run reports the
  syntax error and the next step can fix it.

A reply with no usable code raises ExtractionError; callers turn it into a failed step.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from selfrepair.types import Candidate

PYTHON_LANGUAGES = {"", "python", "python3", "py"}

_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
_OPEN_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([^\n]*)\n", re.MULTILINE)
_PATH_COMMENT = re.compile(r"^#\s*(?:file(?:name)?:\s*)?(\S+\.py)\s*$")

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


class ExtractionError(Exception):
    """The reply holds no code that can become a candidate; the message says why."""


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str
    path: str | None = None  # a file the reply names for this block


def code_blocks(reply: str) -> list[CodeBlock]:
    """Fenced blocks in order; a last fence left open (cut by max_tokens) runs to the end."""
    blocks = []
    end = 0
    for match in _FENCE.finditer(reply):
        blocks.append(_block(match.group(2), match.group(3)))
        end = match.end()
    rest = _OPEN_FENCE.search(reply, end)
    if rest:
        blocks.append(_block(rest.group(2), reply[rest.end() :]))
    return [b for b in blocks if b.code.strip()]


def _block(info: str, code: str) -> CodeBlock:
    words = info.strip().split()
    language = words[0].lower() if words else ""
    path = next((w.split("=", 1)[-1].strip("\"'") for w in words if w.endswith(".py")), None)
    if language.endswith(".py"):
        language = "python"
    lines = code.splitlines()
    if lines and (hint := _PATH_COMMENT.match(lines[0].strip())):
        path = path or hint.group(1)
    return CodeBlock(language=language, code=textwrap.dedent(code).rstrip() + "\n", path=path)


def bare_code(reply: str) -> str | None:
    """Code written without fences: from the first line that starts a definition or an
    import to the longest prefix of what follows that parses."""
    lines = reply.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"(def |class |async def |import |from \S+ import |@)", line)]
    if not starts:
        return None
    body = lines[starts[0] :]
    for end in range(len(body), 0, -1):
        code = "\n".join(body[:end]) + "\n"
        if _parses(code) and re.search(r"^(async def|def|class) ", code, re.MULTILINE):
            return code
    return None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_candidate(
    reply: str, files: dict[str, str], base: dict[str, str], entry_file: str | None = None
) -> Candidate:
    """The candidate a reply proposes.

    `files` are the task's original files; `base` the code the model was shown (the task's
    files with an earlier candidate laid over them). The candidate holds every file that
    differs from the original, so it stands alone.
    """
    blocks = [b for b in code_blocks(reply) if b.language in PYTHON_LANGUAGES]
    if not blocks:
        code = bare_code(reply)
        if code is None:
            raise ExtractionError("no code in the reply")
        blocks = [CodeBlock(language="python", code=code)]

    merged = dict(base)
    for block in blocks:
        target = _target_file(block, merged, entry_file)
        merged[target] = merge_code(merged[target], block.code)

    if merged == base:
        raise ExtractionError("the reply's code is the same as the code it was asked to fix")
    changed = {path: text for path, text in merged.items() if files.get(path) != text}
    if not changed:
        raise ExtractionError("the reply's code is the same as the original code")
    return Candidate(files=changed)


def _target_file(block: CodeBlock, files: dict[str, str], entry_file: str | None) -> str:
    """The file a block belongs to: the one it names, else the one defining its functions,
    else the entry file, else the only file."""
    if block.path:
        for path in files:
            if path == block.path or path.endswith("/" + block.path):
                return path
    names = _defined_names(block.code)
    if names:
        ordered = ([entry_file] if entry_file in files else []) + [p for p in files if p != entry_file]
        for path in ordered:
            if names & _defined_names(files[path], with_methods=True):
                return path
    if entry_file in files:
        return entry_file
    if len(files) == 1:
        return next(iter(files))
    raise ExtractionError("the reply's code matches none of the files under repair")


def _defined_names(code: str, with_methods: bool = False) -> set[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, Definition):
            names.add(node.name)
            if with_methods and isinstance(node, ast.ClassDef):
                names.update(n.name for n in node.body if isinstance(n, Definition))
    return names


def merge_code(original: str, reply_code: str) -> str:
    """The original file with the reply's definitions, imports and constants merged in by name."""
    try:
        reply_tree = ast.parse(reply_code)
        original_tree = ast.parse(original)
    except (SyntaxError, ValueError):
        return reply_code  # whole-file replacement; the tests will say what is wrong
    definitions = [n for n in reply_tree.body if isinstance(n, Definition)]
    if not definitions:
        if any(isinstance(n, Definition) for n in original_tree.body):
            raise ExtractionError("the reply's code defines no function or class")
        return reply_code  # a script replaces a script

    lines = original.splitlines()
    reply_lines = reply_code.splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # (start, end) line slices to replace, 0-based
    top_level = {n.name: n for n in original_tree.body if isinstance(n, Definition)}
    methods = {
        n.name: (cls, n)
        for cls in original_tree.body
        if isinstance(cls, ast.ClassDef)
        for n in cls.body
        if isinstance(n, Definition)
    }
    new_definitions: list[str] = []
    for node in definitions:
        source = _source(reply_lines, node)
        if node.name in top_level:
            old = top_level[node.name]
            edits.append((_first_line(old), old.end_lineno, source))
        elif node.name in methods:
            _, old = methods[node.name]
            indent = re.match(r"\s*", lines[old.lineno - 1]).group(0)
            edits.append((_first_line(old), old.end_lineno, [indent + l if l.strip() else l for l in source]))
        else:
            new_definitions.extend([""] + source)

    constants = _constants(reply_tree, reply_lines, original_tree, edits)
    imports = _new_imports(reply_tree, original_tree)

    # Apply replacements bottom-up so earlier line numbers stay valid.
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = replacement
    last_definition = max((n.end_lineno for n in original_tree.body if isinstance(n, Definition)), default=None)
    if new_definitions:
        at = len(lines) if last_definition is None else _shifted(last_definition, edits)
        lines[at:at] = new_definitions
    if constants:
        first = next((n for n in original_tree.body if isinstance(n, Definition)), None)
        at = len(lines) if first is None else _shifted(_first_line(first), edits)
        lines[at:at] = constants + [""]
    if imports:
        at = _shifted(_import_position(original_tree), edits)
        lines[at:at] = imports
    return "\n".join(lines).rstrip() + "\n"


def _first_line(node: ast.stmt) -> int:
    """0-based index of a node's first line, its decorators included."""
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators]) - 1


def _source(lines: list[str], node: ast.stmt) -> list[str]:
    return textwrap.dedent("\n".join(lines[_first_line(node) : node.end_lineno])).splitlines()


def _shifted(line: int, edits: list[tuple[int, int, list[str]]]) -> int:
    """Where 0-based `line` of the original lands after the edits above it."""
    return line + sum(len(new) - (end - start) for start, end, new in edits if end <= line)


def _constants(
    reply_tree: ast.Module, reply_lines: list[str], original_tree: ast.Module, edits: list
) -> list[str]:
    """UPPER_CASE assignments: replaced in place where the original has them, else returned
    to be added. Other assignments are left out: in a reply they are mostly example usage."""
    original = {
        target.id: node
        for node in original_tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    added = []
    for node in reply_tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        source = _source(reply_lines, node)
        if target.id in original:
            old = original[target.id]
            edits.append((_first_line(old), old.end_lineno, source))
        elif target.id.isupper():
            added.extend(source)
    return added


def _new_imports(reply_tree: ast.Module, original_tree: ast.Module) -> list[str]:
    present = {ast.unparse(n) for n in original_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    imports = []
    for node in reply_tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            text = ast.unparse(node)
            if text not in present and text not in imports:
                imports.append(text)
    return imports


def _import_position(tree: ast.Module) -> int:
    """After the last top-level import, else after a module docstring, else the top."""
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if imports:
        return imports[-1].end_lineno
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno
    return 0
