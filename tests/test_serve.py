"""`selfrepair serve --engine transformers`: a real `transformers serve` with the trained
adapter merged in answers an OpenAI chat request, through the `openai` backend."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import operator_task
from safetensors.torch import load_file
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.smollm2 import ensure_smollm2
from selfrepair.agents.solver import solve_messages

pytestmark = [pytest.mark.model, pytest.mark.slow]

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_stdout_line(process: subprocess.Popen, timeout_s: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout_s):
        return ""
    return process.stdout.readline().strip()


@pytest.fixture
def served(sft_adapter, tmp_path):
    """The server started by the CLI, the spec it printed; stopped (with its group) after."""
    environment = os.environ | {"SELFREPAIR_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    # The converted SmolLM2 lives in the real cache; the merged copy goes to the test's cache.
    base = str(ensure_smollm2())
    process = subprocess.Popen(
        [
            SELFREPAIR,
            "serve",
            "--base",
            f"hf:{base}",
            "--adapter",
            str(sft_adapter),
            "--engine",
            "transformers",
            "--port",
            str(free_port()),
            "--ready-timeout",
            "300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        spec = first_stdout_line(process, 400)
        assert spec.startswith("openai:"), (
            process.stderr.read() if process.poll() is not None else "no spec printed"
        )
        yield spec, tmp_path / "cache"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_answers_with_the_adapter_applied(served, sft_adapter):
    spec, cache = served
    base = str(ensure_smollm2())
    # The served folder is base + adapter merged: its weights are not the base's.
    merged = next((cache / "merged").iterdir())
    assert spec.split("@")[0] == f"openai:{merged}"
    served_weights, base_weights = (
        load_file(merged / "model.safetensors"),
        load_file(Path(base) / "model.safetensors"),
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not served_weights[name].equal(base_weights[name])

    messages = solve_messages(operator_task("add"))
    reply = load_model(spec).generate(messages, n=1, temperature=0.0, max_tokens=24)
    assert reply.completion_tokens > 0
    with_adapter = load_model(f"hf:{base}+{sft_adapter}").generate(
        messages, n=1, temperature=0.0, max_tokens=24
    )
    without = load_model(f"hf:{base}").generate(messages, n=1, temperature=0.0, max_tokens=24)
    assert reply.texts[0] == with_adapter.texts[0] != without.texts[0]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_stopped_or_killed_serve_leaves_no_server(tmp_path, signum):
    """`kill PID` (a supervisor, systemd), Ctrl-C, or a SIGKILL that gives selfrepair no way
    out at all: the model server it started ends too, its port closed."""
    log = (tmp_path / "serve.log").open("w")
    port = free_port()
    process = subprocess.Popen(
        [
            SELFREPAIR,
            "serve",
            "--base",
            f"hf:{ensure_smollm2()}",
            "--engine",
            "transformers",
            "--port",
            str(port),
            "--ready-timeout",
            "300",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        # As from a terminal, whatever started the tests (a background shell ignores SIGINT).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    server: list[psutil.Process] = []
    try:
        spec = first_stdout_line(process, 400)
        assert spec.startswith("openai:"), (tmp_path / "serve.log").read_text()[-3000:]
        server = psutil.Process(process.pid).children(recursive=True)
        assert server, "serve started no server"
        assert port_open(port)
        process.send_signal(signum)  # to selfrepair alone, as `kill PID` sends it
        assert process.wait(timeout=60) == (-signum if signum == signal.SIGKILL else 128 + signum)
        _, alive = psutil.wait_procs(server, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
        assert not port_open(port)
    finally:
        for leftover in server:
            if leftover.is_running():
                leftover.kill()
        process.kill()
        log.close()
    if signum != signal.SIGKILL:
        lines = (tmp_path / "serve.log").read_text().strip().splitlines()
        assert lines[-1].startswith(f"selfrepair: stopped by {signum.name}")


def test_serve_refuses_an_adapter_for_another_base(sft_adapter, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other-base"
    LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
        )
    ).save_pretrained(other)
    AutoTokenizer.from_pretrained(ensure_smollm2()).save_pretrained(other)
    result = subprocess.run(
        [
            SELFREPAIR,
            "serve",
            "--base",
            str(other),
            "--adapter",
            str(sft_adapter),
            "--engine",
            "transformers",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "was trained on base" in result.stderr
