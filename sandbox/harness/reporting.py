"""The pytest plugin of the guard (loaded through PYTEST_PLUGINS before any conftest or test
module): it reports, signed, what was collected, each test's outcome, whether each test
function's own body ran to its end, and the end of the session. A test reported passed
whose body never returned (its call was skipped, or its failure swallowed on the way) does
not count as passed on the host.

It also adds the run's canaries (`guard.canary_plan`): for a few real tests, chosen by the host's
seed, a twin that must fail (the test with one expected value altered, so a rigged `__eq__`
that passes any `==` passes it too) and a twin that must pass like the real one (the test
itself again, so a forger that fails whatever looks like a twin is caught). They are
collected, run and reported as ordinary tests; the host reads their outcomes.

The hooks are closures over the guard's reporting function and the canary seed, both taken
when pytest loads this plugin (before any conftest or test module): rebinding a module's
name (`guard.emit`) changes nothing here, and the seed is in no module, file or variable of
the environment. Code that walks the hooks' closures can still reach both: in-process tests
cannot be made unforgeable (sandbox/README.md says what only detection covers).
"""

from __future__ import annotations

import ast
import functools
import inspect
import random
import sys
import textwrap

import pytest

from . import guard

IDS_PER_RECORD = 40
XDIST_OFF = (
    "selfrepair: pytest-xdist (-n/--dist) is switched off in guarded runs: its workers would run"
    " without canaries; the tests run in one process"
)


def _namespaces() -> dict:
    """The functions and classes of pytest, pluggy, unittest and the harness, by module, as
    loaded before any of the candidate's code: what the tests call (`pytest.raises`,
    `pytest.approx`). Rebinding a class's attribute is refused by the guard's audit hook; a
    module's names have no such hook, so they are compared with this after every test."""
    kept = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in guard.PROTECTED and module is not None:
            kept[name] = (
                module,
                {
                    attribute: value
                    for attribute, value in list(vars(module).items())
                    if callable(value) and not attribute.startswith("__")
                },
            )
    return kept


def _rebound(kept: dict) -> list[str]:
    changed = []
    for name, (module, names) in kept.items():
        if sys.modules.get(name, module) is not module:
            changed.append(name)
            continue
        namespace = vars(module)
        changed += [f"{name}.{a}" for a, value in names.items() if namespace.get(a) is not value]
    return changed


def _hooks(emit, seed: str) -> dict:
    """This plugin's hooks, bound to `emit` and `seed`."""
    twin_ids: set[str] = set()
    kept = _namespaces() if guard.under_suspicion() else {}
    reported: set[str] = set()

    def check_namespaces() -> None:
        for name in _rebound(kept):
            if name not in reported:
                reported.add(name)
                emit({"type": "refused", "event": "rebound", "detail": name})

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(config) -> None:
        """pytest-xdist (`-n`, `--dist`) would run the tests in worker processes that have no
        canaries and whose test bodies this process cannot watch: it is switched off, before
        xdist's own configure, and the tests run here, one after another."""
        option = config.option
        if getattr(option, "dist", "no") != "no" or getattr(option, "numprocesses", None):
            option.dist, option.tx, option.numprocesses = "no", [], 0
            sys.stderr.write(XDIST_OFF + "\n")
            emit({"type": "xdist", "detail": "switched off"})

    def pytest_sessionstart(session) -> None:
        if session.config.pluginmanager.has_plugin("dsession"):
            emit({"type": "xdist", "detail": "distributed"})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(session, config, items) -> None:
        _add_twins(seed, items, twin_ids)
        _watch(items, emit)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        """A twin's true outcome goes to the channel only: to pytest (its exit status, its
        summary, whatever the command does next) every twin passed."""
        made = yield
        report = made.get_result()
        if item.nodeid in twin_ids and report.when == "call":  # setup decides the call
            report.canary_outcome = report.outcome
            report.outcome, report.longrepr = "passed", None

    def pytest_collection_finish(session) -> None:
        ids = [(item.nodeid, _is_watched(item)) for item in session.items]
        for start in range(0, len(ids), IDS_PER_RECORD):
            chunk = ids[start : start + IDS_PER_RECORD]
            emit(
                {
                    "type": "collected",
                    "ids": [i for i, _ in chunk],
                    "watched": [w for _, w in chunk],
                }
            )
        emit({"type": "collection_done", "count": len(ids)})

    def pytest_collectreport(report) -> None:
        if report.failed:
            emit(
                {
                    "type": "collect_error",
                    "id": report.nodeid or "<collection>",
                    "longrepr": str(report.longrepr)[-3000:],
                }
            )

    def pytest_runtest_logreport(report) -> None:
        check_namespaces()
        crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
        emit(
            {
                "type": "test",
                "id": report.nodeid,
                "when": report.when,
                "outcome": getattr(report, "canary_outcome", report.outcome),
                "xfail": hasattr(report, "wasxfail"),
                "duration": getattr(report, "duration", 0.0) or 0.0,
                "message": getattr(crash, "message", "") if report.failed else "",
                "longrepr": report.longreprtext[-3000:] if report.failed else "",
            }
        )

    def pytest_sessionfinish(session, exitstatus) -> None:
        check_namespaces()
        emit({"type": "finished", "exitstatus": int(exitstatus)})

    return {name: hook for name, hook in locals().items() if name.startswith("pytest_")}


