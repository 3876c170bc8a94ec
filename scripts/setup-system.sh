#!/usr/bin/env bash
# System packages the sandbox tests need: bubblewrap (local backend) and docker.io
# (docker backend), and a running Docker daemon. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-system: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Start dockerd when no daemon answers. A failure here is reported, not fatal: the
# docker tests then skip, naming the reason.
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  echo "setup-system: starting dockerd"
  ($SUDO nohup dockerd >/tmp/assay-dockerd.log 2>&1 &)
  for _ in $(seq 1 30); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || echo "setup-system: dockerd did not start (see /tmp/assay-dockerd.log)"
fi
