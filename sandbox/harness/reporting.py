"""The pytest plugin of the guard (loaded through PYTEST_PLUGINS before any conftest or test
module): it reports, signed, what was collected, each test's outcome, whether each test
function's own body ran to its end, and the end of the session. A test reported passed
whose body never returned (its call was skipped, or its failure swallowed on the way) does
not count as passed on the host."""

from __future__ import annotations

import functools
import inspect

from . import guard

IDS_PER_RECORD = 40


def pytest_collection_modifyitems(session, config, items) -> None:
    for item in items:
        original = getattr(item, "obj", None)
        if (
            type(item).__name__ != "Function"
            or not inspect.isfunction(original)
            or inspect.iscoroutinefunction(original)
        ):
            continue
        item.obj = _watched(item.nodeid, original)


def _watched(nodeid: str, function):
    @functools.wraps(function)
    def body(*args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except BaseException:
            guard.emit({"type": "body", "id": nodeid, "result": "raised"})
            raise
        guard.emit({"type": "body", "id": nodeid, "result": "returned"})
        return result

    return body


def pytest_collection_finish(session) -> None:
    ids = [
        (
            item.nodeid,
            type(item).__name__ == "Function" and inspect.isfunction(getattr(item, "obj", None)),
        )
        for item in session.items
    ]
    for start in range(0, len(ids), IDS_PER_RECORD):
        chunk = ids[start : start + IDS_PER_RECORD]
        guard.emit(
            {"type": "collected", "ids": [i for i, _ in chunk], "watched": [w for _, w in chunk]}
        )
    guard.emit({"type": "collection_done", "count": len(ids)})


def pytest_collectreport(report) -> None:
    if report.failed:
        guard.emit(
            {
                "type": "collect_error",
                "id": report.nodeid or "<collection>",
                "longrepr": str(report.longrepr)[-3000:],
            }
        )


def pytest_runtest_logreport(report) -> None:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    guard.emit(
        {
            "type": "test",
            "id": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "xfail": hasattr(report, "wasxfail"),
            "duration": getattr(report, "duration", 0.0) or 0.0,
            "message": getattr(crash, "message", "") if report.failed else "",
            "longrepr": report.longreprtext[-3000:] if report.failed else "",
        }
    )


def pytest_sessionfinish(session, exitstatus) -> None:
    guard.emit({"type": "finished", "exitstatus": int(exitstatus)})
