"""Model-written bugs (SWE-smith's "LM rewrite"): a model re-implements a function from its
signature and docstring alone; where its version differs in behaviour from the original
(which the tests decide, like for any mutant), that difference is a natural bug.

The original header (decorators, signature, docstring) is kept byte for byte and only the
body is the model's, so a function-level task still shows the real specification.
"""

from __future__ import annotations

import ast
import textwrap

from selfrepair.agents.code.extract import code_blocks
from selfrepair.agents.models.protocol import Model
from selfrepair.factory.mutations import LM_REWRITE, Function, Mutation, dedent

from selfrepair.types import Message

REWRITE_TOKENS = 512
SYSTEM = "You are an expert Python programmer. Answer with code only, in one ```python block."


def stub(source: bytes, function: Function) -> str | None:
    """The function's header and docstring with `...` for a body, at column 0."""
    header = source[function.def_start : function.body_start].decode("utf-8").rstrip()
    moved = dedent(header, function.indent)
    if moved is None or function.body_start >= function.end:
        return None
    return moved + "\n    ...\n"


def prompt(source: bytes, function: Function, package: str) -> list[Message] | None:
    shown = stub(source, function)
    if shown is None:
        return None
    where = function.path + (
        f", a method of class {function.qualname.rsplit('.', 1)[0]}"
        if "." in function.qualname
        else ""
    )
    return [
        Message(role="system", content=SYSTEM),
        Message(
            role="user",
            content=(
                f"Implement this function from {where} in the package {package}. Keep its signature; "
                f"write the whole function.\n\n```python\n{shown}```"
            ),
        ),
    ]


def body_of(reply: str, name: str) -> str | None:
    """The statements after the docstring of the reply's function `name`, at column 0."""
    for block in code_blocks(reply) or []:
        try:
            tree = ast.parse(block.code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                body = list(node.body)
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(getattr(body[0], "value", None), ast.Constant)
                    and (isinstance(body[0].value.value, str))
                ):
                    body = body[1:]
                if not body:
                    return None
                lines = block.code.splitlines()
                text = "\n".join(lines[body[0].lineno - 1 : body[-1].end_lineno])
                return textwrap.dedent(text)
    return None


def rewrites(
    model: Model, source: bytes, function: Function, package: str, n: int = 1
) -> list[Mutation]:
    """Up to n model-written versions of the function, as mutations of its body. Whether they
    compile and differ is checked by the caller, as for every mutation."""
    messages = prompt(source, function, package)
    if messages is None:
        return []
    generation = model.generate(
        messages, n=n, temperature=0.0 if n == 1 else 0.8, max_tokens=REWRITE_TOKENS
    )
    first_line_start = source.rfind(b"\n", 0, function.body_start) + 1
    body_indent = source[first_line_start : function.body_start].decode("utf-8")
    if body_indent.strip():
        return []  # the body starts on the def's line (`def f(): return 1`)
    found = []
    for completion in generation.completions:
        body = body_of(completion.text, function.name)
        if body is None:
            continue
        lines = body.rstrip().split("\n")
        text = "\n".join(
            [lines[0], *(body_indent + line if line.strip() else "" for line in lines[1:])]
        )
        found.append(
            Mutation(
                LM_REWRITE,
                function.path,
                function.qualname,
                function.body_start,
                function.end,
                text,
                "the body rewritten by a model from the signature and docstring",
            )
        )
    return found
