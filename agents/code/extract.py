"""Code out of a model's reply, merged into the files under repair.

Models answer in many shapes: one fenced block, several, a block cut off by max_tokens, bare
code, the whole program or just the function that changed (often with example calls around
it). Every shape becomes whole new file contents:

- a reply that parses is merged by name: each top-level `def`/`class` replaces the one of the
  same name (a lone method replaces that method in its class), new ones are added after the
  last definition when the code uses them (a helper the fix calls; one nothing calls, such as a
  test or an example the model wrote beside its fix, is left out, unless the reply replaces
  nothing), new imports go after the file's imports; stray statements (example calls, prints,
  asserts) are dropped because running them at import breaks the tests;
- a replaced definition keeps what the model did not mean to change: small models rewrite a
  whole function to change one line, dropping its docstring and comments and reformatting
  the rest. The original docstring stays when the reply's definition has none, the original's
  comment lines stay, and lines whose code is the same token for token stay as they were
  written; the result must compile to exactly the reply's code, else the reply's definition
  is taken as it is;
- a reply that does not parse replaces the whole target file, so the test run reports the
  syntax error and the next step can fix it.

A reply with no usable code raises ExtractionError; callers turn it into a failed step.
"""

from __future__ import annotations

import ast
import difflib
import functools
import io
import re
import textwrap
import tokenize
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from selfrepair.types import Candidate

PYTHON_LANGUAGES = {"", "python", "python3", "py"}

_FENCE = re.compile(
    r"^[ \t]*(```|~~~)[ \t]*([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE
)
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
    starts = [
        i
        for i, line in enumerate(lines)
        if re.match(r"(def |class |async def |import |from \S+ import |@)", line)
    ]
    if not starts:
        return None
    body = lines[starts[0] :]
    for end in range(len(body), 0, -1):
        code = "\n".join(body[:end]) + "\n"
        if _parses(code) and re.search(r"^(async def|def|class) ", code, re.MULTILINE):
            return code
    return None


@functools.lru_cache(maxsize=32)  # a task's files, its reply and their definitions
def _parse(code: str) -> ast.Module:
    """The code's syntax tree, parsed once: merging one reply parses the same original, the
    same reply and the same definitions several times over, and parsing was most of what
    extraction cost. The trees are shared, so nothing here may change one."""
    return ast.parse(code)


