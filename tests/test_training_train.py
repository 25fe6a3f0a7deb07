"""Real training, tiny: SFT and DPO each run two steps on SmolLM2 on CPU, on a store filled by a
real (scripted model) repair run; the adapter loads in the hf backend and changes its output."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAINING, operator_task
from safetensors.torch import load_file
from selfrepair.agents.models.adapters import read_card
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.smollm2 import ensure_smollm2
from selfrepair.agents.solver import solve_messages
from selfrepair.training.datasets import dpo_dataset, read_runs
from selfrepair.training.train import train_adapter

from selfrepair.errors import SelfRepairError
from selfrepair.store import TrajectoryStore

pytestmark = [pytest.mark.model, pytest.mark.slow]

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


@pytest.fixture(scope="module")
def base() -> str:
    return str(ensure_smollm2())


@pytest.fixture(scope="module")
def dpo_adapter(scripted_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dpo") / "adapter"
    sources = read_runs([scripted_run])
    train_adapter(
        "dpo",
        dpo_dataset(sources, 0.2),
        "smollm2",
        out,
        settings=TINY_TRAINING,
        run_dirs=sources.run_dirs,
    )
    return out


def greedy_reply(spec: str) -> str:
    messages = solve_messages(operator_task("add"))
    return load_model(spec).generate(messages, n=1, temperature=0.0, max_tokens=24).texts[0]


def lora_b_norms(adapter: Path) -> list[float]:
    """LoRA's B matrices start at zero, so any non-zero one was moved by training."""
    weights = load_file(adapter / "adapter_model.safetensors")
    return [float(tensor.abs().sum()) for name, tensor in weights.items() if "lora_B" in name]


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_two_steps_give_finite_losses_and_a_card(method, sft_adapter, dpo_adapter, scripted_run):
    adapter = sft_adapter if method == "sft" else dpo_adapter
    card = read_card(adapter)
    assert card["method"] == method and card["steps"] == 2 and card["base"] == "smollm2"
    assert len(card["losses"]) == 2 and all(math.isfinite(loss) for loss in card["losses"])
    assert card["eval_loss"] is not None and math.isfinite(card["eval_loss"])
    assert card["data"]["run_dirs"] == [str(scripted_run.resolve())]
    assert card["data"]["train_tasks"] + card["data"]["eval_tasks"] == 6
    assert card["base_fingerprint"]["model_type"] == "llama"


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_training_changes_the_adapter_weights(method, sft_adapter, dpo_adapter):
    norms = lora_b_norms(sft_adapter if method == "sft" else dpo_adapter)
    assert norms and any(norm > 0 for norm in norms)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_the_adapter_loads_in_the_hf_backend_and_changes_its_output(
    method, base, sft_adapter, dpo_adapter
):
    adapter = sft_adapter if method == "sft" else dpo_adapter
    assert greedy_reply(f"hf:{base}+{adapter}") != greedy_reply(f"hf:{base}")


def test_an_adapter_for_another_base_is_refused(base, sft_adapter, tmp_path):
    """A different (tiny, random) model with SmolLM2's tokenizer is another base."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other-base"
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=49152,
    )
    LlamaForCausalLM(config).save_pretrained(other)
    AutoTokenizer.from_pretrained(base).save_pretrained(other)
    with pytest.raises(
        SelfRepairError, match="was trained on base 'smollm2'.*hidden_size 576 vs 64"
    ):
        load_model(f"hf:{other}+{sft_adapter}")


def test_a_bad_trl_setting_is_refused_and_leaves_nothing(scripted_run, tmp_path):
    from selfrepair.training.datasets import sft_dataset

    out = tmp_path / "adapter"
    with pytest.raises(SelfRepairError, match="SFTConfig.*no_such_setting"):
        train_adapter(
            "sft",
            sft_dataset(read_runs([scripted_run])),
            "smollm2",
            out,
            settings={"no_such_setting": 1},
        )
    assert list(tmp_path.iterdir()) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SELFREPAIR, *args], capture_output=True, text=True)


def test_cli_refuses_an_empty_store(tmp_path):
    TrajectoryStore(tmp_path / "run").close()
    result = run_cli(
        "train", "sft", "--runs", str(tmp_path / "run"), "--out", str(tmp_path / "adapter")
    )
    assert result.returncode == 2 and "no trajectories" in result.stderr
    assert not (tmp_path / "adapter").exists()


def test_cli_refuses_a_store_with_no_successes(scripted_run, tmp_path):
    with TrajectoryStore(scripted_run) as store:
        failures = [t for t in store.trajectories() if not t.solved]
    with TrajectoryStore(tmp_path / "run") as store:
        for trajectory in failures:
            store.save(trajectory)
    for method in ("sft", "dpo"):
        result = run_cli(
            "train", method, "--runs", str(tmp_path / "run"), "--out", str(tmp_path / "adapter")
        )
        assert result.returncode == 2 and "no test-verified successes" in result.stderr
    assert not (tmp_path / "adapter").exists()


def test_cli_refuses_an_out_folder_that_holds_something(scripted_run, tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "keep.txt").write_text("mine")
    result = run_cli(
        "train", "sft", "--runs", str(scripted_run), "--out", str(tmp_path / "adapter")
    )
    assert result.returncode == 2 and "not empty" in result.stderr
    assert json.dumps(sorted(p.name for p in (tmp_path / "adapter").iterdir())) == '["keep.txt"]'
