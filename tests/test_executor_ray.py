"""The Ray executor on a two-node Ray cluster on this machine (1 CPU each), with the scripted
model and the Docker sandbox: `bench` gives the local executor's results; a worker killed
mid-task loses no task and writes none twice; a task that failed on a worker resumes from
the checkpoint it brought back; a resumed run sends no finished task out again; `improve`'s
repair phase runs there too. Ray is stopped at the end, and nothing of it is left running."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OPERATOR_TASKS, operator_reply, operator_task
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import latest_checkpoint, open_checkpointer

from selfrepair.errors import SelfRepairError
from selfrepair.loaders import load_quixbugs
from selfrepair.rundir import prepare_run_dir
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import TestSpec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
QUIXBUGS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "quixbugs_python.jsonl"
WRONG = "```python\ndef {name}(*args, **kwargs):\n    return None\n```"
REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: it returns None; implement the specification"
# What differs between two runs of the same tasks: ids and times.
UNSTABLE = {"trajectory_id", "model_seconds", "sandbox_seconds", "wall_seconds"}


@pytest.fixture(scope="module")
def cluster(docker_sandbox):
    """A Ray cluster of two nodes on this machine; afterwards Ray is stopped, and every
    worker process it ran is gone, with its containers."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import ray  # CI installs the ray extra: its absence is a failure there
    else:
        ray = pytest.importorskip(
            "ray", reason='the ray extra is not installed (pip install -e ".[ray]")'
        )
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, log_to_driver=False, logging_level=logging.WARNING)
    seen: set[int] = set()  # the worker processes the tests saw, filled by `executor`
    yield nodes, seen
    ray.shutdown()
    nodes.shutdown()
    for pid in seen:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    owners = [
        c.labels.get("selfrepair.sandbox.owner", "")
        for c in docker_sandbox.client.containers.list(all=True)
    ]
    assert not [o for o in owners if o.rpartition(":")[2] in {str(p) for p in seen}]


@pytest.fixture
def executor(cluster):
    from selfrepair.executor.cluster import RayExecutor

    _, seen = cluster
    with RayExecutor(None, sandbox="docker", jobs=1) as ray_executor:
        yield ray_executor
        seen.update(w.pid for w in ray_executor.workers)


def ray_get(ref):
    import ray

    return ray.get(ref)


def keyed_replies(path: Path, replies: dict[str, list[str]]) -> str:
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


def quixbugs_replies(path: Path, limit: int) -> str:
    """Each QuixBugs task's own replies for the refine loop: a wrong program, a review, the
    reference solution."""
    if not QUIXBUGS.is_file():
        pytest.skip(f"QuixBugs data not found at {QUIXBUGS}")
    tasks = load_quixbugs(QUIXBUGS)[:limit]
    return keyed_replies(
        path,
        {
            f"def {t.entry_point}(": [
                WRONG.format(name=t.entry_point),
                REVIEW,
                f"```python\n{t.metadata['solution']}\n```",
            ]
            for t in tasks
        },
    )


def bench(out: Path, model: str, *options: str) -> dict:
    command = [
        SELFREPAIR,
        "bench",
        "quixbugs",
        "--data",
        str(QUIXBUGS),
        "--limit",
        "6",
        "--model",
        model,
        "--strategy",
        "refine",
        "--budget",
        "4",
        "--sandbox",
        "docker",
        "--out",
        str(out),
        "--json",
        *options,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["summary"]


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in UNSTABLE} for row in rows]


def steps_of(run_dir: Path) -> dict[str, list]:
    """Each task's steps as the store holds them: kind, candidate and whether its tests passed."""
    with TrajectoryStore(run_dir, create=False) as store:
        trajectories = list(store.trajectories())
    assert len(trajectories) == len({t.task.task_id for t in trajectories})  # one per task
    return {
        t.task.task_id: [
            (s.kind, s.candidate and s.candidate.files, s.report and s.report.passed)
            for s in t.steps
        ]
        for t in trajectories
    }