def _parses(code: str) -> bool:
    try:
        _parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_candidate(
    reply: str,
    files: dict[str, str],
    base: dict[str, str],
    entry_file: str | None = None,
    *,
    keep_original: bool = True,
    in_scope: Collection[str] = (),
) -> Candidate:
    """The candidate a reply proposes.

    `files` are the task's original files; `base` the code the model was shown (the task's
    files with an earlier candidate laid over them). The candidate holds every file that
    differs from the original, so it stands alone. `keep_original=False` takes the reply's
    definitions whole (what benchmarks/over_editing.py compares against). `in_scope`: the
    names already bound where a function shown alone lives (agents.code.scope), which a reply
    restates rather than adds (see merge_code).
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
        merged[target] = merge_code(
            merged[target], block.code, keep_original=keep_original, in_scope=in_scope
        )

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
        ordered = ([entry_file] if entry_file in files else []) + [
            p for p in files if p != entry_file
        ]
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
        tree = _parse(code)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, Definition):
            names.add(node.name)
            if with_methods and isinstance(node, ast.ClassDef):
                names.update(n.name for n in node.body if isinstance(n, Definition))
    return names


def merge_code(
    original: str, reply_code: str, *, keep_original: bool = True, in_scope: Collection[str] = ()
) -> str:
    """The original file with the reply's definitions, imports and constants merged in by
    name; a replaced definition keeps what the reply did not change (see keep_unchanged).

    A function shown alone, with the names in scope where it lives (`in_scope`), comes back
    alone: a reply that restates its surroundings (the module's imports, constants and
    functions, its class with the sibling methods) would paste them into the function's file
    and from there into the module, so what binds a name in scope is left out, and the
    function is taken out of a restated class around it."""
    try:
        reply_tree = _parse(reply_code)
        original_tree = _parse(original)
    except (SyntaxError, ValueError):
        return reply_code  # whole-file replacement; the tests will say what is wrong
    shown = {n.name for n in original_tree.body if isinstance(n, Definition)}
    definitions = [
        n
        for n in _unwrapped(reply_tree.body, shown, in_scope)
        if isinstance(n, Definition) and (n.name in shown or n.name not in in_scope)
    ]
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
    replacing = [n for n in definitions if n.name in top_level or n.name in methods]
    used = _used_definitions(
        [n for n in definitions if n not in replacing], replacing + original_tree.body
    )
    new_definitions: list[str] = []
    for node in definitions:
        source = _source(reply_lines, node)
        if node in replacing:
            old = top_level[node.name] if node.name in top_level else methods[node.name][1]
            indent = re.match(r"\s*", lines[old.lineno - 1]).group(0)
            source = [indent + text if text.strip() else text for text in source]
            before = lines[_first_line(old) : old.end_lineno]
            edits.append(
                (
                    _first_line(old),
                    old.end_lineno,
                    keep_unchanged(before, source) if keep_original else source,
                )
            )
        elif node in used or not replacing:
            new_definitions.extend([""] + source)

    constants = _constants(reply_tree, reply_lines, original_tree, edits, in_scope)
    imports = _new_imports(reply_tree, original_tree, in_scope)

    # Apply replacements bottom-up so earlier line numbers stay valid.
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = replacement
    last_definition = max(
        (n.end_lineno for n in original_tree.body if isinstance(n, Definition)), default=None
    )
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


def _unwrapped(body: list[ast.stmt], shown: set[str], in_scope: Collection[str]) -> list[ast.stmt]:
    """The reply's statements, a class in scope that holds a function shown alone replaced by
    that function (the model answered with the method's class around it)."""
    unwrapped: list[ast.stmt] = []
    for node in body:
        inner = []
        if isinstance(node, ast.ClassDef) and node.name in in_scope and node.name not in shown:
            inner = [n for n in node.body if isinstance(n, Definition) and n.name in shown]
        unwrapped.extend(inner or [node])
    return unwrapped


def _used_definitions(new: list[ast.stmt], code: list[ast.stmt]) -> list[ast.stmt]:
    """The new definitions that `code` uses by name, directly or through another one used."""
    if not new:
        return []  # most replies only replace: walking the whole file would find nothing to add
    used: list[ast.stmt] = []
    names = _names_used(code)
    while added := [n for n in new if n not in used and n.name in names]:
        used += added
        names |= _names_used(added)
    return used


def _names_used(nodes: list[ast.stmt]) -> set[str]:
    """Every name the nodes read, as a variable or an attribute (`helper(x)`, `self.helper()`)."""
    names = set()
    for node in nodes:
        for child in ast.walk(node):
            if isinstance(child, ast.Name):
                names.add(child.id)
            elif isinstance(child, ast.Attribute):
                names.add(child.attr)
    return names


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
    reply_tree: ast.Module,
    reply_lines: list[str],
    original_tree: ast.Module,
    edits: list,
    in_scope: Collection[str] = (),
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
        if not isinstance(target, ast.Name) or target.id in in_scope:
            continue
        source = _source(reply_lines, node)
        if target.id in original:
            old = original[target.id]
            edits.append((_first_line(old), old.end_lineno, source))
        elif target.id.isupper():
            added.extend(source)
    return added


def _new_imports(
    reply_tree: ast.Module, original_tree: ast.Module, in_scope: Collection[str] = ()
) -> list[str]:
    """The reply's imports the original lacks, less those binding only names in scope."""
    present = {
        ast.unparse(n) for n in original_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    imports = []
    for node in reply_tree.body:
        if (
            isinstance(node, (ast.Import, ast.ImportFrom))
            and getattr(node, "module", None) != "__future__"
            and not all(_bound(alias) in in_scope for alias in node.names)
        ):
            text = ast.unparse(node)
            if text not in present and text not in imports:
                imports.append(text)
    return imports


def _bound(alias: ast.alias) -> str:
    """The name an import binds: `import a.b` binds a."""
    return alias.asname or alias.name.split(".")[0]


def _import_position(tree: ast.Module) -> int:
    """After the last top-level import, else after a module docstring, else the top."""
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if imports:
        return imports[-1].end_lineno
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno
    return 0


# -- keeping what the reply did not change --------------------------------------------------


def keep_unchanged(old: list[str], new: list[str]) -> list[str]:
    """The reply's definition `new` with what it did not mean to change taken back from the
    original definition `old` (both as lines, at the file's indentation): the docstring when
    `new` has none, comment lines `new` dropped, and lines of the same code (token for token)
    as they were written. The result compiles to exactly `new`'s code, with `new`'s docstring
    or else the original's; where keeping the lines would not, only the docstring is kept,
    and where that would not either, `new` is taken as it is."""
    documented = _with_docstring(old, new)
    merged = _with_original_lines(old, documented)
    if merged == new:
        # Nothing to take back: comparing syntax trees (most of what merging cost) would only
        # confirm `new`. (`merged` holds every line of `documented`, so `documented` is `new` too.)
        return new
    for kept in (merged, documented):
        if _same_code(kept, new, old):
            return kept
    return new


def _definition(lines: list[str]) -> Definition | None:
    """The definition the lines hold, parsed (None when they do not parse as one)."""
    try:
        tree = _parse(textwrap.dedent("\n".join(lines)))
    except (SyntaxError, ValueError):
        return None
    return tree.body[0] if len(tree.body) == 1 and isinstance(tree.body[0], Definition) else None


def _with_docstring(old: list[str], new: list[str]) -> list[str]:
    """`new` with the original's docstring when `new` has none; line numbers of the parsed
    definitions are those of the lines, since dedenting keeps them."""
    before, after = _definition(old), _definition(new)
    if (
        before is None
        or after is None
        or ast.get_docstring(before) is None
        or ast.get_docstring(after) is not None
    ):
        return new
    first = after.body[0]
    if first.lineno == after.lineno:  # a body on the `def` line itself: no line to put it before
        return new
    doc = before.body[0]
    old_indent = re.match(r"\s*", old[doc.lineno - 1]).group(0)
    new_indent = re.match(r"\s*", new[first.lineno - 1]).group(0)
    docstring = [
        new_indent + line[len(old_indent) :] if line.startswith(old_indent) else line
        for line in old[doc.lineno - 1 : doc.end_lineno]
    ]
    at = first.lineno - 1
    while at - 1 >= after.lineno and (
        not new[at - 1].strip() or new[at - 1].lstrip().startswith("#")
    ):
        at -= 1  # above the reply's comments that open the body: right under the signature
    return new[:at] + docstring + new[at:]


def _with_original_lines(old: list[str], new: list[str]) -> list[str]:
    """`new`, line by line against `old`: a line of the same code is taken as `old` wrote it
    (its comment, its spacing), and comment or blank lines `new` dropped come back."""
    old_keys, new_keys = _line_keys(tuple(old)), _line_keys(tuple(new))
    if old_keys is None or new_keys is None:
        return new
    merged: list[str] = []
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            merged += old[i1:i2]
        elif tag == "delete":
            merged += [
                line
                for line, key in zip(old[i1:i2], old_keys[i1:i2], strict=True)
                if key[0] in ("comment", "blank")
            ]
        elif tag == "insert":
            merged += new[j1:j2]
        else:
            merged += _comments_among(old[i1:i2], old_keys[i1:i2], new[j1:j2], new_keys[j1:j2])
    return merged


def _comments_among(
    old: list[str], old_keys: Sequence[tuple], new: list[str], new_keys: Sequence[tuple]
) -> list[str]:
    """Lines `new` rewrote, with the original's comments among them kept where they stood:
    the two are lined up by kind of line (code, comment, blank) alone."""
    merged: list[str] = []
    kinds = difflib.SequenceMatcher(
        None, [k[0] for k in old_keys], [k[0] for k in new_keys], autojunk=False
    )
    for _tag, i1, i2, j1, j2 in kinds.get_opcodes():
        merged += [
            line
            for line, key in zip(old[i1:i2], old_keys[i1:i2], strict=True)
            if key[0] == "comment" and key not in new_keys
        ]
        merged += new[j1:j2]
    return merged


@functools.lru_cache(maxsize=32)
def _line_keys(lines: tuple[str, ...]) -> tuple[tuple, ...] | None:
    """What each line says, for comparing two versions of a definition: ("blank",),
    ("comment", text) for a line holding only a comment, ("code", indentation, tokens) for a
    line where code starts (its comment left out), ("inside", line) for the later lines of a
    string or expression that started above. None when the lines do not tokenize. (Cached:
    the original definition is compared again with every reply.)"""
    text = "\n".join(lines) + "\n"
    tokens: dict[int, list[str]] = {}
    comments: dict[int, str] = {}
    skip = (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.strip()
            elif token.type not in skip:
                tokens.setdefault(token.start[0], []).append(_token_text(token))
    except (tokenize.TokenError, SyntaxError):
        return None
    keys: list[tuple] = []
    for number, line in enumerate(lines, start=1):
        if number in tokens:
            keys.append(("code", re.match(r"\s*", line).group(0), tuple(tokens[number])))
        elif number in comments:
            keys.append(("comment", comments[number]))
        elif not line.strip():
            keys.append(("blank",))
        else:
            keys.append(("inside", line))
    return tuple(keys)


def _token_text(token: tokenize.TokenInfo) -> str:
    """A token as the code means it: a string literal by its value, so that a reply that only
    changed the quotes of a string has not changed its line."""
    return _string_value(token.string) if token.type == tokenize.STRING else token.string


@functools.lru_cache(maxsize=1024)
def _string_value(literal: str) -> str:
    try:
        return repr(ast.literal_eval(literal))
    except (ValueError, SyntaxError):  # an f-string on an older Python, say
        return literal


def _same_code(merged: list[str], new: list[str], old: list[str]) -> bool:
    """`merged` compiles to `new`'s code, with `new`'s docstring, or the original's where
    `new` has none."""
    definition, wanted, original = _definition(merged), _definition(new), _definition(old)
    if definition is None or wanted is None:
        return False
    docstring = ast.get_docstring(wanted, clean=False)
    if docstring is None and original is not None:
        docstring = ast.get_docstring(original, clean=False)
    return ast.get_docstring(definition, clean=False) == docstring and _code(definition) == _code(
        wanted
    )


def _code(definition: Definition) -> str:
    """The definition's syntax tree without its docstring, as text."""
    body = definition.body
    if ast.get_docstring(definition, clean=False) is not None:
        body = body[1:]
    return ast.dump(type(definition)(**{**vars(definition), "body": body}))
