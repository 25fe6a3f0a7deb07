#!/usr/bin/env bash
# Installs selfrepair into ./.venv (idempotent). PyTorch's CPU build goes in first so that
# nothing pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# As root, the local sandbox runs tests as nobody, who must be able to read .venv: a checkout
# made inside `mktemp -d` is mode 0700.
chmod a+rx .
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[install] creating .venv"
    "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "[install] installing PyTorch (CPU build)"
    .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
echo "[install] installing selfrepair (editable) and its test tools"
.venv/bin/pip install -q -e ".[test]"
