"""Repositories through git: isolated checkouts, patches, diffs, a branch for the fix."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from selfrepair.agents.code import repo as repos

from selfrepair.errors import SelfRepairError

FIX = '''--- a/shop/money.py
+++ b/shop/money.py
@@ -11,8 +11,8 @@
 def parse_price(text: str) -> int:
     """'$3.50' -> 350 cents."""
     text = text.strip().lstrip("$")
-    dollars, cents = text.split(".")
-    return int(dollars) * 100 + int(cents)
+    dollars, _, cents = text.partition(".")
+    return int(dollars) * 100 + int((cents + "00")[:2])
 
 
 def split_evenly(cents: int, ways: int) -> list[int]:
'''


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under path, .git included: what 'untouched' means."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_checkout_is_isolated_and_diff_round_trips(issue_repo: Path) -> None:
    user = repos.open_repository(issue_repo)
    (issue_repo / "notes.txt").write_text("untracked work in progress\n")
    before = snapshot(issue_repo)
    with repos.checkout(user) as work:
        assert work.path != issue_repo and work.base == user.head.commit.hexsha
        assert "shop/money.py" in work.files()
        work.apply_patch(FIX)
        work.write("shop/extra.py", "VALUE = 1\n")
        (work.path / "shop" / "__pycache__").mkdir()
        (work.path / "shop" / "__pycache__" / "money.cpython-311.pyc").write_bytes(b"\0")
        diff = work.diff()
        assert '+    dollars, _, cents = text.partition(".")' in diff
        assert "shop/extra.py" in diff and "__pycache__" not in diff
        work.reset()
        assert work.diff() == "" and not (work.path / "shop" / "extra.py").exists()
        work.apply_patch(diff)
        assert work.diff() == diff
        holder = work.path.parent
    assert not holder.exists()
    assert snapshot(issue_repo) == before


def test_patch_that_does_not_apply_names_the_file(issue_repo: Path) -> None:
    with repos.checkout(repos.open_repository(issue_repo)) as work:
        with pytest.raises(SelfRepairError, match="shop/money.py"):
            work.apply_patch(FIX.replace('text.split(".")', 'text.split(",")'))
        assert work.diff() == ""


def test_commit_to_branch_leaves_the_checkout_alone(issue_repo: Path) -> None:
    user = repos.open_repository(issue_repo)
    before = snapshot(issue_repo)
    commit = repos.commit_to_branch(user, "HEAD", FIX, "fix/parse-price", "Fix parse_price")
    user = git.Repo(issue_repo)
    assert user.active_branch.name == "main"
    assert user.heads["fix/parse-price"].commit.hexsha == commit
    assert user.heads["fix/parse-price"].commit.parents[0] == user.heads["main"].commit
    assert "partition" in user.git.show(f"{commit}:shop/money.py")
    changed = {
        k
        for k in snapshot(issue_repo).keys() | before.keys()
        if snapshot(issue_repo).get(k) != before.get(k)
    }
    # Only git's object store and the new branch (its ref and reflog) change: no file, no index.
    assert changed and all(
        k.startswith(".git/objects/") or k.endswith("refs/heads/fix/parse-price") for k in changed
    )
    with pytest.raises(SelfRepairError, match="already exists"):
        repos.commit_to_branch(user, "HEAD", FIX, "fix/parse-price", "again")
    with pytest.raises(SelfRepairError, match="not a valid branch name"):
        repos.commit_to_branch(user, "HEAD", FIX, "bad..name", "x")


def test_not_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(SelfRepairError, match="not a git repository"):
        repos.open_repository(tmp_path / "plain")
    with pytest.raises(SelfRepairError, match="no such repository"):
        repos.open_repository(tmp_path / "missing")


def test_unknown_base_commit(issue_repo: Path) -> None:
    user = repos.open_repository(issue_repo)
    with pytest.raises(SelfRepairError, match="unknown base commit 'v9.9'"):
        repos.checkout(user, "v9.9")
    with pytest.raises(SelfRepairError, match="unknown base commit"):
        repos.resolve_commit(user, "0" * 40)


def test_dirty_worktree_is_named(issue_repo: Path) -> None:
    user = repos.open_repository(issue_repo)
    repos.require_clean(user)
    (issue_repo / "untracked.txt").write_text("does not count\n")
    repos.require_clean(user)
    (issue_repo / "shop" / "money.py").write_text("# edited\n")
    (issue_repo / "shop" / "cart.py").unlink()
    assert repos.dirty_files(user) == ["shop/cart.py", "shop/money.py"]
    with pytest.raises(SelfRepairError, match="uncommitted changes in shop/cart.py, shop/money.py"):
        repos.require_clean(user)


def test_mirror_of_a_url(issue_repo: Path, tmp_path: Path) -> None:
    mirror = repos.mirror_repository(issue_repo.as_uri(), tmp_path / "mirrors")
    assert mirror.bare
    with repos.checkout(mirror, "main") as work:
        assert (work.path / "shop" / "money.py").is_file()
    assert (
        repos.mirror_repository(issue_repo.as_uri(), tmp_path / "mirrors").git_dir == mirror.git_dir
    )
