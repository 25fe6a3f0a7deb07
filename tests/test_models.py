"""Model backends: the real SmolLM2 in process (hf) and behind a real `transformers serve`
(openai), the scripted replies and bad specs (vLLM: test_vllm.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_stub import ChatStub
from conftest import free_port
from selfrepair.agents.models.backends import SPEC_FORMS, load_model
from selfrepair.agents.models.scripted import ScriptedModel

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [Message(role="user", content="Write a Python function add(a, b) that returns a + b.")]


# ---------------------------------------------------------------- scripted


@pytest.fixture
def replies(tmp_path: Path) -> Path:
    path = tmp_path / "replies.json"
    path.write_text(
        json.dumps(["first reply", "second one here", "third\n```\nafter the fence", "fourth"])
    )
    return path


def test_scripted_replies_come_in_order_and_run_out(replies: Path) -> None:
    model = load_model(f"scripted:{replies}")
    assert isinstance(model, ScriptedModel) and model.spec == f"scripted:{replies}"
    first = model.generate(PROMPT)
    assert first.texts == ["first reply"]
    assert first.prompt_tokens == len(PROMPT[0].content.split())
    assert first.completion_tokens == 2
    two = model.generate(PROMPT, n=2, stop=["```"])
    assert two.texts == ["second one here", "third\n"]  # cut at the stop string
    assert [c.completion_tokens for c in two.completions] == [3, 1]
    with pytest.raises(SelfRepairError, match="ran out of replies: asked for 2, 1 left of 4"):
        model.generate(PROMPT, n=2)
    assert model.generate(PROMPT).texts == ["fourth"]
    with pytest.raises(SelfRepairError, match="ran out of replies"):
        model.generate(PROMPT)


def test_scripted_replies_keyed_by_task_come_in_order_per_key(tmp_path: Path) -> None:
    """Keyed replies do not depend on the order tasks ask in: each key has its own list."""
    path = tmp_path / "keyed.json"
    path.write_text(json.dumps({"def gcd(": ["g1", "g2"], "def lcm(": ["l1"]}))
    model = load_model(f"scripted:{path}")

    def ask(code: str) -> list[str]:
        return model.generate([Message(role="user", content=f"Fix this:\n{code}")]).texts

    assert ask("def lcm(a, b):") == ["l1"]
    assert ask("def gcd(a, b):") == ["g1"]
    assert ask("def gcd(a, b):") == ["g2"]
    with pytest.raises(
        SelfRepairError, match="ran out of replies for 'def lcm\\(': asked for 1, 0 left of 1"
    ):
        ask("def lcm(a, b):")
    with pytest.raises(SelfRepairError, match="none of its keys occurs in the conversation"):
        ask("def other(x):")


def test_scripted_file_must_be_a_json_list_of_strings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text in (
        '{"reply": "x"}',
        '[{"reply": "x", "seconds": -1}]',
        '[{"reply": "x"}]',
        '{"k": [{"reply": "x", "seconds": true}]}',
    ):
        bad.write_text(text)
        with pytest.raises(SelfRepairError, match="must hold a JSON list of replies"):
            load_model(f"scripted:{bad}")
    bad.write_text('[\n"a",\n]')
    with pytest.raises(SelfRepairError, match=r"bad\.json:3: not valid JSON"):
        load_model(f"scripted:{bad}")
    with pytest.raises(SelfRepairError, match="no such file"):
        load_model(f"scripted:{tmp_path / 'missing.json'}")
    bad.write_text('{"": ["a"]}')
    with pytest.raises(SelfRepairError, match="non-empty keys"):
        load_model(f"scripted:{bad}")


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "bad model spec ''"),
        ("gpt4", "bad model spec 'gpt4'"),
        ("hf:", "bad model spec 'hf:'"),
        ("llama:some/model", "unknown backend 'llama'"),
        ("openai:name-without-url", "expected openai:NAME@BASE_URL"),
        ("openai:@http://127.0.0.1:1/v1", "expected openai:NAME@BASE_URL"),
        ("hf:+adapter", "no model named before '+'"),
        ("hf:some/model+/no/such/adapter", "adapter folder not found"),
        ("hf:/no/such/model/folder", "hf model folder not found"),
    ],
)
def test_bad_specs_give_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(SelfRepairError) as error:
        load_model(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_readme_lists_the_spec_forms_the_factory_takes() -> None:
    section = (ROOT / "README.md").read_text().split("### Model specs")[1].split("\n#")[0]
    assert re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE) == [
        form for form, _ in SPEC_FORMS
    ]


def test_importing_the_factory_stays_light() -> None:
    code = "import sys, selfrepair.agents.models.backends; print(sorted({'torch', 'transformers', 'openai', 'vllm'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- hf (the real SmolLM2)


class CountingGenerate:
    """Wraps a transformers model's generate to count the calls (the samples must come from one)."""

    def __init__(self, generate) -> None:
        self.generate = generate
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.generate(*args, **kwargs)


