"""The tester: calls that exercise the function under repair, written by the model itself.

The label-free mode (graphs.consensus) runs every candidate on these calls and lets the
candidates' agreement pick the fix; the calls carry inputs only, never expected outputs, so
nothing here needs a label. A call is kept only when it is the function applied to literal
arguments (numbers, strings, lists, dicts, ...): it is then safe to hand to any candidate, and
its text is all that travels into the sandbox.
"""

from __future__ import annotations

import ast
from typing import Sequence

from selfrepair.agents.extract import code_blocks
from selfrepair.agents.models import Model
from selfrepair.agents.prompts import render
from selfrepair.agents.solver import shown_code, system_message
from selfrepair.types import Message, Step, Task


def function_name(task: Task) -> str | None:
    """The function under repair in the task's entry file: the entry point when the file
    defines it at top level, else the file's only top-level function; None otherwise (a
    method, several candidates, code that does not parse)."""
    if task.entry_file is None:
        return None
    try:
        tree = ast.parse(task.files[task.entry_file])
    except SyntaxError:
        return None
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if task.entry_point in names:
        return task.entry_point
    return names[0] if len(names) == 1 else None


def literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def calls_in(reply: str, name: str, limit: int) -> list[str]:
    """Up to `limit` distinct calls `name(literal, ..., key=literal)` found in the reply's code
    (its fenced blocks, else the whole reply), each normalised by `ast.unparse`. Anything else,
    an assignment or a print around a call included, is looked into for the call alone."""
    sources = [block.code for block in code_blocks(reply)] or [reply]
    found: list[str] = []
    for source in sources:
        for line in source.splitlines():
            try:
                tree = ast.parse(line.strip())
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
                    and all(literal(arg) for arg in node.args)
                    and all(keyword.arg is not None and literal(keyword.value) for keyword in node.keywords)
                ):  # fmt: skip
                    call = ast.unparse(node)
                    if call not in found:
                        found.append(call)
                    break  # one call per line: an argument holding another call is not a second test
            if len(found) == limit:
                return found
    return found


def inputs_messages(task: Task, name: str, count: int) -> list[Message]:
    path, code = shown_code(task, task.files)
    prompt = render("inputs", spec=task.spec.strip(), path=path, code=code, function=name, count=count)
    return [system_message(), Message(role="user", content=prompt)]


def write_inputs(
    model: Model,
    task: Task,
    name: str,
    *,
    index: int,
    count: int = 5,
    temperature: float = 0.0,
    max_tokens: int = 256,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
) -> tuple[Step, list[str]]:
    """One model call for test calls of `name`: the step that records it (kind "inputs", no
    candidate) and the calls kept from its reply."""
    messages = inputs_messages(task, name, count)
    generation = model.generate(messages, n=1, temperature=temperature, max_tokens=max_tokens, stop=stop, seed=seed)
    completion = generation.completions[0]
    calls = calls_in(completion.text, name, count)
    step = Step(
        index=index,
        kind="inputs",
        messages=messages,
        completion=completion.text,
        finish_reason=completion.finish_reason,
        seed=seed,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        model_seconds=generation.seconds,
        error="" if calls else f"no call of {name} with literal arguments in the reply",
    )
    return step, calls
