"""Reading what the harness reported on a run's channel: the judge's verdict, or the guard's
records from the candidate's own processes.

A judged run's channel is written by the judge alone: it is read as it is. The guard's records
come from processes the candidate's code shares, so they are checked before they count. No
key signs them (a key in the candidate's process is no secret): the sandbox reads each line
as `PID RECORD`, where the pid is the kernel's word for the process that wrote it
(`supervise.report_channel`). Every process's first record is its `hello` (a second one is a
forgery), a record from a process that never said hello is a forgery, each pytest process
must end its session, and a test counts as passed only if every report of it passed and,
where the harness watched the test function, its body returned. Anything else is a problem,
and a problem is never a pass. What one process says of itself is only as honest as the
code in it: the canaries (`canaries`) are what catches a pytest process that lies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from selfrepair.sandbox.harness.guard import canary_plan, canary_token

from selfrepair.types import TestCase

OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass
class JudgeVerdict:
    tests: list[TestCase]
    finished: bool
    suspicious: list[str]


def read_judge(channel: bytes) -> JudgeVerdict | None:
    """The judge's verdict, or None when there is none to read (the run was cut short)."""
    try:
        verdict = json.loads(channel)
        tests = [_case(entry) for entry in verdict["tests"]]
        suspicious = [str(note) for note in verdict.get("suspicious", [])]
        return JudgeVerdict(tests, bool(verdict.get("finished")), suspicious)
    except (ValueError, KeyError, TypeError):
        return None


def _case(entry: dict) -> TestCase:
    return TestCase(
        name=str(entry["name"]),
        outcome=entry["outcome"],
        message=str(entry.get("message", "")),
        traceback=str(entry.get("traceback", "")),
        seconds=float(entry.get("seconds", 0.0)),
    )


@dataclass
class Process:
    pid: int
    argv: list[str]
    forked: bool = False  # a child forked from a process that said hello: no session of its own
    records: list[dict] = field(default_factory=list)

    @property
    def runs_pytest(self) -> bool:
        return not self.forked and any(
            part in ("pytest", "py.test") or part.endswith(("/pytest", "/py.test"))
            for part in self.argv
        )


@dataclass
class GuardReport:
    processes: dict[int, Process]
    problems: list[str]  # what does not add up: forged or missing records
    refused: list[str]  # what the guard refused the candidate

    @property
    def early_exits(self) -> list[str]:
        """Exits with status 0 that the candidate's own code called."""
        return [
            f"early exit: {r.get('how')}(0) called by the candidate's code (process {p.pid})"
            for p in self.processes.values()
            for r in p.records
            if r.get("type") == "exit" and r.get("code") == 0
        ]

    @property
    def sessions(self) -> list[Process]:
        return [
            p
            for p in self.processes.values()
            if any(r.get("type") == "collection_done" for r in p.records)
        ]


def read_guard(channel: bytes) -> GuardReport:
    """The guard's records, process by process (each line `PID RECORD`, the pid stamped by
    the sandbox's reader)."""
    processes: dict[int, Process] = {}
    problems: list[str] = []
    refused: list[str] = []
    for line in channel.splitlines():
        try:
            stamp, _, text = line.partition(b" ")
            pid = int(stamp)
            record = json.loads(text)
            if not isinstance(record, dict):
                raise TypeError
        except (ValueError, TypeError):
            problems.append("an unreadable line on the report channel (forged or cut)")
            continue
        if "hello" in record:
            if pid in processes:
                problems.append(f"a second hello from process {pid} on the report channel (forged)")
                continue
            argv = record.get("argv")
            processes[pid] = Process(
                pid,
                [str(a) for a in argv] if isinstance(argv, list) else [],
                forked=bool(record.get("forked")),
            )
            continue
        if pid not in processes:
            problems.append(
                f"a record from process {pid}, which never said hello on the report channel (forged)"
            )
            continue
        processes[pid].records.append(record)
        if record.get("type") == "refused":
            refused.append(f"{record.get('event', '?')} {record.get('detail', '')}".strip())
    return GuardReport(processes, problems, refused)


