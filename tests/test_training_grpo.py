"""GRPO (experimental): the execution reward, and a two-step CPU smoke run on SmolLM2."""

from __future__ import annotations

import math

import pytest
from conftest import TINY_TRAINING, operator_reply, operator_task
from selfrepair.agents.models.adapters import read_card
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.training.grpo import execution_reward, grpo_dataset
from selfrepair.training.train import train_adapter


@pytest.fixture(scope="module")
def sandbox():
    box = open_sandbox("local")
    yield box
    box.close()


def test_the_reward_is_the_fraction_of_tests_the_reply_passes(sandbox):
    reward = execution_reward(sandbox)
    task = operator_task("add").model_dump_json()
    replies = [operator_reply("+"), operator_reply("*"), "no code here"]
    conversational = [[{"role": "assistant", "content": reply}] for reply in replies]
    assert reward(conversational, task=[task] * 3) == [1.0, 0.0, 0.0]
    assert reward(replies, task=[task] * 3) == [1.0, 0.0, 0.0]  # plain-text completions too


def test_the_dataset_holds_the_solver_prompt_and_the_task():
    data = grpo_dataset([operator_task(name) for name in ("add", "sub", "mul")], eval_fraction=0.0)
    row = data["train"][0]
    assert row["prompt"][0]["role"] == "system" and "def f(a, b)" in row["prompt"][-1]["content"]
    assert len(data["train"]) == 3 and len(data["test"]) == 0


@pytest.mark.model
@pytest.mark.slow
def test_grpo_smoke_run_trains_two_steps(sandbox, tmp_path):
    data = grpo_dataset([operator_task("add"), operator_task("sub")])
    settings = TINY_TRAINING | {
        "num_generations": 2,
        "max_completion_length": 32,
        "learning_rate": 1e-4,
    }
    settings.pop("max_length")
    card = train_adapter(
        "grpo",
        data,
        "smollm2",
        tmp_path / "adapter",
        settings=settings,
        reward_funcs=[execution_reward(sandbox)],
    )
    assert card["steps"] == 2 and all(math.isfinite(loss) for loss in card["losses"])
    assert read_card(tmp_path / "adapter")["method"] == "grpo"
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
