"""One writer per folder: the lock every command that writes a run, comparison or
experiment folder holds while it writes.

Two `assay train --out X` started together used to both succeed and interleave their
rows in one metrics.jsonl. Now the second is refused in one line naming the first's pid.

The lock is `fcntl.flock` on `FOLDER/.assay-lock`. The kernel drops a flock when the
last descriptor on it closes, so a writer that dies (Ctrl-C, `kill -9`, a crash) leaves
no stale lock: the next writer simply takes it. The file keeps the holder's pid and
command line, for the refusal message; it is never deleted (deleting a lock file races
with a writer that has it open).

Within one process the lock is re-entrant: a lab command that holds its folder may train
a run into a subfolder (its own lock) or call code that takes the same folder again.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

from assay.errors import AssayError

LOCK_NAME = ".assay-lock"


class FolderError(AssayError, RuntimeError):
    """The folder is being written by another live process (the message names its pid),
    or is not a folder at all."""


_held: dict[Path, list] = {}  # folder -> [fd, count]: this process's locks (re-entrant)
_guard = threading.Lock()


def check_writable(folder: str | Path, flag: str = "--out") -> Path:
    """`folder` as a path, if it is a folder or could be made one here; else `FolderError`
    naming `flag`. Checked before a command's work, so that none is lost at the end."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise FolderError(f"{flag} {path} is a file, not a folder")
    existing = path
    while not existing.exists():  # the nearest folder that is there: the new ones go in it
        existing = existing.parent
    if path != existing and not existing.is_dir():
        raise FolderError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FolderError(f"{flag} {path}: {existing} is not writable")
    return path


def foreign_files(folder: str | Path, ours: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The names in `folder` other than `ours` and the lock (sorted; none when it is not
    there): what a command that writes its own files there would overwrite or mix with."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.name not in ours and p.name != LOCK_NAME)


def shown(names: list[str], most: int = 3) -> str:
    """The first `most` of `names` for a message, `...` after them when there are more."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def acquire(folder: str | Path, *, what: str = "this folder") -> Path:
    """Take `folder`'s write lock (creating the folder), or raise `FolderError`.

    Call `release(folder)` as often as `acquire`; the lock also ends with the process.
    """
    path = check_writable(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # /proc, a read-only mount: one line, not a traceback
        raise FolderError(f"--out {path}: cannot create the folder ({exc.strerror or exc})") from None
    key = path.resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
        fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderError(
                f"{path} is being written by {holder}; wait for it to finish or stop it, "
                f"then run again (this {what} cannot write there at the same time)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {' '.join(sys.argv)[:300]}\n".encode())
        _held[key] = [fd, 1]
    return key


def release(folder: str | Path, *, tidy: bool = False) -> None:
    """Give back one `acquire` of `folder` (a no-op when this process does not hold it).
    With `tidy`, a folder left holding nothing but the lock file is removed: a command
    that failed before writing anything leaves no empty folder behind."""
    key = Path(folder).resolve()
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        try:
            if tidy and [p.name for p in key.iterdir()] == [LOCK_NAME]:
                (key / LOCK_NAME).unlink()
                key.rmdir()
        except OSError:  # another writer got there first: its folder now
            pass
        finally:
            os.close(entry[0])  # closing the only descriptor drops the flock


def writer(folder: str | Path) -> str | None:
    """Who is writing `folder` now ("pid 123 (assay train ...)"), or None: for readers
    (`assay report`, `assay rescore`) that warn before reading a run still being written."""
    key = Path(folder).resolve()
    lock = key / LOCK_NAME
    if key in _held or not lock.is_file():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # a shared lock we took ends here
    return None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid}" + (f" ({command})" if command else "")
