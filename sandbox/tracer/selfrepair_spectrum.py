"""A pytest plugin (stdlib and pytest only) that records which functions of the workspace each
test enters: a profile function on "call" events, on for one test at a time (its setup, call
and teardown), in every thread it starts. Written at the session's end to
$SELFREPAIR_OUT/spectrum.json; laid out in the tests' read-only folder by
`selfrepair.sandbox.spectrum`, which loads it with `-p`. Its outcomes feed fault localisation
only: no verdict is read from this run.
"""

import json
import os
import sys
import threading
import time

import pytest

OUTPUT = "spectrum.json"
ROOT = os.path.realpath(os.environ.get("SELFREPAIR_WORKSPACE") or os.getcwd())
MAX_TESTS = int(os.environ.get("SELFREPAIR_SPECTRUM_TESTS") or 1000)

_executed = {}  # test id -> set of code objects it entered
_outcomes = {}  # test id -> "passed" | "failed" | "skipped"
_broken = []  # tests during which someone else replaced the profile function
_places = {}  # code object -> (path, first line), or None outside the workspace's code
_started = time.perf_counter()


def _profiler(entered):
    add = entered.add

    def profile(frame, event, arg):
        if event == "call":
            add(frame.f_code)

    return profile


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if len(_executed) >= MAX_TESTS:  # past the cap a test runs untraced
        yield
        return
    entered = _executed.setdefault(item.nodeid, set())
    profile = _profiler(entered)
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        yield
    finally:
        if sys.getprofile() is not profile:
            _broken.append(item.nodeid)
        sys.setprofile(None)
        threading.setprofile(None)


def pytest_runtest_logreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and report.nodeid not in _outcomes:
        _outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and _outcomes.get(report.nodeid) != "failed":
        _outcomes[report.nodeid] = "passed"


def _place(code):
    """(workspace-relative path, first line) of a function of the workspace's own code; None
    for the tests, installed packages, modules and class bodies, lambdas, comprehensions."""
    if code not in _places:
        path = os.path.realpath(code.co_filename)
        place = None
        if path.startswith(ROOT + os.sep) and not code.co_name.startswith("<"):
            relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
            parts = relative.split("/")
            name = parts[-1]
            own = not any(
                p in ("site-packages", "dist-packages") or p.startswith(".") for p in parts
            )
            test = (
                name == "conftest.py"
                or name.startswith("test_")
                or name.endswith("_test.py")
                or any(p in ("tests", "test") for p in parts[:-1])
            )
            if own and not test and name.endswith(".py"):
                place = (relative, code.co_firstlineno)
        _places[code] = place
    return _places[code]


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("SELFREPAIR_OUT")
    if not out:
        return
    functions = {}
    tests = {}
    for nodeid, entered in _executed.items():
        places = {_place(code) for code in entered} - {None}
        tests[nodeid] = {
            "outcome": _outcomes.get(nodeid, "failed"),
            "executed": sorted(functions.setdefault(p, len(functions)) for p in places),
        }
    record = {
        "functions": [list(p) for p in sorted(functions, key=functions.get)],
        "tests": tests,
        "untraced": sum(1 for nodeid in _outcomes if nodeid not in _executed),
        "broken": _broken,
        "seconds": round(time.perf_counter() - _started, 3),
    }
    with open(os.path.join(out, OUTPUT), "w", encoding="utf-8") as handle:
        json.dump(record, handle)
