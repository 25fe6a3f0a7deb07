"""Prompt templates: Jinja files in `agents/prompts/`, shipped as package data, or a
strategy's own text for a role (selfrepair.settings.Prompts), which takes its place.

StrictUndefined makes a template that names a variable the caller did not pass fail loudly,
instead of sending the model a prompt with a silent hole in it. A strategy's template may
come from a model (`tune`'s improver), so it renders in Jinja's sandbox: it can fill in the
variables it is given and call no Python behind them.
"""

from __future__ import annotations

import functools

import jinja2
import jinja2.sandbox

OPTIONS = {
    "undefined": jinja2.StrictUndefined,
    "keep_trailing_newline": False,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "autoescape": False,
}


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("selfrepair.agents", "prompts"),
        # The templates are package files: checking each one's mtime on every render (a stat
        # call, six per candidate) cost more than rendering it.
        auto_reload=False,
        **OPTIONS,
    )


@functools.lru_cache(maxsize=1)
def sandboxed() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(**OPTIONS)


@functools.lru_cache(maxsize=64)
def compiled(text: str) -> jinja2.Template:
    return sandboxed().from_string(text)


def source(name: str) -> str:
    """The text of the shipped template `prompts/NAME.j2`."""
    return environment().loader.get_source(environment(), f"{name}.j2")[0]


def render(name: str, template: str | None = None, **variables: object) -> str:
    """`template` (a strategy's text), else the shipped `prompts/NAME.j2`, filled with
    `variables`, without surrounding blank space."""
    chosen = environment().get_template(f"{name}.j2") if template is None else compiled(template)
    return chosen.render(**variables).strip()
