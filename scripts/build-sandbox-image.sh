#!/usr/bin/env bash
# Build the Docker backend's image (assay-sandbox:1) locally, offline: a `docker import`
# of a tiny root file system; containers bind the host's /usr read-only for python3.
# The backend also builds it on first use; this script is for CI images and checks.
set -euo pipefail
PYTHON="${PYTHON:-python}"
"$PYTHON" -c "
from assay.sandbox.docker_backend import _docker_client, ensure_image, IMAGE
print('built' if ensure_image(_docker_client()) == IMAGE else 'failed', IMAGE)
"
