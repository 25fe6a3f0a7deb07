#!/usr/bin/env bash
# Make a Docker engine answer on this machine, as DESIGN.md says: install docker.io if
# dockerd is missing, start `dockerd --bridge=none --iptables=false` if `docker info` does
# not answer, and wait for it. Idempotent: a second run does nothing. Needs root for the
# install and the start; its log goes to ${DOCKERD_LOG:-/var/log/selfrepair-dockerd.log}.
set -euo pipefail

log="${DOCKERD_LOG:-/var/log/selfrepair-dockerd.log}"

if docker info >/dev/null 2>&1; then
    echo "docker-engine: a daemon already answers"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing docker.io (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >>"$log" 2>&1
    apt-get install -y -qq docker.io >>"$log" 2>&1
fi

# No bridge network: sandboxes run with network none, and no traffic may go to private ranges.
echo "docker-engine: starting dockerd (log: $log)"
nohup dockerd --bridge=none --iptables=false >>"$log" 2>&1 &

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker-engine: daemon answers"
        exit 0
    fi
    sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; see $log" >&2
exit 1
