"""Run one task through a strategy's graph, checkpointed so that a killed run resumes.

The checkpointer (langgraph-checkpoint-sqlite) lives in the run directory's `run.sqlite`,
beside the trajectory store; each task is one LangGraph thread, its id the task id. Running a
task again finds its thread: finished -> the stored trajectory comes back untouched; cut off
mid-way -> the graph continues from the last finished node, so no step is redone or lost.

A task run on another machine (graphs.jobs) carries its thread's last checkpoint there, runs
over a checkpointer in that process's memory, and brings its last checkpoint back, which the
driver puts into the run directory (`latest_checkpoint`, `restore_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    uuid6,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from selfrepair.agents.models.backends import check_reachable, load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.verifier import Scorer, check_verifier_spec, load_verifier
from selfrepair.graphs import consensus, repair, search
from selfrepair.graphs.nodes import RepairContext
from selfrepair.sandbox.core import Sandbox

from selfrepair.errors import SelfRepairError
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore, readable
from selfrepair.types import Task, TestReport, Trajectory

STRATEGIES: dict[str, StateGraph] = {
    "refine": repair.builder,
    "best-of-n": search.best_of_n_builder,
    "tree": search.tree_builder,
    # Label-free: never runs the tests (improve --unlabeled's train phase; graphs.consensus).
    "self-consistency": consensus.builder,
}

# The values of RepairState, the state every graph here shares: the checkpointer restores
# them from msgpack (the models nested in them travel as their fields and are rebuilt by
# these). Naming them keeps LangGraph's deserialiser strict about everything else; a type
# left out comes back as a bare dict, with a "Blocked deserialization" warning, on resume.
CHECKPOINTED_TYPES = [(kind.__module__, kind.__name__) for kind in (Task, Trajectory)]


class RunCheckpointer(SqliteSaver):
    """LangGraph's SQLite checkpointer in a run's store: in its file (RUN_DIR/run.sqlite), on
    its connection and lock, and saving each node's trajectory to the store with the node's
    checkpoint, in LangGraph's writer thread and in order, in the checkpoint's transaction
    (one commit for both). The nodes then write nothing
    themselves: a save of their own, on the run's thread, met LangGraph's writes at the lock
    (at SQLite's file lock, when it had a connection of its own, sleeping a millisecond and
    more in SQLite's busy handler), one save in eight in a fast loop, and the store and the
    checkpoint could disagree after a kill; now both hold a node or neither does."""

    def __init__(self, store: TrajectoryStore) -> None:
        super().__init__(
            store.connection, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINTED_TYPES)
        )
        self.lock = store.lock  # SqliteSaver holds its `lock` for each statement and its commit
        self.store = store

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        trajectory = checkpoint["channel_values"].get("trajectory")
        # Step 1 on is written after a node; -1 and 0 hold the input, before any node ran.
        if metadata.get("step", 0) <= 0 or "trajectory" not in new_versions or trajectory is None:
            return super().put(config, checkpoint, metadata, new_versions)
        with readable(self.store.path), self.lock:
            try:
                self.store.stage(trajectory)
                return super().put(config, checkpoint, metadata, new_versions)  # commits both
            except BaseException:
                self.conn.rollback()
                raise


def open_checkpointer(store: TrajectoryStore) -> RunCheckpointer:
    """The checkpointer of the run whose store this is (RunCheckpointer)."""
    return RunCheckpointer(store)


@functools.cache
def memory_checkpointer() -> SqliteSaver:
    """This process's checkpointer in memory, for tasks whose run directory is on another
    machine; its threads share it, and each task's thread is deleted when the task returns."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    return SqliteSaver(
        connection, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINTED_TYPES)
    )


def thread_config(task_id: str) -> dict:
    return {"configurable": {"thread_id": task_id, "checkpoint_ns": ""}}


def latest_checkpoint(checkpointer: BaseCheckpointSaver, task_id: str) -> CheckpointTuple | None:
    """The task's last checkpoint, with the writes pending on it; None when it has none."""
    return checkpointer.get_tuple(thread_config(task_id))


def checkpointed_trajectory(saved: CheckpointTuple | None) -> Trajectory | None:
    return saved.checkpoint["channel_values"].get("trajectory") if saved is not None else None


def restore_checkpoint(
    checkpointer: BaseCheckpointSaver, task_id: str, saved: CheckpointTuple
) -> None:
    """Make `saved` (another checkpointer's) the task's newest checkpoint here. It gets a new id
    from this machine's clock: ids order a thread's checkpoints by time, and two machines'
    clocks need not agree."""
    checkpoint = saved.checkpoint | {"id": str(uuid6(clock_seq=saved.metadata.get("step", -1)))}
    config = checkpointer.put(
        thread_config(task_id), checkpoint, saved.metadata, checkpoint["channel_versions"]
    )
    writes: dict[str, list[tuple[str, object]]] = {}
    for writer, channel, value in saved.pending_writes or ():
        writes.setdefault(writer, []).append((channel, value))
    for writer, pending in writes.items():
        checkpointer.put_writes(config, pending, writer)


