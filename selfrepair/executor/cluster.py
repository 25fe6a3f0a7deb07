"""The Ray executor: a command's tasks on a Ray cluster, one worker actor per node.

Each worker holds its node's warm sandbox pool and the run's model (executor.core.Node) and
runs up to `jobs` tasks at once. The driver keeps the queue: a task goes to a worker with a
free slot, so faster nodes take more. What a worker returns is written down by the driver
alone (`Job.land`); a worker writes nothing of the run's.

A worker that dies (its process killed, its node lost) fails the calls it was running; the
driver sends each of those tasks again, from what the run directory holds, and counts it.
Ray restarts the worker on its node (its constructor opens a fresh pool, and the Docker
sandbox removes the dead one's containers); the driver sends it more once it answers, and
stops using a worker that cannot come back. A task whose workers died MAX_ATTEMPTS times is
recorded as an error, which a resumed run retries.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Item, Job, Node, Result
from selfrepair.sandbox.choose import open_sandbox

MAX_ATTEMPTS = 3
CONNECT_SECONDS = 5  # for the first answer at a HOST:PORT given with --executor ray:ADDRESS
CLOSE_SECONDS = 60  # for a worker to remove its containers before it is killed


# Control calls (start, load, release, close) have a lane of their own, so they are answered
# while every task slot is busy. Ray restarts a dead worker without limit (max_restarts=-1);
# a call is never retried by Ray (max_task_retries=0): the driver decides what to send again,
# and counts it. num_cpus=0: a worker takes no CPU from Ray's accounting; it is placed by node.
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, concurrency_groups={"control": 1})
class NodeWorker:
    """One per node: the node's sandbox pool and models, and the tasks the driver sends."""

    def __init__(self, sandbox: str, jobs: int) -> None:
        self.node: Node | None = None
        self.problem: str | None = None
        try:
            self.node = Node(open_sandbox(sandbox, pool_size=jobs))
        except SelfRepairError as error:  # said by start(), so the driver can name the node
            self.problem = str(error)

    @ray.method(concurrency_group="control")
    def start(self) -> dict[str, Any]:
        if self.node is None:
            raise SelfRepairError(self.problem)
        return {"host": socket.gethostname(), "pid": os.getpid(), "sandbox": self.node.sandbox.name}

    @ray.method(concurrency_group="control")
    def load(self, model: str) -> None:
        self.node.model(model)

    @ray.method(concurrency_group="control")
    def release(self) -> None:
        self.node.release_models()

    def run(self, remote: Callable[[Any, Node], Any], payload: Any) -> Any:
        return remote(payload, self.node)

    @ray.method(concurrency_group="control")
    def close(self) -> None:
        if self.node is not None:
            self.node.close()


