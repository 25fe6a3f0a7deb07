#!/usr/bin/env bash
# The sandboxes: as root, install bubblewrap (the local sandbox's fence) and install and start
# the Docker engine (scripts/docker-engine.sh); wherever a daemon answers, build the image (a
# no-op when up to date). Without a daemon, selfrepair falls back to its local sandbox and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    # bubblewrap fences the local sandbox (and the tests run it beside Docker).
    if ! command -v bwrap >/dev/null 2>&1; then
        echo "[sandbox] installing bubblewrap (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }
    fi
    bash scripts/docker-engine.sh
fi
if docker info >/dev/null 2>&1; then
    .venv/bin/selfrepair sandbox build
else
    echo "[sandbox] no Docker daemon answers (and not root to start one): the local sandbox will be used"
fi
