#!/usr/bin/env bash
# Everything the tests need, then the tests: the embedded model, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/selfrepair models pull smollm2
exec .venv/bin/python -m pytest -q -ra "$@"
