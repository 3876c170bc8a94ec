"""Files written whole: a run's metrics, rollouts and JSON are replaced through a
temporary file renamed into place, so that a kill at any moment leaves the old file or
the new one, never half of either.

This module imports nothing of assay: every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Make `data` the file at `path`, through `path`.tmp renamed into place. A failure
    (`path` a folder, an immutable file, a full disk) leaves no temporary file behind,
    and its `OSError` names `path`, not the temporary file the user never made."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