@functools.lru_cache(maxsize=16)
def compiled(
    builder: StateGraph, checkpointer: SqliteSaver | None, name: str
) -> CompiledStateGraph:
    """The graph with this run's checkpointer, compiled once per run rather than per task."""
    return builder.compile(checkpointer=checkpointer, name=name)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise SelfRepairError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")


def check_roles(verifier: str | None, strategy: str) -> None:
    """Refuse, before any work, a verifier the strategy cannot use or the backend cannot score."""
    if verifier is not None:
        if strategy != "best-of-n":
            raise SelfRepairError(f"--verifier orders best-of-n's candidates, not {strategy}'s")
        check_verifier_spec(verifier)


def load_roles(
    reviewer: str | None, refiner: str | None, verifier: str | None
) -> dict[str, Model | Scorer]:
    """repair_task's role keywords, the models made from the specs given (and reachable)."""
    roles: dict[str, Model | Scorer] = {}
    for name, spec in (("reviewer_model", reviewer), ("refiner_model", refiner)):
        if spec is not None:
            roles[name] = load_model(spec)
            check_reachable(roles[name])
    if verifier is not None:
        roles["verifier"] = load_verifier(verifier)
    return roles


def repair_task(
    task: Task,
    model: Model,
    sandbox: Sandbox,
    strategy: str = "best-of-n",
    budget: Budget | None = None,
    store: TrajectoryStore | None = None,
    *,
    checkpointer: SqliteSaver | None = None,
    sampling: Sampling | None = None,
    baseline: TestReport | None = None,
    on_step: Callable[[Trajectory], None] | None = None,
    reviewer_model: Model | None = None,
    refiner_model: Model | None = None,
    verifier: Scorer | None = None,
) -> Trajectory:
    """Repair one task; returns its trajectory (outcome solved, budget or error). `model`
    solves; the reviewer and refiner roles use their own models where given (else `model`),
    and best-of-n orders its candidates by `verifier` where given.

    A SelfRepairError during the run (a model that stops answering, a scripted model out of
    replies, a broken sandbox) ends the task with outcome "error" and the message; the
    checkpoint still stands before the failed node, so running the task again retries it.
    """
    check_strategy(strategy)
    context = RepairContext(
        model=model,
        sandbox=sandbox,
        budget=budget or Budget(),
        sampling=sampling or Sampling(),
        baseline=baseline,
        store=store,
        on_step=on_step,
        reviewer_model=reviewer_model,
        refiner_model=refiner_model,
        verifier=verifier,
    )
    return run_graph(STRATEGIES[strategy], strategy, task, context, checkpointer=checkpointer)


def run_graph(
    builder: StateGraph,
    strategy: str,
    task: Task,
    context: RepairContext,
    *,
    checkpointer: SqliteSaver | None = None,
) -> Trajectory:
    """Run one task through `builder`'s graph with `context` (resumed from its checkpoint
    when there is one); the part of `repair_task` that other graphs (graphs.issue) share."""
    store = context.store
    if isinstance(checkpointer, RunCheckpointer) and checkpointer.store is store:
        context = dataclasses.replace(context, store=None)  # the checkpointer saves each node
    graph = compiled(builder, checkpointer, strategy)
    # Each candidate takes at most four nodes (generate, execute, review, route back).
    config = {
        "configurable": {"thread_id": task.task_id},
        "recursion_limit": 16 + 4 * context.budget.max_candidates,
        # One node runs at a time in every graph here, in this thread; LangGraph's pool only
        # writes checkpoints, in order. One thread does that, where a pool of up to six
        # (started afresh for every task) cost more thread starts than writes.
        "max_concurrency": 1,
    }

    state_in: dict | None = {
        "task": task,
        # Made here rather than by the first node, so that a task whose first node fails keeps
        # its trajectory id when it is run again.
        "trajectory": Trajectory(
            task=task,
            strategy=strategy,
            model=context.model.spec,
            metadata={"roles": context.roles()} if context.roles() else {},
        ),
    }
    if checkpointer is not None:
        saved = graph.get_state(config).values.get("trajectory")
        if saved is not None:
            # The trajectory says whether the task finished; the snapshot's `next` does not: a
            # run killed after a node's writes were saved shows no next node either.
            if saved.outcome != "running":
                return saved
            state_in = None  # resume from the last checkpoint
            context.latest = saved
    context.latest = context.latest or state_in["trajectory"]

    try:
        # "async": a node's checkpoint (and, with a RunCheckpointer, its store row) is written
        # in the background while the next node runs (waiting for it cost more than the rest
        # of the loop: two thread hand-offs a node). A kill loses the node that was running
        # and, in the millisecond its write takes, the node before, which the resumed run
        # redoes. Every write is done when invoke returns or raises.
        # (Without a checkpointer it must be unset.)
        durability = "async" if checkpointer is not None else None
        final = graph.invoke(state_in, config, context=context, durability=durability)
    except SelfRepairError as error:
        trajectory = context.latest.model_copy(update={"outcome": "error", "error": str(error)})
        if store is not None:
            store.save(trajectory)
        return trajectory
    return final["trajectory"]
