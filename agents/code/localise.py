"""Where in a repository an issue lives: a map of its definitions, ranked against the issue.

tree-sitter parses every Python file (it never fails on broken code, so a half-written
repository still gets a map). The ranking puts what a traceback names first, innermost
frame highest, because that is where a crash happened; then it weighs the identifiers the
issue shares with each definition's name and file (rare words count more, as in tf-idf).
The model then sees the map and the code of the top candidates within a token budget.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Tree

from selfrepair.paths import is_test_file

# Directories that hold no code of the project's own.
_SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    "build",
    "dist",
    ".mypy_cache",
    ".pytest_cache",
    "site-packages",
}
_MAX_FILE_BYTES = 1_000_000  # generated or vendored blobs say nothing about an issue

_WORDS_IGNORED = {
    "self",
    "cls",
    "def",
    "class",
    "return",
    "the",
    "a",
    "an",
    "in",
    "of",
    "to",
    "is",
    "it",
    "and",
    "or",
    "not",
    "for",
    "with",
    "on",
    "at",
    "be",
    "this",
    "that",
    "file",
    "line",
    "py",
    "none",
    "true",
    "false",
    "traceback",
    "most",
    "recent",
    "call",
    "last",
    "error",
    "module",
    "test",
    "tests",
    "init",
}


@functools.lru_cache(maxsize=1)
def python_language() -> Language:
    return Language(tree_sitter_python.language())


def parse(source: str | bytes) -> Tree:
    data = source.encode("utf-8") if isinstance(source, str) else source
    return Parser(python_language()).parse(data)


def syntax_errors(source: str | bytes, *, limit: int = 3) -> list[str]:
    """Where tree-sitter could not parse, one line each ('line 3: missing ")"'); empty if none.

    Error recovery wraps the damage in nested ERROR nodes; the innermost ones are the spots
    a reader can act on.
    """
    tree = parse(source)
    if not tree.root_node.has_error:
        return []
    spots: list[str] = []

    def visit(node: Node) -> None:
        if len(spots) >= limit:
            return
        inner = [
            child
            for child in node.children
            if child.has_error or child.is_error or child.is_missing
        ]
        if node.is_missing:
            spots.append(f"line {node.start_point[0] + 1}: missing {node.type!r}")
        elif node.is_error and not any(child.is_error or child.has_error for child in inner):
            text = (node.text or b"").decode("utf-8", "replace").strip().splitlines()
            spots.append(
                f"line {node.start_point[0] + 1}: cannot parse {(text[0][:60] if text else '')!r}"
            )
        for child in inner:
            visit(child)

    visit(tree.root_node)
    return spots or ["the file does not parse"]


def python_syntax_error(source: str) -> str | None:
    """Python's own complaint, if it has one. It names the cause ("'(' was never closed")
    where tree-sitter sees the effect, and it catches what tree-sitter's grammar forgives
    (a body that is not indented)."""
    try:
        compile(source, "<edit>", "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"line {error.lineno}: {error.msg}"
    except ValueError as error:  # e.g. a null byte
        return str(error)
    return None


@dataclass(frozen=True)
class Definition:
    path: str  # relative to the repository root, with forward slashes
    kind: Literal["class", "function", "method"]
    name: str
    qualname: str  # Outer.inner for methods and nested definitions
    signature: str  # the header as written: "def add(self, item, price=0) -> None"
    start_line: int  # 1-based, inclusive; a decorator's lines count
    end_line: int

    def contains(self, line: int) -> bool:
        return self.start_line <= line <= self.end_line


def _signature(node: Node) -> str:
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    # a comment after the colon is no part of the header
    colons = [child for child in node.children if child.type == ":" and child.end_byte <= end]
    end = colons[-1].end_byte if colons else end
    header = node.text[: end - node.start_byte].decode("utf-8", "replace") if node.text else ""
    return " ".join(header.split()).rstrip(":").rstrip()


def definitions(path: str, source: str | bytes) -> list[Definition]:
    """Classes and functions in one file, in source order, nested ones with their qualname."""
    found: list[Definition] = []

    def visit(node: Node, outer: list[str], in_class: bool) -> None:
        for child in node.children:
            target, span = child, child
            if child.type == "decorated_definition":
                target = child.child_by_field_name("definition") or child
            if target.type in ("function_definition", "class_definition"):
                name_node = target.child_by_field_name("name")
                name = (
                    name_node.text.decode("utf-8", "replace")
                    if name_node and name_node.text
                    else "?"
                )
                is_class = target.type == "class_definition"
                kind = "class" if is_class else ("method" if in_class else "function")
                found.append(
                    Definition(
                        path=path,
                        kind=kind,
                        name=name,
                        qualname=".".join([*outer, name]),
                        signature=_signature(target),
                        start_line=span.start_point[0] + 1,
                        end_line=span.end_point[0] + 1,
                    )
                )
                body = target.child_by_field_name("body")
                if body is not None:
                    visit(body, [*outer, name], is_class)
            elif child.type in (
                "if_statement",
                "try_statement",
                "with_statement",
                "block",
                "else_clause",
                "except_clause",
                "finally_clause",
                "elif_clause",
            ):
                # Definitions under `if TYPE_CHECKING:` or `try: import ... except:` still count.
                visit(child, outer, in_class)

    visit(parse(source).root_node, [], False)
    return found


def python_files(root: Path) -> list[str]:
    """The repository's Python files, relative to root, sorted."""
    root = Path(root)
    files = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in relative.parts[:-1]):
            continue
        if path.is_file() and path.stat().st_size <= _MAX_FILE_BYTES:
            files.append(relative.as_posix())
    return sorted(files)


