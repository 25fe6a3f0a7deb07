"""The `hf` backend: a transformers model in this process, on a GPU where there is one.

`n` samples come from one batched `generate` call (`num_return_sequences=n`), seeded by the
call's `seed`; calls take turns on torch's generator (GENERATING), so a seeded call draws the
same samples whatever runs beside it. Temperature 0 is greedy decoding, which is
deterministic: n > 1 then returns n copies of one greedy completion, computed once (what a
server returns for the same request, without paying n times for it).
A PEFT adapter (`hf:BASE+ADAPTER_DIR`) is loaded on top of its base with peft; every spec of
one base shares one copy of it, its adapters switched per call (SharedBase).

A call's `timeout` binds in two ways. Between tokens, transformers' MaxTimeCriteria stops the
batch and what was generated comes back (finish reason "time"). A forward pass is not
interrupted by it, and on a CPU one pass can take longer than the whole budget (the prompt's,
once per sample); so a pass still running PASS_GRACE seconds after the time is up is stopped
between two of the model's layers (OutOfTime), and what the tokens before it made comes back
the same way (Generated). No time left at all: nothing runs.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from selfrepair.agents.models.protocol import Completion, Generation, cut_at_stop

from selfrepair.errors import SelfRepairError
from selfrepair.types import Message

# transformers samples from torch's global generator, which every model in the process shares:
# a seeded call holds this from seeding to its last token, and so does every other call (an
# unseeded one would draw from the generator in between). Parallel tasks (--jobs) take turns.
GENERATING = threading.Lock()
# How long past its time a call's running forward pass may go on before it is stopped: room
# for a decoding step to end, so MaxTimeCriteria (the usual stop) ends most calls.
PASS_GRACE = 0.5


class OutOfTime(Exception):
    """Raised between a model's layers when the call's time (and its grace) is up."""


class Generated:
    """A stopping criterion that stops nothing: it keeps the sequences as they stand after
    each step, so a generation stopped by OutOfTime still gives what it made."""

    def __init__(self) -> None:
        self.latest: Any = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.latest = input_ids
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@contextmanager
def stopped_at(model: Any, deadline: float) -> Iterator[None]:
    """Stop the model's forward passes between layers (its ModuleLists' members: the decoder
    blocks) once `deadline` (time.perf_counter()) has passed, while this is held."""
    import torch

    def check(module: Any, args: Any) -> None:
        if time.perf_counter() > deadline:
            raise OutOfTime

    handles = [
        layer.register_forward_pre_hook(check)
        for modules in model.modules()
        if isinstance(modules, torch.nn.ModuleList)
        for layer in modules
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@functools.lru_cache(maxsize=4)
def load_base(name_or_path: str) -> SharedBase:
    """The base model and tokenizer, loaded once per process and shared by every spec that
    names this base, with or without an adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Its per-tensor loading bar would scribble over the run's own progress display.
    transformers_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    except (OSError, ValueError) as error:
        raise SelfRepairError(
            f"hf model {name_or_path!r} could not be loaded (a local folder or a model id "
            f"in the Hugging Face cache): {first_line(error)}"
        ) from None
    model.to(device).eval()
    return SharedBase(name_or_path, model, tokenizer, device)


