"""A model server run as a child process on this machine (vLLM's, `transformers serve`):
started in a process group of its own, ready once its /health answers, and stopped with
everything it started, so that no worker outlives it. It also ends when this process dies
without stopping it (SIGKILL): Linux sends it SIGTERM then (a parent-death signal)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from selfrepair.errors import SelfRepairError

HOST = "127.0.0.1"  # never another interface: a served model is for this machine
PR_SET_PDEATHSIG = 1  # prctl(2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start(
    argv: Sequence[str], env: Mapping[str, str] | None = None, log: IO | None = None
) -> subprocess.Popen:
    """Start the server in a session of its own (so stopping its group takes its workers
    along); its output goes to `log` (a file, or the caller's stderr)."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
        preexec_fn=end_with(os.getpid()) if sys.platform == "linux" else None,
    )


def end_with(parent: int):
    """What the child runs before it becomes the server: SIGTERM when its parent dies (the
    server then stops its own workers, as on a `kill`). Linux ties the signal to the thread
    that started the child, so a server started from another thread (vLLM's, shared by the
    run's jobs) is left to its launcher, which watches its parent itself (vllm_launch)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def wait_until_ready(
    process: subprocess.Popen, port: int, timeout_s: float, log: Path | None = None
) -> None:
    """Poll /health until the server answers; one that exits or never answers is an error
    (with the end of its log, where it writes to a file)."""
    url = f"http://{HOST}:{port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SelfRepairError(
                f"the server exited with status {process.returncode} before it answered{log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SelfRepairError(
        f"the server did not answer on {url} within {timeout_s:.0f} s{log_tail(log)}"
    )


def log_tail(log: Path | None, lines: int = 5) -> str:
    if log is None:
        return " (its log is above)"
    try:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f"; the end of its log ({log}):\n" + "\n".join(tail)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group that is not ours any more
        return True
    return True


def stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the server's whole group, wait for every member to leave (vLLM's engine
    shuts its workers down itself), SIGKILL what is left after `grace_s`."""
    pgid = process.pid  # its own session: the group's id is its pid
    if process.poll() is None or group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if process.poll() is not None and not group_alive(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
