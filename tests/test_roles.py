"""Roles as models: a run names a model per role (solver, reviewer, refiner; a verifier), and
each role's calls reach its own model; adapters of one hf base share one copy of it and are
switched per call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import operator_reply, operator_task
from selfrepair.agents.models.backends import load_model
from selfrepair.graphs.jobs import Rollout
from selfrepair.sandbox.choose import open_sandbox

from selfrepair.errors import SelfRepairError
from selfrepair.executor.core import Node
from selfrepair.settings import Budget, Sampling
from selfrepair.types import Message

REVIEW = "VERDICT: refine\nCONFIDENCE: 0.9\nCRITIQUE: the reviewer's own words"


def scripted(tmp_path: Path, name: str, replies: list[str]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


def test_each_role_asks_its_own_model(tmp_path):
    """The refine loop: the solver's first (wrong) reply, the reviewer's critique, the refiner's
    fix, each from its own scripted model: a role asking another's model would take a reply
    meant for someone else (or run out of replies)."""
    rollout = Rollout(
        "refine",
        scripted(tmp_path, "solver", [operator_reply("*")]),
        Budget(max_candidates=2),
        Sampling(),
        reviewer=scripted(tmp_path, "reviewer", [REVIEW]),
        refiner=scripted(tmp_path, "refiner", [operator_reply("+")]),
    )
    node = Node(open_sandbox("local"))
    try:
        trajectory = rollout.run(operator_task("add"), node, None, None)
        assert set(node.models) == {rollout.model, rollout.reviewer, rollout.refiner}
    finally:
        node.close()
    assert trajectory.solved, trajectory.error
    first, fixed = trajectory.steps
    assert first.review_completion == REVIEW
    assert "a * b" in first.completion and "a + b" in fixed.completion
    assert trajectory.model == rollout.model
    assert trajectory.metadata["roles"] == {
        "reviewer": rollout.reviewer,
        "refiner": rollout.refiner,
    }


def test_roles_are_refused_for_the_repository_graphs():
    with pytest.raises(SelfRepairError, match="apply to refine, best-of-n and tree"):
        Rollout("issue", "smollm2", Budget(), reviewer="smollm2")


def make_adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA with random (non-zero) B matrices, so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    return folder


PROMPT = [Message(role="user", content="Write a Python function that adds two numbers.")]


@pytest.mark.model
@pytest.mark.slow
def test_adapters_of_one_hf_base_share_it_and_switch_per_call(smollm2_folder, smollm2, tmp_path):
    before = smollm2.generate(PROMPT, max_tokens=12).texts
    first = load_model(f"hf:{smollm2_folder}+{make_adapter(smollm2_folder, tmp_path / 'a', 1)}")
    second = load_model(f"hf:{smollm2_folder}+{make_adapter(smollm2_folder, tmp_path / 'b', 2)}")
    assert first.base is second.base is smollm2.base  # one copy of the base weights
    outputs = [m.generate(PROMPT, max_tokens=12).texts for m in (first, second)]
    assert outputs[0] != before and outputs[1] != before and outputs[0] != outputs[1]
    # The base is itself again between adapter calls, and each adapter is still its own.
    assert smollm2.generate(PROMPT, max_tokens=12).texts == before
    assert first.generate(PROMPT, max_tokens=12).texts == outputs[0]
    again = load_model(f"hf:{smollm2_folder}+{tmp_path / 'a'}")
    assert again.adapter_name == first.adapter_name  # loaded once