def pytest_outcomes(report: GuardReport, exit_code: int | None) -> tuple[list[TestCase], list[str]]:
    """Each test's outcome over every pytest session on the channel, and what does not add up."""
    problems = list(report.problems) + report.early_exits
    pytest_processes = [p for p in report.processes.values() if p.runs_pytest]
    for process in pytest_processes:
        types = {r.get("type") for r in process.records}
        if "finished" not in types:
            problems.append(
                f"pytest (process {process.pid}) ended before its session finished"
                + (" (an early exit)" if exit_code == 0 else "")
            )
    for process in pytest_processes:
        if any(
            r.get("type") == "xdist" and r.get("detail") == "distributed" for r in process.records
        ):
            problems.append(
                f"pytest (process {process.pid}) distributed its tests with pytest-xdist after the "
                "guard switched it off: workers run without canaries (forged)"
            )
    cases: dict[str, TestCase] = {}
    for process in report.sessions:
        watched = _watched(process)
        bodies = {
            r["id"]: r.get("result")
            for r in process.records
            if r.get("type") == "body" and "id" in r
        }
        collected = [
            i for r in process.records if r.get("type") == "collected" for i in r.get("ids", [])
        ]
        for record in process.records:
            if record.get("type") == "collect_error":
                _merge(
                    cases,
                    TestCase(
                        name=str(record.get("id")),
                        outcome="error",
                        message="collection failed",
                        traceback=str(record.get("longrepr", "")),
                    ),
                )
            if record.get("type") != "test":
                continue
            outcome = _outcome(record)
            nodeid = str(record.get("id"))
            if (
                outcome == "passed"
                and record.get("when") == "call"
                and watched.get(nodeid)
                and bodies.get(nodeid) != "returned"
            ):
                outcome = "error"
                record = dict(
                    record, message="the test was reported passed but its body never returned"
                )
                problems.append(
                    f"{nodeid}: reported passed, but the test's own body did not run to its end (forged)"
                )
            _merge(
                cases,
                TestCase(
                    name=nodeid,
                    outcome=outcome,
                    message=str(record.get("message", "")),
                    traceback=str(record.get("longrepr", "")),
                    seconds=float(record.get("duration", 0.0) or 0.0),
                ),
            )
        for nodeid in collected:
            if nodeid not in cases:
                cases[nodeid] = TestCase(
                    name=nodeid, outcome="error", message="collected but never reported"
                )
    return list(cases.values()), problems


def _watched(process: Process) -> dict[str, bool]:
    watched = {}
    for record in process.records:
        if record.get("type") == "collected":
            watched.update(zip(record.get("ids", []), record.get("watched", []), strict=False))
    return watched


def _outcome(record: dict) -> str:
    outcome = record.get("outcome")
    if outcome == "skipped":
        return "skipped"
    if outcome == "failed":
        return "failed" if record.get("when") == "call" else "error"
    return "passed" if outcome == "passed" else "error"


def _merge(cases: dict[str, TestCase], case: TestCase) -> None:
    """Phases and sessions of one test: the worst outcome stands; durations add up."""
    known = cases.get(case.name)
    if known is None:
        cases[case.name] = case
        return
    worst = case if OUTCOME_RANK[case.outcome] > OUTCOME_RANK[known.outcome] else known
    cases[case.name] = worst.model_copy(update={"seconds": known.seconds + case.seconds})


def canaries(
    report: GuardReport, seed: str, cases: list[TestCase]
) -> tuple[list[TestCase], list[str]]:
    """The real tests' cases without the canaries, and what the canaries say of the run.

    Each pytest session twinned the real tests `canary_plan` draws from what it collected: a
    twin that must fail (an expected value altered) and one that must pass as the real test
    does (the test again). When the real test passed, its must-fail twin passing means a
    value equal to anything, its must-pass twin failing means outcomes chosen by look, and a
    twin not reported means records made up: each makes the run suspicious.
    """
    twins: dict[str, tuple[str, str]] = {}
    for process in report.sessions:
        collected = list(_watched(process).items())
        possible = {
            f"{nodeid}[{canary_token(seed, nodeid, kind)}]"
            for nodeid, _ in collected
            for kind in ("pass", "fail")
        }
        real = [(nodeid, watched) for nodeid, watched in collected if nodeid not in possible]
        for nodeid in canary_plan(seed, real):
            for kind in ("pass", "fail"):
                twins[f"{nodeid}[{canary_token(seed, nodeid, kind)}]"] = (nodeid, kind)
    by_name = {case.name: case for case in cases}
    # A session cut short by a real failure (`-x`) may not reach a twin: the run fails anyway.
    failing = any(case.outcome in ("failed", "error") for case in cases if case.name not in twins)
    problems = []
    for twin, (nodeid, kind) in twins.items():
        twin_case, real_case = by_name.get(twin), by_name.get(nodeid)
        if twin_case is None or real_case is None:
            if not failing:
                problems.append(f"{nodeid}: a canary twin of it was not reported (forged)")
        elif real_case.outcome != "passed":
            continue  # a failing test explains any twin's outcome
        elif kind == "fail" and twin_case.outcome == "passed":
            problems.append(
                f"{nodeid}: its must-fail canary (an expected value altered) passed too: the "
                "candidate's values equal anything, or its outcomes are forged"
            )
        elif kind == "pass" and twin_case.outcome != "passed":
            problems.append(
                f"{nodeid}: passed, but its must-pass canary (the same test again) did not "
                "(forged outcomes)"
            )
    return [case for case in cases if case.name not in twins], problems
