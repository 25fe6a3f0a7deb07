"""Fine-tune a base model on recorded repairs: TRL's SFTTrainer / DPOTrainer (and the
experimental GRPOTrainer, see training.grpo) with a PEFT LoRA.

Settings are TRL's own (`SFTConfig`, `DPOConfig`, `GRPOConfig`, `LoraConfig`) under their own names; the
defaults below only make a small run sensible (LoRA learning rates, log every step, no
checkpoints: the adapter is saved once, at the end). The same code runs on a CPU (float32)
and on a GPU (bfloat16 where supported).

The result is an adapter folder (peft's files) plus `card.json`: base model, data (run
directories, example and task counts), steps, losses. It is written beside `out` and renamed
into place when training succeeded, so a failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, DatasetDict
from selfrepair.agents.models.adapters import base_fingerprint, resolve_base, write_card

from selfrepair.errors import SelfRepairError
from selfrepair.files import describe, make_directory

Method = Literal["sft", "dpo", "grpo"]

DEFAULTS: dict[Method, dict[str, Any]] = {
    "sft": {"learning_rate": 2e-4, "max_steps": -1, "num_train_epochs": 1.0},
    "dpo": {"learning_rate": 5e-5, "max_steps": -1, "num_train_epochs": 1.0, "beta": 0.1},
    # Two completions per prompt is the least GRPO can compare; short ones keep a CPU run short.
    "grpo": {
        "learning_rate": 1e-5,
        "max_steps": -1,
        "num_train_epochs": 1.0,
        "num_generations": 2,
        "max_completion_length": 128,
    },
}
SHARED_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
}
MAX_LENGTH = 1024  # prompt + reply tokens, for SFT and DPO (GRPO bounds its completions instead)
DATA_COLUMNS: dict[Method, tuple[str, ...]] = {
    "sft": ("prompt", "completion"),
    "dpo": ("prompt", "chosen", "rejected"),
    "grpo": ("prompt", "task"),  # the reward function reads the task to run its tests
}


def default_lora(r: int = 16) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )


def accelerator() -> tuple[str, Any, bool]:
    """(device, dtype, bf16): bfloat16 on a GPU that has it, float32 everywhere else."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return "cuda", torch.bfloat16 if bf16 else torch.float32, bf16
    return "cpu", torch.float32, False


def trl_config(method: Method, output_dir: Path, settings: dict[str, Any] | None = None) -> Any:
    """TRL's config for `method`: our small-run defaults, then `settings` (TRL's names) over them."""
    from trl import DPOConfig, GRPOConfig, SFTConfig

    _, _, bf16 = accelerator()
    lengths = {} if method == "grpo" else {"max_length": MAX_LENGTH}
    values = {
        **SHARED_DEFAULTS,
        **lengths,
        **DEFAULTS[method],
        "bf16": bf16,
        **(settings or {}),
        "output_dir": str(output_dir),
    }
    config_class = {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}[method]
    try:
        return config_class(**values)
    except TypeError as error:
        raise SelfRepairError(f"{config_class.__name__}: {error}") from None
    except ValueError as error:
        raise SelfRepairError(f"{config_class.__name__}: {str(error).splitlines()[0]}") from None


def prompt_completion(row: dict) -> dict:
    """A chat -> (the turns before the last, the last assistant turn). In this
    conversational prompt-completion form TRL computes the loss on the reply alone, so the
    model learns to write the fix, not to reproduce the faulty code in the prompt."""
    return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}


def prepare(method: Method, data: DatasetDict) -> DatasetDict:
    """Each split with exactly the columns the trainer reads. An empty split (nothing held
    out) is rebuilt empty: `map` over no rows would not add the new columns."""
    columns = list(DATA_COLUMNS[method])
    prepared = {}
    for name, split in data.items():
        if not len(split):
            prepared[name] = Dataset.from_dict({column: [] for column in columns})
            continue
        if method == "sft":
            split = split.map(prompt_completion)
        prepared[name] = split.select_columns(columns)
    return DatasetDict(prepared)