def test_bench_on_two_nodes_gives_the_local_executors_results(cluster, tmp_path):
    nodes, _ = cluster
    model = quixbugs_replies(tmp_path / "replies.json", 6)
    local = bench(tmp_path / "local", model, "--jobs", "2")
    on_ray = bench(tmp_path / "ray", model, "--executor", f"ray:{nodes.address}")
    assert local["solved"] == on_ray["solved"] == 6
    assert local["config"]["executor"]["name"] == "local"
    assert on_ray["config"]["executor"] | {"address": None, "hosts": None} == {
        "name": "ray",
        "address": None,
        "nodes": 2,
        "jobs_per_node": 1,
        "sandbox": "docker",
        "retries": 0,
        "hosts": None,
    }
    rows = {
        name: [
            json.loads(line)
            for line in (tmp_path / name / "results.jsonl").read_text().splitlines()
        ]
        for name in ("local", "ray")
    }
    assert stable(rows["local"]) == stable(rows["ray"])
    assert steps_of(tmp_path / "local") == steps_of(tmp_path / "ray")
    for key in ("repair_rate", "pass@1", "pass@k", "pass@t", "tokens"):
        assert local[key] == on_ray[key]


def slow_task(name: str, seconds: float):
    """An operator task whose tests take `seconds`: long enough to be killed in the middle."""
    task = operator_task(name)
    [(test_file, test)] = task.tests.files.items()
    slow = TestSpec(
        kind="script",
        files={test_file: f"import time\ntime.sleep({seconds})\n{test}"},
        timeout_s=4 * seconds,
    )
    return task.model_copy(update={"task_id": f"slow-{name}", "tests": slow})


def operator_replies(*names: str) -> dict[str, list[str]]:
    """Each operator task's replies for the refine loop (wrong, review, fixed), keyed by its
    specification, which no candidate repeats."""
    replies = {}
    for name in names:
        _, fixed, wrong, _ = OPERATOR_TASKS[name]
        replies[operator_task(name).spec] = [operator_reply(wrong), REVIEW, operator_reply(fixed)]
    return replies


def repair_job(run_dir: Path, model: str) -> RepairJob:
    store = prepare_run_dir(run_dir, {"command": "test"})
    return RepairJob(
        Rollout("refine", model, Budget(max_candidates=4)), store, open_checkpointer(store)
    )


def test_a_worker_killed_mid_task_loses_no_task_and_writes_none_twice(cluster, executor, tmp_path):
    names = ["add", "sub", "mul", "mod"]
    tasks = [slow_task("add", 20)] + [operator_task(name) for name in names[1:]]
    model = keyed_replies(tmp_path / "replies.json", operator_replies(*names))
    job = repair_job(tmp_path / "run", model)
    killed = []

    def done(trajectory):
        # The first task to finish is a fast one; the other worker is then in the middle of the
        # slow task's twenty seconds of tests.
        if not killed:
            [busy] = [w for w in executor.workers if w.running]
            killed.append((busy, busy.pid))
            os.kill(busy.pid, signal.SIGKILL)

    results = list(executor.run(job, tasks, done))
    assert killed and executor.describe()["retries"] == 1
    assert [t.task.task_id for t in results] == [t.task_id for t in tasks]
    assert all(t.solved and len(t.candidates) == 2 for t in results)
    with TrajectoryStore(tmp_path / "run", create=False) as store:
        stored = list(store.trajectories())
    assert sorted(t.trajectory_id for t in stored) == sorted(t.trajectory_id for t in results)
    # The slow task's run directory holds the attempt that finished, and nothing of the other.
    assert (
        latest_checkpoint(job.checkpointer, "slow-add").checkpoint["channel_values"]["trajectory"]
        == results[0]
    )
    # Ray restarts the killed worker on its node, in a new process.
    [(worker, pid)] = killed
    restarted = ray_get(worker.actor.start.options(max_task_retries=-1).remote())["pid"]
    assert restarted != pid
    cluster[1].update((pid, restarted))  # both gone at the end, with their containers

    # Resumed, the run finds every task finished and sends none out.
    resumed, sent = repair_job(tmp_path / "run", model), []
    resumed.send = lambda task: sent.append(task) or RepairJob.send(resumed, task)
    again = list(executor.run(resumed, tasks, lambda trajectory: None))
    assert [t.trajectory_id for t in again] == [t.trajectory_id for t in results] and not sent


