#!/usr/bin/env bash
# System packages the tests need. Idempotent; needs root (or sudo). With no argument, all:
#   --sandbox  the sandbox tests' (`make test`): bubblewrap (local backend) and docker.io
#              (docker backend), and a running Docker daemon
#   --browser  Chromium, for the reports in a real browser (`make browser-test`; installing
#              it takes about 1.5 minutes, so `make test` does not)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
part="${1:-all}"
case "$part" in
  all | --sandbox | --browser) ;;
  *) echo "usage: setup-system.sh [--sandbox | --browser]" >&2; exit 2 ;;
esac

need=()
if [ "$part" != --browser ]; then
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
fi
if [ "$part" != --sandbox ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-system: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Start dockerd when no daemon answers. A failure here is reported, not fatal: the
# docker tests then skip, naming the reason.
if [ "$part" != --browser ] && command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  echo "setup-system: starting dockerd"
  ($SUDO nohup dockerd >/tmp/assay-dockerd.log 2>&1 &)
  for _ in $(seq 1 30); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || echo "setup-system: dockerd did not start (see /tmp/assay-dockerd.log)"
fi