def repository_map(root: Path, files: Iterable[str] | None = None) -> list[Definition]:
    """Every definition in the repository's Python files (or in `files`)."""
    root = Path(root)
    found: list[Definition] = []
    for relative in files if files is not None else python_files(root):
        found.extend(definitions(relative, (root / relative).read_bytes()))
    return found


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str  # "" where the traceback format does not say


_PYTHON_FRAME = re.compile(
    r'File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<function>[\w<>.]+))?'
)
_PYTEST_FRAME = re.compile(
    r"^(?P<path>[\w./\\-]+\.py):(?P<line>\d+):(?: in (?P<function>[\w<>.]+))?", re.M
)


def traceback_frames(text: str) -> list[Frame]:
    """Frames of the tracebacks in `text` (Python's and pytest's formats), outermost first."""
    frames = []
    for pattern in (_PYTHON_FRAME, _PYTEST_FRAME):
        for match in pattern.finditer(text):
            frames.append(
                (
                    match.start(),
                    Frame(
                        path=match["path"].replace("\\", "/"),
                        line=int(match["line"]),
                        function=match["function"] or "",
                    ),
                )
            )
    return [frame for _, frame in sorted(frames, key=lambda pair: pair[0])]


def same_file(frame_path: str, repo_path: str) -> bool:
    """A traceback's path is often absolute on someone else's machine: match by suffix."""
    frame_parts = [p for p in frame_path.split("/") if p not in ("", ".")]
    repo_parts = repo_path.split("/")
    size = min(len(frame_parts), len(repo_parts))
    return size > 0 and frame_parts[-size:] == repo_parts[-size:]


def _words(text: str) -> list[str]:
    """Identifiers and their parts, lower-case: `parsePrice_v2` -> parseprice_v2, parse, price, v2."""
    words = []
    for identifier in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
        parts = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", identifier)
        for word in {identifier.lower(), *(p.lower() for p in parts)}:
            if len(word) > 1 and word not in _WORDS_IGNORED:
                words.append(word)
    return words


@dataclass(frozen=True)
class Ranked:
    definition: Definition
    score: float
    reasons: tuple[str, ...] = field(default=())