@dataclass
class Worker:
    """The driver's view of one node's worker."""

    actor: Any
    host: str
    pid: int = 0
    sandbox: str = ""
    running: int = 0
    ready: bool = True  # False from its death until it answers again
    gone: str = ""  # why it cannot come back


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None, *, sandbox: str = "auto", jobs: int = 1) -> None:
        """Join the cluster at `address` (HOST:PORT, auto, ray://...); without one, the cluster
        this machine belongs to, else a Ray instance of its own. When this process had already
        joined one (ray.init), that one is used and left running."""
        self.jobs = jobs
        self.retries = 0
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            connect(address)
        self.workers: list[Worker] = []
        self.revivals: dict[
            Any, Worker
        ] = {}  # a dead worker's first answer -> the worker (across runs)
        try:
            self._start_workers(sandbox)
        except BaseException:
            self.close()
            raise
        self.sandbox = self.workers[0].sandbox

    def _start_workers(self, sandbox: str) -> None:
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        if not nodes:
            raise SelfRepairError("the Ray cluster has no live node with CPUs to run tasks on")
        for node in nodes:
            placement = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            actor = NodeWorker.options(
                scheduling_strategy=placement, max_concurrency=self.jobs
            ).remote(sandbox, self.jobs)
            self.workers.append(Worker(actor, node["NodeManagerHostname"]))
        for worker, ref in [(w, w.actor.start.remote()) for w in self.workers]:
            try:
                info = ray.get(ref)
            except (
                RayActorError
            ) as error:  # its constructor failed, e.g. selfrepair is not installed there
                raise SelfRepairError(
                    f"node {worker.host}: the worker did not start: {first_line(error)}"
                ) from None
            except RayTaskError as error:
                raise node_error(worker, error) from None
            worker.host, worker.pid, worker.sandbox = info["host"], info["pid"], info["sandbox"]
        if len({w.sandbox for w in self.workers}) > 1:
            raise SelfRepairError(
                "the nodes would run different sandboxes ("
                + ", ".join(f"{w.host}: {w.sandbox}" for w in self.workers)
                + "); give every node the Docker engine and the sandbox image, or choose --sandbox local"
            )

    def load(self, model: str) -> None:
        self._each(lambda worker: worker.actor.load.remote(model))

    def run(
        self, job: Job[Item, Result], items: Sequence[Item], done: Callable[[Result], None]
    ) -> Iterator[Result]:
        self.load(job.model)
        try:
            yield from self._run(job, items, done)
        finally:
            self._each(lambda worker: worker.actor.release.remote())

    def _run(
        self, job: Job[Item, Result], items: Sequence[Item], done: Callable[[Result], None]
    ) -> Iterator[Result]:
        remote = ray.put(job.remote)  # shipped once, not with every task
        results: dict[int, Result] = {}
        waiting: deque[int] = deque()
        for index, item in enumerate(items):
            found = job.finished(item)
            if found is None:
                waiting.append(index)
            else:
                results[index] = found
                done(found)
        attempts = [0] * len(items)
        flights: dict[Any, tuple[int, Worker]] = {}  # a running task's result -> (item, worker)

        def finish(index: int, result: Result) -> None:
            results[index] = result
            done(result)

        shown = 0
        while True:
            for worker in self.workers:
                while worker.ready and not worker.gone and worker.running < self.jobs and waiting:
                    index = waiting.popleft()
                    flights[worker.actor.run.remote(remote, job.send(items[index]))] = (
                        index,
                        worker,
                    )
                    worker.running += 1
            while shown in results:
                yield results.pop(shown)
                shown += 1
            if shown == len(items):
                return
            if not flights and not self.revivals:
                reasons = "; ".join(f"{w.host}: {w.gone}" for w in self.workers)
                raise SelfRepairError(
                    f"no Ray worker is left to run the remaining {len(waiting)} task(s) ({reasons})"
                )
            (ref,), _ = ray.wait([*flights, *self.revivals], num_returns=1)
            if ref in self.revivals:
                self._revived(self.revivals.pop(ref), ref)
                continue
            index, worker = flights.pop(ref)
            worker.running -= 1
            try:
                returned = ray.get(ref)
            except RayTaskError as error:  # the job itself failed on the worker: as it would here
                raise node_error(worker, error) from None
            except RayActorError as error:
                self.retries += 1
                attempts[index] += 1
                if attempts[index] >= MAX_ATTEMPTS:
                    reason = f"its worker died {attempts[index]} times (last on {worker.host}: {first_line(error)})"
                    finish(index, job.lost(items[index], reason))
                else:
                    waiting.appendleft(index)
                self._died(worker)
                continue
            finish(index, job.land(items[index], returned))

    def _each(self, call: Callable[[Worker], Any]) -> None:
        """`call` on every worker that is up, awaited. One that died meanwhile is left to
        come back (it loads the run's model when its first task needs it)."""
        workers = [w for w in self.workers if w.ready and not w.gone]
        for worker, ref in [(w, call(w)) for w in workers]:
            try:
                ray.get(ref)
            except RayActorError:
                self._died(worker)
            except RayTaskError as error:
                raise node_error(worker, error) from None

    def _died(self, worker: Worker) -> None:
        """A call to `worker` failed because it died: use it again once it answers."""
        if worker.ready:
            worker.ready = False
            # Waits while Ray restarts it; fails when it cannot (its node is gone).
            self.revivals[worker.actor.start.options(max_task_retries=-1).remote()] = worker

    def _revived(self, worker: Worker, ref: Any) -> None:
        try:
            worker.pid = ray.get(ref)["pid"]
            worker.ready = True
        except (RayActorError, RayTaskError) as error:  # its node is gone, or it cannot start again
            worker.gone = first_line(error)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": ray.get_runtime_context().gcs_address,
            "nodes": len(self.workers),
            "jobs_per_node": self.jobs,
            "sandbox": self.sandbox,
            "retries": self.retries,
            "hosts": [w.host for w in self.workers],
        }

    def close(self) -> None:
        """Each worker removes its containers, then goes; Ray stops when this process started it."""
        closing = [w.actor.close.remote() for w in self.workers if not w.gone]
        for ref in closing:
            try:
                ray.get(ref, timeout=CLOSE_SECONDS)
            except (
                Exception
            ):  # a worker that cannot close leaves containers its node's next start removes
                pass
        for worker in self.workers:
            ray.kill(worker.actor, no_restart=True)
        self.workers = []
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(address: str | None) -> None:
    """ray.init, small: no dashboard, Ray's own logs kept to warnings, the workers' output left
    in their log files (it would tear the progress display)."""
    host, colon, port = (address or "").rpartition(":")
    if colon and port.isdigit() and "://" not in address:
        try:  # ray.init waits minutes at an address where nothing listens
            socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise SelfRepairError(
                f"--executor ray:{address}: nothing answers there ({error})"
            ) from None
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"ray:{address}" if address else "ray"
        raise SelfRepairError(
            f"--executor {where}: cannot join the Ray cluster: {first_line(error)}"
        ) from None


def node_error(worker: Worker, error: RayTaskError) -> BaseException:
    """A failure on a node as it would be raised here: a SelfRepairError, one line naming the
    node; anything else as itself."""
    if isinstance(error.cause, SelfRepairError):
        return SelfRepairError(f"node {worker.host}: {error.cause}")
    return error


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
