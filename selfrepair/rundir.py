"""What a run directory is, and the one way to make, resume and write it.

    RUN_DIR/run.sqlite        trajectories (selfrepair.store) and LangGraph's checkpoints
    RUN_DIR/results.jsonl     one `metrics.result_row` per finished task
    RUN_DIR/summary.json      the summary of those rows, and the run's configuration
    RUN_DIR/fix.patch         `fix`: the fix as a unified diff
    RUN_DIR/predictions.jsonl `bench swebench`: predictions for SWE-bench's harness
    RUN_DIR/run.lock          held (flock) by the process running it; holds its pid

A run directory belongs to one configuration, recorded in its store when it is made. Giving
it again resumes that run; a run of other settings there is refused rather than mixed in,
unless that run holds nothing yet (no trajectory, no checkpoint): then the new settings
replace it, so a command corrected after a failed start is not refused.
It belongs to one process at a time: a second process given it is refused while the first
runs, and since the operating system drops the lock when its holder ends, however it ends,
a killed run never leaves it locked. As tasks finish (`ResultsWriter`), results.jsonl is
made anew, atomically, with a run's first row and has each later row appended as one line;
summary.json is rewritten atomically with the first row, every few seconds after and at the
end. Readers (`read_results`, `report`) take the complete lines, so a line cut short by a
kill is not read; the summary's numbers are recomputed from the rows. A resumed run makes
both files anew from its first row.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from selfrepair.errors import SelfRepairError
from selfrepair.files import check_can_make, describe, make_directory, write_atomically
from selfrepair.metrics import summarize
from selfrepair.store import STORE_NAME, TrajectoryStore, store_path

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
PATCH = "fix.patch"
PREDICTIONS = "predictions.jsonl"
LOCK = "run.lock"
FILES = (STORE_NAME, RESULTS, SUMMARY)  # what every finished run directory holds
CONFIG_KEY = "run_config"  # where the store keeps the run's configuration
SUMMARY_SECONDS = 5.0  # how stale summary.json may be while a run goes on

_held: dict[Path, int] = {}  # run directories this process holds: their lock files' descriptors
_holding = threading.Lock()


def check_run_dir(run_dir: Path, config: dict[str, Any]) -> None:
    """Everything prepare_run_dir would refuse, refused now, before a model is loaded:
    a file in the way, a folder that is no run directory, a store that cannot be read, a
    run of other settings, a run another process holds, a place no folder can be made."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SelfRepairError(f"--out {run_dir} is a file, not a directory")
    if not is_empty(run_dir):
        if not store_path(run_dir).exists():
            raise SelfRepairError(f"--out {run_dir} is not empty and is not a run directory")
        if (run_dir / LOCK).exists():  # a run that began here: refused now if it still runs
            hold_run_dir(run_dir)
        open_run_store(run_dir, config).close()
    else:
        check_can_make(run_dir)


