"""End to end with the real embedded model: SmolLM2-135M repairs examples/buggy_add with
best-of-n, tested in the local sandbox. Slow on a CPU (minutes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selfrepair.agents.models.backends import load_model
from selfrepair.graphs.run import repair_task
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.testing import run_tests

from selfrepair.cli.fix import fix_task
from selfrepair.settings import Budget

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.model
@pytest.mark.slow
def test_smollm2_repairs_the_example_with_best_of_n(tmp_path):
    import torch

    torch.manual_seed(0)  # sampling is seeded, so the run repeats on the same build
    shutil.copytree(ROOT / "examples" / "buggy_add", tmp_path / "buggy_add")
    task, _ = fix_task(tmp_path / "buggy_add" / "calc.py", "python -m pytest -q", None)
    sandbox = open_sandbox("local")
    try:
        baseline = run_tests(sandbox, task)
        assert not baseline.passed
        # Two rounds of 8 samples: one sample in four passes, so a miss is about 1 in 100.
        trajectory = repair_task(
            task,
            load_model("smollm2"),
            sandbox,
            "best-of-n",
            Budget(max_candidates=16),
            baseline=baseline,
        )
    finally:
        sandbox.close()
    assert trajectory.solved, [s.completion for s in trajectory.steps]
    solution = trajectory.steps[trajectory.solution_step].candidate.files["calc.py"]
    # It passed the sandboxed tests; it adds here too (the model may rename the parameters).
    namespace: dict = {}
    exec(solution, namespace)
    assert namespace["add"](2, 3) == 5 and namespace["add"](-1, 1) == 0
