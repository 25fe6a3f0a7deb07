"""Function-level mutations found with tree-sitter: where a small edit makes a plausible bug.

The unit is a function or method that is not nested in another function (a nested function
is part of its outer one's body). Sites are looked for in the body only: the signature,
decorators and docstring are what the model is shown as the specification, so they stay.

Families (SWE-smith's procedural modifiers, and the classic mutation operators):

  operator_swap      a + b -> a - b, *=, //, %, <<, &, ... (not on string literals)
  comparison_swap    < <-> <=, > <-> >=, == <-> !=, in <-> not in, is <-> is not
  boolean_swap       and <-> or
  off_by_one         +-1 on range() arguments, slice bounds and integer-like indices
  negate_condition   if/elif/while/ternary condition c -> not c (or not c -> c)
  drop_condition     an operand of and/or in a condition dropped, or an if-guard removed
                     (its body then always runs)
  swap_arguments     two adjacent positional arguments of a call swapped
  change_constant    an integer or float literal changed, True <-> False
  drop_statement     an assignment, call, raise, assert, break or continue deleted
  drop_return        a `return VALUE` deleted (the function falls through)
  wrong_variable     a read of a local variable replaced by another local of the function

Each site gives one Mutation (a byte span of the file and its replacement). `candidates`
filters out those that do not compile or do not change the code's AST, and orders the rest
so that the first few tried for a function cover many families.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from selfrepair.agents.code.localise import parse
from tree_sitter import Node

FAMILIES = (
    "operator_swap",
    "comparison_swap",
    "boolean_swap",
    "off_by_one",
    "negate_condition",
    "drop_condition",
    "swap_arguments",
    "change_constant",
    "drop_statement",
    "drop_return",
    "wrong_variable",
)
LM_REWRITE = "lm_rewrite"  # a model re-implements the function from its signature and docstring


@dataclass(frozen=True)
class Function:
    """A mutation unit: where it is in its file, and how it is indented."""

    path: str
    qualname: str
    start: int  # byte offsets in the file; the span starts at the first decorator
    end: int
    def_start: int  # the `def` (or `async`) keyword
    body_start: int  # the first statement after the docstring (== end when there is none)
    start_line: int  # 1-based, decorators included
    def_line: int  # 1-based line of the `def`
    end_line: int
    indent: str  # the whitespace before the `def` line's first character

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def contains_line(self, line: int) -> bool:
        return self.start_line <= line <= self.end_line

    def text(self, source: bytes) -> str:
        return source[self.start : self.end].decode("utf-8")


@dataclass(frozen=True)
class Mutation:
    family: str
    path: str
    function: str  # the qualname of the unit it is in
    start: int  # byte span of the file that is replaced
    end: int
    replacement: str
    note: str  # what changed, for people: "'<' -> '<='"

    @property
    def key(self) -> str:
        text = f"{self.path}\0{self.function}\0{self.family}\0{self.start}\0{self.end}\0{self.replacement}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.replacement.encode("utf-8") + source[self.end :]


# ---------------------------------------------------------------- units


def functions(path: str, source: bytes) -> list[Function]:
    """Top-level functions and methods (of classes at any depth), in source order."""
    found: list[Function] = []
    tree = parse(source)

    def visit(node: Node, outer: list[str]) -> None:
        for child in node.children:
            target = child
            if child.type == "decorated_definition":
                target = child.child_by_field_name("definition") or child
            if target.type == "function_definition":
                found.append(unit(path, source, child, target, outer))
            elif target.type == "class_definition":
                name = _text(target.child_by_field_name("name"))
                body = target.child_by_field_name("body")
                if body is not None:
                    visit(body, [*outer, name])
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
                visit(child, outer)

    visit(tree.root_node, [])
    return found


def unit(path: str, source: bytes, span: Node, definition: Node, outer: list[str]) -> Function:
    body = definition.child_by_field_name("body")
    statements = [c for c in body.named_children if c.type != "comment"] if body is not None else []
    first = statements[0] if statements else None
    if first is not None and is_docstring(first):
        rest = statements[1:]
    else:
        rest = statements
    line_start = source.rfind(b"\n", 0, span.start_byte) + 1
    indent = source[line_start : span.start_byte].decode("utf-8", "replace")
    return Function(
        path=path,
        qualname=".".join([*outer, _text(definition.child_by_field_name("name"))]),
        start=span.start_byte,
        end=span.end_byte,
        def_start=definition.start_byte,
        body_start=rest[0].start_byte if rest else span.end_byte,
        start_line=span.start_point[0] + 1,
        def_line=definition.start_point[0] + 1,
        end_line=span.end_point[0] + 1,
        indent=indent if not indent.strip() else "",
    )


def is_docstring(node: Node) -> bool:
    return (
        node.type == "expression_statement"
        and node.named_child_count == 1
        and node.named_children[0].type in ("string", "concatenated_string")
    )


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


# ---------------------------------------------------------------- sites


def function_node(tree, function: Function) -> Node:
    """The function_definition node of a unit in the file's parsed tree."""
    node = tree.root_node.descendant_for_byte_range(function.def_start, function.def_start + 1)
    while node is not None and node.type != "function_definition":
        node = node.parent
    if node is None:
        raise ValueError(f"{function.path}: no function at byte {function.def_start}")
    return node


