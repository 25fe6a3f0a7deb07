"""The local executor: a command's tasks in threads of this process (`--jobs` at once), over
this machine's sandbox pool and one copy of the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from selfrepair.executor.core import Item, Job, Node, Result
from selfrepair.sandbox.core import Sandbox


class LocalExecutor:
    name = "local"

    def __init__(self, sandbox: Sandbox, jobs: int = 1) -> None:
        """`sandbox` is the executor's from now on: close() closes it."""
        self.node = Node(sandbox)
        self.jobs = jobs

    def load(self, model: str) -> None:
        self.node.model(model)

    def run(
        self, job: Job[Item, Result], items: Sequence[Item], done: Callable[[Result], None]
    ) -> Iterator[Result]:
        try:
            yield from self._run(job, items, done)
        finally:
            self.node.release_models()

    def _run(
        self, job: Job[Item, Result], items: Sequence[Item], done: Callable[[Result], None]
    ) -> Iterator[Result]:
        if self.jobs == 1:
            for item in items:
                result = job.here(item, self.node)
                done(result)
                yield result
            return
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = [pool.submit(job.here, item, self.node) for item in items]
            for future in futures:
                future.add_done_callback(
                    lambda f: (
                        done(f.result()) if not f.cancelled() and f.exception() is None else None
                    )
                )
            for future in futures:
                yield future.result()
        finally:
            # Left early (an error, a stop signal): the tasks not started are dropped rather than
            # run to the end; running ones end at their next sandbox call (the sandbox is closed).
            pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": 1,
            "jobs_per_node": self.jobs,
            "sandbox": self.node.sandbox.name,
            "retries": 0,
        }

    def close(self) -> None:
        self.node.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
