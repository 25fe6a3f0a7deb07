"""The one rule for test files and the one reader of a diff's paths (selfrepair.paths), and
the places that use them agreeing with it: `fix` hides test files from the model, the task
factory does not mutate them, localisation ranks them below the code they test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from selfrepair.agents.code import localise
from selfrepair.factory import sources

from selfrepair.cli.fix import fix_task
from selfrepair.paths import diff_paths, is_test_file

ROOT = Path(__file__).resolve().parent.parent

RULE = {
    "test_money.py": True,
    "money_test.py": True,
    "conftest.py": True,
    "pkg/conftest.py": True,
    "tests/helpers.py": True,
    "pkg/tests/helpers.py": True,
    "test/data.json": True,
    "pkg/test/util.py": True,
    "money.py": False,
    "contest.py": False,
    "latest.py": False,
    "tests.py": False,  # not what pytest collects by default
    "test_data.json": False,  # a data file named like a test is not one
    "pkg/testing/asserts.py": False,  # library code users import (numpy.testing)
    "pkg/testing_utils.py": False,
    "attestation/core.py": False,
    "pkg/mytests/core.py": False,
}


@pytest.mark.parametrize("path, expected", RULE.items())
def test_the_rule_for_test_files(path: str, expected: bool) -> None:
    assert is_test_file(path) is expected


PY_PATHS = sorted(p for p in RULE if p.endswith(".py"))
SOURCE = "def parse_price(text):\n    return int(text)\n"


def write_tree(root: Path) -> None:
    for path in PY_PATHS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(SOURCE)


def test_fix_hides_exactly_the_test_files(tmp_path: Path) -> None:
    write_tree(tmp_path)
    task, _ = fix_task(tmp_path, "python -m pytest -q", None)
    assert sorted(task.tests.files) == [p for p in PY_PATHS if RULE[p]]
    assert sorted(task.files) == [p for p in PY_PATHS if not RULE[p]]


def test_the_factory_takes_exactly_the_test_files_as_tests(tmp_path: Path) -> None:
    write_tree(tmp_path)
    source = sources.from_directory(str(tmp_path), tmp_path)
    assert source.test_files() == [p for p in PY_PATHS if RULE[p]]
    assert not set(source.code_files()) & set(source.test_files())


def test_localisation_ranks_exactly_the_test_files_lower() -> None:
    issue = "parse_price fails on a price"
    scores = {
        path: localise.rank(localise.definitions(path, SOURCE), issue)[0].score for path in PY_PATHS
    }
    full = max(scores.values())
    assert {path: score < full for path, score in scores.items()} == {p: RULE[p] for p in PY_PATHS}


DIFF = """\
diff --git a/shop/money.py b/shop/money.py
--- a/shop/money.py
+++ b/shop/money.py
@@ -1,3 +1,4 @@
 x = 1
-y = 2
+y = '''
+++ b/not/a/header.py
+'''
diff --git a/new.py b/new.py
new file mode 100644
--- /dev/null
+++ b/new.py
@@ -0,0 +1 @@
+z = 3
diff --git a/gone.py b/gone.py
deleted file mode 100644
--- a/gone.py
+++ /dev/null
@@ -1 +0,0 @@
-w = 4
--- a/"odd name.py"
+++ "b/caf\\303\\251 \\"q\\".py"
@@ -1 +1 @@
-a
+b
--- old/dated.py\t2024-01-01 00:00:00
+++ b/dated.py\t2024-01-02 00:00:00
@@ -1 +1 @@
-a
+b
"""


def test_diff_paths_reads_only_file_headers() -> None:
    assert diff_paths(DIFF) == ['café "q".py', "dated.py", "new.py", "shop/money.py"]
    assert diff_paths("") == []


def test_each_rule_has_one_home() -> None:
    """No module but selfrepair/paths.py decides what a test file is or reads `+++ b/`."""
    homes = []
    for folder in ("selfrepair", "agents", "sandbox", "graphs", "training", "factory"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "selfrepair/paths.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef) and node.name.endswith("is_test_file"):
                    homes.append(f"{relative}:{node.lineno} defines {node.name}")
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.startswith("+++ b")
                ):
                    homes.append(f"{relative}:{node.lineno} reads '+++ b/' lines")
    assert not homes, "; ".join(homes)
