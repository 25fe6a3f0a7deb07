"""`selfrepair synth` on a real sdist from PyPI (inflection, a small pure-Python package whose
sdist carries its tests): every emitted task fails before its fix and passes after it, in the
Docker sandbox. Needs the package index (CI reaches PyPI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synth_checks import check_function_tasks, check_instances

SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_bugs_synthesized_from_a_pypi_sdist_fail_before_their_fix_and_pass_after(
    tmp_path, docker_sandbox
):
    out = tmp_path / "inflection"
    result = subprocess.run(
        [
            SELFREPAIR,
            "synth",
            "inflection==0.5.1",
            "--out",
            str(out),
            "--limit",
            "6",
            "--per-function",
            "1",
            "--eval-fraction",
            "0",
            "--sandbox",
            "docker",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)["manifest"]
    assert manifest["tasks"]["instances"] == 6
    (source,) = manifest["sources"]
    assert source["repo"] == "pypi/inflection-0.5.1" and source["tests"]["stable"] > 400
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert {row["repo"] for row in rows} == {"pypi/inflection-0.5.1"} and {
        row["version"] for row in rows
    } == {"0.5.1"}
    assert all(row["patch"].startswith("diff --git a/inflection/__init__.py") for row in rows)
    assert check_function_tasks(docker_sandbox, out) == 6
    assert check_instances(docker_sandbox, out) == 6


def test_an_sdist_without_tests_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [SELFREPAIR, "synth", "sortedcontainers==2.4.0", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "selfrepair: error: sortedcontainers==2.4.0: its sdist carries no tests (no test_*.py, *_test.py or tests/ "
        "files); synth validates every bug with the package's own tests"
    )
    assert not out.exists()


def test_an_unreachable_package_index_is_one_line(tmp_path):
    import os

    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_RETRIES": "1",
    }
    out = tmp_path / "out"
    result = subprocess.run(
        [SELFREPAIR, "synth", "toolz==1.0.0", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "selfrepair: error: toolz==1.0.0: cannot reach the package index (pip download failed); check the network "
        "or give a local sdist"
    )
    assert not out.exists()


def test_a_package_with_requirements_is_validated_with_them_installed(tmp_path, docker_sandbox):
    """The requirements a package declares are installed once (pip, from the package index)
    into DIR/envs/SLUG, which the sandbox mounts read-only on the tests' path."""
    package = tmp_path / "usestoolz"
    (package / "usestoolz").mkdir(parents=True)
    (package / "tests").mkdir()
    (package / "pyproject.toml").write_text(
        '[project]\nname = "usestoolz"\nversion = "0.1"\ndependencies = ["toolz"]\n'
    )
    (package / "usestoolz" / "__init__.py").write_text(
        'from toolz import take\n\n\ndef firsts(seq, n):\n    """The first n items as a list."""\n'
        "    if n < 0:\n        raise ValueError('n must not be negative')\n    return list(take(n, seq))\n"
    )
    (package / "tests" / "test_firsts.py").write_text(
        "import pytest\nfrom usestoolz import firsts\n\n\ndef test_firsts():\n    assert firsts([1, 2, 3], 2) == [1, 2]\n"
        "    assert firsts('abc', 0) == []\n\n\ndef test_negative():\n    with pytest.raises(ValueError):\n"
        "        firsts([1], -1)\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [SELFREPAIR, "synth", str(package), "--out", str(out), "--sandbox", "docker", "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "envs" / "local__usestoolz" / "toolz" / "__init__.py").is_file()
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert rows and {row["synth"]["environment"] for row in rows} == {"envs/local__usestoolz"}
