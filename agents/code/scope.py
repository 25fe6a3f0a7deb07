"""What is in scope where a function lives, for a model that is shown the function alone.

A function cut out of its module loses the names around it: a small model asked to fix a
method that should raise `LexerError` writes `raise exceptions.LexerError(...)` and fails
with a NameError, because the module's `from jmespath.exceptions import LexerError` was never
shown. So a function task carries its surroundings as labelled lists of names, most relevant
first and cut at a size cap: the module's imports, for a method its class (class attributes,
the attributes `__init__` sets on self, its other methods' signatures), the module's other
functions (signatures) and classes, and its constants. Lists, not a stub of the module: shown
as Python, the module's stub was copied back by Qwen2.5-Coder-0.5B into its reply until the
token limit cut it (docs/results.md). The names the module and the class bind go with it, so
the merge (agents.code.extract) can tell a reply that restates them from one that adds
something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfrepair.agents.code.localise import Definition, definitions, parse
from tree_sitter import Node

MAX_LINES = 8
MAX_CHARS = 1500
# Module-level blocks whose imports and assignments still bind module names
# (`try: import simplejson as json except ImportError: import json`).
_BLOCKS = ("if_statement", "try_statement", "block", "else_clause", "except_clause")
_BLOCKS += ("elif_clause", "finally_clause", "with_statement")


@dataclass(frozen=True)
class Scope:
    text: str  # "Label: item; item" lines, most relevant first, within the cap
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

    sections: list[tuple[str, list[str]]] = [("Imports", imports)]
    class_names: list[str] = []
    if owner is not None:
        class_sections, class_names = _class_lists(root, owner, defs, name)
        sections += class_sections
    module_defs = [d for d in defs if "." not in d.qualname and d.qualname not in (qualname, outer)]
    sections += [
        ("Functions", [_call(d.signature) for d in module_defs if d.kind == "function"]),
        ("Classes", [_call(d.signature) for d in module_defs if d.kind == "class"]),
        ("Constants and other module names", assigned),
    ]
    names = [
        *import_names,
        *assigned,
        *(d.name for d in defs if "." not in d.qualname),
    ]
    return Scope(
        text=_capped(sections, max_lines, max_chars),
        names=tuple(dict.fromkeys([*names, *class_names])),
    )


def describe(scope: Scope, qualname: str, path: str) -> str:
    """The section of a function task's specification that shows the scope."""
    if not scope.text:
        return ""
    return (
        f"Names already in scope in {path}, where `{qualname}` lives (imported or defined "
        "there): use them as they are, without importing or defining them again. Reply with "
        f"the fixed function only, not these.\n{scope.text}"
    )


def _module_statements(root: Node) -> tuple[list[str], list[str], list[str]]:
    """(the import statements, the names they bind, the names module assignments bind)."""
    imports: list[str] = []
    names: list[str] = []
    assigned: list[str] = []

    def visit(node: Node) -> None:
        for child in node.children:
            if child.type in ("import_statement", "import_from_statement"):
                imports.append(" ".join(_text(child).split()))
                names.extend(_imported_names(child))
            elif child.type == "expression_statement":
                assignment = child.children[0] if child.children else None
                if assignment is not None and assignment.type == "assignment":
                    assigned.extend(_targets(assignment))
            elif child.type in _BLOCKS:
                visit(child)

    visit(root)
    return imports, names, list(dict.fromkeys(assigned))


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


def _call(signature: str) -> str:
    """`def f(a, b=1) -> int` -> `f(a, b=1) -> int`; `class C(B)` -> `C(B)`."""
    for keyword in ("async def ", "def ", "class "):
        if signature.startswith(keyword):
            signature = signature[len(keyword) :]
            break
    # a signature written over several lines keeps its brackets' padding and trailing comma
    return re.sub(r",?\s+\)", ")", re.sub(r"\(\s+", "(", signature))


def _class_lists(
    root: Node, owner: Definition, defs: list[Definition], name: str
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The class's labelled lists (its attributes, what `__init__` sets on self, its other
    methods' signatures) and the names it binds."""
    node = _class_node(root, owner.start_line)
    attributes: list[str] = []
    body = node.child_by_field_name("body") if node is not None else None
    for child in body.children if body is not None else []:
        if child.type == "expression_statement" and child.children:
            if child.children[0].type == "assignment":
                attributes += _targets(child.children[0])
    methods = [d for d in defs if d.qualname.rpartition(".")[0] == owner.qualname]
    init = next((d for d in methods if d.name == "__init__"), None)
    on_self = _self_attributes(root, init) if init is not None else []
    label = f"class {_call(owner.signature)}"
    sections = [
        (f"Attributes of {label}", attributes),
        (f"Set on self in {owner.name}.__init__", [f"self.{a}" for a in on_self]),
        (
            f"Other methods of {owner.name}",
            [_decorated(root, d) + _call(d.signature) for d in methods if d.name != name],
        ),
    ]
    return sections, attributes + [d.name for d in methods]


def _decorated(root: Node, method: Definition) -> str:
    """A method's decorators, each followed by a space (`@property ` says how it is called)."""
    lines = root.text.decode("utf-8", "replace").splitlines() if root.text else []
    found = ""
    for line in lines[method.start_line - 1 : method.end_line]:
        if not line.strip().startswith("@"):
            break
        found += " ".join(line.split()) + " "
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


def _capped(sections: list[tuple[str, list[str]]], max_lines: int, max_chars: int) -> str:
    """One `Label: item; item` line per non-empty list, in order (the first are the most
    relevant), as many items as fit in `max_lines` lines and `max_chars` characters; a last
    line counts what was left out."""
    lines: list[str] = []
    left_out = 0
    room = max_chars - 40  # for the line that counts what was left out
    for label, items in sections:
        if not items:
            continue
        if left_out or len(lines) >= max_lines - 1:
            left_out += len(items)
            continue
        line = f"{label}:"
        for index, item in enumerate(items):
            text = (" " if index == 0 else "; ") + item
            if sum(len(x) + 1 for x in lines) + len(line) + len(text) > room:
                left_out += len(items) - index
                break
            line += text
        if not line.endswith(":"):
            lines.append(line)
    if left_out:
        lines.append(f"({left_out} more names left out)")
    return "\n".join(lines)


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""
