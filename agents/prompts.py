"""Prompt templates: Jinja files in `agents/prompts/`, shipped as package data.

StrictUndefined makes a template that names a variable the caller did not pass fail loudly,
instead of sending the model a prompt with a silent hole in it.
"""

from __future__ import annotations

import functools

import jinja2


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("selfrepair.agents", "prompts"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # The templates are package files: checking each one's mtime on every render (a stat
        # call, six per candidate) cost more than rendering it.
        auto_reload=False,
    )


def render(name: str, **variables: object) -> str:
    """The template `prompts/NAME.j2` filled with `variables`, without surrounding blank space."""
    return environment().get_template(f"{name}.j2").render(**variables).strip()
