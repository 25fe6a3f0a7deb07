"""The `selfrepair` command's entry point. It imports nothing heavy before its stop signals
are handled, so Ctrl-C or a `kill` while the commands load (torch, transformers: seconds)
ends in the same one line as anywhere else; the commands are in `commands`."""

from __future__ import annotations

import atexit
import os
import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP (Ctrl-C, a `kill`, a supervisor, a closed terminal), raised
    in the main thread: every `finally` on the way out runs, so servers are stopped,
    sandboxes closed and their containers removed. A BaseException, so that no `except
    Exception` on the way catches it; not a KeyboardInterrupt, which click would turn into
    "Aborted!" and exit status 1."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop(signum: int, _frame: object) -> None:
    # Further stop signals are ignored while the way out runs: it is bounded (a server gets
    # seconds to stop, then SIGKILL), and a second signal must not cut it short.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    """Entry point: a SelfRepairError, or a full disk met anywhere, becomes one line on
    stderr and exit status 2; SIGINT, SIGTERM and SIGHUP stop the command cleanly with one
    line and exit status 128 + the signal's number (130 for Ctrl-C). A stop signal ignored
    by whoever started us (nohup, a shell's background job) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
    try:
        from selfrepair.errors import SelfRepairError
        from selfrepair.files import storage_failure

        try:
            from selfrepair.cli.commands import app

            app()
        except SelfRepairError as error:
            print(f"selfrepair: error: {error}", file=sys.stderr)
            sys.exit(2)
        except Exception as error:
            # A disk that fills (or turns read-only) mid-run: every step so far is committed,
            # so the run resumes once there is room.
            problem = storage_failure(error)
            if problem is None:
                raise
            print(
                f"selfrepair: error: {problem}; a run resumes when the same command is run again",
                file=sys.stderr,
            )
            sys.exit(2)
    except Stopped as stopped:
        # Every step and checkpoint is committed as it lands, so a run stopped anywhere
        # resumes; nothing it started is left running.
        name = signal.Signals(stopped.signum).name
        print(
            f"selfrepair: stopped by {name}; a run resumes when the same command is run again",
            file=sys.stderr,
        )
        # Threads of the run (--jobs) may be waiting on a model reply or inside a test run,
        # which would hold the exit for minutes: the exit handlers end what they started
        # (sandbox processes and containers, servers), and the process ends without them.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + stopped.signum)
