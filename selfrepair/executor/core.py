"""What every executor shares: the Executor and Job protocols, and the Node (a machine's
sandbox pool and models) that a job's tasks run on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from selfrepair.agents.models.backends import check_reachable, load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.sandbox.core import Sandbox

Item = TypeVar("Item")
Result = TypeVar("Result")


class Node:
    """What one machine lends the tasks it runs: its warm sandbox pool, and the models of the
    run at hand, each loaded once and shared by the machine's parallel tasks."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.models: dict[str, Model] = {}
        self.lock = threading.Lock()  # a model is loaded once, however many tasks ask at once

    def model(self, spec: str) -> Model:
        with self.lock:
            if spec not in self.models:
                model = load_model(spec)
                check_reachable(model)
                self.models[spec] = model
            return self.models[spec]

    def release_models(self) -> None:
        """Let the run's models go (between the phases of `improve`, training needs the memory)."""
        with self.lock:
            self.models.clear()

    def close(self) -> None:
        self.release_models()
        self.sandbox.close()


class Job(Protocol[Item, Result]):
    """One kind of work over many items (e.g. repairing tasks into a run directory).

    The local executor calls `here` in a thread of the driver, which may write the run
    directory as it goes. A remote executor asks `finished` first (what the run directory
    already holds is not sent again), ships `send(item)` with `remote` to a worker, which
    calls `remote(payload, node)` there and must write nothing of the run's, and hands what
    comes back to `land` on the driver, which writes it down. `lost` records an item whose
    workers kept dying."""

    model: str  # the model spec its items use: loaded on every node for the run
    remote: Callable[[Any, Node], Any]  # picklable; runs on a worker

    def here(self, item: Item, node: Node) -> Result: ...

    def finished(self, item: Item) -> Result | None: ...

    def send(self, item: Item) -> Any: ...

    def land(self, item: Item, returned: Any) -> Result: ...

    def lost(self, item: Item, reason: str) -> Result: ...


class Executor(Protocol):
    name: str  # "local" or "ray"

    def load(self, model: str) -> None:
        """Make `model` ready on every node now, so a bad spec, an unreachable server or a node
        that cannot load it is a SelfRepairError before any work starts."""
        ...

    def run(
        self, job: Job[Item, Result], items: Sequence[Item], done: Callable[[Result], None]
    ) -> Iterator[Result]:
        """Every item's result, in the items' order; `done` hears each as it finishes. The
        job's model is held on the nodes while the run lasts."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the work ran, for a run's summary: name, nodes, jobs per node, sandbox,
        retries (tasks sent again because their worker died)."""
        ...

    def close(self) -> None: ...
