"""What a program does on given calls, seen from the sandbox: the label-free mode's evidence.

`observe` runs one program (the task's files with a candidate's over them) in the sandbox as
the candidate, loads its entry file, makes each call (a Python expression of literals, e.g.
`gcd(12, 18)`) with a per-call time limit, and reports one string per call: `= repr(value)`,
`raise ErrorName`, or `timeout`. Two programs behave alike on the calls when their strings
match; nothing else is compared. What comes back was written by candidate code, so it is
data alone: parsed as JSON, checked to be a list of short strings, never evaluated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from selfrepair.sandbox.core import Limits, Sandbox

MARKER = "selfrepair-behaviour: "
SHOWN_CHARS = 200  # of a call's repr: enough to tell results apart, small enough to store

# Runs inside the sandbox, as the candidate. argv: entry file, function name, calls file,
# seconds per call. The result goes last on stdout, after whatever the program printed.
PROBE = r"""
import json, signal, sys

entry, name, calls_file, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
calls = json.load(open(calls_file))

class CallTimeout(BaseException):
    pass

def stop(*_):
    raise CallTimeout

signal.signal(signal.SIGALRM, stop)
namespace = {"__name__": "candidate"}
shown = []
try:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    exec(compile(open(entry).read(), entry, "exec"), namespace)
    signal.setitimer(signal.ITIMER_REAL, 0)
    function = namespace[name]
except BaseException as error:
    shown = ["load: " + type(error).__name__] * len(calls)
for call in calls[len(shown):]:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        shown.append("= " + repr(eval(call, dict(namespace)))[:LIMIT])
    except CallTimeout:
        shown.append("timeout")
    except BaseException as error:
        shown.append("raise " + type(error).__name__)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
sys.stdout.write("\nMARKER" + json.dumps(shown) + "\n")
""".replace("LIMIT", str(SHOWN_CHARS)).replace("MARKER", MARKER)


def observe(
    sandbox: Sandbox,
    files: Mapping[str, str],
    entry_file: str,
    name: str,
    calls: Sequence[str],
    *,
    call_seconds: float = 2.0,
) -> tuple[list[str], float]:
    """One string per call (see the module's docstring), and the sandbox's wall seconds. A run
    that reports nothing usable (a crash at exit, output cut, a forged line of another shape)
    gives every call the same failure string, so such programs agree only with each other."""
    if not calls:
        return [], 0.0
    limits = dataclasses.replace(
        getattr(sandbox, "limits", None) or Limits(),
        wall_seconds=call_seconds * (len(calls) + 1) + 10,
    )
    run = sandbox.execute(
        dict(files),
        [
            "python",
            "$SELFREPAIR_TESTS/probe.py",
            entry_file,
            name,
            "$SELFREPAIR_TESTS/calls.json",
            str(call_seconds),
        ],
        tests={"probe.py": PROBE, "calls.json": json.dumps(list(calls))},
        limits=limits,
    )
    shown = read_result(run.stdout, len(calls))
    if shown is None:
        why = (
            "timeout"
            if run.timed_out
            else "out of memory"
            if run.out_of_memory
            else f"no result (exit {run.exit_code})"
        )
        shown = [why] * len(calls)
    return shown, run.wall_seconds


def read_result(stdout: str, count: int) -> list[str] | None:
    """The probe's last result line: a JSON list of `count` strings, each cut to size; None
    when there is no such line."""
    for line in reversed(stdout.splitlines()):
        if not line.startswith(MARKER):
            continue
        try:
            value = json.loads(line[len(MARKER) :])
        except json.JSONDecodeError:
            return None
        if (
            isinstance(value, list)
            and len(value) == count
            and all(isinstance(item, str) for item in value)
        ):
            return [item[: SHOWN_CHARS + 2] for item in value]
        return None
    return None
