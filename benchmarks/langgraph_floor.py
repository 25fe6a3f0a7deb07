"""What LangGraph's own step machinery costs, with nothing else in the nodes: the floor under
the loop's overhead (benchmarks/loop_overhead.py) while LangGraph runs each node as a step.

A graph of --nodes nodes in a line, each adding 1 to an int, invoked --invocations times as
the repair graphs are (one thread id per invocation, max_concurrency 1): with no
checkpointer, and with LangGraph's SQLite checkpointer (a temporary file in WAL mode with
synchronous=NORMAL, as the run's store is) at durability "async" (what runs use) and "exit".
Prints one JSON line: median milliseconds per invocation and per node, for each.

    python benchmarks/langgraph_floor.py --nodes 5 --invocations 200
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph


class Count(TypedDict):
    n: int


def add_one(state: Count) -> dict:
    return {"n": state["n"] + 1}


def line_graph(nodes: int) -> StateGraph:
    builder = StateGraph(Count)
    previous = START
    for index in range(nodes):
        builder.add_node(f"node{index}", add_one)
        builder.add_edge(previous, f"node{index}")
        previous = f"node{index}"
    builder.add_edge(previous, END)
    return builder


def median_ms(builder: StateGraph, checkpointer, durability: str | None, invocations: int) -> float:
    graph = builder.compile(checkpointer=checkpointer)
    seconds = []
    for index in range(invocations):
        config = {"configurable": {"thread_id": f"task-{index}"}, "max_concurrency": 1}
        started = time.perf_counter()
        if durability is None:
            graph.invoke({"n": 0}, config)
        else:
            graph.invoke({"n": 0}, config, durability=durability)
        seconds.append(time.perf_counter() - started)
    return 1000 * statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5, help="nodes in the graph (default 5)")
    parser.add_argument(
        "--invocations", type=int, default=200, help="invocations of each kind (default 200)"
    )
    args = parser.parse_args()
    builder = line_graph(args.nodes)
    figures = {"none": median_ms(builder, None, None, args.invocations)}
    with tempfile.TemporaryDirectory(prefix="selfrepair-floor-") as folder:
        for durability in ("async", "exit"):
            connection = sqlite3.connect(
                Path(folder) / f"{durability}.sqlite", check_same_thread=False
            )
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA journal_mode=WAL")
            figures[durability] = median_ms(
                builder, SqliteSaver(connection), durability, args.invocations
            )
            connection.close()
    print(
        json.dumps(
            {
                "benchmark": "langgraph_floor",
                "langgraph": importlib.metadata.version("langgraph"),
                "nodes": args.nodes,
                "invocations": args.invocations,
            }
            | {f"{kind}_ms_per_invocation": round(ms, 3) for kind, ms in figures.items()}
            | {f"{kind}_ms_per_node": round(ms / args.nodes, 3) for kind, ms in figures.items()}
        )
    )


if __name__ == "__main__":
    main()
