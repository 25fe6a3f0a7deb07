#!/usr/bin/env bash
# Everything the tests need, then the tests: the embedded model, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The form first: ruff's lint and format checks (pyproject.toml holds their settings).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/selfrepair models pull smollm2
# Headless Chromium opens the HTML report in tests/test_report.py; apt-get needs root (CI is).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
# The Docker sandbox (engine and image): Docker tests fail in CI without it, and skip elsewhere.
bash scripts/sandbox.sh
# The official SWE-bench harness validates `bench swebench` predictions (tests/test_issue_graph.py).
.venv/bin/python -c "import swebench" 2>/dev/null || .venv/bin/pip install -q -e ".[swebench]"
# Ray runs the executor's tests on a two-node cluster on this machine (tests/test_executor_ray.py).
.venv/bin/python -c "import ray" 2>/dev/null || .venv/bin/pip install -q -e ".[ray]"
# vLLM's own environment (made once into the user cache, where later runs find it; minutes and
# about 3.5 GB): the `vllm` tests need it, and run in CI or with SELFREPAIR_TEST_VLLM=1.
ci="${CI:-}"
if [[ "${ci,,}" =~ ^(1|true|yes)$ || "${SELFREPAIR_TEST_VLLM:-}" == 1 ]]; then
    .venv/bin/selfrepair serve --engine vllm --prepare
fi
exec .venv/bin/python -m pytest -q -ra "$@"
