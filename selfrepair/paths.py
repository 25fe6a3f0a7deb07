"""Paths in a repository: which are tests, and which a unified diff changes.

One rule each, used by `fix` (test files become the task's tests), the task factory (test
files are not mutated), localisation (tests rank below the code they test) and the issue
graph (the test files a SWE-bench test patch brings).
"""

from __future__ import annotations

import codecs
from pathlib import PurePosixPath

TEST_FOLDERS = ("tests", "test")


def is_test_file(path: str) -> bool:
    """What pytest collects by default (test_*.py, *_test.py), its conftest.py, and anything
    under a tests/ or test/ folder. A `testing/` package is not a test: it is library code
    that users import (numpy.testing, pandas.testing)."""
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    name = parts[-1]
    return (
        name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or any(part in TEST_FOLDERS for part in parts[:-1])
    )


def diff_paths(diff: str) -> list[str]:
    """The paths a unified diff (git's form) writes, sorted: each file header's `+++ b/PATH`
    (a deleted file's `+++ /dev/null` names none). Only a `+++` line right after a `---`
    line is a header; inside a hunk the same text is an added line. Git quotes a path with
    unusual characters (`+++ "b/caf\\303\\251.py"`), and other tools append a timestamp
    after a tab; both are undone."""
    paths = set()
    previous = ""
    for line in diff.splitlines():
        if line.startswith("+++ ") and previous.startswith("--- "):
            target = line[4:]
            if target.startswith('"') and target.endswith('"'):
                target = codecs.escape_decode(target[1:-1].encode("utf-8"))[0].decode("utf-8")
            else:
                target = target.split("\t", 1)[0]
            if target.startswith("b/"):
                paths.add(target[2:])
        previous = line
    return sorted(paths)
