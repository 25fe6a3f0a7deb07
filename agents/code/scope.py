"""What is in scope where a function lives, for a model that is shown the function alone.

A function cut out of its module loses the names around it: a small model asked to fix a
method that should raise `LexerError` writes `raise exceptions.LexerError(...)` and fails
with a NameError, because the module's `from jmespath.exceptions import LexerError` was never
shown. So a function task carries a stub of its surroundings: the module's imports, for a
method its class (header, class attributes, the attributes `__init__` sets on `self`, its
sibling methods' signatures), then the module's other functions and classes (signatures) and
its constants, in that order of relevance and cut at a size cap. The names the module and
the class bind go with it, so the merge (agents.code.extract) can tell a reply that restates
them from one that adds something.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfrepair.agents.code.localise import Definition, definitions, parse
from tree_sitter import Node

MAX_LINES = 40
MAX_CHARS = 2400
VALUE_CHARS = 60  # a constant's value is shown when it is this short, else `NAME = ...`
# Module-level blocks whose imports and assignments still bind module names
# (`try: import simplejson as json except ImportError: import json`).
_BLOCKS = ("if_statement", "try_statement", "block", "else_clause", "except_clause")
_BLOCKS += ("elif_clause", "finally_clause", "with_statement")


@dataclass(frozen=True)
class Scope:
    text: str  # Python-like stub lines, most relevant first, within the cap
    names: tuple[str, ...]  # every name the module and the function's class bind (not cut)


def scope_of(
    path: str,
    source: str | bytes,
    qualname: str,
    *,
    max_lines: int = MAX_LINES,
    max_chars: int = MAX_CHARS,
) -> Scope:
    """The names in scope for the function `qualname` of the module `source` at `path`."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    root = parse(data).root_node
    defs = definitions(path, data)
    imports, import_names, assigned = _module_statements(root)
    outer, _, name = qualname.rpartition(".")
    owner = next((d for d in defs if d.qualname == outer and d.kind == "class"), None)

    lines = list(imports)
    class_names: list[str] = []
    if owner is not None:
        class_lines, class_names = _class_stub(root, owner, defs, name)
        lines += ["", *class_lines]
    module_defs = [d for d in defs if "." not in d.qualname and d.qualname not in (qualname, outer)]
    if module_defs:
        lines += [""] + [f"{d.signature}: ..." for d in module_defs]
    constants = [text for _, text in assigned]
    if constants:
        lines += ["", *constants]
    names = [
        *import_names,
        *(n for n, _ in assigned),
        *(d.name for d in defs if "." not in d.qualname),
    ]
    return Scope(
        text=_capped(lines, max_lines, max_chars),
        names=tuple(dict.fromkeys([*names, *class_names])),
    )


def describe(scope: Scope, qualname: str, path: str) -> str:
    """The section of a function task's specification that shows the scope."""
    if not scope.text:
        return ""
    return (
        f"Names in scope where `{qualname}` lives ({path}; bodies left out). Use them as they "
        "are, without importing or redefining them, and reply with the fixed function only:\n"
        f"```python\n{scope.text}\n```"
    )


