"""Writing what a command promises: a whole file or none, and one clear line when the place
cannot take it; reading a file a user gives, with one clear line when it cannot be read.

Every file a command writes for its user (a run's results, an export, a report, a fixed
source file) goes through here: it is written beside its place and renamed into it, so a
reader sees the old file or the new one and a failure (a missing folder, a directory in the
way, an unwritable place, a full disk, a kill) leaves no half of it behind; an OSError
becomes a SelfRepairError that names the path.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from selfrepair.errors import SelfRepairError

INPUT_BYTES = 16 * 1024 * 1024  # the most a file given as an option's value may hold


def read_input(path: Path, what: str, limit: int = INPUT_BYTES) -> str:
    """The text of a file the user gave (`what` names it: "--spec FILE"); a missing,
    unreadable, oversized or non-UTF-8 file is one line naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise SelfRepairError(f"{what}: no such file") from None
    except IsADirectoryError:
        raise SelfRepairError(f"{what}: a directory, not a file") from None
    except OSError as error:
        raise SelfRepairError(
            f"{what}: cannot read it ({(error.strerror or str(error)).lower()})"
        ) from None
    if len(data) > limit:
        raise SelfRepairError(
            f"{what}: larger than {limit // (1024 * 1024)} MB, the most it may be"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SelfRepairError(f"{what}: not UTF-8 text (byte {error.start})") from None


def check_output_file(path: Path) -> None:
    """Refuse, before any work, a place a file cannot go: a directory, a missing folder."""
    path = Path(path)
    if path.is_dir():
        raise SelfRepairError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise SelfRepairError(f"cannot write {path}: no such directory {path.parent}")


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """A text file to write that becomes `path` when the block ends without an exception;
    on any exception (a signal's included) it is removed and `path` is left as it was.
    Through a symbolic link the file it points to is written (the link stays); a device or
    a pipe (`--out /dev/stdout`) is written directly, there being nothing to rename over."""
    path = Path(path)
    check_output_file(path)
    if path.exists() and not path.resolve().is_file():
        try:
            with open(path, "w", encoding="utf-8") as handle:
                yield handle
        except OSError as error:
            raise SelfRepairError(f"cannot write {path}: {describe(error, path.parent)}") from None
        return
    path = path.resolve() if path.is_symlink() else path
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # Created with the usual mode (0666 less the umask), as a plain open would; a file
        # that exists keeps its own mode (an executable script stays executable).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise SelfRepairError(f"cannot write {path}: {describe(error, path.parent)}") from None
    try:
        with open(descriptor, "w", encoding="utf-8") as handle:
            yield handle
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SelfRepairError(f"cannot write {path}: {describe(error, path.parent)}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole (see atomic_file)."""
    with atomic_file(path) as handle:
        handle.write(text)


def make_directory(path: Path) -> None:
    """Make the folder `path` (and its parents); one clear line when it cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SelfRepairError(f"cannot make the folder {path}: a file is in the way") from None
    except OSError as error:
        raise SelfRepairError(
            f"cannot make the folder {path}: {describe(error, nearest_existing(path))}"
        ) from None


def check_can_make(path: Path) -> None:
    """Refuse, before any work, a folder that cannot be made: a file in the way, or a parent
    this user cannot write. (Some places, such as /proc, look writable to root and refuse
    only when asked; make_directory says so then.)"""
    path = Path(path)
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise SelfRepairError(f"cannot make the folder {path}: {existing} is a file")
    if existing != path and not os.access(existing, os.W_OK | os.X_OK):
        raise SelfRepairError(f"cannot make the folder {path}: {existing} is not writable")


def nearest_existing(path: Path) -> Path:
    """`path` or the closest of its parents that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
}


def describe(error: OSError, where: Path) -> str:
    """An OSError in words a user can act on; `where` is the folder that refused. A full
    disk is said as every other place says it (STORAGE_ERRNOS)."""
    reason = STORAGE_ERRNOS.get(error.errno) or (error.strerror or str(error)).lower()
    if error.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where} does not take new files ({reason})"
    return reason


SQLITE_STORAGE = {
    "database or disk is full": "no space left on the device",
    "attempt to write a readonly database": "the file system is read-only",
}


def storage_failure(error: BaseException, folder: Path | None = None) -> str | None:
    """What the disk refused, in words, when `error` is a full disk or a read-only place
    met on the way (a store's commit, a checkpoint, a cache), else None. SQLite says only
    "disk I/O error" when its journal cannot grow: `folder`, where given, tells whether
    that was a full disk."""
    import sqlite3

    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        where = f" ({error.filename})" if error.filename else ""
        return STORAGE_ERRNOS[error.errno] + where
    if isinstance(error, sqlite3.DatabaseError):
        if str(error) == "disk I/O error" and folder is not None and nearly_full(folder):
            return STORAGE_ERRNOS[errno.ENOSPC]
        return SQLITE_STORAGE.get(str(error))
    return None


def nearly_full(folder: Path) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1024 * 1024
