"""Single-operator bugs in small functions, with tests: the data of benchmarks/self_improvement.py.

Each function below is correct and has asserts. A bug is the function with one operator
swapped for a plausible wrong one (`+` for `-`, `<` for `<=`, `and` for `or`, ...), found
with `ast` and written back with `ast.unparse`; a mutant that the tests do not catch is
dropped. The tasks are written in QuixBugs' JSONL format (name, buggy_program, docstring,
solution, tests), so `selfrepair improve --format quixbugs` reads them. Train and eval are
split by function: no function has bugs on both sides.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> (docstring, correct code, tests)
FUNCTIONS: dict[str, tuple[str, str, str]] = {
    "add": ("Return the sum of a and b.", "def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3\nassert add(-4, 1) == -3\n"),
    "subtract": ("Return a minus b.", "def subtract(a, b):\n    return a - b\n", "assert subtract(5, 2) == 3\nassert subtract(2, 5) == -3\n"),
    "area": ("Return the area of a w by h rectangle.", "def area(w, h):\n    return w * h\n", "assert area(3, 4) == 12\nassert area(2, 5) == 10\n"),
    "average": ("Return the mean of two numbers.", "def average(a, b):\n    return (a + b) / 2\n", "assert average(2, 4) == 3\nassert average(1, 2) == 1.5\n"),
    "is_even": ("Return True when n is even.", "def is_even(n):\n    return n % 2 == 0\n", "assert is_even(4)\nassert not is_even(7)\nassert is_even(0)\n"),
    "is_positive": ("Return True when x is greater than zero.", "def is_positive(x):\n    return x > 0\n", "assert is_positive(3)\nassert not is_positive(0)\nassert not is_positive(-2)\n"),
    "maximum": ("Return the larger of a and b.", "def maximum(a, b):\n    if a > b:\n        return a\n    return b\n", "assert maximum(3, 7) == 7\nassert maximum(9, 2) == 9\n"),
    "minimum": ("Return the smaller of a and b.", "def minimum(a, b):\n    if a < b:\n        return a\n    return b\n", "assert minimum(3, 7) == 3\nassert minimum(9, 2) == 2\n"),
    "square": ("Return x squared.", "def square(x):\n    return x * x\n", "assert square(3) == 9\nassert square(-4) == 16\nassert square(1) == 1\n"),
    "cube": ("Return x cubed.", "def cube(x):\n    return x ** 3\n", "assert cube(2) == 8\nassert cube(3) == 27\n"),
    "in_range": ("Return True when lo <= x < hi.", "def in_range(x, lo, hi):\n    return lo <= x and x < hi\n", "assert in_range(3, 1, 5)\nassert in_range(1, 1, 5)\nassert not in_range(5, 1, 5)\nassert not in_range(0, 1, 5)\n"),
    "total": ("Return the sum of a list of numbers.", "def total(xs):\n    s = 0\n    for x in xs:\n        s = s + x\n    return s\n", "assert total([1, 2, 3]) == 6\nassert total([]) == 0\nassert total([5]) == 5\n"),
    "count_positive": ("Return how many numbers in xs are greater than zero.", "def count_positive(xs):\n    n = 0\n    for x in xs:\n        if x > 0:\n            n = n + 1\n    return n\n", "assert count_positive([1, -2, 3, 0]) == 2\nassert count_positive([]) == 0\n"),
    "factorial": ("Return n factorial.", "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result = result * i\n    return result\n", "assert factorial(0) == 1\nassert factorial(4) == 24\nassert factorial(5) == 120\n"),
    "celsius": ("Convert a temperature in Fahrenheit to Celsius.", "def celsius(f):\n    return (f - 32) * 5 / 9\n", "assert celsius(212) == 100\nassert celsius(32) == 0\n"),
    "last_index": ("Return the last valid index of a list.", "def last_index(xs):\n    return len(xs) - 1\n", "assert last_index([1, 2, 3]) == 2\nassert last_index([7]) == 0\n"),
    "both_true": ("Return True when a and b are both true.", "def both_true(a, b):\n    return a and b\n", "assert both_true(True, True)\nassert not both_true(True, False)\nassert not both_true(False, True)\n"),
    "either_true": ("Return True when a or b is true.", "def either_true(a, b):\n    return a or b\n", "assert either_true(True, False)\nassert either_true(False, True)\nassert not either_true(False, False)\n"),
    "is_adult": ("Return True when age is 18 or more.", "def is_adult(age):\n    return age >= 18\n", "assert is_adult(18)\nassert is_adult(30)\nassert not is_adult(17)\n"),
    "same": ("Return True when a equals b.", "def same(a, b):\n    return a == b\n", "assert same(2, 2)\nassert not same(2, 3)\n"),
    "remainder": ("Return the remainder of a divided by b.", "def remainder(a, b):\n    return a % b\n", "assert remainder(7, 3) == 1\nassert remainder(9, 3) == 0\nassert remainder(10, 4) == 2\n"),
    "halve": ("Return n divided by 2, rounded down.", "def halve(n):\n    return n // 2\n", "assert halve(7) == 3\nassert halve(8) == 4\n"),
    "perimeter": ("Return the perimeter of a w by h rectangle.", "def perimeter(w, h):\n    return 2 * (w + h)\n", "assert perimeter(3, 4) == 14\nassert perimeter(1, 1) == 4\n"),
    "difference": ("Return the absolute difference of a and b.", "def difference(a, b):\n    if a > b:\n        return a - b\n    return b - a\n", "assert difference(7, 3) == 4\nassert difference(3, 7) == 4\n"),
}

SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub, ast.Mult], ast.Sub: [ast.Add], ast.Mult: [ast.Add, ast.Pow], ast.Div: [ast.Mult, ast.FloorDiv],
    ast.FloorDiv: [ast.Div, ast.Mod], ast.Mod: [ast.FloorDiv], ast.Pow: [ast.Mult],
    ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt], ast.Gt: [ast.GtE, ast.Lt], ast.GtE: [ast.Gt], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq],
    ast.And: [ast.Or], ast.Or: [ast.And],
}  # fmt: skip


def operator_nodes(tree: ast.AST) -> list[tuple[ast.AST, str, int]]:
    """(node, field, position) of every operator a swap can replace, in source order."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            found.append((node, "op", -1))
        elif isinstance(node, ast.Compare):
            found += [(node, "ops", i) for i, op in enumerate(node.ops) if type(op) in SWAPS]
    return found


