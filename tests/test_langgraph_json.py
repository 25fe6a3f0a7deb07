"""`langgraph.json` points `langgraph dev` / LangGraph Studio at graphs that exist, and those
graphs take what Studio sends: JSON input and a JSON context."""

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
    # One graph per strategy (refine loop, best-of-n, tree search, the label-free vote) and the
    # repository-issue graphs.
    assert set(CONFIG["graphs"]) == {
        "repair",
        "best-of-n",
        "tree",
        "self-consistency",
        "issue",
        "localise-repair",
    }


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


def compiled_graph(name: str) -> CompiledStateGraph:
    file_part, attribute = CONFIG["graphs"][name].split(":")
    return getattr(importlib.import_module(f"selfrepair.graphs.{Path(file_part).stem}"), attribute)


@pytest.mark.parametrize("name", sorted(CONFIG["graphs"]))
def test_each_graph_has_the_json_schemas_studio_asks_for(name: str) -> None:
    """The server's /assistants/{id}/schemas builds these; one that fails is an HTTP 500 there."""
    graph = compiled_graph(name)
    schemas = {
        "input": graph.get_input_jsonschema(),
        "output": graph.get_output_jsonschema(),
        "context": graph.get_context_jsonschema(),
    }
    json.dumps(schemas)  # plain JSON all through
    assert "task" in schemas["input"]["properties"]
    assert "trajectory" in schemas["output"]["properties"]
    # Studio's context form: the live objects are typed as what JSON can carry.
    context = schemas["context"]["properties"]
    assert context["model"]["type"] == "string" and context["sandbox"]["enum"] == [
        "auto",
        "docker",
        "local",
    ]
    assert {"budget", "sampling"} <= set(context)
    assert not {"store", "on_step", "latest", "checkout"} & set(context)


def test_the_repair_graph_runs_from_plain_json_input_and_context(tmp_path) -> None:
    """What Studio sends: the task as JSON, and a context of a model spec, a sandbox kind and
    budget numbers."""
    replies = tmp_path / "replies.json"
    replies.write_text(
        json.dumps(
            [
                "```python\ndef add(a, b):\n    return a * b\n```",
                "VERDICT: refine\nCONFIDENCE: 0.8\nCRITIQUE: line 2 multiplies",
                "```python\ndef add(a, b):\n    return a + b\n```",
            ]
        )
    )
    task = {
        "task_id": "add",
        "spec": "Return the sum of a and b.",
        "files": {"add.py": "def add(a, b):\n    return a - b\n"},
        "entry_file": "add.py",
        "tests": {
            "kind": "script",
            "files": {"test_add.py": "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"},
        },
    }
    context = {"model": f"scripted:{replies}", "sandbox": "local", "budget": {"max_candidates": 3}}
    final = compiled_graph("repair").invoke({"task": task}, context=context)
    trajectory = final["trajectory"]
    assert trajectory.outcome == "solved" and trajectory.solution_step == 1
    assert trajectory.strategy == "refine" and trajectory.model == f"scripted:{replies}"
    assert [s.kind for s in trajectory.steps] == ["solve", "refine"]
    assert not trajectory.steps[0].report.passed and trajectory.steps[0].review.verdict == "refine"


def test_studio_plumbing_happens_once_per_run_at_the_entry(tmp_path, monkeypatch) -> None:
    """The model spec is loaded, the sandbox kind opened and the JSON input read by the entry
    node alone; the four nodes after it (execute, review, refine, execute) find live
    objects and typed state."""
    from selfrepair.graphs import studio

    calls = {"live_model": 0, "live_sandbox": 0, "task_of": 0, "trajectory_of": 0}
    for name in calls:
        real = getattr(studio, name)

        def counted(value, _real=real, _name=name):
            calls[_name] += 1
            return _real(value)

        monkeypatch.setattr(studio, name, counted)
    replies = tmp_path / "replies.json"
    replies.write_text(
        json.dumps(
            [
                "```python\ndef add(a, b):\n    return a * b\n```",
                "VERDICT: refine\nCONFIDENCE: 0.8\nCRITIQUE: line 2 multiplies",
                "```python\ndef add(a, b):\n    return a + b\n```",
            ]
        )
    )
    task = {
        "task_id": "add",
        "spec": "Return the sum of a and b.",
        "files": {"add.py": "def add(a, b):\n    return a - b\n"},
        "entry_file": "add.py",
        "tests": {"kind": "script", "files": {"test_add.py": "assert add(1, 2) == 3\n"}},
    }
    context = {"model": f"scripted:{replies}", "sandbox": "local"}
    final = compiled_graph("repair").invoke({"task": task}, context=context)
    assert final["trajectory"].outcome == "solved" and len(final["trajectory"].steps) == 2
    assert calls == {"live_model": 1, "live_sandbox": 1, "task_of": 1, "trajectory_of": 0}
