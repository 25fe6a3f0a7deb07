"""Repositories through git: an isolated checkout of a base commit, patches in, a diff out.

The user's repository is only ever read, with one exception they ask for by name: a new
branch holding the fix (`commit_to_branch`). Its working tree, index and current branch are
never touched: checkouts are `git clone --shared` copies in a temporary directory (they
borrow the objects, so they cost a checkout, not a copy of the history), and the branch
commit is built with plumbing against a throwaway index file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import git

from selfrepair.config import cache_dir
from selfrepair.errors import SelfRepairError

# Files that running tests leaves behind; they never belong in a fix.
_SCRATCH_PATTERNS = [
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    "*.egg-info/",
    ".coverage",
    "junit*.xml",
]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "selfrepair",
    "GIT_AUTHOR_EMAIL": "selfrepair@localhost",
    "GIT_COMMITTER_NAME": "selfrepair",
    "GIT_COMMITTER_EMAIL": "selfrepair@localhost",
}


def _is_url(source: str) -> bool:
    return "://" in source or re.match(r"^[\w.-]+@[\w.-]+:", source) is not None


def open_repository(source: str | Path) -> git.Repo:
    """The git repository at a local path (its working tree or a bare repository)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SelfRepairError(f"no such repository: {path}")
    try:
        return git.Repo(path, search_parent_directories=False)
    except git.InvalidGitRepositoryError:
        raise SelfRepairError(f"not a git repository: {path}") from None


def mirror_repository(source: str, mirrors: Path | None = None) -> git.Repo:
    """A local bare mirror of a repository given by URL (`file://`, `https://`, `git@...`),
    cloned once into the cache (or `mirrors`) and fetched on later calls."""
    if not _is_url(source):
        return open_repository(source)
    name = re.sub(r"[^\w.-]+", "_", source.rstrip("/").split("://")[-1]).strip("_")
    target = (mirrors or cache_dir() / "repos") / (name if name.endswith(".git") else name + ".git")
    try:
        if target.exists():
            repo = git.Repo(target)
            repo.git.fetch("--quiet", "--prune", "origin")
            return repo
        target.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.clone_from(source, target, mirror=True, quiet=True)
    except git.GitCommandError as error:
        raise SelfRepairError(f"cannot mirror {source}: {_git_reason(error)}") from None


def resolve_commit(repo: git.Repo, rev: str) -> str:
    """The full commit id that `rev` (a sha, branch, tag, `HEAD~2`...) names in `repo`."""
    if not rev.strip():
        raise SelfRepairError("empty base revision")
    try:
        return repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except git.GitCommandError:
        raise SelfRepairError(
            f"unknown base commit {rev!r} in {repo.working_tree_dir or repo.git_dir}"
        ) from None


