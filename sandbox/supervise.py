"""Watch one child process: read its output under a cap, enforce a wall-clock deadline.

Standard library only, on purpose: the Docker sandbox sends this file's source into each
container, where its fork server (`forkserver.py`) uses it, and the local sandbox uses it on
the host. Both then see output, deadlines and killing the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import select
import signal
import socket
import stat
import struct
import time

if "paths" not in globals():  # on the host; in a container the launcher provides it
    from selfrepair import paths

TAIL_SHARE = 4  # a quarter of the cap keeps the end of the output, where tracebacks are
PARKING = 512  # descriptors are parked above this while they are moved into place
CHANNEL_BYTES = 16 * 1024 * 1024  # the harness's reports; more than this is cut (and so fails)
CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


def report_channel() -> tuple[socket.socket, socket.socket]:
    """The guard's report channel: (reader, writer). Each write on it is one message, and the
    kernel stamps every message with the pid of the process that wrote it (SCM_CREDENTIALS),
    so the reader knows who wrote each record without any secret in the writers' memory (an
    unprivileged process cannot claim another's pid)."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    writer.shutdown(socket.SHUT_RD)
    return reader, writer


def _is_socket(fd: int) -> bool:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


class CappedBuffer:
    """Keeps the first and last bytes of a stream within `cap` and counts what it drops."""

    def __init__(self, cap: int, keep_tail: bool = True) -> None:
        self.tail_cap = cap // TAIL_SHARE if keep_tail else 0
        self.head_cap = cap - self.tail_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data
            if len(self.tail) > self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def cut_bytes(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        if not self.tail:
            return head
        tail = self.tail.decode("utf-8", "replace")
        if self.cut_bytes:
            return f"{head}\n[... {self.cut_bytes} bytes cut ...]\n{tail}"
        return head + tail


def watch(
    pid: int | None,
    out_fd: int,
    err_fd: int,
    deadline: float,
    cap: int,
    channel_fd: int | None = None,
) -> dict:
    """Read the child's stdout/stderr (and the harness's channel) until it exits or the
    deadline passes. Without a `pid`, the run ends when every writer has closed the channel
    (a judge that wrote its verdict).

    Returns {"stdout", "stderr", "stdout_cut", "stderr_cut", "channel", "exited", "timed_out"}.
    The child's exit is noticed through a pidfd, not through EOF on its pipes: a background
    process it left behind may hold the pipes open forever. The caller kills and reaps.
    The channel keeps its first CHANNEL_BYTES; it is drained as it fills so a writer never blocks.
    """
    buffers = {out_fd: CappedBuffer(cap), err_fd: CappedBuffer(cap)}
    stamped = None  # a report channel (`report_channel`): its messages are read with their pid
    if channel_fd is not None:
        buffers[channel_fd] = CappedBuffer(CHANNEL_BYTES, keep_tail=False)
        if _is_socket(channel_fd):
            stamped = socket.socket(fileno=os.dup(channel_fd))
    pidfd = os.pidfd_open(pid) if pid is not None else None
    poller = select.poll()
    for fd in buffers:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    open_fds = set(buffers)
    exited = timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for fd, _event in poller.poll(remaining * 1000):
                if fd == pidfd:
                    exited = True
                    continue
                _read(fd, buffers[fd], open_fds, poller, stamped if fd == channel_fd else None)
            if pidfd is None and channel_fd not in open_fds:
                exited = True
            if exited:
                # Take what is already in the pipes; whatever still writes is killed next.
                for fd in list(open_fds):
                    _read(fd, buffers[fd], open_fds, poller, stamped if fd == channel_fd else None)
                break
    finally:
        if pidfd is not None:
            os.close(pidfd)
        if stamped is not None:
            stamped.close()
        for fd in buffers:
            os.close(fd)
    out, err = buffers[out_fd], buffers[err_fd]
    return {
        "stdout": out.text(),
        "stderr": err.text(),
        "stdout_cut": out.cut_bytes,
        "stderr_cut": err.cut_bytes,
        "channel": bytes(buffers[channel_fd].head) if channel_fd is not None else b"",
        "exited": exited,
        "timed_out": timed_out,
    }


def _read(fd: int, buffer: CappedBuffer, open_fds: set, poller, stamped) -> None:
    if stamped is not None:
        _read_stamped(stamped, fd, buffer, open_fds, poller)
    else:
        _read_available(fd, buffer, open_fds, poller)


def _read_stamped(sock: socket.socket, fd: int, buffer: CappedBuffer, open_fds: set, poller):
    """Each message as lines `PID TEXT`: the pid is the kernel's word, not the writer's."""
    space = socket.CMSG_SPACE(CREDENTIALS.size)
    for _ in range(64):
        try:
            data, ancillary, _flags, _address = sock.recvmsg(1 << 16, space, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        pid = next(
            (
                CREDENTIALS.unpack(payload[: CREDENTIALS.size])[0]
                for level, kind, payload in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            ),
            None,
        )
        if pid is None and not data:  # every writer has closed its end
            open_fds.discard(fd)
            poller.unregister(fd)
            return
        for line in data.splitlines():
            if line.strip():
                buffer.add(b"%d " % (pid or 0) + line + b"\n")


def _read_available(fd: int, buffer: CappedBuffer, open_fds: set, poller) -> None:
    # Bounded so a writer faster than us cannot keep this loop from seeing the deadline.
    for _ in range(64):
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            open_fds.discard(fd)
            poller.unregister(fd)
            return
        buffer.add(data)


def is_test_code(path: str) -> bool:
    """Python the tests' run loads as test code: the `.py` files `paths.is_test_file` counts
    (test modules, conftest files, helper modules under tests/), and the compiled form Python
    would load in their place (`__pycache__/NAME.TAG.pyc`, or a sourceless `NAME.pyc`). Other
    files under tests/ are left out: honest tests write outputs and snapshots there."""
    folder, name = os.path.split(path)
    if name.endswith(".pyc"):
        if os.path.basename(folder) == "__pycache__":
            folder = os.path.dirname(folder)
        path = os.path.join(folder, name.split(".")[0] + ".py")
    return path.endswith(".py") and paths.is_test_file(path)


def test_files(root: str) -> dict[str, str]:
    """The test code under `root` (relative path: sha256). Taken before a guarded run and
    compared after it, outside the candidate's process: a run that rewrote, removed or added
    a test file (a conftest that turns the repository's asserts into `assert True`, a helper
    under tests/, a forged .pyc) changed the tests."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", "node_modules")]
        for name in files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if not is_test_code(relative):
                continue
            try:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                digest = "unreadable"
            found[relative] = digest
    return found


def changed_test_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))


def exit_code_of(status: int) -> int:
    """A shell-style exit code: the exit status, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def died_of_memory(stderr: str) -> bool:
    """Python reports an address-space limit hit as a MemoryError on its last stderr line."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return bool(lines) and lines[-1].startswith("MemoryError")


def kill_group(pgid: int) -> bool:
    """SIGKILL the process group; True when anything in it was still alive."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def place_fds(targets: dict[int, int]) -> None:
    """Make each target descriptor a copy of its source (e.g. {1: pipe, 3: channel}), safely
    when sources and targets overlap; the sources stay open for the caller to close."""
    parked = {
        target: fcntl.fcntl(source, fcntl.F_DUPFD, PARKING) for target, source in targets.items()
    }
    for target, copy in parked.items():
        os.dup2(copy, target)
        os.close(copy)
