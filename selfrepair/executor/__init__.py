"""Executors: where a command's tasks run.

`local` runs them in threads of this process (`--jobs` at once) over this machine's sandbox
pool; `ray` sends them to a Ray cluster, one worker per node, each holding that node's warm
sandbox pool and the run's model. Either way the driver (the process that ran the command)
alone writes the run directory: a job says how to run one task here, what to send to a worker
and how to write down what comes back (core.Job). Any command can use an executor: it knows
tasks, sandboxes and models, never graphs or training.
"""

from __future__ import annotations

from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Executor

EXECUTOR_FORMS = "local, ray (the cluster this machine belongs to, else a Ray instance of its own) or ray:ADDRESS"


def open_executor(spec: str, *, sandbox: str = "auto", jobs: int = 1) -> Executor:
    """The executor a `--executor` value names, with `jobs` tasks at once on each node and
    each node's sandbox of kind `sandbox` (auto, docker or local)."""
    kind, colon, address = spec.strip().partition(":")
    if kind == "local" and not colon:
        from selfrepair.executor.local import LocalExecutor
        from selfrepair.sandbox.choose import open_sandbox

        return LocalExecutor(open_sandbox(sandbox, pool_size=jobs), jobs)
    if kind == "ray" and (address or not colon):
        try:
            from selfrepair.executor.cluster import RayExecutor
        except ImportError as error:
            if error.name != "ray":
                raise
            raise SelfRepairError(
                '--executor ray needs Ray: .venv/bin/pip install -e ".[ray]"'
            ) from None
        return RayExecutor(address or None, sandbox=sandbox, jobs=jobs)
    raise SelfRepairError(f"--executor {spec!r}: expected {EXECUTOR_FORMS}")
