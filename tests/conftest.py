"""Fixtures shared by several test modules."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Fixture projects carry test suites of their own (the task factory mines them); they run inside
# a sandbox against their package, never as part of this suite.
collect_ignore_glob = ["fixtures/*"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items) -> None:
    """The `vllm` tests start vLLM's server from its own environment (made once: minutes and
    about 3.5 GB; scripts/test.sh makes it in CI): they run in CI, with SELFREPAIR_TEST_VLLM=1,
    or when `-m` names them, and are skipped elsewhere."""
    import os

    if (
        in_ci()
        or os.environ.get("SELFREPAIR_TEST_VLLM") == "1"
        or "vllm" in (config.getoption("markexpr") or "")
    ):
        return
    skip = pytest.mark.skip(reason="starts vLLM (set SELFREPAIR_TEST_VLLM=1, or -m vllm; on in CI)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def issue_repo(tmp_path: Path) -> Path:
    """The example repository of examples/issue_repo, as a fresh git repository with one commit."""
    spec = importlib.util.spec_from_file_location(
        "make_repo", ROOT / "examples" / "issue_repo" / "make_repo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_repo(tmp_path / "shop")


# A run directory filled by real repair runs: the scripted model's replies, the real local
# sandbox running each task's tests. Best-of-n samples one wrong and one right reply to the
# same prompt (a preference pair); the refine loop turns a failure and its feedback into a
# fix; one task is never solved. Used by the training tests.
OPERATOR_TASKS = {
    "add": ("-", "+", "*", "assert f(1, 2) == 3\nassert f(2, 2) == 4\n"),
    "sub": ("+", "-", "*", "assert f(5, 2) == 3\nassert f(1, 1) == 0\n"),
    "mul": ("+", "*", "-", "assert f(3, 4) == 12\nassert f(2, 2) == 4\nassert f(0, 5) == 0\n"),
    "floordiv": ("*", "//", "%", "assert f(7, 2) == 3\nassert f(9, 3) == 3\n"),
    "mod": ("//", "%", "-", "assert f(7, 2) == 1\nassert f(9, 4) == 1\n"),
    "pow": ("*", "**", "+", "assert f(2, 3) == 8\nassert f(3, 2) == 9\n"),
}


def operator_task(name: str):
    from selfrepair.types import Task, TestSpec

    buggy, _, _, tests = OPERATOR_TASKS[name]
    return Task(
        task_id=name,
        spec=f"Return a {name} b.",
        files={f"{name}.py": f"def f(a, b):\n    return a {buggy} b\n"},
        entry_file=f"{name}.py",
        tests=TestSpec(kind="script", files={f"test_{name}.py": tests}),
    )


def operator_reply(operator: str) -> str:
    return f"```python\ndef f(a, b):\n    return a {operator} b\n```"


@pytest.fixture(scope="session")
def scripted_run(tmp_path_factory) -> Path:
    import json

    from selfrepair.agents.models.backends import load_model
    from selfrepair.graphs.run import repair_task
    from selfrepair.sandbox.choose import open_sandbox

    from selfrepair.settings import Budget, Sampling
    from selfrepair.store import TrajectoryStore

    run_dir = tmp_path_factory.mktemp("scripted-run")
    replies_dir = tmp_path_factory.mktemp("replies")
    sandbox = open_sandbox("local")
    refine_feedback = "VERDICT: refine\nCONFIDENCE: 0.8\nCRITIQUE: wrong operator on line 2"

    def run(task, strategy: str, replies: list[str], samples: int = 2) -> None:
        path = replies_dir / f"{task.task_id}-{strategy}.json"
        path.write_text(json.dumps(replies))
        repair_task(
            task,
            load_model(f"scripted:{path}"),
            sandbox,
            strategy,
            Budget(max_candidates=len(replies)),
            store,
            sampling=Sampling(samples=samples),
        )

    with TrajectoryStore(run_dir) as store:
        for name, (_, fixed, wrong, _) in OPERATOR_TASKS.items():
            task = operator_task(name)
            run(task, "best-of-n", [operator_reply(wrong), operator_reply(fixed)])
            run(task, "refine", [operator_reply(wrong), refine_feedback, operator_reply(fixed)])
        never = operator_task("add").model_copy(update={"task_id": "never-solved"})
        run(never, "best-of-n", [operator_reply("*"), operator_reply("//")])
    sandbox.close()
    return run_dir


@pytest.fixture(scope="session")
def docker_sandbox():
    """A Docker sandbox with a warm pool of 2. Without a daemon or image the test is skipped
    with the reason; in CI (CI=true) it fails instead, since CI must run the Docker tests."""

    from selfrepair.sandbox.container import DockerSandbox, docker_unavailable

    problem = docker_unavailable()
    if problem is not None:
        if in_ci():
            pytest.fail(f"CI needs the Docker sandbox: {problem}")
        pytest.skip(problem)
    sandbox = DockerSandbox(pool_size=2)
    yield sandbox
    sandbox.close()


# Tiny, fast training settings (TRL's names): two steps, short sequences, a learning rate
# high enough that two steps visibly move the model.
TINY_TRAINING = {
    "max_steps": 2,
    "max_length": 256,
    "learning_rate": 5e-3,
    "per_device_train_batch_size": 2,
    "gradient_checkpointing": False,
}


@pytest.fixture(scope="session")
def sft_adapter(scripted_run, tmp_path_factory) -> Path:
    """An SFT adapter on SmolLM2 trained two steps by `selfrepair train sft` on scripted_run."""
    import json
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("sft")
    settings = folder / "trl.json"
    settings.write_text(
        json.dumps({"gradient_checkpointing": False, "per_device_train_batch_size": 2})
    )
    out = folder / "adapter"
    command = [
        str(Path(sys.executable).parent / "selfrepair"),
        "train",
        "sft",
        "--runs",
        str(scripted_run),
        "--base",
        "smollm2",
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--max-length",
        "256",
        "--learning-rate",
        "5e-3",
        "--eval-fraction",
        "0.2",
        "--trl-config",
        str(settings),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 steps" in result.stdout
    return out


# ---------------------------------------------------------------- the real SmolLM2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    from selfrepair.agents.models.smollm2 import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="session")
def smollm2(smollm2_folder: Path):
    from selfrepair.agents.models.backends import load_model

    return load_model("smollm2")


@pytest.fixture(scope="session")
def served_smollm2(smollm2_folder: Path, tmp_path_factory):
    """`transformers serve` with the SmolLM2 folder on 127.0.0.1: (model name, base URL)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        str(smollm2_folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}  # nothing from the hub; the folder is local
    with open(log, "w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"transformers serve exited with {server.returncode}:\n{log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"transformers serve did not answer in 300 s:\n{log.read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield str(smollm2_folder), f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
