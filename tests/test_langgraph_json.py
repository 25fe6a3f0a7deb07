"""`langgraph.json` points `langgraph dev` / LangGraph Studio at graphs that exist."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def test_config_has_the_keys_langgraph_reads() -> None:
    assert CONFIG["dependencies"] == ["."]
    # One graph per strategy (refine loop, best-of-n, tree search) and the repository-issue graph.
    assert set(CONFIG["graphs"]) == {"repair", "best-of-n", "tree", "issue"}


@pytest.mark.parametrize("name", sorted(CONFIG["graphs"]))
def test_each_graph_path_names_a_compiled_graph(name: str) -> None:
    file_part, attribute = CONFIG["graphs"][name].split(":")
    path = (ROOT / file_part).resolve()
    assert path.is_file(), f"{file_part} does not exist"
    # graphs/X.py is installed as selfrepair.graphs.X: import it the way the package does.
    relative = path.relative_to(ROOT / "graphs")
    module = importlib.import_module(f"selfrepair.graphs.{relative.stem}")
    graph = getattr(module, attribute)
    assert isinstance(graph, CompiledStateGraph)
    assert graph.get_graph().nodes  # it has a shape Studio can draw