def test_a_task_that_failed_on_a_worker_resumes_from_its_checkpoint_here_or_there(
    executor, tmp_path
):
    from selfrepair.sandbox.choose import open_sandbox

    from selfrepair.executor.local import LocalExecutor

    tasks = [operator_task("add"), operator_task("sub")]
    replies = operator_replies("add", "sub")
    path = tmp_path / "replies.json"
    model = keyed_replies(
        path, {key: [wrong] for key, (wrong, _, _) in replies.items()}
    )  # out at the review
    failed = list(executor.run(repair_job(tmp_path / "run", model), tasks, lambda trajectory: None))
    assert all(
        t.outcome == "error" and "ran out of replies" in t.error and len(t.candidates) == 1
        for t in failed
    )

    keyed_replies(
        path, {key: [review, fixed] for key, (_, review, fixed) in replies.items()}
    )  # the rest
    [add] = executor.run(repair_job(tmp_path / "run", model), tasks[:1], lambda trajectory: None)
    with LocalExecutor(open_sandbox("docker")) as local:  # a run begun on Ray, resumed here
        [sub] = local.run(repair_job(tmp_path / "run", model), tasks[1:], lambda trajectory: None)
    for before, after in zip(failed, (add, sub), strict=True):
        assert (
            after.solved
            and after.trajectory_id == before.trajectory_id
            and len(after.candidates) == 2
        )
        first, again = (
            before.candidates[0],
            after.candidates[0],
        )  # the step before the error is not run again
        assert (again.candidate, again.report, again.sandbox_seconds) == (
            first.candidate,
            first.report,
            first.sandbox_seconds,
        )
    with TrajectoryStore(tmp_path / "run", create=False) as store:
        assert sorted(t.trajectory_id for t in store.trajectories()) == sorted(
            t.trajectory_id for t in failed
        )


def test_improves_repair_phase_runs_on_the_cluster(executor, tmp_path):
    from selfrepair.training.improve import ImproveSettings, repair_run

    tasks = [operator_task(name) for name in ("add", "sub")]
    model = keyed_replies(
        tmp_path / "replies.json",
        {
            operator_task("add").spec: [operator_reply("+")],
            operator_task("sub").spec: [operator_reply("-")],
        },
    )
    settings = ImproveSettings(
        strategy="refine", budget=Budget(max_candidates=1), sampling=Sampling(samples=1)
    )
    summary = repair_run(
        tasks, model, executor, settings, tmp_path / "train-run", "train", lambda event: None
    )
    assert summary["solved"] == 2 and summary["config"]["executor"]["nodes"] == 2


def test_a_node_error_is_one_line_naming_the_node(executor):
    with pytest.raises(
        SelfRepairError, match=r"^node \S+: scripted model: \S*replies.json: no such file"
    ):
        executor.load("scripted:/no/such/replies.json")


def test_cli_refuses_a_bad_executor_and_an_address_where_nothing_answers(tmp_path):
    for executor, says in (
        ("lambda", "expected local, ray"),
        ("ray:127.0.0.1:9", "nothing answers there"),
    ):
        result = subprocess.run(
            [
                SELFREPAIR,
                "bench",
                "humaneval",
                "--limit",
                "1",
                "--model",
                "scripted:x.json",
                "--executor",
                executor,
                "--out",
                str(tmp_path / "run"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "run").exists()


def test_without_ray_installed_the_executor_says_how_to_get_it(monkeypatch):
    from selfrepair.executor import open_executor

    monkeypatch.setitem(
        sys.modules, "ray", None
    )  # what `import ray` meets when it is not installed
    monkeypatch.delitem(sys.modules, "selfrepair.executor.cluster", raising=False)
    with pytest.raises(SelfRepairError, match=r'needs Ray: .venv/bin/pip install -e "\.\[ray\]"'):
        open_executor("ray")
