#!/usr/bin/env bash
# Make a Docker engine answer on this machine, idempotently: install docker.io if it is
# missing, start dockerd if it is not running. Loopback only: no bridge, no iptables.
# Exits non-zero with the reason when it cannot; the Docker tests then fail with it.
set -euo pipefail

log=${WORDPIPE_DOCKERD_LOG:-/var/log/wordpipe-dockerd.log}

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null; then
    echo "docker-engine: installing docker.io" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null; then
    echo "docker-engine: starting dockerd (log: $log)" >&2
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
echo "docker-engine: dockerd did not answer within 30 s; last log lines:" >&2
tail -n 20 "$log" >&2 || true
exit 1