class SharedBase:
    """One copy of a base model and the PEFT adapters attached to it by name. Roles with
    adapters of one base (a solver, a reviewer, a verifier) share its weights: each call
    switches to its adapter (or, for the base itself, turns adapters off) while it holds
    GENERATING, so no other call sees the layers mid-switch and the base is never loaded twice."""

    def __init__(self, name_or_path: str, model: Any, tokenizer: Any, device: str) -> None:
        self.name_or_path = name_or_path
        self.model = model  # a PeftModel once the first adapter is attached
        self.tokenizer = tokenizer
        self.device = device
        self.adapters: dict[str, str] = {}  # resolved adapter folder -> its name in the model

    def attach(self, adapter: str) -> str:
        """The name the adapter folder's weights have in the model, loaded on first use."""
        from peft import PeftModel
        from selfrepair.agents.models.adapters import check_adapter

        folder = str(Path(adapter).resolve())
        with GENERATING:
            if folder in self.adapters:
                return self.adapters[folder]
            check_adapter(Path(folder), self.name_or_path)  # one trained on another base is refused
            name = f"adapter{len(self.adapters)}"
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(folder, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name)
            except (
                OSError,
                ValueError,
                RuntimeError,
            ) as error:  # RuntimeError: another base's shapes
                raise SelfRepairError(
                    f"adapter {adapter!r} could not be loaded: {first_line(error)}"
                ) from None
            self.model.to(self.device).eval()
            self.adapters[folder] = name
            return name

    @contextmanager
    def using(self, adapter_name: str | None) -> Iterator[Any]:
        """The model with `adapter_name` active (None: the base alone), holding GENERATING."""
        from peft import PeftModel

        with GENERATING:
            if not isinstance(self.model, PeftModel):
                yield self.model
            elif adapter_name is None:
                with self.model.disable_adapter():
                    yield self.model
            else:
                self.model.set_adapter(adapter_name)
                yield self.model


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class HFModel:
    def __init__(
        self, name_or_path: str, adapter: str | Path | None = None, spec: str | None = None
    ) -> None:
        self.spec = spec or f"hf:{name_or_path}" + (f"+{adapter}" if adapter else "")
        # A path that is not there fails here, before seconds of importing torch.
        if name_or_path.startswith(("/", ".", "~")):
            folder = Path(name_or_path).expanduser()
            if not folder.is_dir():
                raise SelfRepairError(f"hf model folder not found: {name_or_path}")
            name_or_path = str(folder)
        self.name_or_path = name_or_path
        self.adapter = str(adapter) if adapter is not None else None
        self.base = load_base(name_or_path)
        self.adapter_name = self.base.attach(self.adapter) if self.adapter is not None else None
        self.tokenizer = self.base.tokenizer

    @property
    def model(self) -> Any:
        """The shared model (a PeftModel once any spec attached an adapter to this base)."""
        return self.base.model

    def using(self) -> Any:
        """The model with this spec's adapter active (and GENERATING held), for a forward pass."""
        return self.base.using(self.adapter_name)

    def prompt_ids(self, messages: Sequence[Message]) -> Any:
        """The chat as token ids (1 x length), through the tokenizer's chat template; a model
        without one (a base model) gets the turns as plain labelled text."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if self.tokenizer.chat_template:
            encoded = self.tokenizer.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant: "
            encoded = self.tokenizer(text, return_tensors="pt")
        return encoded["input_ids"].to(self.model.device)

    def end_token_ids(self) -> set[int]:
        """Tokens that end a sequence: eos (one or several) and the padding after it."""
        config = self.model.generation_config
        ends = (
            config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        )
        ids = set(ends if isinstance(ends, list) else [ends])
        if config.pad_token_id is not None:
            ids.add(config.pad_token_id)
        return {i for i in ids if i is not None}

    def generate(
        self,
        messages: Sequence[Message],
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> Generation:
        import torch
        from transformers import StoppingCriteriaList

        if n < 1:
            raise SelfRepairError(f"n must be at least 1, got {n}")
        started = time.perf_counter()
        input_ids = self.prompt_ids(messages)
        prompt_length = input_ids.shape[1]
        greedy = temperature <= 0
        sequences = 1 if greedy else n
        end_ids = self.end_token_ids()

        settings = copy.deepcopy(self.model.generation_config)
        settings.max_new_tokens = max_tokens
        settings.num_return_sequences = sequences
        settings.do_sample = not greedy
        settings.temperature = None if greedy else temperature
        settings.top_p = None if greedy else settings.top_p
        settings.top_k = None if greedy else settings.top_k
        if settings.pad_token_id is None:
            settings.pad_token_id = min(end_ids) if end_ids else self.tokenizer.eos_token_id
        settings.stop_strings = list(stop) if stop else None
        deadline = float("inf") if timeout is None else started + timeout
        output = None
        with self.using() as model, torch.inference_mode():
            # The time spent waiting for GENERATING counts against the call too.
            left = deadline - time.perf_counter()
            if left > 0:
                settings.max_time = None if timeout is None else left
                if seed is not None and not greedy:
                    torch.manual_seed(seed)  # the n samples of one call come from this seed
                try:
                    generated = Generated()
                    bound = timeout is not None
                    with stopped_at(model, deadline + PASS_GRACE) if bound else nullcontext():
                        output = model.generate(
                            input_ids=input_ids,
                            attention_mask=torch.ones_like(input_ids),
                            generation_config=settings,
                            tokenizer=self.tokenizer,  # needed for stop_strings
                            stopping_criteria=StoppingCriteriaList([generated]),
                        )
                except OutOfTime:
                    output = generated.latest  # None: the prompt's pass never ended
        if output is None:  # out of time before a token came
            return Generation(
                completions=[Completion("", 0, "time")] * n,
                prompt_tokens=prompt_length,
                seconds=time.perf_counter() - started,
                model=self.spec,
            )

        completions = []
        for row in output[:, prompt_length:].tolist():
            # Count what was generated up to the first end token; the rest is padding.
            length = next((i for i, token in enumerate(row) if token in end_ids), len(row))
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, stop)
            if stopped or length < len(row):  # a stop string or an end token ended it
                reason = "stop"
            elif length >= max_tokens:
                reason = "length"
            else:  # neither ended it nor max_tokens: the time limit stopped the batch
                reason = "time"
            completions.append(
                Completion(text=text, completion_tokens=length, finish_reason=reason)
            )
        if greedy:
            completions = completions * n
        return Generation(
            completions=completions,
            prompt_tokens=prompt_length,
            seconds=time.perf_counter() - started,
            model=self.spec,
        )