def body_nodes(definition: Node, body_start: int) -> Iterator[Node]:
    """Every node of the body after the docstring, depth first."""
    body = definition.child_by_field_name("body")
    if body is None:
        return
    stack = [c for c in reversed(body.children) if c.start_byte >= body_start]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


OPERATORS = {
    "+": "-",
    "-": "+",
    "*": "//",
    "/": "*",
    "//": "/",
    "%": "//",
    "**": "*",
    "<<": ">>",
    ">>": "<<",
    "&": "|",
    "|": "&",
    "^": "&",
}
COMPARISONS = {
    "<": "<=",
    "<=": "<",
    ">": ">=",
    ">=": ">",
    "==": "!=",
    "!=": "==",
    "in": "not in",
    "not in": "in",
    "is": "is not",
    "is not": "is",
}
ATOMS = {
    "identifier",
    "integer",
    "float",
    "call",
    "attribute",
    "subscript",
    "parenthesized_expression",
    "true",
    "false",
    "none",
    "string",
    "list",
    "tuple",
    "dictionary",
    "set",
}
STRINGS = {"string", "concatenated_string"}


def mutation_sites(
    source: bytes, function: Function, rng: random.Random | None = None, tree=None
) -> list[Mutation]:
    """Every procedural mutation of one unit, before any check that it compiles. `tree` is
    the file's tree-sitter tree when the caller has parsed it already."""
    definition = function_node(tree or parse(source), function)
    nodes = list(body_nodes(definition, function.body_start))
    rng = rng or random.Random(0)
    found: list[Mutation] = []

    def add(family: str, node_or_span, replacement: str, note: str) -> None:
        start, end = (
            (node_or_span.start_byte, node_or_span.end_byte)
            if isinstance(node_or_span, Node)
            else node_or_span
        )
        found.append(
            Mutation(family, function.path, function.qualname, start, end, replacement, note)
        )

    for finder in FINDERS.values():
        finder(nodes, definition, function, add, rng)
    return found


Add = Callable[..., None]


