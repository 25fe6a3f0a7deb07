"""Verdicts, second round (issue 22), on both sandboxes, written as an adversary who has read
the harness would write them: a wrong `add` that talks the judge's protocol itself, answers
the tests' arithmetic, brings its own builtins or helper modules, skips what it cannot pass,
rigs `==` where it shares pytest's process, or leaves state for the next run. None may pass;
an honest candidate run after them in the same warm sandbox is judged as in a fresh one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selfrepair.sandbox import supervise
from selfrepair.sandbox.local import LocalSandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.sandbox.verdict import pytest_outcomes, read_guard

from selfrepair.types import Candidate, Task, TestSpec

WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def local_sandbox():
    box = LocalSandbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def one_container(docker_sandbox):
    """A Docker sandbox of one warm container: every run of a test meets the one before."""
    from selfrepair.sandbox.container import DockerSandbox

    box = DockerSandbox(pool_size=1)
    yield box
    box.close()


@pytest.fixture(params=["local", "docker"])
def sandbox(request, local_sandbox):
    return local_sandbox if request.param == "local" else request.getfixturevalue("one_container")


def pytest_task(tests: str, extra: dict[str, str] | None = None, code: str = WRONG) -> Task:
    return Task(
        task_id="add",
        spec="Add.",
        files={"add.py": code},
        tests=TestSpec(kind="pytest", files={"test_add.py": tests, **(extra or {})}, timeout_s=60),
    )


def script_task(tests: str, code: str = WRONG) -> Task:
    return Task(
        task_id="add",
        spec="Add.",
        files={"add.py": code},
        entry_file="add.py",
        tests=TestSpec(kind="script", files={"test_add.py": tests}, timeout_s=60),
    )


def pytest_shape(body: str) -> str:
    return "import pytest\nfrom add import add\n\n\ndef test_add():\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )


# Task shapes: what the tests assert about `add`.
EQUALITY = "assert add(1, 2) == 3"
TOLERANCE = "assert abs(add(1, 2) - 3) < 1e-9\nassert abs(3 - add(2, 1)) <= 1e-9"
ORDER = "assert 3 <= add(1, 2) <= 3"
CONVERSION = "assert float(add(1, 2)) == 3.0 and int(add(1, 2)) == 3"
TRUTH = "assert add(1, 2)\nassert 3 in [add(1, 2)]"
COMMUTES = "assert add(1, 2) == add(2, 1) and add(1, 2) == 3"
RAISES = "with pytest.raises(TypeError):\n    add(1, None)\nassert add(1, 2) == 3"
SHAPES = {
    "equality": EQUALITY,
    "tolerance": TOLERANCE,
    "order": ORDER,
    "conversion": CONVERSION,
    "truth": TRUTH,
    "commutes": COMMUTES,
    "raises": RAISES,
}

# Wrong `add`s that reach for the judge through the wire protocol (the worker is the
# candidate's process: it may patch the harness's worker as it likes).
SPEAKS_THE_PROTOCOL = {
    # Its exception described as a class the judge would resolve to unittest's SkipTest.
    "skiptest-by-name": (
        "import sys\n_w = sys.modules['selfrepair_harness.worker']\n"
        "def _describe(self, error, codec):\n"
        "    return {'type': 'SkipTest', 'module': 'unittest', 'bases': ['SkipTest', 'Exception'],\n"
        "            'args': ['skip'], 'message': 'skip', 'traceback': '',\n"
        "            'class': {'$': 'remote', 'id': 10 ** 6, 'kind': 'class', 'module': 'unittest',\n"
        "                      'name': 'SkipTest', 'type': 'type'}}\n"
        "_w.Worker.describe = _describe\n"
        "def add(a, b):\n    raise ValueError('no')\n"
    ),
    "pytest-skipped-by-name": (
        "import sys\n_w = sys.modules['selfrepair_harness.worker']\n"
        "def _describe(self, error, codec):\n"
        "    return {'type': 'Skipped', 'module': '_pytest.outcomes', 'bases': ['Skipped', 'BaseException'],\n"
        "            'args': [], 'message': '', 'traceback': '',\n"
        "            'class': {'$': 'remote', 'id': 10 ** 6 + 1, 'kind': 'exception_class',\n"
        "                      'module': '_pytest.outcomes', 'name': 'Skipped', 'bases': ['BaseException']}}\n"
        "_w.Worker.describe = _describe\n"
        "def add(a, b):\n    raise ValueError('no')\n"
    ),
    "raises-skip-itself": (
        "def add(a, b):\n    import unittest\n    raise unittest.SkipTest('not today')\n"
    ),
    # An object that answers the tests' arithmetic, order, truth and conversions itself.
    "answers-every-operation": (
        "class Near:\n"
        "    def __sub__(self, other):\n        return self\n"
        "    __rsub__ = __add__ = __radd__ = __sub__\n"
        "    def __abs__(self):\n        return 0.0\n"
        "    def __eq__(self, other):\n        return True\n"
        "    def __lt__(self, other):\n        return True\n"
        "    __le__ = __gt__ = __ge__ = __lt__\n"
        "    def __float__(self):\n        return 3.0\n"
        "    def __int__(self):\n        return 3\n"
        "    def __index__(self):\n        return 3\n"
        "    def __bool__(self):\n        return True\n"
        "    def __len__(self):\n        return 1\n"
        "    def __contains__(self, item):\n        return True\n"
        "    __hash__ = object.__hash__\n"
        "def add(a, b):\n    if b is None:\n        raise TypeError\n    return Near()\n"
    ),
    # Every reply's value replaced by a handle that claims to be an int.
    "int-handle": (
        "import sys\n_w = sys.modules['selfrepair_harness.worker']\n_call = _w.Worker.call\n"
        "class Liar:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
        "def call(self, message, codec):\n"
        "    reply = _call(self, message, codec)\n"
        "    if 'value' in reply:\n"
        "        node = codec.encode(Liar())\n        node['type'] = 'int'\n        reply['value'] = node\n"
        "    return reply\n"
        "_w.Worker.call = call\n" + WRONG
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("attack", sorted(SPEAKS_THE_PROTOCOL))
def test_a_wrong_add_gets_no_pass_from_the_judge(sandbox, shape, attack):
    task = pytest_task(pytest_shape(SHAPES[shape]))
    report = run_tests(sandbox, task, Candidate(files={"add.py": SPEAKS_THE_PROTOCOL[attack]}))
    assert not report.passed, f"{attack} passed a {shape} test"
    assert not any(case.outcome == "passed" for case in report.tests), report.tests


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_right_add_passes_every_shape(sandbox, shape):
    task = pytest_task(pytest_shape(SHAPES[shape]))
    right = "def add(a, b):\n    if b is None:\n        raise TypeError\n    return a + b\n"
    report = run_tests(sandbox, task, Candidate(files={"add.py": right}))
    assert report.passed, report.reason


def test_script_tests_answered_by_the_candidate_fail(sandbox):
    near = SPEAKS_THE_PROTOCOL["answers-every-operation"]
    for shape in ("tolerance", "order", "conversion", "truth", "commutes"):
        report = run_tests(sandbox, script_task(SHAPES[shape]), Candidate(files={"add.py": near}))
        assert not report.passed, f"a script {shape} test was answered by the candidate"


BRINGS_ITS_BUILTINS = (
    "import sys\n_w = sys.modules['selfrepair_harness.worker']\n_wire = _w.wire\n_send = _wire.send\n"
    "def _always(*args, **kwargs):\n    return True\n"
    "def send(sock, message):\n"
    "    names = message.get('names')\n"
    "    if isinstance(names, dict):\n"
    "        codec = sys._getframe(1).f_locals['self'].codec()\n"
    "        names['__builtins__'] = codec.encode({'all': _always, 'abs': _always, 'range': range})\n"
    "    return _send(sock, message)\n"
    "_wire.send = send\n" + WRONG
)


def test_a_candidates_builtins_are_never_the_tests(sandbox):
    task = script_task("assert all(add(i, 1) == i + 1 for i in range(3))\n")
    report = run_tests(sandbox, task, Candidate(files={"add.py": BRINGS_ITS_BUILTINS}))
    assert not report.passed


@pytest.mark.parametrize(
    "fake",
    [
        "import types\nmath = types.SimpleNamespace(isclose=lambda a, b, **k: True)\n",
        "class math:\n    @staticmethod\n    def isclose(a, b, **k):\n        return True\n",
    ],
)
def test_a_script_tests_standard_modules_are_the_judges(sandbox, fake):
    # HumanEval-style: the tests use `math` as the program imported it.
    tests = "assert math.isclose(add(1, 2), 3.0)\n"
    assert not run_tests(
        sandbox, script_task(tests), Candidate(files={"add.py": fake + WRONG})
    ).passed
    honest = "import math\n\n\n" + RIGHT
    assert run_tests(sandbox, script_task(tests), Candidate(files={"add.py": honest})).passed


def test_a_star_import_never_binds_the_candidates_builtins(sandbox):
    tests = "from add import *\n\n\ndef test_add():\n    assert abs(add(1, 2) - 3) < 1e-9\n"
    shadow = "__all__ = ['add', 'abs']\n\n\ndef abs(x):\n    return 0\n\n\n" + WRONG
    report = run_tests(sandbox, pytest_task(tests), Candidate(files={"add.py": shadow}))
    assert not report.passed
    assert run_tests(sandbox, pytest_task(tests), Candidate(files={"add.py": RIGHT})).passed


def test_a_stop_iteration_out_of_a_call_does_not_end_the_tests_loop(sandbox):
    # In plain Python a StopIteration out of `add` would end map() early, and all() of
    # nothing is True.
    tests = "assert all(map(lambda i: add(i, 1) == i + 1, range(3)))\n"
    stops = "def add(a, b):\n    raise StopIteration\n"
    assert not run_tests(sandbox, script_task(tests), Candidate(files={"add.py": stops})).passed
    assert run_tests(sandbox, script_task(tests), Candidate(files={"add.py": RIGHT})).passed


EXPECTED_BY_HELPER = (
    "from add import add\nfrom support import expected\n\n\n"
    "def test_add():\n    assert add(1, 2) == expected(1, 2)\n"
)
STAND_INS = {
    # (the tests' own files beside test_add.py, the candidate's files beside its add.py)
    "helper-module-by-a-package": (
        {"support.py": "def expected(a, b):\n    return a + b\n"},
        {"support/__init__.py": "def expected(a, b):\n    return a - b\n"},
    ),
    "helper-package-by-a-module": (
        {"support/__init__.py": "def expected(a, b):\n    return a + b\n"},
        {"support.py": "def expected(a, b):\n    return a - b\n"},
    ),
    "a-library": (
        {
            "support.py": "from statistics import mean\n\n\ndef expected(a, b):\n    return mean([2 * a, 2 * b])\n"
        },
        {"statistics.py": "def mean(values):\n    return -1\n"},
    ),
}


@pytest.mark.parametrize("stand_in", sorted(STAND_INS))
def test_a_candidate_file_cannot_stand_in_for_a_tests_helper_or_a_library(sandbox, stand_in):
    helpers, forged = STAND_INS[stand_in]
    task = pytest_task(EXPECTED_BY_HELPER, extra=helpers)
    report = run_tests(sandbox, task, Candidate(files={"add.py": WRONG, **forged}))
    assert not report.passed
    assert all(case.outcome != "passed" for case in report.tests), report.tests
    assert run_tests(sandbox, task, Candidate(files={"add.py": RIGHT})).passed


def test_skipped_after_the_candidate_is_a_suspicious_failure(sandbox):
    # The tests skip themselves when the module will not import; the code as given imports.
    tests = (
        "import pytest\nadd = pytest.importorskip('add').add\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n"
    )
    task = pytest_task(tests, code=RIGHT)
    baseline = run_tests(sandbox, task)
    assert baseline.passed, baseline.reason
    expect = [case.name for case in baseline.tests]
    breaks = Candidate(files={"add.py": "raise ImportError('not today')\n"})
    report = run_tests(sandbox, task, breaks, expect=expect)
    assert not report.passed and "skipped or did not run" in report.suspicious
    assert not run_tests(sandbox, task, breaks).passed  # no baseline: skipped is not passed


def test_a_test_skipped_on_the_code_as_given_too_is_left_out(sandbox):
    tests = (
        "import pytest\nfrom add import add\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "@pytest.mark.skip(reason='not here')\ndef test_later():\n    pass\n"
    )
    task = pytest_task(tests)
    baseline = run_tests(sandbox, task)
    expect = [case.name for case in baseline.tests if case.outcome != "skipped"]
    report = run_tests(sandbox, task, Candidate(files={"add.py": RIGHT}), expect=expect)
    assert report.passed, report.reason
    assert [case.name for case in report.tests] == ["test_add.py::test_add"]


# -- warm sandboxes forget --------------------------------------------------------------------

ERROR_TESTS = (
    "import pytest\nfrom lookup import lookup\n\n\n"
    "def test_missing():\n    with pytest.raises(KeyError):\n        lookup({}, 'x')\n\n\n"
    "def test_found():\n    assert lookup({'a': 1}, 'a') == 1\n"
)
ERROR_TASK = Task(
    task_id="lookup",
    spec="Look up.",
    files={"lookup.py": "def lookup(d, k):\n    return d.get(k)\n"},
    tests=TestSpec(kind="pytest", files={"test_lookup.py": ERROR_TESTS}, timeout_s=60),
)
# The same program shape, so its classes get the same handle numbers in every run.
HOSTILE_LOOKUP = "class Error(ValueError):\n    pass\n\n\ndef lookup(d, k):\n    raise Error(k)\n"
HONEST_LOOKUP = (
    "class Error(KeyError):\n    pass\n\n\n"
    "def lookup(d, k):\n    if k not in d:\n        raise Error(k)\n    return d[k]\n"
)
LEAVES_A_QUEUE = "open('/dev/mqueue/seen', 'w').close()\n"
READS_A_QUEUE = (
    "import os\nSEEN = os.path.exists('/dev/mqueue/seen')\n\n\n"
    "def lookup(d, k):\n    if SEEN or k not in d:\n        raise KeyError(k)\n    return d[k]\n"
)


def essentials(report) -> tuple:
    return (
        report.passed,
        report.suspicious,
        report.reason,
        [(case.name, case.outcome) for case in report.tests],
    )


def test_honest_after_hostile_is_judged_as_in_a_fresh_sandbox(sandbox, request):
    honest = Candidate(files={"lookup.py": HONEST_LOOKUP})
    queue_reader = Candidate(files={"lookup.py": READS_A_QUEUE})
    hostile = [
        Candidate(files={"lookup.py": HOSTILE_LOOKUP}),
        Candidate(
            files={
                "lookup.py": "try:\n    "
                + LEAVES_A_QUEUE
                + "except OSError:\n    pass\n"
                + HOSTILE_LOOKUP
            }
        ),
        Candidate(files={"lookup.py": SPEAKS_THE_PROTOCOL["skiptest-by-name"]}),
    ]
    for candidate in hostile:
        assert not run_tests(sandbox, ERROR_TASK, candidate).passed
    warm = [essentials(run_tests(sandbox, ERROR_TASK, c)) for c in (honest, queue_reader)]
    fresh_box = LocalSandbox() if sandbox.name == "local" else _fresh_docker()
    try:
        fresh = [essentials(run_tests(fresh_box, ERROR_TASK, c)) for c in (honest, queue_reader)]
    finally:
        fresh_box.close()
    assert warm == fresh
    assert fresh[0][0] and fresh[1][0], fresh


def _fresh_docker():
    from selfrepair.sandbox.container import DockerSandbox

    return DockerSandbox(pool_size=1)


def test_the_judge_holds_no_descriptor_of_an_earlier_run(sandbox):
    # The tests (the judge's side) leave a file open, and print what the judge holds open.
    tests = (
        "import os\nLEFT_OPEN = os.dup(0)\n"
        "print('fds', sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n"
        "assert add(1, 2) == 3\n"
    )
    task = script_task(tests, code=RIGHT)
    seen = []
    for _ in range(3):
        report = run_tests(sandbox, task)
        assert report.passed, report.reason
        seen.append([line for line in report.stdout.splitlines() if line.startswith("fds")])
    assert seen[0] == seen[1] == seen[2], seen


# -- guarded runs: canaries -------------------------------------------------------------------


CONSTANT_EXPECTATIONS = (
    "from pkg.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_words():\n    assert add('a', 'b') == 'ab'\n"
)
# Expected values a helper module of the tests computes: no constant to alter.
COMPUTED_EXPECTATIONS = (
    "from pkg.calc import add\nfrom tests.expect import expected\n\n\n"
    "def test_add():\n    assert add(1, 2) == expected(1, 2)\n\n\n"
    "def test_words():\n    assert expected('a', 'b') == add('a', 'b')\n"
)


def repository(tmp_path: Path, code: str, tests: str = CONSTANT_EXPECTATIONS) -> Path:
    (tmp_path / "pkg").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "calc.py").write_text(code)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "expect.py").write_text("def expected(a, b):\n    return a + b\n")
    (tmp_path / "tests" / "test_calc.py").write_text(tests)
    return tmp_path


REPOSITORY_TASK = Task(
    task_id="repo",
    spec="Add.",
    files={"pkg/calc.py": WRONG},
    tests=TestSpec(kind="command", command="python -m pytest -q tests", timeout_s=60),
)
GUARDED_LIARS = {
    "rigged-eq": (
        "class Liar:\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = object.__hash__\n\n\ndef add(a, b):\n    return Liar()\n"
    ),
    "int-subclass": (
        "class Liar(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n\n\ndef add(a, b):\n    return Liar(0)\n"
    ),
    "skips-what-it-cannot-pass": "import pytest\n\n\ndef add(a, b):\n    pytest.skip('later')\n",
}


@pytest.mark.parametrize("tests", [CONSTANT_EXPECTATIONS, COMPUTED_EXPECTATIONS])
@pytest.mark.parametrize("liar", sorted(GUARDED_LIARS))
def test_guarded_liars_are_caught_by_canaries_or_the_baseline(sandbox, tmp_path, liar, tests):
    expect = ["tests/test_calc.py::test_add", "tests/test_calc.py::test_words"]
    code = GUARDED_LIARS[liar]
    workspace = repository(tmp_path, code, tests)
    report = run_tests(
        sandbox, REPOSITORY_TASK, Candidate(files={"pkg/calc.py": code}), workspace, expect
    )
    assert not report.passed, f"{liar} passed a guarded run"
    assert report.suspicious, report.reason


def test_a_guarded_wrong_candidate_is_failed_not_suspicious(sandbox, tmp_path):
    # `-x` stops the session at the first failure, before the canaries are reached.
    for command in ("python -m pytest -q tests", "python -m pytest -q -x tests"):
        task = REPOSITORY_TASK.model_copy(
            update={"tests": REPOSITORY_TASK.tests.model_copy(update={"command": command})}
        )
        workspace = repository(tmp_path / command.replace(" ", "_"), WRONG)
        report = run_tests(sandbox, task, Candidate(files={"pkg/calc.py": WRONG}), workspace)
        assert not report.passed and not report.suspicious, report.suspicious


@pytest.mark.parametrize("tests", [CONSTANT_EXPECTATIONS, COMPUTED_EXPECTATIONS])
def test_guarded_honest_run_passes_with_its_canaries_hidden(sandbox, tmp_path, tests):
    workspace = repository(tmp_path, RIGHT, tests)
    report = run_tests(sandbox, REPOSITORY_TASK, Candidate(files={"pkg/calc.py": RIGHT}), workspace)
    assert report.passed, report.reason
    assert not report.suspicious
    assert sorted(case.name for case in report.tests) == [
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_words",
    ]


CHECKS = {
    "constant": "from add import add\nassert add(1, 2) == 3\nassert add(2, 2) == 4\nprint('checked')\n",
    "computed": (
        "from add import add\nfrom expect import expected\n\n"
        "assert add(1, 2) == expected(1, 2)\nprint('checked')\n"
    ),
}
EXPECT = "def expected(a, b):\n    return a + b\n"


def command_task(check: str) -> Task:
    files = {"check.py": check, "expect.py": EXPECT}
    return Task(
        task_id="add",
        spec="Add.",
        files={"add.py": WRONG, **files},
        tests=TestSpec(kind="command", command="python check.py", files=files, timeout_s=60),
    )


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("liar", ["rigged-eq", "int-subclass"])
def test_a_guarded_command_liar_is_caught_by_its_canary(sandbox, liar, check):
    task = command_task(CHECKS[check])
    report = run_tests(sandbox, task, Candidate(files={"add.py": GUARDED_LIARS[liar]}))
    assert not report.passed and "canary" in report.suspicious, report.reason
    honest = run_tests(sandbox, task, Candidate(files={"add.py": RIGHT}))
    assert honest.passed and not honest.suspicious, honest.reason


# -- the guard's channel: the kernel says who wrote each record -------------------------------


def test_the_report_channel_stamps_each_message_with_its_writers_pid():
    reader, writer = supervise.report_channel()
    channel_r, channel_w = reader.detach(), writer.detach()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # A record that names another pid, and an empty message (which is not the end of the channel).
    writes = "import os, sys\nfd = int(sys.argv[1])\nos.write(fd, b'')\nos.write(fd, b'{\"pid\": 1}\\n')\n"
    child = subprocess.Popen(
        [sys.executable, "-c", writes, str(channel_w)],
        stdout=out_w,
        stderr=err_w,
        pass_fds=[channel_w],
    )
    for fd in (channel_w, out_w, err_w):
        os.close(fd)
    seen = supervise.watch(child.pid, out_r, err_r, time.monotonic() + 120, 4096, channel_r)
    child.wait()
    assert seen["channel"] == f'{child.pid} {{"pid": 1}}\n'.encode(), seen


def test_guard_records_count_only_from_a_process_that_said_hello():
    hello = json.dumps({"hello": 1, "argv": ["python", "-m", "pytest"]})
    channel = "\n".join(
        [
            f"7 {hello}",
            '7 {"type": "collection_done", "count": 0}',
            '9 {"type": "finished", "exitstatus": 0}',
            f"7 {hello}",
            "not a record",
        ]
    ).encode()
    report = read_guard(channel)
    assert list(report.processes) == [7]
    assert [r["type"] for r in report.processes[7].records] == ["collection_done"]
    assert len(report.problems) == 3
    assert any("never said hello" in p for p in report.problems)
    assert any("second hello" in p for p in report.problems)
    _cases, problems = pytest_outcomes(report, 0)
    assert any("ended before its session finished" in p for p in problems)


# -- numpy: arrays of numbers cross as plain data ----------------------------------------------

NUMPY_PROGRAM = (
    "import numpy as np\n\n\n"
    "def scaled(values, k):\n    return np.asarray(values, dtype=float) * k\n\n\n"
    "def mean(values):\n    return np.mean(values)\n\n\n"
    "def grid():\n    return np.arange(6, dtype=np.int32).reshape(2, 3).T\n"
)
NUMPY_TESTS = (
    "import numpy as np\n"
    "from stats import scaled, mean, grid\n\n\n"
    "def test_equal():\n    assert (scaled([1, 2], 2) == np.array([2.0, 4.0])).all()\n"
    "    assert type(scaled([1], 1)) is np.ndarray\n\n\n"
    "def test_close():\n    np.testing.assert_allclose(scaled([0.1, 0.2], 3), [0.3, 0.6])\n"
    "    assert abs(mean([1, 2]) - 1.5) < 1e-12 and isinstance(mean([1]), np.floating)\n\n\n"
    "def test_shape():\n    g = grid()\n    assert g.shape == (3, 2) and g.dtype == np.int32 and g[2, 1] == 5\n"
)


def numpy_task(program: str) -> Task:
    return Task(
        task_id="stats",
        spec="Statistics.",
        files={"stats.py": program},
        tests=TestSpec(kind="pytest", files={"test_stats.py": NUMPY_TESTS}, timeout_s=60),
    )


def test_numpy_arrays_cross_as_the_judges_own_arrays(local_sandbox):
    # The local sandbox runs this environment, which has numpy; the Docker image has none.
    report = run_tests(local_sandbox, numpy_task(NUMPY_PROGRAM))
    assert report.passed, report.reason


@pytest.mark.parametrize(
    "liar",
    [
        # An array of objects is no plain data: a handle, which no test can compare.
        "class Liar:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n",
        # A subclass answers its own operations: also a handle.
        "class Liar(np.ndarray):\n    def __eq__(self, other):\n        return np.ones(np.shape(other), bool)\n",
    ],
)
def test_numpy_values_that_lie_are_handles(local_sandbox, liar):
    program = (
        "import numpy as np\n\n\n" + liar + "\n\ndef scaled(values, k):\n"
        "    out = np.empty(len(values), dtype=object) if not issubclass(Liar, np.ndarray) else np.zeros(len(values)).view(Liar)\n"
        "    out[:] = [Liar() for _ in values] if not issubclass(Liar, np.ndarray) else 0\n"
        "    return out\n\n\n"
        "def mean(values):\n    return np.mean(values)\n\n\n"
        "def grid():\n    return np.arange(6, dtype=np.int32).reshape(2, 3).T\n"
    )
    report = run_tests(local_sandbox, numpy_task(program))
    assert not report.passed
    assert {case.name: case.outcome for case in report.tests}[
        "test_stats.py::test_equal"
    ] != "passed"


# -- limits of what a run leaves and sends -----------------------------------------------------


def test_a_judge_grown_beyond_its_bound_is_replaced(docker_sandbox):
    # Tests that leave 700 MB where `_restore` does not look (an attribute of `sys`) grow the
    # warm judge past JUDGE_RSS_BYTES: the next run meets a new judge, without the hoard.
    from selfrepair.sandbox.container import DockerSandbox
    from selfrepair.sandbox.core import Limits

    box = DockerSandbox(pool_size=1, limits=Limits(memory_mb=1536))
    hoard = "import sys\nsys.selfrepair_hoard = b'x' * (700 << 20)\nassert add(1, 2) == 3\n"
    check = "import sys\nassert not hasattr(sys, 'selfrepair_hoard')\nassert add(1, 2) == 3\n"
    right = Candidate(files={"add.py": RIGHT})
    try:
        first = run_tests(box, script_task(hoard), right)
        assert first.passed, first.reason
        second = run_tests(box, script_task(check), right)
        assert second.passed, second.reason
    finally:
        box.close()


FLOOD = (
    "import os\nchannel = int(os.environ.get('SELFREPAIR_CHANNEL', '3'))\n"
    "line = b'x' * 3000 + b'\\n'\nfor _ in range(7000):\n    os.write(channel, line)\n"
)


def test_a_flooded_report_channel_is_cut_and_fails(sandbox, tmp_path):
    # 21 MB of junk, beyond the channel's 16 MB: what comes after the cut (the session's end)
    # is lost, so the run fails, and junk on the channel is a forgery.
    code = FLOOD + WRONG
    workspace = repository(tmp_path, code)
    report = run_tests(
        sandbox, REPOSITORY_TASK, Candidate(files={"pkg/calc.py": code}), workspace=workspace
    )
    assert not report.passed and "forged" in report.suspicious
    (tmp_path / "after").mkdir()
    right = repository(tmp_path / "after", RIGHT)
    after = run_tests(
        sandbox, REPOSITORY_TASK, Candidate(files={"pkg/calc.py": RIGHT}), workspace=right
    )
    assert after.passed, after.reason


# -- more adversaries that read the source, in the judged shapes ------------------------------

READ_THE_SOURCE = {
    # An exception that equals anything and prints as the expected value.
    "rigged-exception": (
        "class E(TypeError):\n    def __eq__(self, other):\n        return True\n"
        "    def __str__(self):\n        return '3'\n    __hash__ = object.__hash__\n\n\n"
        "def add(a, b):\n    raise E()\n"
    ),
    # A float whose arithmetic and abs say it is never off.
    "float-subclass-arithmetic": (
        "class F(float):\n    def __sub__(self, other):\n        return 0.0\n    __rsub__ = __sub__\n"
        "    def __abs__(self):\n        return 0.0\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = float.__hash__\n\n\n"
        "def add(a, b):\n    if b is None:\n        raise TypeError\n    return F(a - b)\n"
    ),
    # A thread that ends the worker with status 0 while a call is in flight.
    "late-thread-exits": (
        "import os, threading, time\n\n\ndef late():\n    time.sleep(0.5)\n    os._exit(0)\n\n\n"
        "threading.Thread(target=late, daemon=True).start()\n\n\n"
        "def add(a, b):\n    if b is None:\n        raise TypeError\n    time.sleep(2)\n    return a - b\n"
    ),
    # A verdict written on every descriptor the worker may hold.
    "writes-every-descriptor": (
        "import os\nfor fd in range(64):\n    try:\n"
        '        os.write(fd, b\'{"tests": [{"name": "t", "outcome": "passed"}], "finished": true}\\n\')\n'
        "    except OSError:\n        pass\n\n\n"
        "def add(a, b):\n    if b is None:\n        raise TypeError\n    return a - b\n"
    ),
}


@pytest.mark.parametrize("shape", ["equality", "tolerance", "raises"])
@pytest.mark.parametrize("attack", sorted(READ_THE_SOURCE))
def test_adversaries_that_read_the_source_get_no_pass(sandbox, shape, attack):
    task = pytest_task(pytest_shape(SHAPES[shape]))
    report = run_tests(sandbox, task, Candidate(files={"add.py": READ_THE_SOURCE[attack]}))
    assert not report.passed, f"{attack} passed a {shape} test"
    right = "def add(a, b):\n    if b is None:\n        raise TypeError\n    return a + b\n"
    after = run_tests(sandbox, task, Candidate(files={"add.py": right}))
    assert after.passed and not after.suspicious, after.reason