def mutants(code: str) -> list[str]:
    """Every program with exactly one operator swapped."""
    programs = []
    for index in range(len(operator_nodes(ast.parse(code)))):
        probe = ast.parse(code)
        node, field, position = operator_nodes(probe)[index]
        original = getattr(node, field) if position < 0 else node.ops[position]
        for replacement in SWAPS[type(original)]:
            tree = ast.parse(code)
            node, field, position = operator_nodes(tree)[index]
            if position < 0:
                setattr(node, field, replacement())
            else:
                node.ops[position] = replacement()
            programs.append(ast.unparse(tree) + "\n")
    return programs


def tests_fail(program: str, tests: str) -> bool:
    """The QuixBugs rule: program + tests as one script; a non-zero exit is a failure."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(program + "\n\n" + tests)
    try:
        return subprocess.run([sys.executable, script.name], capture_output=True, timeout=10).returncode != 0
    except subprocess.TimeoutExpired:
        return True
    finally:
        Path(script.name).unlink()


def make_bugs(per_function: int = 2) -> dict[str, list[dict]]:
    """{function name: up to `per_function` QuixBugs-format records of caught bugs}."""
    bugs: dict[str, list[dict]] = {}
    for name, (docstring, solution, tests) in FUNCTIONS.items():
        if tests_fail(solution, tests):
            raise AssertionError(f"{name}: the correct program fails its own tests")
        records = []
        for number, program in enumerate(mutants(solution)):
            if len(records) == per_function:
                break
            if tests_fail(program, tests):
                records.append(
                    # Not `name_N`: the file is named after the task, and a model shown
                    # `halve_0.py` tends to rename the function to halve_0.
                    {"name": f"{name}-bug{number}", "buggy_program": program, "docstring": docstring, "solution": solution, "tests": tests}
                )
        bugs[name] = records
    return bugs


def write_split(out: Path, eval_functions: int = 8, per_function: int = 2) -> tuple[Path, Path, int, int]:
    """train.jsonl and eval.jsonl in `out`, split by function (the last `eval_functions` in
    a fixed shuffled order go to eval). Returns the paths and the task counts."""
    import random

    bugs = make_bugs(per_function)
    names = sorted(bugs)
    random.Random(0).shuffle(names)
    eval_names, train_names = names[:eval_functions], names[eval_functions:]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    counts = []
    for split, chosen in (("train", train_names), ("eval", eval_names)):
        records = [record for name in chosen for record in bugs[name]]
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths.append(path)
        counts.append(len(records))
    return paths[0], paths[1], counts[0], counts[1]
