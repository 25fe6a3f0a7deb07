"""The tester: calls that exercise the function under repair, written by the model itself;
and reproduction tests written from an issue (`write_reproduction`, for localise-repair).

The label-free mode (graphs.consensus) runs every candidate on these calls and lets the
candidates' agreement pick the fix; the calls carry inputs only, never expected outputs, so
nothing here needs a label. A call is kept only when it is the function applied to literal
arguments (numbers, strings, lists, dicts, ...): it is then safe to hand to any candidate, and
its text is all that travels into the sandbox.

The prompt shows the signature and the specification, not the code: shown code, a small model
writes code back (SmolLM2-135M wrote calls for 2 of 9 tasks so). Asked this way, greedily, it
wrote calls for 11 of 12 train tasks of benchmarks/operator_bugs.py ("with plain values as
arguments" instead of "with numbers": 7 of 12; sampled at 0.8: fewer still). It often answers
with a function and then "example usage", so the reply is not cut at its first code block.
"""

from __future__ import annotations

import ast

from selfrepair.agents.code.extract import PYTHON_LANGUAGES, bare_code, code_blocks
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.prompts import render

from selfrepair.types import Message, Step, Task


def under_repair(task: Task) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function under repair in the task's entry file: the entry point when the file
    defines it at top level, else the file's only top-level function; None otherwise (a
    method, several candidates, code that does not parse)."""
    if task.entry_file is None:
        return None
    try:
        tree = ast.parse(task.files[task.entry_file])
    except SyntaxError:
        return None
    functions = [
        node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    named = [node for node in functions if node.name == task.entry_point]
    return named[0] if named else functions[0] if len(functions) == 1 else None


def function_name(task: Task) -> str | None:
    function = under_repair(task)
    return function.name if function is not None else None


def signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """`name(a, b=1, *rest)` as written, without annotations (they are noise to a small model)."""
    arguments = ast.unparse(function.args)
    plain = ast.parse(f"def f({arguments}): pass").body[0]
    for argument in [*plain.args.posonlyargs, *plain.args.args, *plain.args.kwonlyargs]:
        argument.annotation = None
    for rest in (plain.args.vararg, plain.args.kwarg):
        if rest is not None:
            rest.annotation = None
    return f"{function.name}({ast.unparse(plain.args)})"


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
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == name
                    and all(literal(arg) for arg in node.args)
                    and all(
                        keyword.arg is not None and literal(keyword.value)
                        for keyword in node.keywords
                    )
                ):
                    call = ast.unparse(node)
                    if call not in found:
                        found.append(call)
                    break  # one call per line: an argument holding another call is not a second test
            if len(found) == limit:
                return found
    return found


def inputs_messages(
    task: Task, function: ast.FunctionDef | ast.AsyncFunctionDef, count: int
) -> list[Message]:
    prompt = render(
        "inputs",
        spec=task.spec.strip(),
        signature=signature(function),
        function=function.name,
        count=count,
    )
    return [Message(role="user", content=prompt)]


def write_inputs(
    model: Model,
    task: Task,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    *,
    index: int,
    count: int = 5,
    n: int = 1,
    temperature: float = 0.0,
    max_tokens: int = 96,
    seed: int | None = None,
    timeout: float | None = None,
) -> tuple[list[Step], list[str]]:
    """n replies from one call, each asked for `count` calls of the function: the steps that
    record them (kind "inputs", no candidate) and the distinct calls kept from all of them
    (at most `count`)."""
    messages = inputs_messages(task, function, count)
    generation = model.generate(
        messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, timeout=timeout
    )
    steps, calls = [], []
    for offset, completion in enumerate(generation.completions):
        found = calls_in(completion.text, function.name, count)
        calls += [call for call in found if call not in calls]
        steps.append(
            Step(
                index=index + offset,
                kind="inputs",
                messages=messages,
                completion=completion.text,
                finish_reason=completion.finish_reason,
                seed=seed,
                prompt_tokens=generation.prompt_tokens if offset == 0 else 0,
                completion_tokens=completion.completion_tokens,
                model_seconds=generation.seconds / len(generation.completions),
                error=""
                if found
                else f"no call of {function.name} with literal arguments in the reply",
            )
        )
    return steps, calls[:count]


# -- reproduction tests ------------------------------------------------------------------


def reproduction_in(reply: str) -> str | None:
    """The test module a reply writes: its first Python block (else its bare code) when it
    parses and defines a `test_` function; None otherwise."""
    blocks = [b.code for b in code_blocks(reply) if b.language in PYTHON_LANGUAGES]
    code = blocks[0] if blocks else bare_code(reply)
    if code is None:
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    tests = [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test")
    ]
    return code if tests else None


def write_reproduction(
    model: Model,
    issue: str,
    *,
    index: int,
    path: str = "",
    code: str = "",
    module: str = "",
    temperature: float = 0.0,
    max_tokens: int = 320,
    seed: int | None = None,
    timeout: float | None = None,
) -> tuple[Step, str | None]:
    """A pytest test written from an issue (Agentless's reproduction, Kimi-Dev's test writer),
    shown the code the issue is most likely about (`code` from `path`): the step that records
    the reply (kind "reproduce", no candidate) and the test module, or None when the reply
    holds none."""
    prompt = render(
        "reproduce", issue=issue.strip(), path=path, code=code.rstrip(), module=module or "..."
    )
    messages = [Message(role="user", content=prompt)]
    generation = model.generate(
        messages, temperature=temperature, max_tokens=max_tokens, seed=seed, timeout=timeout
    )
    completion = generation.completions[0]
    cut = completion.finish_reason == "time"  # half a test, and no time left to run it
    test = None if cut else reproduction_in(completion.text)
    step = Step(
        index=index,
        kind="reproduce",
        messages=messages,
        completion=completion.text,
        finish_reason=completion.finish_reason,
        seed=seed,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        model_seconds=generation.seconds,
        error=""
        if test
        else "reply cut when the time budget ran out"
        if cut
        else "no pytest test function in the reply",
    )
    return step, test
