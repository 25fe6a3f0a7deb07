"""The generate contract (agents/models/protocol.py), held against every backend: the scripted
replies, the real SmolLM2 in process (hf), behind a real `transformers serve` (openai) and
behind vLLM's server (vllm, where its environment is made: CI). A seed repeats a sampled call
even while other calls run beside it, and another seed draws otherwise (before, hf's seed was
lost to a parallel call, vllm's server was never sent it, and `transformers serve` drew
greedily at every temperature); a stop string ends a completion before it; `n` gives n
completions; none is longer than `max_tokens` (the scripted replies were never cut there);
tokens are counted."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.protocol import Generation, Model

from selfrepair.types import Message

PROMPT = [Message(role="user", content="Write a Python function add(a, b) that returns a + b.")]
# The scripted backend's replies, in the order the test below asks for them from a fresh model.
REPLIES = [
    "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```",
    "def add(a, b): return a + b",
]


@dataclass
class Backend:
    make: Callable[[], Model]  # a model over the backend's one set of weights (or replies)
    samples: bool  # whether it draws at random, so that another seed draws other samples


@pytest.fixture(
    params=[
        "scripted",
        pytest.param("hf", marks=[pytest.mark.model, pytest.mark.slow]),
        pytest.param("openai", marks=[pytest.mark.model, pytest.mark.slow]),
        pytest.param("vllm", marks=[pytest.mark.vllm, pytest.mark.model, pytest.mark.slow]),
    ]
)
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "scripted":
        path = tmp_path / "replies.json"
        path.write_text(json.dumps(REPLIES))
        yield Backend(lambda: load_model(f"scripted:{path}"), samples=False)
        return
    if request.param == "openai":
        name, url = request.getfixturevalue("served_smollm2")
        yield Backend(lambda: load_model(f"openai:{name}@{url}"), samples=True)
        return
    folder = request.getfixturevalue("smollm2_folder")
    if request.param == "hf":
        yield Backend(lambda: load_model(f"hf:{folder}"), samples=True)
        return
    from selfrepair.agents.models import vllm_server

    try:
        yield Backend(lambda: load_model(f"vllm:{folder}"), samples=True)
    finally:
        vllm_server.stop_shared_servers()


def sample(model: Model, seed: int, max_tokens: int = 12) -> Generation:
    return model.generate(PROMPT, n=2, temperature=1.0, max_tokens=max_tokens, seed=seed)


def test_every_backend_honours_the_generate_contract(backend: Backend) -> None:
    # seed: the same seed draws the same samples, even with unseeded calls running beside it
    # (parallel tasks share one model: --jobs).
    first = sample(backend.make(), seed=7)
    stop_busy = threading.Event()

    def busy() -> None:
        model = backend.make()
        while not stop_busy.wait(0.05):  # a task does other work between its calls
            model.generate(PROMPT, n=2, temperature=1.0, max_tokens=12)

    if backend.samples:
        beside = threading.Thread(target=busy)
        beside.start()
    try:
        again = [sample(backend.make(), seed=7) for _ in range(2)]
    finally:
        stop_busy.set()
        if backend.samples:
            beside.join()
    assert all(a.texts == first.texts for a in again), (first.texts, [a.texts for a in again])
    if backend.samples:
        assert any(sample(backend.make(), seed=s).texts != first.texts for s in (8, 9))

    # n: n completions, each with its tokens counted; the prompt counted once.
    assert len(first.completions) == 2 and first.prompt_tokens > 0
    assert all(c.completion_tokens > 0 for c in first.completions)
    assert first.completion_tokens == sum(c.completion_tokens for c in first.completions)

    # max_tokens: no completion is longer; one cut there says so.
    short = sample(backend.make(), seed=3, max_tokens=5)
    assert all(c.completion_tokens <= 5 for c in short.completions)
    assert any(c.finish_reason == "length" for c in short.completions)
    assert all(c.completion_tokens == 5 for c in short.completions if c.finish_reason == "length")

    # stop: the completion ends before the first stop string (greedy, so the same reply).
    whole = backend.make().generate(PROMPT, max_tokens=40)
    stopped = backend.make().generate(PROMPT, max_tokens=40, stop=["\n"])
    assert "\n" in whole.texts[0]
    assert stopped.texts == [whole.texts[0].split("\n")[0]]
    assert stopped.completions[0].finish_reason == "stop"
    assert stopped.completions[0].completion_tokens < whole.completions[0].completion_tokens