@pytest.mark.model
def test_hf_generates_and_counts_tokens_with_the_tokenizer(smollm2) -> None:
    generation = smollm2.generate(PROMPT, max_tokens=12)
    [completion] = generation.completions
    assert completion.text.strip()
    assert generation.model == "smollm2"
    chat = [{"role": m.role, "content": m.content} for m in PROMPT]
    prompt_ids = smollm2.tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert generation.prompt_tokens == len(prompt_ids)
    if completion.finish_reason == "length":
        assert completion.completion_tokens == 12
    assert completion.completion_tokens == len(
        smollm2.tokenizer(completion.text, add_special_tokens=False)["input_ids"]
    )


@pytest.mark.model
def test_hf_samples_n_in_one_batched_generate(smollm2, monkeypatch) -> None:
    counter = CountingGenerate(smollm2.model.generate)
    monkeypatch.setattr(smollm2.model, "generate", counter)
    generation = smollm2.generate(PROMPT, n=3, temperature=0.9, max_tokens=8)
    assert counter.calls == 1
    assert len(generation.completions) == 3
    assert all(0 < c.completion_tokens <= 8 for c in generation.completions)
    assert generation.completion_tokens == sum(c.completion_tokens for c in generation.completions)


@pytest.mark.model
def test_hf_greedy_n_returns_copies_of_one_completion(smollm2, monkeypatch) -> None:
    counter = CountingGenerate(smollm2.model.generate)
    monkeypatch.setattr(smollm2.model, "generate", counter)
    generation = smollm2.generate(PROMPT, n=2, temperature=0.0, max_tokens=6)
    assert counter.calls == 1
    assert generation.texts[0] == generation.texts[1]


@pytest.mark.model
def test_hf_stops_at_stop_strings(smollm2) -> None:
    generation = smollm2.generate(PROMPT, max_tokens=40, stop=["\n"])
    [completion] = generation.completions
    assert "\n" not in completion.text
    assert completion.finish_reason == "stop"
    assert completion.completion_tokens < 40


@pytest.mark.model
def test_hf_stops_a_forward_pass_that_runs_past_the_call_s_time(smollm2) -> None:
    """A forward pass longer than the call's whole time (a CPU's pass over a long prompt for
    several samples) is stopped between layers soon after the time is up, not at its end: made
    slow here by a second per layer (30 s a pass) from the second pass on. Before, the call
    ran every pass to its end; MaxTimeCriteria alone looks only between passes."""
    import torch

    passes = []

    def slow(module, args) -> None:
        if module is layers[0]:
            passes.append(1)
        if len(passes) > 1:
            time.sleep(1.0)

    layers = next(m for m in smollm2.model.modules() if isinstance(m, torch.nn.ModuleList))
    handles = [layer.register_forward_pre_hook(slow) for layer in layers]
    try:
        generation = smollm2.generate(PROMPT, max_tokens=40, timeout=5.0)
    finally:
        for handle in handles:
            handle.remove()
    assert generation.seconds < 5.0 + len(layers) / 2  # well before the slow pass's end
    [completion] = generation.completions
    assert completion.finish_reason == "time" and generation.prompt_tokens > 0
    # The hooks that stopped it are gone: the next call runs whole.
    assert smollm2.generate(PROMPT, max_tokens=3).completions[0].finish_reason == "length"