def find_operator_swap(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if node.type == "binary_operator":
            operator = node.child_by_field_name("operator")
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            symbol = _text(operator)
            if (
                symbol in OPERATORS
                and left is not None
                and right is not None
                and not (left.type in STRINGS or right.type in STRINGS)
            ):
                add(
                    "operator_swap",
                    operator,
                    OPERATORS[symbol],
                    f"{symbol!r} -> {OPERATORS[symbol]!r}",
                )
        elif node.type == "augmented_assignment":
            operator = node.child_by_field_name("operator")
            symbol = _text(operator).removesuffix("=")
            right = node.child_by_field_name("right")
            if symbol in OPERATORS and right is not None and right.type not in STRINGS:
                add(
                    "operator_swap",
                    operator,
                    OPERATORS[symbol] + "=",
                    f"'{symbol}=' -> '{OPERATORS[symbol]}='",
                )


def find_comparison_swap(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if node.type == "comparison_operator":
            for operator in node.children_by_field_name("operators"):
                symbol = " ".join(_text(operator).split())
                if symbol in COMPARISONS:
                    add(
                        "comparison_swap",
                        operator,
                        COMPARISONS[symbol],
                        f"{symbol!r} -> {COMPARISONS[symbol]!r}",
                    )


def find_boolean_swap(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if node.type == "boolean_operator":
            operator = node.child_by_field_name("operator")
            symbol = _text(operator)
            swapped = {"and": "or", "or": "and"}.get(symbol)
            if swapped:
                add("boolean_swap", operator, swapped, f"{symbol!r} -> {swapped!r}")


def plus_minus_one(node: Node) -> list[tuple[str, str]]:
    """An index-like expression one more and one less: (replacement, note)."""
    text = _text(node)
    if node.type == "integer" and re.fullmatch(r"\d+", text):
        value = int(text)
        options = [(str(value + 1), f"{text} -> {value + 1}")]
        if value > 0:
            options.append((str(value - 1), f"{text} -> {value - 1}"))
        return options
    if node.type == "unary_operator" and _text(node.child_by_field_name("operator")) == "-":
        argument = node.child_by_field_name("argument")
        if (
            argument is not None
            and argument.type == "integer"
            and re.fullmatch(r"\d+", _text(argument))
        ):
            value = -int(_text(argument))
            return [(str(value - 1), f"{text} -> {value - 1}")] + (
                [(str(value + 1), f"{text} -> {value + 1}")] if value + 1 else []
            )
    if node.type == "binary_operator" and _text(node.child_by_field_name("operator")) in ("+", "-"):
        right = node.child_by_field_name("right")
        left = node.child_by_field_name("left")
        if right is not None and left is not None and _text(right) == "1":
            return [(_text(left), f"{text} -> {_text(left)}")]
    if node.type in (
        "identifier",
        "call",
        "attribute",
        "subscript",
        "binary_operator",
        "parenthesized_expression",
    ):
        # `a - b` + 1 needs no parentheses; `a << b` + 1 does (shifts and bit operators bind looser)
        loose = node.type == "binary_operator" and _text(node.child_by_field_name("operator")) in (
            "<<",
            ">>",
            "&",
            "|",
            "^",
        )
        inner = f"({text})" if loose else text
        return [
            (f"{inner} + 1", f"{text} -> {inner} + 1"),
            (f"{inner} - 1", f"{text} -> {inner} - 1"),
        ]
    return []


def find_off_by_one(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if node.type == "call" and _text(node.child_by_field_name("function")) == "range":
            arguments = node.child_by_field_name("arguments")
            positional = [
                c
                for c in (arguments.named_children if arguments else [])
                if c.type not in ("keyword_argument", "list_splat", "dictionary_splat", "comment")
            ]
            for argument in positional[:2]:  # start and stop; a step is not an off-by-one
                for replacement, note in plus_minus_one(argument):
                    add("off_by_one", argument, replacement, f"range: {note}")
        elif node.type == "slice":
            bounds = [c for c in node.children if c.is_named and c.type != "comment"]
            colons = [c for c in node.children if _text(c) == ":"]
            for bound in bounds:
                # a bound after the second colon is the step
                if len(colons) >= 2 and bound.start_byte > colons[1].start_byte:
                    continue
                for replacement, note in plus_minus_one(bound):
                    add("off_by_one", bound, replacement, f"slice: {note}")
        elif node.type == "subscript":
            indices = node.children_by_field_name("subscript")
            if len(indices) == 1 and indices[0].type in (
                "integer",
                "unary_operator",
                "binary_operator",
                "identifier",
            ):
                for replacement, note in plus_minus_one(indices[0]):
                    add("off_by_one", indices[0], replacement, f"index: {note}")


def conditions(nodes: list[Node]) -> Iterator[Node]:
    """The conditions of if/elif/while statements and of conditional expressions."""
    for node in nodes:
        if node.type in ("if_statement", "elif_clause", "while_statement"):
            condition = node.child_by_field_name("condition")
            if condition is not None:
                yield condition
        elif node.type == "conditional_expression":
            parts = [c for c in node.children if c.is_named]
            if len(parts) == 3:
                yield parts[1]


def find_negate_condition(nodes, definition, function, add: Add, rng) -> None:
    for condition in conditions(nodes):
        text = _text(condition)
        if condition.type == "not_operator":
            argument = condition.child_by_field_name("argument")
            add("negate_condition", condition, _text(argument), f"{text!r} -> {_text(argument)!r}")
        else:
            negated = f"not {text}" if condition.type in ATOMS else f"not ({text})"
            add("negate_condition", condition, negated, f"{text!r} -> {negated!r}")


def find_drop_condition(nodes, definition, function, add: Add, rng) -> None:
    for condition in conditions(nodes):
        stack = [condition]
        while stack:
            node = stack.pop()
            if node.type == "boolean_operator":
                left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
                operator = _text(node.child_by_field_name("operator"))
                for kept, dropped in ((left, right), (right, left)):
                    if kept is not None and dropped is not None:
                        add(
                            "drop_condition",
                            node,
                            _text(kept),
                            f"dropped `{operator} {_text(dropped)}`",
                        )
            if node.type in ("boolean_operator", "parenthesized_expression", "not_operator"):
                stack.extend(c for c in node.children if c.is_named)
    for node in nodes:
        if node.type == "if_statement" and node.child_by_field_name("alternative") is None:
            consequence = node.child_by_field_name("consequence")
            if consequence is None or not consequence.named_children:
                continue
            body = unguarded_body(node, consequence)
            if body is not None:
                condition = _text(node.child_by_field_name("condition"))
                add("drop_condition", node, body, f"removed the guard `if {condition}:`")


def unguarded_body(statement: Node, block: Node) -> str | None:
    """The block's text dedented to the if statement's column: the if without its guard."""
    text = _text(block)
    if statement.start_point[0] == block.start_point[0]:
        return text  # `if x: y` on one line
    shift = block.start_point[1] - statement.start_point[1]
    if shift <= 0:
        return None
    lines = text.split("\n")
    dedented = [lines[0]]
    for line in lines[1:]:
        if line.strip() and not line.startswith(" " * shift):
            return None  # a continuation line or a string that is not indented like the block
        dedented.append(line[shift:] if line.strip() else line.strip(" \t"))
    return "\n".join(dedented)


def find_swap_arguments(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if node.type != "argument_list":
            continue
        positional = []
        for child in node.named_children:
            if child.type in ("keyword_argument", "list_splat", "dictionary_splat", "comment"):
                break  # only the leading positional arguments can be swapped
            positional.append(child)
        for first, second in zip(positional, positional[1:], strict=False):
            if _text(first) == _text(second):
                continue
            between = node.text[
                first.end_byte - node.start_byte : second.start_byte - node.start_byte
            ].decode("utf-8")
            add(
                "swap_arguments",
                (first.start_byte, second.end_byte),
                _text(second) + between + _text(first),
                f"swapped `{_text(first)}` and `{_text(second)}`",
            )


def in_index_position(node: Node) -> bool:
    """A literal that off_by_one already covers: a range() argument, a slice bound, an index."""
    parent = node.parent
    if parent is not None and parent.type == "unary_operator":
        parent = parent.parent
    if parent is None:
        return False
    if parent.type == "slice" or parent.type == "subscript":
        return True
    if parent.type == "argument_list" and parent.parent is not None:
        return _text(parent.parent.child_by_field_name("function")) == "range"
    return False


def find_change_constant(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        text = _text(node)
        if node.type == "integer" and re.fullmatch(r"\d+", text) and not in_index_position(node):
            value = int(text)
            changed = str(value - 1) if value > 1 else str(value + 1)
            add("change_constant", node, changed, f"{text} -> {changed}")
        elif node.type == "float" and re.fullmatch(r"\d+\.\d*|\.\d+", text):
            value = float(text)
            changed = repr(value * 2) if value else "1.0"
            add("change_constant", node, changed, f"{text} -> {changed}")
        elif node.type in ("true", "false"):
            changed = "False" if text == "True" else "True"
            add("change_constant", node, changed, f"{text} -> {changed}")


DROPPABLE = {
    "expression_statement",
    "raise_statement",
    "assert_statement",
    "break_statement",
    "continue_statement",
    "delete_statement",
}


def drop(node: Node, family: str, add: Add, note: str) -> None:
    """Delete a statement: its line when it has one to itself (from the newline before it to
    its end, so the function's last line can go too), else `pass` in its place (also when it
    is the only statement of its block). Not the only statement of the function's own body:
    that leaves nothing to repair, only a function to write again."""
    block = node.parent
    siblings = [c for c in block.named_children if c.type != "comment"] if block is not None else []
    if (
        block is not None
        and block.parent is not None
        and block.parent.type == "function_definition"
    ):
        if len([c for c in siblings if not is_docstring(c)]) <= 1:
            return
    root = node
    while root.parent is not None:
        root = root.parent
    data = root.text or b""
    line_start = data.rfind(b"\n", 0, node.start_byte) + 1
    line_end = data.find(b"\n", node.end_byte)
    line_end = len(data) if line_end < 0 else line_end
    alone = (
        len(siblings) > 1
        and block is not None
        and block.type == "block"
        and line_start > 0
        and not data[line_start : node.start_byte].strip()
        and not data[node.end_byte : line_end].strip()
    )
    if alone:
        add(family, (line_start - 1, node.end_byte), "", note)
    else:
        add(family, node, "pass", note)


def find_drop_statement(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if (
            node.type in DROPPABLE
            and node.parent is not None
            and node.parent.type == "block"
            and not is_docstring(node)
        ):
            first_line = _text(node).splitlines()[0] if _text(node) else ""
            drop(node, "drop_statement", add, f"deleted `{first_line[:60]}`")


def find_drop_return(nodes, definition, function, add: Add, rng) -> None:
    for node in nodes:
        if (
            node.type == "return_statement"
            and node.named_child_count
            and node.parent is not None
            and node.parent.type == "block"
        ):
            if inside_nested_function(node, definition):
                continue
            first_line = _text(node).splitlines()[0]
            drop(node, "drop_return", add, f"deleted `{first_line[:60]}`")


def inside_nested_function(node: Node, definition: Node) -> bool:
    parent = node.parent
    while parent is not None and parent.id != definition.id:
        if parent.type in ("function_definition", "lambda"):
            return True
        parent = parent.parent
    return False


# -- wrong_variable


STORE_PARENTS = {
    "pattern_list",
    "tuple_pattern",
    "list_pattern",
    "tuple",
    "list",
    "parenthesized_expression",
    "list_splat_pattern",
    "list_splat",
}
NOT_VARIABLES = {
    "parameters",
    "default_parameter",
    "typed_parameter",
    "typed_default_parameter",
    "lambda_parameters",
    "list_splat_pattern",
    "dictionary_splat_pattern",
    "function_definition",
    "class_definition",
    "dotted_name",
    "aliased_import",
    "global_statement",
    "nonlocal_statement",
    "import_from_statement",
    "import_statement",
    "keyword_pattern",
    "decorator",
    "type",
}


def binder(identifier: Node) -> str | None:
    """What writes the identifier, when something does: the type of the assignment, for loop,
    comprehension clause, or `as` target it is the target of; None for a read."""
    node = identifier
    while node.parent is not None and node.parent.type in STORE_PARENTS:
        node = node.parent
    parent = node.parent
    if parent is None:
        return None
    if parent.type in ("assignment", "augmented_assignment", "for_statement", "for_in_clause"):
        left = parent.child_by_field_name("left")
        return parent.type if left is not None and left.id == node.id else None
    if parent.type == "as_pattern_target":
        return parent.type
    return None


def is_variable_use(identifier: Node) -> bool:
    parent = identifier.parent
    if parent is None or parent.type in NOT_VARIABLES:
        return False
    if (
        parent.type == "attribute"
        and parent.child_by_field_name("attribute") is not None
        and (parent.child_by_field_name("attribute").id == identifier.id)
    ):
        return False
    if (
        parent.type == "keyword_argument"
        and parent.child_by_field_name("name") is not None
        and (parent.child_by_field_name("name").id == identifier.id)
    ):
        return False
    return binder(identifier) is None


def local_names(definition: Node, nodes: list[Node]) -> dict[str, int]:
    """The function's parameters and the names its body binds, with the line each is first
    bound on (parameters on the def line)."""
    names: dict[str, int] = {}
    parameters = definition.child_by_field_name("parameters")
    for node in parameters.named_children if parameters is not None else []:
        name = (
            node
            if node.type == "identifier"
            else (
                node.child_by_field_name("name")
                or next((c for c in node.named_children if c.type == "identifier"), None)
            )
        )
        if name is not None and name.type == "identifier":
            names.setdefault(_text(name), definition.start_point[0])
    for node in nodes:
        kind = binder(node) if node.type == "identifier" else None
        # a comprehension's variable is not visible in the rest of the function
        if kind not in (None, "for_in_clause") and not inside_nested_function(node, definition):
            names.setdefault(_text(node), node.start_point[0])
    return names


def find_wrong_variable(nodes, definition, function, add: Add, rng: random.Random) -> None:
    names = local_names(definition, nodes)
    for node in nodes:
        if node.type != "identifier" or inside_nested_function(node, definition):
            continue
        name = _text(node)
        if name not in names or name in ("self", "cls") or not is_variable_use(node):
            continue
        line = node.start_point[0]
        others = sorted(
            n
            for n, bound in names.items()
            if n != name and bound <= line and n not in ("self", "cls")
        )
        if others:
            other = rng.choice(others)
            add("wrong_variable", node, other, f"`{name}` -> `{other}`")


FINDERS: dict[str, Callable[..., None]] = {
    "operator_swap": find_operator_swap,
    "comparison_swap": find_comparison_swap,
    "boolean_swap": find_boolean_swap,
    "off_by_one": find_off_by_one,
    "negate_condition": find_negate_condition,
    "drop_condition": find_drop_condition,
    "swap_arguments": find_swap_arguments,
    "change_constant": find_change_constant,
    "drop_statement": find_drop_statement,
    "drop_return": find_drop_return,
    "wrong_variable": find_wrong_variable,
}


# ---------------------------------------------------------------- candidates


def dedent(text: str, indent: str) -> str | None:
    """A unit's text (its first line starts at the unit) moved to column 0: `indent` off every
    further line. None when a non-blank line lacks it (a string literal's continuation at a
    smaller indent), since moving such a function would change what the literal holds."""
    if not indent:
        return text
    lines = text.split("\n")
    moved = [lines[0]]
    for line in lines[1:]:
        if line.startswith(indent):
            moved.append(line[len(indent) :])
        elif line.strip():
            return None
        else:
            moved.append(line.lstrip(" \t"))
    return "\n".join(moved)


def reindent(text: str, indent: str) -> str:
    """The inverse of dedent: `indent` before every non-blank line but the first."""
    lines = text.split("\n")
    return "\n".join([lines[0], *(indent + line if line.strip() else line for line in lines[1:])])


def meaning(text: str | None) -> str | None:
    """The AST of a function's (dedented) text, as a string; None when it does not compile."""
    if text is None:
        return None
    try:
        tree = ast.parse(text)
        compile(tree, "<mutant>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return ast.dump(tree)


def candidates(
    source: bytes,
    function: Function,
    families: tuple[str, ...] = FAMILIES,
    seed: int = 0,
    tree=None,
) -> list[Mutation]:
    """The unit's mutations that compile and change its meaning, each distinct mutated text
    once, ordered round-robin over the families (in an order shuffled per unit) with the
    sites of each family shuffled: the first k tried cover up to k families.

    Only the unit is parsed to check a mutation: it is all that changed."""
    rng = random.Random(f"{seed}:{function.path}:{function.qualname}")
    original = meaning(dedent(function.text(source), function.indent))
    by_family: dict[str, list[Mutation]] = {}
    seen: set[str] = set()
    for mutation in mutation_sites(source, function, rng, tree):
        if mutation.family not in families:
            continue
        text = function_text(source, function, mutation)
        after = meaning(dedent(text, function.indent))
        if after is None or after == original or text in seen:
            continue
        seen.add(text)
        by_family.setdefault(mutation.family, []).append(mutation)
    order = [family for family in FAMILIES if family in by_family]
    rng.shuffle(order)
    for family in order:
        rng.shuffle(by_family[family])
    ordered = []
    while any(by_family.get(f) for f in order):
        for family in order:
            if by_family.get(family):
                ordered.append(by_family[family].pop())
    return ordered


def function_text(source: bytes, function: Function, mutation: Mutation | None = None) -> str:
    """The unit's text (decorators to end), with the mutation applied when given."""
    text = source[function.start : function.end]
    if mutation is not None:
        start, end = mutation.start - function.start, mutation.end - function.start
        text = text[:start] + mutation.replacement.encode("utf-8") + text[end:]
    return text.decode("utf-8")
