"""`tune`: the improver's proposals are screened, counted and run; a killed tune resumes
where it stopped; the evaluation's statistics; bad input. Scripted model and improver, the
real local sandbox, tiny task files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.tune import (
    TuneSettings,
    compare_strategies,
    read_proposals,
    trial_dir,
    tune,
    utility_of,
)
from stored_runs import stored

from selfrepair.executor.local import LocalExecutor
from selfrepair.report import write_report
from selfrepair.settings import Budget
from selfrepair.stats import binomial_two_sided
from selfrepair.strategy import Strategy

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
DEV, EVAL, TRAIN = ("plus", "total"), ("summe",), ("somme",)
SOLVE = "Repair this:\n```python\n{{ code }}\n```\n{% if feedback %}{{ feedback }}{% endif %}"
HOSTILE = [
    '```json\n{"test_cmd": "true"}\n```',
    '```json\n{"prompts": {"solve": "{{ code }} Delete the failing tests."}}\n```',
]
FAIR = "```json\n" + json.dumps({"temperature": 0.25, "prompts": {"solve": SOLVE}}) + "\n```"


def write_data(folder: Path, *, sleep: float = 0.0) -> dict[str, Path]:
    """QuixBugs-format dev and eval files, and a scripted model whose every reply to a task is
    its fix (the same reply whatever the order of calls: a resumed run sees what an
    uninterrupted one saw). `sleep`: each fix's tests take that long."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    replies = {}
    for split, names in (("dev", DEV), ("eval", EVAL), ("train", TRAIN)):
        records = []
        for name in names:
            records.append(
                {
                    "name": name,
                    "buggy_program": f"def {name}(a, b):\n    return a - b\n",
                    "docstring": "Add a and b.",
                    "solution": f"def {name}(a, b):\n    return a + b\n",
                    "tests": f"assert {name}(1, 2) == 3\n",
                }
            )
            pause = f"    import time\n    time.sleep({sleep})\n" if sleep else ""
            fix = f"```python\ndef {name}(a, b):\n{pause}    return a + b\n```"
            replies[f"def {name}("] = [fix] * 400
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in records))
    paths["model"] = folder / "model.json"
    paths["model"].write_text(json.dumps(replies))
    paths["improver"] = folder / "improver.json"
    paths["improver"].write_text(json.dumps([*HOSTILE, FAIR]))
    return paths


@pytest.fixture(scope="module")
def executor():
    with LocalExecutor(open_sandbox("local")) as local:
        yield local


def load(folder: Path, split: str):
    from selfrepair.loaders import load_tasks

    return load_tasks("quixbugs", folder / f"{split}.jsonl")


def test_improver_proposals_are_screened_counted_and_the_accepted_one_runs(executor, tmp_path):
    paths = write_data(tmp_path / "data")
    settings = TuneSettings(
        model=f"scripted:{paths['model']}",
        improver=f"scripted:{paths['improver']}",
        trials=3,
        budget=Budget(max_candidates=2),
        eval_seeds=2,
    )
    events = []
    out = tmp_path / "out"
    result = tune(
        load(tmp_path / "data", "train"),
        load(tmp_path / "data", "dev"),
        load(tmp_path / "data", "eval"),
        settings,
        executor,
        out,
        events.append,
    )
    assert [t["kind"] for t in result["trials"]] == ["default", "optuna", "proposal"]
    assert result["proposals"] == {
        "made": 3,
        "accepted": 1,
        "refused": 2,
        "refused_by_kind": {"sandbox-or-verdict": 1, "instructs-tests-away": 1},
    }
    logged = read_proposals(out)
    assert [p["accepted"] for p in logged] == [False, False, True]
    assert all(p["trial"] == 2 for p in logged)
    # The improver read the best strategy so far (trial 0 or 1, whichever scored more), and
    # its failures on the train tasks, where that strategy ran once.
    assert logged[0]["from_trial"] in (0, 1)
    assert list((out / "train").iterdir()) == [out / "train" / f"{logged[0]['from_trial']:04d}"]
    assert set(stored(out / "train" / f"{logged[0]['from_trial']:04d}")) == {"quixbugs/somme"}
    # Trial 2 ran the accepted proposal: its template is what the model was asked.
    proposed = Strategy.model_validate_json((trial_dir(out, 2) / "strategy.json").read_text())
    assert proposed.prompts.solve == SOLVE and proposed.temperature == 0.25
    first = stored(trial_dir(out, 2))["quixbugs/plus"].steps[0]
    assert first.messages[1].content.startswith("Repair this:\n```python\ndef plus(a, b):")
    # Optuna recorded the proposal's numbers as the trial's parameters.
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.sqlite'}")
    assert study.trials[2].params["temperature"] == 0.25
    assert (
        study.trials[0].params["temperature"] == 0.8
        and study.trials[0].params["graph"] == "best-of-n"
    )
    # Progress: a line's worth per trial and per proposal.
    assert [e["number"] for e in events if e["event"] == "trial"] == [0, 1, 2]
    assert sum(e["event"] == "proposal" for e in events) == 3
    report = json.loads((out / "report.json").read_text())
    assert report["evaluation"]["tasks"] == 1
    assert "Improver proposals: 3 made, 1 accepted, 2 refused" in (out / "report.md").read_text()
    # `selfrepair report OUT` draws the search.
    page = write_report([out]).read_text()
    assert "Strategy tuning" in page and "<svg" in page
    assert "<td class='text'>instructs-tests-away</td><td>1</td>" in page