@pytest.mark.model
def test_hf_loads_a_peft_adapter(smollm2_folder: Path, smollm2, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2_folder)
    adapter = tmp_path / "adapter"
    get_peft_model(
        base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    ).save_pretrained(adapter)
    model = load_model(f"hf:{smollm2_folder}+{adapter}")
    assert isinstance(model.model, PeftModel)
    assert model.model.peft_config[model.adapter_name].r == 2
    assert model.base is smollm2.base  # one copy of the base, the adapter switched per call
    generation = model.generate(PROMPT, max_tokens=6)
    # A fresh LoRA adds zero (its B matrices start at zero): the output is the base model's.
    assert generation.texts == smollm2.generate(PROMPT, max_tokens=6).texts


# ---------------------------------------------------------------- openai (a real `transformers serve`)


@pytest.mark.model
def test_openai_backend_generates_with_usage(served_smollm2) -> None:
    name, url = served_smollm2
    model = load_model(f"openai:{name}@{url}")
    generation = model.generate(PROMPT, max_tokens=8)
    [completion] = generation.completions
    assert completion.text.strip()
    assert 0 < completion.completion_tokens <= 8
    assert generation.prompt_tokens > len(PROMPT[0].content.split())
    assert generation.model == f"openai:{name}@{url}"


@pytest.mark.model
def test_openai_backend_asks_again_for_the_samples_the_server_left_out(served_smollm2) -> None:
    name, url = served_smollm2
    model = load_model(f"openai:{name}@{url}")
    create = model.client.chat.completions.create
    answers = []

    def counting_create(**kwargs):
        answers.append(create(**kwargs))
        return answers[-1]

    model.client.chat.completions.create = counting_create
    generation = model.generate(PROMPT, n=3, temperature=0.8, max_tokens=6)
    assert len(generation.completions) == 3
    # `transformers serve` ignores n; every answer's usage is counted, the prompt once.
    assert 1 <= len(answers) <= 3
    assert generation.completion_tokens == sum(a.usage.completion_tokens for a in answers)
    assert generation.prompt_tokens == answers[0].usage.prompt_tokens


@pytest.mark.model
def test_openai_backend_asks_once_for_greedy_samples(served_smollm2) -> None:
    name, url = served_smollm2
    model = load_model(f"openai:{name}@{url}")
    create, asked = model.client.chat.completions.create, []

    def counting_create(**kwargs):
        asked.append(kwargs["n"])
        return create(**kwargs)

    model.client.chat.completions.create = counting_create
    generation = model.generate(PROMPT, n=3, temperature=0.0, max_tokens=6)
    # Greedy decoding gives one answer: it is asked for once (vLLM refuses n > 1 here) and copied.
    assert asked == [1]
    assert len(generation.texts) == 3 and len(set(generation.texts)) == 1


@pytest.mark.model
def test_openai_backend_unknown_model_is_one_line(served_smollm2) -> None:
    _, url = served_smollm2
    with pytest.raises(SelfRepairError) as error:
        load_model(f"openai:no-such-model@{url}").generate(PROMPT, max_tokens=2)
    assert "no-such-model" in str(error.value) and "\n" not in str(error.value)


def test_openai_backend_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SelfRepairError) as error:
        load_model(f"openai:any@{url}").generate(PROMPT, max_tokens=2)
    assert str(error.value).startswith(f"cannot reach the model server at {url}")
    assert "\n" not in str(error.value)


def test_openai_backend_asks_to_sample_until_a_server_refuses_the_field() -> None:
    """`transformers serve` draws greedily at any temperature unless the request asks it to
    sample; OpenAI's API refuses the field that asks, so it is asked again without it."""
    with ChatStub(["a", "b", "c"], refuses=["generation_config"]) as stub:
        model = load_model(stub.spec)
        assert model.generate(PROMPT, n=2, temperature=0.8, seed=5).texts == ["a", "b"]
        assert model.generate(PROMPT, temperature=0.8, seed=6).texts == ["c"]
    asked = [("generation_config" in body, body["seed"]) for body in stub.bodies]
    assert asked == [(True, 5), (False, 5), (False, 6)]