def _add_twins(seed: str, items: list, twin_ids: set) -> None:
    if seed:
        # Each pair of twins right after its real test (the state it ran in, for suites whose
        # tests depend on their order), the two in an order the seed draws.
        twins = _twins(seed, items, twin_ids)
        place = random.Random(seed + "|order")
        for real, pair in twins.items():
            place.shuffle(pair)
            at = items.index(real) + 1
            items[at:at] = pair


def _watch(items: list, emit) -> None:
    for item in items:
        original = getattr(item, "obj", None)
        if (
            type(item).__name__ != "Function"
            or not inspect.isfunction(original)
            or inspect.iscoroutinefunction(original)
        ):
            continue
        item.obj = _watched(item.nodeid, original, emit)


def _is_watched(item) -> bool:
    return type(item).__name__ == "Function" and inspect.isfunction(getattr(item, "obj", None))


def _twins(seed: str, items: list, twin_ids: set) -> dict:
    """The chosen real tests, each with its pair of twins (must pass, must fail)."""
    chosen = set(guard.canary_plan(seed, [(item.nodeid, _is_watched(item)) for item in items]))
    twins = {}
    for item in items:
        if item.nodeid not in chosen:
            continue
        twins[item] = [
            pytest.Function.from_parent(
                item.parent,
                name=f"{item.name}[{guard.canary_token(seed, item.nodeid, kind)}]",
                callobj=function,
            )
            for kind, function in (("pass", item.obj), ("fail", _must_fail(item.obj)))
        ]
        twin_ids.update(twin.nodeid for twin in twins[item])
    return twins


def _must_fail(function):
    """`function` with the expected value of its first top-level `assert X == constant`
    altered; without one, `function` followed by a failure."""
    altered = _altered(function)
    if altered is not None:
        return altered

    @functools.wraps(function)
    def then_fail(*args, **kwargs):
        function(*args, **kwargs)
        raise AssertionError("expected to differ")

    return then_fail


def _altered(function):
    if function.__code__.co_freevars:
        return None
    try:
        lines, first = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef):
        return None
    if not guard.alter_first_assert(definition.body):
        return None
    definition.decorator_list = []
    ast.increment_lineno(tree, first - 1)
    # The twin is made inside a function that hands it the helper of an altered value.
    maker = ast.parse(f"def _selfrepair_make({guard.OTHER}):\n    pass\n").body[0]
    maker.body = [definition, ast.Return(ast.Name(definition.name, ast.Load()))]
    module = ast.fix_missing_locations(ast.Module([maker], []))
    scratch: dict = {}
    exec(compile(module, function.__code__.co_filename, "exec"), function.__globals__, scratch)
    twin = scratch["_selfrepair_make"](guard.other_value)
    twin.__dict__.update(function.__dict__)
    twin.__defaults__, twin.__kwdefaults__ = function.__defaults__, function.__kwdefaults__
    return twin


def _watched(nodeid: str, function, emit):
    @functools.wraps(function)
    def body(*args, **kwargs):
        try:
            result = function(*args, **kwargs)
        except BaseException:
            emit({"type": "body", "id": nodeid, "result": "raised"})
            raise
        emit({"type": "body", "id": nodeid, "result": "returned"})
        return result

    return body


globals().update(_hooks(guard.emit, guard.take_seed()))
