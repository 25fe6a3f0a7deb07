"""The generate contract (agents/models/protocol.py), held against every backend: the scripted
replies, the real SmolLM2 in process (hf), behind a real `transformers serve` (openai) and
behind vLLM's server (vllm, where its environment is made: CI). A seed repeats a sampled call
even while other calls run beside it, and another seed draws otherwise (before, hf's seed was
lost to a parallel call, vllm's server was never sent it, and `transformers serve` drew
greedily at every temperature); a stop string ends a completion before it; `n` gives n
completions; none is longer than `max_tokens` (the scripted replies were never cut there);
tokens are counted. A `timeout` cuts a call (finish reason "time"), with its tokens counted:
one with no time left returns at once, and one that would take 600 s (a slow scripted reply, a
server that never answers) returns soon after its timeout, the server's request closed (before,
no backend took a timeout, and a call ran to its end whatever the time budget said)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from chat_stub import ChatStub
from selfrepair.agents.models.backends import load_model
from selfrepair.agents.models.protocol import Generation, Model

from selfrepair.types import Message

PROMPT = [Message(role="user", content="Write a Python function add(a, b) that returns a + b.")]
# The scripted backend's replies, in the order the test below asks for them from a fresh model.
REPLIES = [
    "Here is the function:\n```python\ndef add(a, b):\n    return a + b\n```",
    "def add(a, b): return a + b",
]


# A reply that would take this long, and a call given a second: it must return long before.
SLOW = 600
WELL_BEFORE = SLOW / 4


@dataclass
class Backend:
    make: Callable[[], Model]  # a model over the backend's one set of weights (or replies)
    samples: bool  # whether it draws at random, so that another seed draws other samples
    # A model of this backend that would take SLOW seconds or more to answer; None where no
    # such double of the real component is at hand (the in-process models answer as fast as
    # the machine is, so only `timeout=0` is held against them).
    stalled: Callable[[], Model] | None = None


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
        slow = tmp_path / "slow.json"
        slow.write_text(json.dumps([{"reply": text, "seconds": SLOW} for text in REPLIES * 2]))
        yield Backend(
            lambda: load_model(f"scripted:{path}"),
            samples=False,
            stalled=lambda: load_model(f"scripted:{slow}"),
        )
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


def test_every_backend_honours_the_timeout(backend: Backend) -> None:
    # No time left: the call returns at once, every completion cut by "time" (at most the one
    # token an in-process model makes before it looks at the clock), the prompt counted.
    # (The scripted backend's plain replies take no time: its slow ones are asked.)
    model = (backend.stalled or backend.make)()
    none_left = model.generate(PROMPT, n=2, temperature=1.0, seed=7, timeout=0.0)
    assert len(none_left.completions) == 2 and none_left.prompt_tokens > 0
    assert all(
        c.finish_reason == "time" and c.completion_tokens <= 1 for c in none_left.completions
    )
    if backend.stalled is None:
        return
    # A call that would take SLOW seconds is cut at its timeout.
    started = time.monotonic()
    cut = backend.stalled().generate(PROMPT, n=2, temperature=1.0, seed=7, timeout=1.0)
    assert time.monotonic() - started < WELL_BEFORE
    assert [c.finish_reason for c in cut.completions] == ["time", "time"]
    assert cut.prompt_tokens > 0 and cut.seconds >= 1.0


def test_a_server_that_does_not_answer_in_time_is_hung_up_on() -> None:
    """The openai backend (and vllm's, which asks its server through it) gives up a request
    at its timeout and closes the connection, which is what makes vLLM abort it (its chat
    endpoint cancels a request whose client disconnects); it asks once, not again."""
    with ChatStub([], hold_at=0) as stub:
        model = load_model(stub.spec)
        started = time.monotonic()
        cut = model.generate(PROMPT, max_tokens=SLOW, timeout=1.0)
        assert time.monotonic() - started < WELL_BEFORE
        assert cut.completions[0].finish_reason == "time" and cut.texts == [""]
        assert cut.prompt_tokens > 0  # estimated: the server never said
        assert stub.hung_up.wait(WELL_BEFORE)
        assert len(stub.bodies) == 1
