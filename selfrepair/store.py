"""The trajectory store: one SQLite file per run directory (`RUN_DIR/run.sqlite`).

Trajectories are stored whole, as the JSON of the Trajectory type, so what training reads
is exactly what the loop wrote. LangGraph's checkpointer (langgraph-checkpoint-sqlite)
keeps its own tables in the same file.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from selfrepair.errors import SelfRepairError
from selfrepair.files import atomic_file, storage_failure
from selfrepair.types import Trajectory

STORE_NAME = "run.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trajectories (
    trajectory_id TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    strategy      TEXT NOT NULL,
    model         TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    started_at    REAL NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trajectories_task ON trajectories(task_id);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def store_path(run_dir: Path) -> Path:
    return Path(run_dir) / STORE_NAME


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """A store SQLite cannot use (not a database, damaged, locked past the timeout, a disk
    that is full) or a trajectory that does not read back is one clear line, not a traceback."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        problem = storage_failure(error, path.parent)
        if problem is not None:
            raise SelfRepairError(
                f"cannot write {path}: {problem}; a run resumes when the same command is run again"
            ) from None
        raise SelfRepairError(f"{path} is not a readable trajectory store: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        raise SelfRepairError(
            f"{path} holds a trajectory this selfrepair cannot read (an older format?): "
            f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


class TrajectoryStore:
    """Trajectories of one run. `save` inserts or replaces, so a step can be saved as it lands."""

    def __init__(self, path: Path, *, create: bool = True, read_only: bool = False) -> None:
        """`read_only`: for readers of a finished run (report, export, training), which may
        sit on a read-only mount; nothing is written, not even SQLite's journal files."""
        path = Path(path)
        if path.is_dir():
            path = store_path(path)
        if (read_only or not create) and not path.exists():
            raise SelfRepairError(f"no trajectory store at {path} (is this a run directory?)")
        self.path = path
        self.copy: Path | None = None  # a read-only store's private copy, where one was needed
        # One connection shared by a run's worker threads; writes take turns. Reentrant, so
        # that a writer holding it can add a row to a transaction of its own (`stage`).
        self.lock = threading.RLock()
        with readable(path):
            if read_only:
                self.connection = self._open_read_only(path)
                self._check_read_only()
                return
            self.connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
            try:
                tables = {
                    row[0]
                    for row in self.connection.execute(
                        "SELECT name FROM sqlite_master WHERE type='table'"
                    )
                }
                if not create and "trajectories" not in tables:
                    # An empty file reads as an empty database: it is no store, and must not become one.
                    raise SelfRepairError(
                        f"{path} is not a trajectory store (it holds no trajectories table)"
                    )
                # Every step is saved as it lands: with WAL, NORMAL keeps each commit safe from a
                # killed process (what resuming needs) without an fsync per step. Set before the
                # switch to WAL, whose own transaction then waits on fewer fsyncs.
                self.connection.execute("PRAGMA synchronous=NORMAL")
                self.connection.execute("PRAGMA journal_mode=WAL")
                with self.connection:
                    self.connection.executescript(_SCHEMA)
                    self.connection.execute(
                        "INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                version = self.connection.execute(
                    "SELECT value FROM store_meta WHERE key='schema_version'"
                ).fetchone()[0]
            except BaseException:
                self.connection.close()
                raise
        if int(version) != SCHEMA_VERSION:
            raise SelfRepairError(
                f"{path} is a store of format {version}; this selfrepair reads format {SCHEMA_VERSION}"
            )

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        """SQLite reads a WAL store read-only where it can reach (or finds) the shared-memory
        file beside it; where it cannot (a read-only mount without run.sqlite-shm), the
        store and its journal are read from a private copy, so no committed step is missed."""
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
        self.copy = Path(tempfile.mkdtemp(prefix="selfrepair-store-"))
        try:
            for suffix in ("", "-wal"):
                if path.with_name(path.name + suffix).exists():
                    shutil.copyfile(
                        path.with_name(path.name + suffix), self.copy / (STORE_NAME + suffix)
                    )
        except OSError as error:
            shutil.rmtree(self.copy, ignore_errors=True)
            raise SelfRepairError(f"cannot read {path}: {error.strerror or error}") from None
        return sqlite3.connect(self.copy / STORE_NAME, check_same_thread=False)

    def _check_read_only(self) -> None:
        try:
            tables = {
                row[0]
                for row in self.connection.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            }
            if "trajectories" not in tables or "store_meta" not in tables:
                raise SelfRepairError(
                    f"{self.path} is not a trajectory store (it holds no trajectories table)"
                )
            row = self.connection.execute(
                "SELECT value FROM store_meta WHERE key='schema_version'"
            ).fetchone()
        except BaseException:
            self.close()
            raise
        if row is None or int(row[0]) != SCHEMA_VERSION:
            self.close()
            raise SelfRepairError(
                f"{self.path} is a store of format {row and row[0]}; this selfrepair reads format {SCHEMA_VERSION}"
            )

    def save(self, trajectory: Trajectory) -> None:
        with readable(self.path), self.lock, self.connection:
            self.stage(trajectory)

    def stage(self, trajectory: Trajectory) -> None:
        """Insert or replace the trajectory in the open transaction, which the caller commits
        (or rolls back) while holding `lock`: the run's checkpointer commits a node's row with
        the node's checkpoint, one commit for both."""
        self.connection.execute(
            "INSERT OR REPLACE INTO trajectories VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                trajectory.trajectory_id,
                trajectory.task.task_id,
                trajectory.strategy,
                trajectory.model,
                trajectory.outcome,
                trajectory.started_at,
                trajectory.model_dump_json(),
            ),
        )

    def get(self, trajectory_id: str) -> Trajectory | None:
        with readable(self.path), self.lock:
            row = self.connection.execute(
                "SELECT body FROM trajectories WHERE trajectory_id = ?", (trajectory_id,)
            ).fetchone()
            return Trajectory.model_validate_json(row[0]) if row else None

    def trajectories(self, *, task_id: str | None = None) -> Iterator[Trajectory]:
        query, args = "SELECT body FROM trajectories", ()
        if task_id is not None:
            query, args = query + " WHERE task_id = ?", (task_id,)
        with readable(self.path):
            with self.lock:
                rows = self.connection.execute(query + " ORDER BY started_at", args).fetchall()
            trajectories = [Trajectory.model_validate_json(body) for (body,) in rows]
        yield from trajectories

    def get_meta(self, key: str) -> str | None:
        """A run-level value (e.g. the run's configuration), or None when it was never set."""
        with readable(self.path), self.lock:
            row = self.connection.execute(
                "SELECT value FROM store_meta WHERE key = ?", (key,)
            ).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with readable(self.path), self.lock, self.connection:
            self.connection.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (key, value))

    def holds_nothing(self) -> bool:
        """No trajectory and no LangGraph checkpoint (its tables share the file): a run that
        never got as far as a result, whose settings a corrected command may replace."""
        with readable(self.path), self.lock:
            tables = {
                row[0]
                for row in self.connection.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            }
            return not any(
                self.connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                for table in ("trajectories", "checkpoints", "writes")
                if table in tables
            )

    def __len__(self) -> int:
        with readable(self.path):
            return self.connection.execute("SELECT count(*) FROM trajectories").fetchone()[0]

    def export_jsonl(self, out: Path) -> int:
        """Write every trajectory as one JSON line, whole or not at all; returns how many."""
        trajectories = list(self.trajectories())
        with atomic_file(out) as handle:
            for trajectory in trajectories:
                handle.write(trajectory.model_dump_json() + "\n")
        return len(trajectories)

    def close(self) -> None:
        self.connection.close()
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
