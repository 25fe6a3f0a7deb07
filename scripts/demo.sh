#!/usr/bin/env bash
# Repairs a copy of examples/buggy_add (the repository's copy stays buggy) with the embedded
# SmolLM2 model and best-of-n, then shows what changed and that the tests pass.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/buggy_add "$work/"
echo "[demo] the example's tests fail:"
(cd "$work/buggy_add" && "$root/.venv/bin/python" -m pytest -q 2>&1 | tail -n 1) || true
echo "[demo] selfrepair fix buggy_add/calc.py --test-cmd 'python -m pytest -q'"
.venv/bin/selfrepair fix "$work/buggy_add/calc.py" --test-cmd "python -m pytest -q" --out "$work/run"
echo "[demo] the fix:"
cat "$work/run/fix.patch"
echo "[demo] the tests now:"
(cd "$work/buggy_add" && "$root/.venv/bin/python" -m pytest -q 2>&1 | tail -n 1)