def prepare_run_dir(run_dir: Path, config: dict[str, Any]) -> TrajectoryStore:
    """Create the run directory, or reopen it to resume when it holds a run of the same
    configuration; a different run there is refused rather than mixed in. The directory is
    held by this process from here on (see hold_run_dir)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SelfRepairError(f"--out {run_dir} is a file, not a directory")
    make_directory(run_dir)
    # Held before it is read: two processes starting on the same new folder cannot both
    # find it empty and both begin a run there.
    hold_run_dir(run_dir)
    return open_run_store(run_dir, config)


def open_run_store(run_dir: Path, config: dict[str, Any]) -> TrajectoryStore:
    """The store of a run of `config` in `run_dir`: made when the folder is empty, else
    reopened when it holds a run of the same configuration."""
    if is_empty(run_dir):
        try:
            store = TrajectoryStore(run_dir)
            try:
                store.set_meta(CONFIG_KEY, json.dumps(config, sort_keys=True))
            except BaseException:
                store.close()
                raise
        except BaseException:
            # A store without its settings (a full disk, a kill) would stand in the way of
            # the same command: none is left.
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{store_path(run_dir)}{suffix}").unlink(missing_ok=True)
            raise
        return store
    if not store_path(run_dir).exists():
        raise SelfRepairError(f"--out {run_dir} is not empty and is not a run directory")
    store = TrajectoryStore(run_dir, create=False)
    recorded = json.loads(store.get_meta(CONFIG_KEY) or "{}")
    if recorded != config and store.holds_nothing():
        # A run that never got as far as a result (its model did not load, it was stopped
        # at once): the corrected command takes its place rather than being refused.
        store.set_meta(CONFIG_KEY, json.dumps(config, sort_keys=True))
        recorded = config
    if recorded != config:
        store.close()
        different = sorted(
            k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k)
        )
        raise SelfRepairError(
            f"{run_dir} holds a run with other settings ({', '.join(different)}); "
            "choose another --out to start a new run"
        )
    return store


def is_empty(folder: Path) -> bool:
    """No folder, or one holding nothing but a lock file (all a run killed as it began leaves)."""
    return not folder.is_dir() or all(entry.name == LOCK for entry in folder.iterdir())


def hold_run_dir(run_dir: Path) -> None:
    """Hold `run_dir` for the rest of this process's life: an exclusive flock on
    RUN_DIR/run.lock. Another process holding it is refused with its pid; this process
    asking again is a no-op. The lock goes when the process ends, a SIGKILL included."""
    key = run_dir.resolve()
    with _holding:
        if key in _held:
            return
        try:
            descriptor = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise SelfRepairError(
                f"cannot lock {run_dir}: {(error.strerror or str(error)).lower()}"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            os.close(descriptor)
            raise SelfRepairError(
                f"{run_dir} is in use by another selfrepair process{f' (pid {holder})' if holder else ''}: "
                "wait for it to end, or choose another --out"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _held[key] = descriptor


def write_results(
    run_dir: Path, rows: list[dict[str, Any]], config: dict[str, Any]
) -> dict[str, Any]:
    """results.jsonl and summary.json, whole, for the finished tasks' rows
    (`metrics.result_row`); returns the summary. A run whose tasks finish one by one writes
    them through a ResultsWriter."""
    write_atomically(run_dir / RESULTS, "".join(json.dumps(row) + "\n" for row in rows))
    return write_summary(run_dir, rows, config)


def write_summary(
    run_dir: Path, rows: list[dict[str, Any]], config: dict[str, Any]
) -> dict[str, Any]:
    summary = summarize(rows) | {
        "errors": sum(r["outcome"] == "error" for r in rows),
        "config": config,
    }
    write_atomically(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


class ResultsWriter:
    """A run's results.jsonl and summary.json as its tasks finish, each row made once, when
    its task finishes (remaking every row after every task grew with the square of a run's
    tasks). The first row makes both files anew (a resumed run's rows replace the last
    run's); each later row is appended to results.jsonl as one line, where rewriting the
    file and summary.json after every task cost two atomic renames a task; summary.json
    follows at most every SUMMARY_SECONDS, and at `close`, which returns the summary. As a
    context manager it closes however the block ends, so a stopped run's summary.json counts
    every task it finished."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}  # what summary.json holds
        self.summarized_at = 0.0  # when it was written (time.monotonic)

    def add(self, row: dict[str, Any]) -> None:
        """The finished task's row, in results.jsonl; counted once it is written there."""
        if not self.rows:
            write_atomically(self.run_dir / RESULTS, json.dumps(row) + "\n")
        else:
            path = self.run_dir / RESULTS
            try:
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
            except OSError as error:
                raise SelfRepairError(
                    f"cannot write {path}: {describe(error, self.run_dir)}"
                ) from None
        self.rows.append(row)
        if len(self.rows) == 1 or time.monotonic() - self.summarized_at >= SUMMARY_SECONDS:
            self._summarize()

    def close(self) -> dict[str, Any]:
        """summary.json brought up to date with every row; the summary."""
        if not self.rows:
            self.summary = write_results(self.run_dir, [], self.config)
        elif self.summary.get("tasks") != len(self.rows):
            self._summarize()
        return self.summary

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        # A stopped run's summary still counts every task it finished; one stopped before its
        # first row keeps the files a resumed run found. When they cannot be written (a full
        # disk fails this too), the error already on its way is the one to show.
        if not self.rows:
            return
        try:
            self.close()
        except SelfRepairError:
            pass

    def _summarize(self) -> None:
        self.summary = write_summary(self.run_dir, self.rows, self.config)
        self.summarized_at = time.monotonic()


def complete_lines(path: Path) -> list[str]:
    """The lines of a JSON-lines file that a writer finished: a last line without its newline
    that does not parse is one being appended, or cut short by a kill, and is left out."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return lines


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run directory's results.jsonl (none when it has no such file yet)."""
    path = run_dir / RESULTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in complete_lines(path) if line.strip()]
