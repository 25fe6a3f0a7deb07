#!/usr/bin/env bash
# The Docker sandbox where a daemon can run: as root, install and start the engine
# (scripts/docker-engine.sh); wherever a daemon answers, build the image (a no-op when up to
# date). Without either, selfrepair falls back to its local sandbox and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    bash scripts/docker-engine.sh
fi
if docker info >/dev/null 2>&1; then
    .venv/bin/selfrepair sandbox build
else
    echo "[sandbox] no Docker daemon answers (and not root to start one): the local sandbox will be used"
fi
