"""What synth writes: git mirrors, SWE-bench instances, function-level tasks, splits, manifest.

  DIR/repos/OWNER__NAME/        a bare git mirror per source: branch `main` is the original
                                snapshot; each bug is a branch (its instance id) holding one
                                root commit: the snapshot with the bug, less the test files
                                that judge it (they come back with the instance's test patch,
                                as SWE-bench's new tests do). A root commit, so the fix is not
                                one `git diff HEAD~1` away.
  DIR/instances.jsonl           SWE-bench instances (+ .train / .eval): `patch` reverts the
                                bug, `test_patch` restores the hidden test files
  DIR/functions.jsonl           function-level tasks (+ .train / .eval): Task JSON, the model
                                shown one function, with the names in scope where it lives
                                (the spec and `metadata.in_scope`); the package's files stay
                                in the mirror and `selfrepair.loaders.load_synth` lays them out
  DIR/manifest.json             counts per family and per package, the splits, the settings

Commits are made with plumbing (gitpython: blobs into the object store, a throwaway index,
a tree, a commit) at a fixed date by a fixed author, so the same bug always gets the same
commit id: a resumed run rebuilds exactly what it had.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from selfrepair.agents.code.focus import shown, shown_file, with_scope
from selfrepair.factory.harness.splice import SpliceError, splice
from selfrepair.factory.mutations import dedent
from selfrepair.factory.sources import Source
from selfrepair.factory.validate import SPLICE, harness

from selfrepair.errors import SelfRepairError
from selfrepair.types import Task, TestSpec

AUTHOR = ("selfrepair synth", "synth@selfrepair.invalid")
DATE = "2000-01-01T00:00:00+0000"
SPLITS = ("train", "eval")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


# ---------------------------------------------------------------- mirrors


class Mirror:
    """A bare repository under DIR/repos: the original snapshot and one commit per bug."""

    def __init__(self, path: Path) -> None:
        import git

        self.path = path
        if path.exists():
            try:
                self.repo = git.Repo(path)
            except git.InvalidGitRepositoryError:
                raise SelfRepairError(f"{path}: exists and is not a git repository") from None
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.repo = git.Repo.init(path, bare=True, initial_branch="main")

    def _blob(self, data: bytes) -> bytes:
        from gitdb import IStream

        return self.repo.odb.store(IStream("blob", len(data), io.BytesIO(data))).binsha

    def commit(self, files: dict[str, bytes], message: str, branch: str) -> str:
        """A root commit of exactly `files`, on `branch` (made or moved there); its id."""
        import git
        from git.index.typ import BaseIndexEntry

        with tempfile.TemporaryDirectory(prefix="selfrepair-index-") as scratch:
            index = git.IndexFile(self.repo, file_path=os.path.join(scratch, "index"))
            entries = [
                BaseIndexEntry((0o100644, self._blob(data), 0, path))
                for path, data in sorted(files.items())
            ]
            index.add(entries, write=True)
            return self._commit(index.write_tree(), message, branch)

    def commit_changes(
        self, base: str, changed: dict[str, bytes], removed: list[str], message: str, branch: str
    ) -> str:
        """A root commit of `base`'s tree with files changed and removed: only the changed
        blobs are written, the rest of the tree is `base`'s."""
        import git
        from git.index.typ import BaseIndexEntry

        index = git.IndexFile.from_tree(self.repo, base)
        for path in removed:
            index.entries.pop((path, 0), None)
        index.add(
            [
                BaseIndexEntry((0o100644, self._blob(data), 0, path))
                for path, data in changed.items()
            ],
            write=False,
        )
        return self._commit(index.write_tree(), message, branch)

    def _commit(self, tree, message: str, branch: str) -> str:
        import git
        from git.objects.commit import Commit

        actor = git.Actor(*AUTHOR)
        commit = Commit.create_from_tree(
            self.repo,
            tree,
            message,
            parent_commits=[],
            head=False,
            author=actor,
            committer=actor,
            author_date=DATE,
            commit_date=DATE,
        )
        self.repo.create_head(branch, commit, force=True)
        return commit.hexsha

    def original(self) -> str | None:
        try:
            return self.repo.commit("main").hexsha
        except Exception:  # an empty repository: no main yet
            return None

    def files(self, commit: str) -> dict[str, bytes]:
        tree = self.repo.commit(commit).tree
        return {
            blob.path: blob.data_stream.read() for blob in tree.traverse() if blob.type == "blob"
        }

    def diff(self, old: str, new: str, paths: list[str]) -> str:
        text = self.repo.git.diff(
            old, new, "--no-color", "--no-ext-diff", "--", *paths, strip_newline_in_stdout=False
        )
        return text if not text or text.endswith("\n") else text + "\n"