def train_adapter(
    method: Method,
    data: DatasetDict,
    base: str,
    out: Path,
    *,
    settings: dict[str, Any] | None = None,
    lora: Any = None,
    run_dirs: list[str] | None = None,
    suspicious_left_out: int = 0,
    reward_funcs: list[Any] | None = None,
    provenance: dict[str, Any] | None = None,
    measure: Callable[[Any, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with `method` on `data` (a `train` and a `test` split, as
    training.datasets builds them; for GRPO, prompts and tasks from training.grpo) over
    `base`; write it to `out`; return its card. GRPO needs `reward_funcs`. `provenance` (how
    the data came to be, e.g. an improve round) is recorded in the card as it is; so is what
    `measure(model, tokenizer)` finds on the trained model (e.g. a held-out AUC), as
    `validation`, before the adapter is written."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer, GRPOTrainer, SFTTrainer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SelfRepairError(f"{out} exists and is not empty: choose another --out")
    if method == "grpo" and not reward_funcs:
        raise SelfRepairError("GRPO needs at least one reward function")
    if len(data["train"]) == 0:
        raise SelfRepairError("the training split is empty: every example was held out")
    base_path = resolve_base(base)
    fingerprint = base_fingerprint(base_path)
    lora = lora or default_lora()

    make_directory(out.parent)
    try:
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise SelfRepairError(f"cannot write {out}: {describe(error, out.parent)}") from None
    try:
        config = trl_config(method, partial / "trainer", settings)
        device, dtype, _ = accelerator()
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        prepared = prepare(method, data)
        # GRPO's evaluation would generate and run tests for every held-out prompt: left out.
        eval_split = prepared["test"] if len(prepared["test"]) and method != "grpo" else None
        common = dict(
            model=model,
            args=config,
            train_dataset=prepared["train"],
            processing_class=tokenizer,
            peft_config=lora,
        )
        if method == "grpo":
            trainer = GRPOTrainer(reward_funcs=reward_funcs, **common)
        else:
            trainer_class = SFTTrainer if method == "sft" else DPOTrainer
            trainer = trainer_class(eval_dataset=eval_split, **common)
        started = time.perf_counter()
        result = trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        if not losses or not all(math.isfinite(loss) for loss in losses):
            raise SelfRepairError(
                f"{method} training diverged: losses {losses} (lower the learning rate)"
            )
        eval_loss = trainer.evaluate()["eval_loss"] if eval_split is not None else None
        seconds = time.perf_counter() - started
        validation = measure(trainer.model.eval(), tokenizer) if measure is not None else None

        shutil.rmtree(partial / "trainer", ignore_errors=True)
        try:
            trainer.model.save_pretrained(partial)
        except OSError as error:  # a full disk: nothing of the adapter is left behind
            raise SelfRepairError(f"cannot write {out}: {describe(error, out.parent)}") from None
        dumped = config.to_dict()  # JSON-safe: enums as their values
        chosen_keys = (
            set(SHARED_DEFAULTS) | {"max_length"} | set(DEFAULTS[method]) | set(settings or {})
        ) - {"output_dir", "report_to"}
        card = {
            "method": method,
            "base": base,
            "base_path": base_path,
            "base_fingerprint": fingerprint,
            "data": {
                "run_dirs": run_dirs or [],
                "suspicious_steps_left_out": suspicious_left_out,
                "train_examples": len(data["train"]),
                "eval_examples": len(data["test"]),
                "train_tasks": len(set(data["train"]["task_id"]))
                if "task_id" in data["train"].column_names
                else None,
                "eval_tasks": len(set(data["test"]["task_id"]))
                if "task_id" in data["test"].column_names
                else None,
            },
            "steps": result.global_step,
            "losses": losses,
            "train_loss": result.training_loss,
            "eval_loss": eval_loss,
            "seconds": round(seconds, 1),
            "device": device,
            "trl_config": {key: dumped[key] for key in sorted(chosen_keys) if key in dumped},
            **({"provenance": provenance} if provenance else {}),
            **({"validation": validation} if validation is not None else {}),
            "lora": {
                "r": lora.r,
                "lora_alpha": lora.lora_alpha,
                "target_modules": lora.target_modules
                if isinstance(lora.target_modules, str)
                else sorted(lora.target_modules),
            },
        }
        write_card(partial, card)
        if out.exists():
            out.rmdir()  # an empty folder, checked above
        partial.chmod(0o755)  # mkdtemp made it private; an adapter is for sharing
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return card