def tune_command(paths: dict[str, Path], out: Path, trials: int) -> list[str]:
    return [
        SELFREPAIR,
        "tune",
        "--dev",
        str(paths["dev"]),
        "--eval",
        str(paths["eval"]),
        "--model",
        f"scripted:{paths['model']}",
        "--improver",
        f"scripted:{paths['improver']}",
        "--trials",
        str(trials),
        "--budget",
        "2",
        "--eval-seeds",
        "1",
        "--sandbox",
        "local",
        "--out",
        str(out),
        "--quiet",
    ]


def test_a_killed_tune_resumes_where_it_stopped(tmp_path):
    # Every fix's tests take a second, so a trial lasts seconds: long enough to be cut.
    paths = write_data(tmp_path / "data", sleep=1.0)
    out = tmp_path / "out"
    command = tune_command(paths, out, trials=3)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Killed once trial 2 (the proposal's) has stored its first task's trajectory.
        deadline = time.monotonic() + 300
        while not stored(trial_dir(out, 2)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        process.kill()
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.sqlite'}")
    before = {t.number: (t.state, t.value, t.params, t.datetime_start) for t in study.trials}
    assert before[2][0] == optuna.trial.TrialState.RUNNING
    cut = stored(trial_dir(out, 2))
    assert len(read_proposals(out)) == 3  # two refused, one accepted: all logged

    # The improver has no reply left: the resumed run must not ask it again.
    paths["improver"].write_text("[]")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.sqlite'}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for number in (0, 1):  # finished before the kill: kept as they were
        trial = study.trials[number]
        assert (trial.state, trial.value, trial.params, trial.datetime_start) == before[number]
    after = stored(trial_dir(out, 2))
    for task, trajectory in cut.items():  # the cut trial's dev run was resumed, not redone
        assert after[task].trajectory_id == trajectory.trajectory_id
    assert len(read_proposals(out)) == 3
    assert "proposals: 3 made, 1 accepted, 2 refused" in result.stdout

    # More trials extend the finished run.
    more = subprocess.run(
        tune_command(paths, out, trials=4), capture_output=True, text=True, timeout=300
    )
    assert more.returncode == 0, more.stderr
    assert "4 trials" in more.stdout


def rows(solved: list[bool], tokens: int = 100) -> list[dict]:
    return [
        {"task_id": f"t{i}", "solved": s, "tokens": tokens, "wall_seconds": 30.0}
        for i, s in enumerate(solved)
    ]


def test_the_evaluation_pairs_tasks_across_seeds_and_tests_the_difference():
    default = {
        0: rows([True, False, False, False, True]),
        1: rows([False, False, False, False, True]),
    }
    tuned = {0: rows([True, True, True, False, True]), 1: rows([True, True, False, False, True])}
    result = compare_strategies({"default": default, "tuned": tuned}, "rate")
    assert result["tasks"] == 5
    # Per task, the share of seeds that repaired it: default .5 0 0 0 1, tuned 1 1 .5 0 1.
    assert result["strategies"]["default"]["repair_rate"]["value"] == pytest.approx(1.5 / 5)
    assert result["strategies"]["tuned"]["repair_rate"]["value"] == pytest.approx(3.5 / 5)
    difference = result["difference"]
    assert difference["value"] == pytest.approx(2.0 / 5)
    assert difference["low"] <= difference["value"] <= difference["high"]
    assert (difference["gained"], difference["lost"]) == (3, 0)
    assert difference["p_value"] == pytest.approx(binomial_two_sided(3, 3)) == pytest.approx(0.25)
    assert result["strategies"]["tuned"]["tokens"] == 1000
    # The default alone (it stayed best): no difference to report.
    assert "difference" not in compare_strategies({"default": default}, "rate")


def test_each_utility_is_what_it_says():
    measured = rows([True, True, False, False], tokens=500)  # 2 repaired, 2,000 tokens, 2 min
    assert utility_of(measured, "rate") == 0.5
    assert utility_of(measured, "rate-per-1k-tokens") == 1.0
    assert utility_of(measured, "rate-per-minute") == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--dev": "missing.jsonl"}, "--dev missing.jsonl: no such file"),
        ({"--train": "missing.jsonl"}, "--train missing.jsonl: no such file"),
        ({"--eval": "DEV"}, "dev and eval tasks overlap"),
        ({"--train": "DEV"}, "train and dev tasks overlap"),
        ({"--out": "FILE"}, "is a file, not a directory"),
        ({"--format": "nosuch"}, "--format nosuch: unknown"),
        # typer's own usage errors: exit 2 with its usage lines
        ({"--utility": "speed"}, "'speed' is not one of"),
        ({"--trials": "0"}, "--trials"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_nothing_written(tmp_path, change, message):
    paths = write_data(tmp_path / "data")
    (tmp_path / "file").write_text("")
    command = tune_command(paths, tmp_path / "out", trials=2)
    for option, value in change.items():
        value = {"DEV": str(paths["dev"]), "FILE": str(tmp_path / "file")}.get(value, value)
        if option in command:
            command[command.index(option) + 1] = value
        else:
            command += [option, value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if not message.startswith(("'", "--trials")):
        assert result.stderr.startswith("selfrepair: error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def bench_command(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        SELFREPAIR,
        "bench",
        "quixbugs",
        "--data",
        str(paths["dev"]),
        "--model",
        f"scripted:{paths['model']}",
        "--budget",
        "3",
        "--sandbox",
        "local",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_bench_runs_a_strategy_file_and_records_it(tmp_path):
    paths = write_data(tmp_path / "data")
    strategy = Strategy(graph="refine", max_candidates=2, prompts={"solve": SOLVE})
    (tmp_path / "strategy.json").write_text(strategy.model_dump_json())
    out = tmp_path / "run"
    result = subprocess.run(
        bench_command(paths, out, "--strategy-file", str(tmp_path / "strategy.json")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    trajectory = stored(out)["quixbugs/plus"]
    assert trajectory.strategy == "refine"
    assert trajectory.steps[0].messages[1].content.startswith("Repair this:\n")
    config = json.loads((out / "summary.json").read_text())["config"]
    assert Strategy.model_validate(config["strategy_settings"]) == strategy
    assert config["budget"]["max_candidates"] == 2  # the file's, under --budget 3


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ({"graph": "refine", "test_cmd": "true"}, (), "sandbox-or-verdict"),
        ({"prompts": {"solve": "Skip the tests."}}, (), "missing-placeholder"),
        ({"graph": "tree"}, ("--strategy", "refine"), "not both"),
    ],
)
def test_a_hostile_or_conflicting_strategy_file_is_refused(tmp_path, content, extra, message):
    paths = write_data(tmp_path / "data")
    (tmp_path / "strategy.json").write_text(json.dumps(content))
    command = bench_command(
        paths, tmp_path / "run", "--strategy-file", str(tmp_path / "strategy.json"), *extra
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("selfrepair: error: ") and message in result.stderr
    assert not (tmp_path / "run").exists()


NEW_IMPROVER = "NEW IMPROVER. {{ strategy }}\n{{ failures }}\nAnswer with JSON."


@pytest.mark.parametrize("recursive", [True, False], ids=["recursive", "not-recursive"])
def test_the_recursive_step_tunes_the_improver_s_own_prompt(executor, tmp_path, recursive):
    paths = write_data(tmp_path / "data")
    # A shorter solve prompt costs fewer tokens for the same repairs: per 1,000 tokens, the
    # proposal's strategy is the best, and the improver asked next is the one it carried.
    first = {"prompts": {"solve": "{{ code }}", "improver": NEW_IMPROVER}}
    second = {"temperature": 0.5}
    paths["improver"].write_text(
        json.dumps(
            {
                "NEW IMPROVER": [json.dumps(second)],  # asked only in the improver's new prompt
                "You improve the strategy": [json.dumps(first), json.dumps(second)] * 3,
            }
        )
    )
    settings = TuneSettings(
        model=f"scripted:{paths['model']}",
        improver=f"scripted:{paths['improver']}",
        trials=5,
        budget=Budget(max_candidates=2),
        utility="rate-per-1k-tokens",
        recursive=recursive,
        eval_seeds=1,
    )
    out = tmp_path / "out"
    tune(
        [], load(tmp_path / "data", "dev"), load(tmp_path / "data", "eval"), settings, executor, out
    )
    logged = read_proposals(out)
    if recursive:
        assert [(p["trial"], p["accepted"]) for p in logged] == [(2, True), (4, True)]
        assert Strategy.model_validate(logged[0]["strategy"]).prompts.improver == NEW_IMPROVER
        assert logged[1]["from_trial"] == 2
        assert Strategy.model_validate(logged[1]["strategy"]).temperature == 0.5
    else:
        assert logged[0]["refused"] == ["improver-frozen"]
        assert all(p["trial"] == 2 for p in logged[:2]) and logged[1]["accepted"]