def dirty_files(repo: git.Repo) -> list[str]:
    """Tracked files whose working-tree or staged content differs from HEAD (untracked files
    do not count: a repair never sees them either way)."""
    if repo.bare:
        return []
    entries = iter(repo.git.status("--porcelain=v1", "-z", "--untracked-files=no").split("\0"))
    dirty = set()
    for entry in entries:
        if len(entry) > 3:
            dirty.add(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                next(entries, None)  # a rename's or copy's source path follows as its own entry
    return sorted(dirty)


def require_clean(repo: git.Repo) -> None:
    """Refuse a working tree with uncommitted changes to tracked files, naming them: a repair
    from HEAD would silently ignore them, so the fix would not be for the code the user sees."""
    dirty = dirty_files(repo)
    if dirty:
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise SelfRepairError(
            f"{repo.working_tree_dir} has uncommitted changes in {shown}; "
            "commit or stash them, or name the commit to repair with --base"
        )


def _git_reason(error: git.GitCommandError) -> str:
    text = (error.stderr or error.stdout or str(error)).strip()
    text = re.sub(r"^\s*stderr:\s*'?", "", text).strip("' \n")
    return " ".join(text.split("\n")[:6]) or f"git exited with status {error.status}"


@dataclass
class Checkout:
    """A private checkout of one base commit in a temporary directory.

    `reset()` brings it back to the base exactly; `apply_patch` and `write` change it;
    `diff()` is everything changed since the base, as a unified diff (new files included,
    test leftovers excluded). Close it (or use `with`) to delete the directory.
    """

    source: str  # the repository it was made from
    base: str  # the full commit id
    path: Path
    _holder: Path = field(repr=False)

    @property
    def repo(self) -> git.Repo:
        return git.Repo(self.path)

    def files(self) -> list[str]:
        """Paths tracked at the base commit, relative to the checkout."""
        return self.repo.git.ls_files("-z").split("\0")[:-1] or []

    def read(self, relative: str) -> str | None:
        target = self._inside(relative)
        return target.read_text(encoding="utf-8") if target.is_file() else None

    def write(self, relative: str, content: str) -> None:
        target = self._inside(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")

    def _inside(self, relative: str) -> Path:
        target = (self.path / relative).resolve()
        if not target.is_relative_to(self.path.resolve()) or ".git" in Path(relative).parts:
            raise SelfRepairError(f"path {relative!r} is outside the repository")
        return target

    def reset(self) -> None:
        repo = self.repo
        repo.git.reset("--hard", "--quiet", self.base)
        repo.git.clean("-fdxq")

    def apply_patch(self, patch: str, *, what: str = "patch") -> None:
        """Apply a unified diff (as `git apply` reads it); a patch that does not apply is a
        SelfRepairError with git's reason, and the checkout is left as it was."""
        if not patch.strip():
            return
        patch_file = self._holder / "candidate.patch"
        patch_file.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
        try:
            self.repo.git.apply("--whitespace=nowarn", "--recount", str(patch_file))
        except git.GitCommandError as error:
            raise SelfRepairError(
                f"{what} does not apply to {self.base[:12]}: {_git_reason(error)}"
            ) from None
        finally:
            patch_file.unlink(missing_ok=True)

    def diff(self) -> str:
        """The unified diff from the base to the checkout's current files."""
        repo = self.repo
        repo.git.add("--all")
        text = repo.git.diff(
            "--cached", "--no-color", "--no-ext-diff", self.base, strip_newline_in_stdout=False
        )
        repo.git.reset("--quiet")
        return text

    def close(self) -> None:
        shutil.rmtree(self._holder, ignore_errors=True)

    def __enter__(self) -> Checkout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def checkout(repo: git.Repo, base: str = "HEAD") -> Checkout:
    """A private checkout of `base` from `repo`, in a temporary directory."""
    commit = resolve_commit(repo, base)
    source = repo.working_tree_dir or repo.git_dir
    holder = Path(tempfile.mkdtemp(prefix="selfrepair-checkout-"))
    path = holder / "repo"
    try:
        clone = git.Repo.clone_from(source, path, shared=True, no_checkout=True, quiet=True)
        clone.git.checkout("--quiet", "--detach", commit)
        exclude = Path(clone.git_dir) / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as handle:
            handle.write("\n".join(_SCRATCH_PATTERNS) + "\n")
    except git.GitCommandError as error:
        shutil.rmtree(holder, ignore_errors=True)
        raise SelfRepairError(
            f"cannot check out {commit[:12]} from {source}: {_git_reason(error)}"
        ) from None
    return Checkout(source=str(source), base=commit, path=path, _holder=holder)


def _identity(repo: git.Repo) -> dict[str, str]:
    """Author and committer for the branch commit: the repository's own configuration where it
    has one (git reads it itself), selfrepair's name otherwise, so commit-tree never fails."""
    reader = repo.config_reader()
    env = {}
    if not reader.has_option("user", "name"):
        env.update({k: v for k, v in _IDENTITY.items() if k.endswith("_NAME")})
    if not reader.has_option("user", "email"):
        env.update({k: v for k, v in _IDENTITY.items() if k.endswith("_EMAIL")})
    return env


def check_new_branch(repo: git.Repo, branch: str) -> None:
    """Refuse a branch name git would refuse, or one that exists already."""
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise SelfRepairError(f"not a valid branch name: {branch!r}") from None
    if f"refs/heads/{branch}" in {ref.path for ref in repo.references}:
        raise SelfRepairError(
            f"branch {branch!r} already exists in {repo.working_tree_dir or repo.git_dir}"
        )


def commit_to_branch(repo: git.Repo, base: str, patch: str, branch: str, message: str) -> str:
    """Commit `patch` on top of `base` as a new branch `branch` in `repo`; returns the commit id.

    Plumbing only (read-tree into a throwaway index, apply --cached, write-tree, commit-tree),
    so the user's checkout, index and current branch stay exactly as they were.
    """
    commit = resolve_commit(repo, base)
    check_new_branch(repo, branch)
    if not patch.strip():
        raise SelfRepairError("no change to commit: the patch is empty")
    with tempfile.TemporaryDirectory(prefix="selfrepair-index-") as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index"), **_identity(repo)}
        patch_file = Path(scratch) / "fix.patch"
        patch_file.write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
        try:
            repo.git.read_tree(commit, env=env)
            repo.git.apply("--cached", "--whitespace=nowarn", str(patch_file), env=env)
            tree = repo.git.write_tree(env=env)
            new_commit = repo.git.commit_tree(tree, "-p", commit, "-m", message, env=env)
            # The empty old value makes update-ref refuse if the branch appeared meanwhile.
            repo.git.update_ref(f"refs/heads/{branch}", new_commit, "")
        except git.GitCommandError as error:
            raise SelfRepairError(
                f"cannot commit the fix on {branch!r}: {_git_reason(error)}"
            ) from None
    return new_commit
