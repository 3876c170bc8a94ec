#!/usr/bin/env bash
# Rebuild the priors shipped inside assay (assay/organism/shipped/) from their recipes:
# each preset is built from scratch in a fresh cache, on the build's fixed thread count
# and kernels (assay/organism/pinned.py), and copied in under <preset>-<spec hash>.
# Run it after changing a shipped preset's spec or the prior's training code; commit the
# result. About 7 minutes on 2 idle cores for `default` (2026-12-06), under a minute each
# for `tiny`, `code-tiny` and `tool-tiny`. Each prior's assay.json records the CPU that
# built it: a rebuild gives its bits on a CPU of that maker (docs/development.md).
#   scripts/ship-priors.sh [PRESET ...]      (default: default tiny code-tiny tool-tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ $# -eq 0 ] && presets=(default tiny code-tiny tool-tiny)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
for preset in "${presets[@]}"; do
    folder=$(ASSAY_CACHE="$cache" .venv/bin/assay prior --preset "$preset" --rebuild --quiet)
    name=$(basename "$folder")
    rm -rf "assay/organism/shipped/${preset}-"*
    mkdir -p assay/organism/shipped
    cp -r "$folder" "assay/organism/shipped/$name"
    echo "shipped $preset -> assay/organism/shipped/$name ($(du -sh "$folder" | cut -f1))"
done
