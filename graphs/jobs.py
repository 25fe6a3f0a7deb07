"""Repairing tasks into a run directory, as an executor's job (selfrepair.executor).

Here (the local executor) a task runs as `repair_task` always ran it: every step saved to the
run's store as it lands, every node checkpointed in the run's run.sqlite.

On a worker (the Ray executor) nothing of the run's is written: the task carries its thread's
last checkpoint from the run directory, runs over the worker's checkpointer in memory, and
brings back its trajectory and last checkpoint, which the driver writes: the checkpoint
first, then the trajectory (a driver killed between the two finds the task finished in its
checkpoint next time and saves the trajectory then). So, with either executor, a finished
task is skipped when the run resumes, a task that ended in an error is retried from before the
node that failed, and from its first checkpoint on a task keeps its one trajectory however
often it is run. A worker that dies mid-task has written nothing; the task is sent again from
the checkpoint it carried, so nothing is written twice. What a driver killed mid-task loses is that task's progress since it
was sent (with the local executor: the node that was running, and the one before it when the
kill came while its checkpoint was being written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from selfrepair.agents.verifier import verifier_of
from selfrepair.graphs.issue import repair_issue
from selfrepair.graphs.localise_repair import repair_localised
from selfrepair.graphs.run import (
    checkpointed_trajectory,
    latest_checkpoint,
    memory_checkpointer,
    repair_task,
    restore_checkpoint,
)

from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Node
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Task, Trajectory

# Strategies for repository tasks, each with its own graph and entry point.
REPOSITORY_STRATEGIES = {"issue": repair_issue, "localise-repair": repair_localised}

Carried = tuple[Task, CheckpointTuple | None]  # what a task takes to a worker
Returned = tuple[Trajectory, CheckpointTuple | None]  # and what it brings back


@dataclass(frozen=True)
class Rollout:
    """How to repair a task, wherever it runs: a strategy ("issue": the issue graph, or
    "localise-repair", for repository tasks), a model spec, the budget and sampling, and the
    specs of the roles not played by `model` (reviewer, refiner; a verifier for best-of-n).
    Plain data, so it travels."""

    strategy: str
    model: str
    budget: Budget
    sampling: Sampling | None = None
    reviewer: str | None = None
    refiner: str | None = None
    verifier: str | None = None

    def __post_init__(self) -> None:
        if self.strategy in REPOSITORY_STRATEGIES and (
            self.reviewer or self.refiner or self.verifier
        ):
            raise SelfRepairError(
                f"--reviewer, --refiner and --verifier apply to refine, best-of-n and tree, "
                f"not to {self.strategy}: its graph takes one --model"
            )

    @property
    def specs(self) -> list[str]:
        """Every model spec the rollout loads (each once per node)."""
        given = (self.model, self.reviewer, self.refiner, self.verifier)
        return list(dict.fromkeys(spec for spec in given if spec))

    def run(
        self,
        task: Task,
        node: Node,
        store: TrajectoryStore | None,
        checkpointer: BaseCheckpointSaver,
        on_step: Callable[[Trajectory], None] | None = None,
    ) -> Trajectory:
        model = node.model(self.model)
        repair = REPOSITORY_STRATEGIES.get(self.strategy)
        if repair is None:
            return repair_task(
                task,
                model,
                node.sandbox,
                self.strategy,
                self.budget,
                store,
                checkpointer=checkpointer,
                sampling=self.sampling,
                on_step=on_step,
                reviewer_model=node.model(self.reviewer) if self.reviewer else None,
                refiner_model=node.model(self.refiner) if self.refiner else None,
                verifier=verifier_of(node.model(self.verifier)) if self.verifier else None,
            )
        try:
            return repair(
                task,
                model,
                node.sandbox,
                self.budget,
                store,
                checkpointer=checkpointer,
                sampling=self.sampling,
                on_step=on_step,
            )
        except (
            SelfRepairError
        ) as error:  # before the graph starts, e.g. a test patch that does not apply
            trajectory = Trajectory(
                task=task,
                strategy=self.strategy,
                model=model.spec,
                outcome="error",
                error=str(error),
            )
            if store is not None:
                store.save(trajectory)
            return trajectory

    def __call__(self, carried: Carried, node: Node) -> Returned:
        """On a worker: the task from the checkpoint it carried, over this process's
        checkpointer in memory; its trajectory and last checkpoint go back."""
        task, start = carried
        checkpointer = memory_checkpointer()
        try:
            if start is not None:
                restore_checkpoint(checkpointer, task.task_id, start)
            trajectory = self.run(task, node, None, checkpointer)
            return trajectory, latest_checkpoint(checkpointer, task.task_id)
        finally:
            checkpointer.delete_thread(task.task_id)


@dataclass
class RepairJob:
    """Repair tasks into one run directory (its store and checkpointer) with `rollout`; the
    executor's Job. `on_step` hears every step of a task that runs here."""

    rollout: Rollout
    store: TrajectoryStore
    checkpointer: BaseCheckpointSaver
    on_step: Callable[[Trajectory], None] | None = None

    @property
    def model(self) -> str:
        return self.rollout.model

    @property
    def remote(self) -> Rollout:
        return self.rollout

    def here(self, task: Task, node: Node) -> Trajectory:
        return self.rollout.run(task, node, self.store, self.checkpointer, self.on_step)

    def finished(self, task: Task) -> Trajectory | None:
        saved = checkpointed_trajectory(latest_checkpoint(self.checkpointer, task.task_id))
        if saved is None or saved.outcome == "running":
            return None
        self.store.save(saved)  # the same row again, unless a killed driver never wrote it
        return saved

    def send(self, task: Task) -> Carried:
        return task, latest_checkpoint(self.checkpointer, task.task_id)

    def land(self, task: Task, returned: Returned) -> Trajectory:
        trajectory, checkpoint = returned
        if checkpoint is not None:
            restore_checkpoint(self.checkpointer, task.task_id, checkpoint)
        self.store.save(trajectory)
        return trajectory

    def lost(self, task: Task, reason: str) -> Trajectory:
        """The task as its checkpoint left it, ended in an error; the checkpoint stays, so a
        resumed run tries it again. A task that never checkpointed a step has nothing to
        save: its next run starts it afresh."""
        saved = checkpointed_trajectory(latest_checkpoint(self.checkpointer, task.task_id))
        if saved is None:
            return Trajectory(
                task=task,
                strategy=self.rollout.strategy,
                model=self.rollout.model,
                outcome="error",
                error=reason,
            )
        trajectory = saved.model_copy(update={"outcome": "error", "error": reason})
        self.store.save(trajectory)
        return trajectory
