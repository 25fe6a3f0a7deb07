"""What the graphs need to run from LangGraph Studio / `langgraph dev` as well as from Python.

There, input and context arrive as JSON. The state's pydantic values may then come as plain
dicts (`task_of`, `trajectory_of` read them either way). The context's live objects come as
strings: the model as a model spec, loaded once per run by the first node (never while
LangGraph's server builds the context on its event loop, where it would hold up every other
request); the sandbox as a kind, opened once per process and shared by its runs. The
context's settings come as objects of numbers (`settings`). The JSON schemas below are what
Studio's context form shows for the live fields.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import TypeAdapter, WithJsonSchema
from selfrepair.agents.models.backends import SPECS, load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Sandbox

from selfrepair.types import Task, Trajectory

MODEL_SCHEMA = WithJsonSchema(
    {"type": "string", "default": "smollm2", "description": f"a model spec: {SPECS}"}
)
SANDBOX_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "enum": ["auto", "docker", "local"],
        "default": "auto",
        "description": "where tests run",
    }
)

Settings = TypeVar("Settings")


def settings(value: Settings | dict, kind: type[Settings]) -> Settings:
    """A settings object (Budget, Sampling) from Studio's plain JSON; an object as it is."""
    return TypeAdapter(kind).validate_python(value) if isinstance(value, dict) else value


def live_model(model: Model | str) -> Model:
    return load_model(model) if isinstance(model, str) else model


def live_sandbox(sandbox: Sandbox | str) -> Sandbox:
    return shared_sandbox(sandbox) if isinstance(sandbox, str) else sandbox


@functools.cache
def shared_sandbox(kind: str) -> Sandbox:
    """One sandbox per kind for the process (a Docker sandbox keeps a warm pool: one per run
    would leave containers behind), closed when the process exits."""
    sandbox = open_sandbox(kind)
    atexit.register(sandbox.close)
    return sandbox


def task_of(state: Mapping[str, Any]) -> Task:
    return Task.model_validate(state["task"])  # a Task passes through as it is


def trajectory_of(state: Mapping[str, Any]) -> Trajectory:
    return Trajectory.model_validate(state["trajectory"])
