"""A pytest plugin for synth's validation runs. It runs inside the sandbox (stdlib only) and
is switched on by environment variables:

  SELFREPAIR_SYNTH_CALLS=PATH        record, for each test, the code objects of the workspace
                                     that ran (sys.settrace, 'call' events only, no line
                                     tracing) and each test's outcome; written as JSON to PATH
  SELFREPAIR_SYNTH_TEST_SECONDS=S    a test running longer than S seconds fails (SIGALRM), so
                                     one endless mutant costs one test, not the whole run

(No address-space limit: a test that starts threads needs far more virtual memory than it
uses, and such a limit made pytest itself fail on more-itertools' suite. A runaway
allocation meets the container's memory limit instead.)
"""

import json
import os
import signal
import sys
import threading

import pytest

ROOT = os.getcwd() + os.sep
_calls = {}
_outcomes = {}
_current = None


def _trace(frame, event, arg):
    # Only new frames reach a global trace function; returning None turns line tracing off.
    if _current is not None:
        _current.add(frame.f_code)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    recording = bool(os.environ.get("SELFREPAIR_SYNTH_CALLS"))
    if recording:
        _current = set()
        sys.settrace(_trace)
        threading.settrace(_trace)
    try:
        yield
    finally:
        if recording:
            sys.settrace(None)
            threading.settrace(None)
            codes = _current or set()
            _current = None
            _calls[item.nodeid] = sorted(
                {
                    (c.co_filename[len(ROOT) :], c.co_firstlineno)
                    for c in codes
                    if c.co_filename.startswith(ROOT)
                }
            )


class _TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _TestTimeout(
        f"selfrepair synth: the test ran longer than {os.environ.get('SELFREPAIR_SYNTH_TEST_SECONDS')} s"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    seconds = float(os.environ.get("SELFREPAIR_SYNTH_TEST_SECONDS") or 0)
    armed = seconds > 0 and threading.current_thread() is threading.main_thread()
    if armed:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def pytest_runtest_logreport(report):
    before = _outcomes.get(report.nodeid, "passed")
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and before != "failed":
        _outcomes[report.nodeid] = "skipped"
    else:
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("SELFREPAIR_SYNTH_CALLS")
    if path:
        with open(path, "w") as handle:
            json.dump({"calls": _calls, "outcomes": _outcomes}, handle)