def rank(defs: list[Definition], issue: str) -> list[Ranked]:
    """Definitions, most likely place of the fix first; ties keep source order."""
    frames = traceback_frames(issue)
    issue_words = Counter(_words(issue))
    document_frequency: Counter[str] = Counter()
    def_words = []
    for d in defs:
        words = set(_words(d.name)) | set(_words(Path(d.path).stem))
        def_words.append(words)
        document_frequency.update(words)
    mentioned = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", issue))

    ranked = []
    for d, words in zip(defs, def_words, strict=True):
        score, reasons = 0.0, []
        for depth, frame in enumerate(frames, start=1):
            # The innermost frame (the last one) is where it broke: it weighs most.
            weight = 1.0 + depth / len(frames)
            if same_file(frame.path, d.path):
                if d.contains(frame.line):
                    # A class holds its methods' lines too: the method itself should win.
                    score += (30.0 if d.kind == "class" else 100.0) * weight
                    reasons.append(f"traceback line {frame.line}")
                else:
                    score += 3.0 * weight
            elif frame.function and frame.function == d.name:
                score += 40.0 * weight
                reasons.append(f"traceback names {d.name}")
        if d.name in mentioned or d.qualname in issue:
            score += 8.0
            reasons.append(f"issue names {d.name}")
        overlap = words & issue_words.keys()
        for word in overlap:
            score += math.log(1 + len(defs) / document_frequency[word])
        if overlap:
            reasons.append("shares " + ", ".join(sorted(overlap)))
        if is_test_file(d.path):
            score *= 0.5  # tests show the bug; the fix belongs in the code they test
        ranked.append(Ranked(d, round(score, 3), tuple(reasons)))
    order = sorted(range(len(ranked)), key=lambda i: -ranked[i].score)
    return [ranked[i] for i in order]


def approx_tokens(text: str) -> int:
    """About four characters a token for code: close enough to budget a prompt."""
    return (len(text) + 3) // 4


def render_context(
    root: Path,
    ranked: list[Ranked],
    budget_tokens: int = 3000,
    *,
    max_snippets: int = 4,
    count_tokens: Callable[[str], int] = approx_tokens,
) -> str:
    """The repository map and the code of the top candidates, within `budget_tokens`.

    The top candidate's code always comes first (cut if it alone is over budget); the map
    takes up to half of what is left; further candidates fill the rest.
    """
    root = Path(root)
    sources: dict[str, list[str]] = {}

    def lines_of(path: str) -> list[str]:
        if path not in sources:
            sources[path] = (root / path).read_text(encoding="utf-8", errors="replace").splitlines()
        return sources[path]

    def snippet(d: Definition) -> str:
        code = "\n".join(lines_of(d.path)[d.start_line - 1 : d.end_line])
        return f"{d.path} (lines {d.start_line}-{d.end_line}):\n```python\n{code}\n```"

    picks: list[Definition] = []
    for item in ranked:
        d = item.definition
        if item.score <= 0 or len(picks) >= max_snippets:
            break
        if any(
            p.path == d.path and (p.contains(d.start_line) or d.contains(p.start_line))
            for p in picks
        ):
            continue  # one of them holds the other: the better-ranked one is already shown
        picks.append(d)
    picks = picks or [r.definition for r in ranked[:1]]

    parts: list[str] = []
    left = budget_tokens
    if picks:
        first = snippet(picks[0])
        if count_tokens(first) > left:
            first = first[: max(0, left * 4 - 40)] + "\n... (cut to fit the budget)\n```"
        parts.append(first)
        left -= count_tokens(first)

    map_text = _render_map(ranked, budget_tokens=left // 2, count_tokens=count_tokens)
    if map_text:
        left -= count_tokens(map_text)

    for d in picks[1:]:
        text = snippet(d)
        if count_tokens(text) <= left:
            parts.append(text)
            left -= count_tokens(text)

    code = "\n\n".join(parts)
    sections = []
    if map_text:
        sections.append("Repository map (definitions by file, most relevant first):\n" + map_text)
    if code:
        sections.append("Code of the most likely places:\n" + code)
    return "\n\n".join(sections)


def _render_map(
    ranked: list[Ranked], *, budget_tokens: int, count_tokens: Callable[[str], int]
) -> str:
    best_in_file: dict[str, float] = {}
    by_file: dict[str, list[Definition]] = {}
    for item in ranked:
        d = item.definition
        best_in_file[d.path] = max(best_in_file.get(d.path, 0.0), item.score)
        by_file.setdefault(d.path, []).append(d)
    files = sorted(by_file, key=lambda path: (-best_in_file[path], path))
    lines: list[str] = []
    used = 0
    for index, path in enumerate(files):
        block = [path] + [
            f"{'    ' * d.qualname.count('.')}  {d.start_line}-{d.end_line}: {d.signature}"
            for d in sorted(by_file[path], key=lambda d: d.start_line)
        ]
        cost = count_tokens("\n".join(block)) + 1
        if used + cost > budget_tokens:
            lines.append(f"... ({len(files) - index} more files)")
            break
        lines.extend(block)
        used += cost
    return "\n".join(lines)
