"""Put a candidate's version of one function into its module; a function-level synth task's
test command runs it before pytest. It runs inside the sandbox (stdlib only).

    python $SELFREPAIR_TESTS/splice.py FUNCTION_FILE MODULE DEF_LINE

FUNCTION_FILE (in the workspace) holds the function as the model was shown it, at column 0,
and whatever the model added (imports, helpers). MODULE's copy in the tests directory (which
the candidate cannot change) is read; the function whose `def` is on DEF_LINE is replaced by
the candidate's function of the same name, indented to fit; other top-level statements of
FUNCTION_FILE go before the module-level statement holding it. The result is written to the
workspace's MODULE, where the tests import it from.

The factory calls `splice` itself to check, before it writes a task, that the shown function
spliced back gives the module exactly.
"""

import ast
import os
import sys


class SpliceError(Exception):
    pass


def _span(node):
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return first, node.end_lineno


def _target(tree, def_line):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno == def_line:
            return node
    raise SpliceError(f"no function is defined on line {def_line} of the module")


def _enclosing_statement(tree, node):
    """The module-level statement that holds `node`."""
    for statement in tree.body:
        if statement.lineno <= node.lineno and node.end_lineno <= statement.end_lineno:
            return statement
    return node


def _replacement(candidate_tree, name):
    """The candidate's function called `name`: top level, or a method of a top-level class
    (a model may answer with the class around it). Also the statements that are not it."""
    for statement in candidate_tree.body:
        if (
            isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef))
            and statement.name == name
        ):
            return statement, [s for s in candidate_tree.body if s is not statement]
    for statement in candidate_tree.body:
        if isinstance(statement, ast.ClassDef):
            for inner in statement.body:
                if (
                    isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and inner.name == name
                ):
                    return inner, [s for s in candidate_tree.body if s is not statement]
    raise SpliceError(f"the code defines no function named {name!r}")


def _lines(text, first, last, indent):
    """Lines first..last (1-based) of text, moved from their own indent to `indent`."""
    lines = text.splitlines()[first - 1 : last]
    own = len(lines[0]) - len(lines[0].lstrip())
    moved = []
    for line in lines:
        if not line.strip():
            moved.append(line.strip(" \t"))
        elif line[:own].strip():
            moved.append(indent + line.lstrip())  # less indented than the def: a continuation
        else:
            moved.append(indent + line[own:])
    return moved


def splice(module_source, def_line, candidate_source):
    """The module's text with the function on def_line replaced by the candidate's."""
    module_tree = ast.parse(module_source)
    try:
        candidate_tree = ast.parse(candidate_source)
    except SyntaxError as error:
        raise SpliceError(f"line {error.lineno}: {error.msg}") from None
    target = _target(module_tree, def_line)
    function, extras = _replacement(candidate_tree, target.name)
    module_lines = module_source.splitlines()
    start, end = _span(target)
    indent = module_lines[target.lineno - 1][: target.col_offset]
    first, last = _span(function)
    new = _lines(candidate_source, first, last, indent)
    holder = _enclosing_statement(module_tree, target)
    holder_start = _span(holder)[0] if hasattr(holder, "decorator_list") else holder.lineno
    inserted = []
    for statement in extras:
        low, high = (
            _span(statement)
            if hasattr(statement, "decorator_list")
            else (statement.lineno, statement.end_lineno)
        )
        inserted += _lines(candidate_source, low, high, "") + [""]
    result = module_lines[: start - 1] + new + module_lines[end:]
    if inserted:
        result = result[: holder_start - 1] + inserted + result[holder_start - 1 :]
    text = "\n".join(result)
    return text + "\n" if module_source.endswith("\n") else text


def main(argv):
    if len(argv) != 4:
        print("usage: splice.py FUNCTION_FILE MODULE DEF_LINE", file=sys.stderr)
        return 2
    function_file, module, def_line = argv[1], argv[2], int(argv[3])
    tests = os.environ.get("SELFREPAIR_TESTS", ".")
    with open(os.path.join(tests, module), encoding="utf-8") as handle:
        module_source = handle.read()
    with open(function_file, encoding="utf-8") as handle:
        candidate = handle.read()
    try:
        text = splice(module_source, def_line, candidate)
    except SpliceError as error:
        print(f"{function_file}: {error}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(module) or ".", exist_ok=True)
    with open(module, "w", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
