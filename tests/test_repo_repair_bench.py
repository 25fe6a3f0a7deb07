"""benchmarks/repo_repair.py's localisation pairing: another run's ranking against this one's,
per bug, and a localisation-only run on an instances file with no functions file."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "repo_repair.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("repo_repair", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(task_id: str, package: str, crash: int | None) -> dict:
    return {"task_id": task_id, "package": package, "fault": [["m.py", "f"]], "crash": crash}


def test_against_pairs_the_rankings_per_bug_top_1_3_and_5(bench):
    previous = {"localisation": {"rows": [row("a", "p", 4), row("b", "p", 1), row("c", "q", None)]}}
    now = [row("a", "p", 2), row("b", "p", 1), row("c", "q", 9), row("new", "q", 1)]
    result = bench.against(now, previous)
    assert result["tasks"] == 3  # "new" has no earlier position
    assert result["top3"]["gained"] == ["a"] and result["top3"]["lost"] == []
    assert (result["top1"]["before"], result["top1"]["after"]) == (1, 1)
    assert (result["top5"]["before"], result["top5"]["after"]) == (2, 2)
    assert result["by_package"]["p"] == {
        "tasks": 2,
        **{"top1_before": 1, "top1_after": 1, "top3_before": 1, "top3_after": 2},
        **{"top5_before": 2, "top5_after": 2},
    }
    assert result["moved"] == {"a": [4, 2], "c": [None, 9]}


def test_localisation_only_needs_no_functions_file(bench, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "instances.jsonl").write_text(
        "".join(json.dumps({"instance_id": i}) + "\n" for i in ("b", "a", "c"))
    )
    instances, _, ids = bench.select(data, "all", 2, tmp_path / "out", functions_needed=False)
    assert ids == ["a", "b"]
    assert [json.loads(x)["instance_id"] for x in instances.read_text().splitlines()] == ids
    with pytest.raises(SystemExit, match="functions.jsonl: no such file"):
        bench.select(data, "all", 2, tmp_path / "out2", functions_needed=True)
