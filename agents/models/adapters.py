"""Adapters and the base models they belong to: resolving a base spec, the adapter's card,
and the check that an adapter is loaded on the base it was trained on.

An adapter folder holds what peft saves (adapter_config.json, adapter_model.safetensors)
plus `card.json`: the base model (spec, path and fingerprint), the data, the steps, the
losses. The fingerprint is the base's architecture (from its config) and, for a local
folder, a digest of its weight files, so an adapter on a different base model is refused
with a clear message instead of peft's shape errors or, worse, silently wrong output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from selfrepair.errors import SelfRepairError

CARD_NAME = "card.json"
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)
# Enough of each weight file to tell two checkpoints of one architecture apart without
# reading gigabytes: the safetensors header and the first tensors' bytes.
DIGEST_BYTES = 1 << 20


def resolve_base(spec: str) -> str:
    """A base model spec as `from_pretrained` takes it: `smollm2` (the embedded default),
    `hf:PATH_OR_ID`, or a bare folder or model id."""
    spec = spec.strip()
    if spec == "smollm2":
        from selfrepair.agents.models.smollm2 import ensure_smollm2

        return str(ensure_smollm2())
    prefix, colon, rest = spec.partition(":")
    if colon and prefix == "hf":
        spec = rest
    elif colon and prefix in ("openai", "vllm", "scripted"):
        raise SelfRepairError(
            f"base model {spec!r}: training needs the weights; give smollm2, hf:PATH_OR_ID or a folder"
        )
    if not spec or "+" in spec:
        raise SelfRepairError(f"base model {spec!r}: name one base model (no '+ADAPTER' here)")
    return spec


def base_fingerprint(base_path: str) -> dict[str, Any]:
    """The base's architecture and, when it is a local folder, a digest of its weights."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base_path).to_dict()
    except (OSError, ValueError) as error:
        raise SelfRepairError(
            f"base model {base_path!r}: no model config found ({error})"
        ) from None
    text_config = config.get("text_config") or config
    fingerprint: dict[str, Any] = {key: text_config.get(key) for key in ARCHITECTURE_KEYS}
    folder = Path(base_path)
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if weights:
        digest = hashlib.sha256()
        for path in weights:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(DIGEST_BYTES))
        fingerprint["weights_digest"] = digest.hexdigest()
    return fingerprint


def write_card(adapter_dir: Path, card: dict[str, Any]) -> None:
    (Path(adapter_dir) / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def read_card(adapter_dir: Path) -> dict[str, Any] | None:
    path = Path(adapter_dir) / CARD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SelfRepairError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno})"
        ) from None


def check_adapter(adapter_dir: Path, base_path: str) -> None:
    """Refuse an adapter trained on another base model. An adapter without our card (made
    elsewhere) is let through: peft's own checks are all there is to go on."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise SelfRepairError(f"{adapter_dir} is not an adapter folder (no adapter_config.json)")
    card = read_card(adapter_dir)
    if card is None or "base_fingerprint" not in card:
        return
    trained_on, here = card["base_fingerprint"], base_fingerprint(base_path)
    differing = [
        key
        for key in ARCHITECTURE_KEYS + ("weights_digest",)
        if key in trained_on and key in here and trained_on[key] != here[key]
    ]
    if differing:
        what = (
            ", ".join(
                f"{key} {trained_on[key]} vs {here[key]}"
                for key in differing
                if key != "weights_digest"
            )
            or "same architecture, different weights"
        )
        raise SelfRepairError(
            f"adapter {adapter_dir} was trained on base {card.get('base', '?')!r}, "
            f"not on {base_path!r} ({what})"
        )
