"""Turn `project/` into a git repository with one commit: the example's buggy base.

    python examples/issue_repo/make_repo.py /tmp/shop

The tests import `make_repo` from here, so the example a newcomer runs is the one tested.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import git

PROJECT = Path(__file__).parent / "project"
ISSUE = Path(__file__).parent / "ISSUE.md"
# The commit's author, so it works on a machine with no git identity configured.
_AUTHOR = git.Actor("Example Author", "author@example.com")


def make_repo(destination: Path) -> Path:
    """Copy the project to `destination` (which must not exist) and commit it on `main`."""
    destination = Path(destination)
    if destination.exists():
        raise SystemExit(f"{destination} already exists; choose a new directory")
    shutil.copytree(PROJECT, destination, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    repo = git.Repo.init(destination, initial_branch="main")
    repo.git.add("--all")
    repo.index.commit("Shop: prices, carts and discounts", author=_AUTHOR, committer=_AUTHOR)
    return destination


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python make_repo.py DESTINATION")
    print(make_repo(Path(sys.argv[1])))