def _module_statements(root: Node) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(import lines, the names they bind, (name, `NAME = value` line) per module assignment)."""
    imports: list[str] = []
    names: list[str] = []
    assigned: list[tuple[str, str]] = []

    def visit(node: Node) -> None:
        for child in node.children:
            if child.type in ("import_statement", "import_from_statement"):
                imports.append(" ".join(_text(child).split()))
                names.extend(_imported_names(child))
            elif child.type == "expression_statement":
                assignment = child.children[0] if child.children else None
                if assignment is not None and assignment.type == "assignment":
                    for name in _targets(assignment):
                        assigned.append((name, _assignment_line(name, assignment)))
            elif child.type in _BLOCKS:
                visit(child)

    visit(root)
    return imports, names, list({name: (name, text) for name, text in assigned}.values())


def _imported_names(node: Node) -> list[str]:
    """The names an import binds: `import a.b` binds a, `import a as b` and `from x import a
    as b` bind b; `from x import *` binds nothing we can name."""
    names = []
    module = node.child_by_field_name("module_name")
    for child in node.children_by_field_name("name"):
        if child is module:
            continue
        if child.type == "aliased_import":
            alias = child.child_by_field_name("alias")
            names.append(_text(alias))
        elif node.type == "import_statement":
            names.append(_text(child).split(".")[0])
        else:
            names.append(_text(child))
    return [n for n in names if n]


def _targets(assignment: Node) -> list[str]:
    left = assignment.child_by_field_name("left")
    if left is None:
        return []
    if left.type == "identifier":
        return [_text(left)]
    if left.type in ("pattern_list", "tuple_pattern"):
        return [_text(c) for c in left.children if c.type == "identifier"]
    return []


def _assignment_line(name: str, assignment: Node) -> str:
    value = assignment.child_by_field_name("right")
    text = " ".join(_text(value).split()) if value is not None else ""
    if not text or len(text) > VALUE_CHARS or "\n" in _text(value):
        text = "..."
    return f"{name} = {text}"


def _class_stub(
    root: Node, owner: Definition, defs: list[Definition], name: str
) -> tuple[list[str], list[str]]:
    """The class's stub lines and the names it binds: its header, class attributes, what
    `__init__` sets on self, and its other methods' signatures."""
    node = _class_node(root, owner.start_line)
    attributes: list[tuple[str, str]] = []
    body = node.child_by_field_name("body") if node is not None else None
    for child in body.children if body is not None else []:
        if child.type == "expression_statement" and child.children:
            assignment = child.children[0]
            if assignment.type == "assignment":
                attributes += [(n, _assignment_line(n, assignment)) for n in _targets(assignment)]
    methods = [d for d in defs if d.qualname.rpartition(".")[0] == owner.qualname]
    lines = [f"{owner.signature}:"] + [f"    {text}" for _, text in attributes]
    init = next((d for d in methods if d.name == "__init__"), None)
    on_self = _self_attributes(root, init) if init is not None else []
    if on_self:
        lines.append("    # set in __init__: " + ", ".join(f"self.{a}" for a in on_self))
    for method in methods:
        if method.name != name:
            lines += [f"    {line}" for line in _decorators(root, method)]
            lines.append(f"    {method.signature}: ...")
    return lines, [n for n, _ in attributes] + [d.name for d in methods]


def _decorators(root: Node, method: Definition) -> list[str]:
    """A method's decorator lines (`@property` says how it is called)."""
    lines = root.text.decode("utf-8", "replace").splitlines() if root.text else []
    found = []
    for line in lines[method.start_line - 1 : method.end_line]:
        if not line.strip().startswith("@"):
            break
        found.append(" ".join(line.split()))
    return found


def _class_node(root: Node, start_line: int) -> Node | None:
    """The class_definition whose span starts on `start_line` (a decorator's line counts)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.start_point[0] + 1 == start_line:
            target = (
                node.child_by_field_name("definition")
                if node.type == "decorated_definition"
                else node
            )
            if target is not None and target.type == "class_definition":
                return target
        if node.start_point[0] + 1 <= start_line <= node.end_point[0] + 1:
            stack.extend(node.children)
    return None


def _self_attributes(root: Node, init: Definition) -> list[str]:
    """The attributes `__init__` assigns on self, in order, once each."""
    found: list[tuple[int, str]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.end_point[0] + 1 < init.start_line or node.start_point[0] + 1 > init.end_line:
            continue
        if node.type == "assignment" and init.contains(node.start_point[0] + 1):
            left = node.child_by_field_name("left")
            targets = [left] if left is not None and left.type == "attribute" else []
            if left is not None and left.type in ("pattern_list", "tuple_pattern"):
                targets = [c for c in left.children if c.type == "attribute"]
            for target in targets:
                obj = target.child_by_field_name("object")
                attribute = target.child_by_field_name("attribute")
                if obj is not None and _text(obj) == "self" and attribute is not None:
                    found.append((target.start_byte, _text(attribute)))
        stack.extend(node.children)
    return list(dict.fromkeys(name for _, name in sorted(found)))


def _capped(lines: list[str], max_lines: int, max_chars: int) -> str:
    """The lines up to the cap (the first ones are the most relevant), and a note of the rest."""
    while lines and not lines[0]:
        lines = lines[1:]
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if len(kept) + 1 > max_lines - 1 or size + len(line) + 1 > max_chars - 40:
            rest = sum(1 for text in lines[index:] if text)
            if rest:
                kept.append(f"# ... {rest} more lines left out")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept).strip()


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""