# ---------------------------------------------------------------- bugs


@dataclass
class Bug:
    """A validated mutant with everything the outputs need (it is stored, a JSON line, in the
    run's state, so outputs can be rewritten from the state alone)."""

    instance_id: str
    source: str  # the Source's repo ("pypi/toolz-1.0.0")
    path: str  # the file changed
    function: str  # qualname
    def_line: int
    indent: str
    family: str
    note: str
    mutation_key: str
    span: tuple[int, int]  # the bytes of the original file the mutation replaced
    replacement: str
    original_function: str  # the unit's text, as in the file
    buggy_function: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    failures: list[dict]
    problem_statement: str = ""
    written_issue: bool = False  # a model wrote the problem statement
    test_seconds: float = 0.0  # the judging tests' baseline time, summed

    def to_json(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Bug:
        known = {f.name for f in fields(cls)}  # a state written by an older version may hold more
        return cls(**{**{k: v for k, v in data.items() if k in known}, "span": tuple(data["span"])})

    def buggy_module(self, original: bytes) -> bytes:
        start, end = self.span
        return original[:start] + self.replacement.encode("utf-8") + original[end:]


def instance_id(source: Source, family: str, mutated_text: str, path: str, function: str) -> str:
    digest = hashlib.sha1(f"{path}\0{function}\0{mutated_text}".encode()).hexdigest()[:8]
    return f"{source.slug}.{family}__{digest}"


def hidden_tests(bug: Bug) -> list[str]:
    """The test files that hold the tests judging the bug: they leave the buggy commit."""
    return sorted({test.split("::", 1)[0] for test in [*bug.fail_to_pass, *bug.pass_to_pass]})


def bug_commit(
    mirror: Mirror, original: str, module_original: bytes, bug: Bug, message: str
) -> str:
    """The bug's commit: the original tree with the buggy module, less the hidden tests."""
    return mirror.commit_changes(
        original,
        {bug.path: bug.buggy_module(module_original)},
        hidden_tests(bug),
        message,
        bug.instance_id,
    )


def instance(
    bug: Bug, built: dict[str, str], original: str, version: str, environment: str | None = None
) -> dict[str, Any]:
    """The SWE-bench instance of a bug whose commit and patches are `built`. `environment`: the
    folder (relative to DIR) holding the package's installed requirements, when it has any."""
    base = built["commit"]
    return {
        "instance_id": bug.instance_id,
        "repo": bug.source,
        "base_commit": base,
        "patch": built["patch"],
        "test_patch": built["test_patch"],
        "problem_statement": bug.problem_statement,
        "hints_text": "",
        "created_at": "",
        "version": version,
        "environment_setup_commit": base,
        "FAIL_TO_PASS": bug.fail_to_pass,
        "PASS_TO_PASS": bug.pass_to_pass,
        "synth": {
            "family": bug.family,
            "file": bug.path,
            "function": bug.function,
            "change": bug.note,
            "original_commit": original,
            "written_issue": bug.written_issue,
        }
        | ({"environment": environment} if environment else {}),
    }


# ---------------------------------------------------------------- function-level tasks


def shown_function(bug: Bug, text: str) -> str | None:
    """What the model is shown of a function: its path (and class) as a comment, then the
    function at column 0. None when moving it to column 0 would change it."""
    moved = dedent(text, bug.indent)
    return None if moved is None else shown(f"{moved}\n", bug.path, bug.function)


def splices_back(bug: Bug, module_original: bytes) -> bool:
    """Whether the function as shown, spliced into the module, gives the module exactly: as the
    buggy module (the task as given) and as the original (the task with its solution)."""
    buggy_shown = shown_function(bug, bug.buggy_function)
    fixed_shown = shown_function(bug, bug.original_function)
    if buggy_shown is None or fixed_shown is None:
        return False
    buggy_module = bug.buggy_module(module_original).decode("utf-8")
    try:
        return (
            splice(buggy_module, bug.def_line, fixed_shown) == module_original.decode("utf-8")
            and splice(buggy_module, bug.def_line, buggy_shown) == buggy_module
        )
    except (SpliceError, SyntaxError):
        return False


def function_task(
    bug: Bug,
    mirror_dir: str,
    base: str,
    original: str,
    timeout_s: float,
    module: bytes,
    environment: str | None = None,
) -> Task:
    """The bug as a function-level task (for a bug whose function `splices_back`); `module`
    is the buggy module's text, whose names in scope the task shows (`scoped`)."""
    buggy_shown = shown_function(bug, bug.buggy_function)
    fixed_shown = shown_function(bug, bug.original_function)
    entry = shown_file(bug.function)
    tests = [*bug.fail_to_pass, *bug.pass_to_pass]
    command = (
        f"python $SELFREPAIR_TESTS/{SPLICE} {shlex.quote(entry)} {shlex.quote(bug.path)} {bug.def_line} && "
        "python -m pytest -q " + " ".join(shlex.quote(test) for test in tests)
    )
    task = Task(
        task_id=bug.instance_id,
        spec=bug.problem_statement,
        files={entry: buggy_shown},
        entry_file=entry,
        entry_point=bug.function,
        tests=TestSpec(
            kind="command",
            command=command,
            files={SPLICE: harness("splice.py")},
            select=bug.fail_to_pass,
            must_keep_passing=bug.pass_to_pass,
            timeout_s=timeout_s,
        ),
        metadata={
            "benchmark": "synth",
            "mode": "repair",
            "solution": fixed_shown,
            "synth": {
                "mirror": mirror_dir,
                "commit": base,
                "test_commit": original,
                "test_files": hidden_tests(bug),
                "repo": bug.source,
                "file": bug.path,
                "function": bug.function,
                "family": bug.family,
                "change": bug.note,
            }
            | ({"environment": environment} if environment else {}),
        },
    )
    return scoped(task, module)


def scoped(task: Task, module: str | bytes) -> Task:
    """A function-level synth task with the names in scope where its function lives, read
    from the buggy `module`: shown after the issue, and kept in `metadata.in_scope` so the
    merge leaves out a reply's restatement of them. A task made before the scope was shown
    loads as it is, without them; this gives it the same as a new one."""
    synth = task.metadata["synth"]
    spec, names = with_scope(task.spec, synth["file"], synth["function"], module)
    if not names:
        return task
    metadata = {**task.metadata, "in_scope": names}
    return task.model_copy(update={"spec": spec, "metadata": metadata})


def task_timeout(bug: Bug) -> float:
    """A function-level task's test time limit: generous for the code as it should be, short
    for an endless candidate (which is judged failing when it hits it)."""
    return float(min(300, round(30 + 10 * bug.test_seconds)))


# ---------------------------------------------------------------- splits


def split_units(
    bugs: list[Bug], by: str, eval_fraction: float, eval_packages: list[str], seed: int
) -> dict[str, str]:
    """Each unit (a package, or a package's module) on one side: {unit: "train"|"eval"}.

    Named packages go to eval whole and everything else to train. Otherwise units are taken
    in a seeded order into eval while it stays within `eval_fraction` of the bugs (the
    smallest unit when none fits), keeping at least one unit in train. A function is inside
    one module and one package, so it is never on both sides."""
    counts: dict[str, int] = {}
    for bug in bugs:
        counts[unit_of(bug, by)] = counts.get(unit_of(bug, by), 0) + 1
    if eval_packages:
        named = set(eval_packages)
        return {unit: "eval" if unit.split(":", 1)[0] in named else "train" for unit in counts}
    order = sorted(counts, key=lambda unit: hashlib.sha1(f"{seed}:{unit}".encode()).hexdigest())
    target = eval_fraction * sum(counts.values())
    sides = {unit: "train" for unit in order}
    held = 0
    for unit in order:
        if held + counts[unit] <= target and list(sides.values()).count("train") > 1:
            sides[unit] = "eval"
            held += counts[unit]
    if eval_fraction > 0 and len(order) > 1 and "eval" not in sides.values():
        sides[min(order, key=lambda unit: (counts[unit], order.index(unit)))] = "eval"
    return sides


def unit_of(bug: Bug, by: str) -> str:
    return bug.source if by == "package" else f"{bug.source}:{bug.path}"
