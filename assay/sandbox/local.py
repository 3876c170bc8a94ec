"""The local backend: fork servers jailed by bubblewrap, talking over pipes.

Each worker is

    setpriv --reuid=65534 ...  bwrap --unshare-all --as-pid-1 ...  /usr/bin/python3 -I -c <forkserver>

- `setpriv` (only when the host process is root) drops to uid 65534 *before*
  bubblewrap creates the user namespace, so the jail's processes are not root
  anywhere and RLIMIT_NPROC applies to them (the kernel never enforces it for root).
- `--unshare-all` gives new user, PID, network (loopback only), IPC, UTS and
  cgroup namespaces; `--cap-drop ALL`, `--new-session` (no terminal to inject
  into with TIOCSTI) and `--die-with-parent` (the jail dies with the host).
- The file system is a fresh root with /usr bound read-only (plus symlinks for
  /bin and /lib), a private /proc and a minimal /dev, size-capped tmpfs mounts on
  /work, /tmp and /dev/shm, and the root and /dev remounted read-only. Nothing
  else of the host (/etc, /root, /home, the environment) is visible.
- The interpreter in the jail is the system one, /usr/bin/python3: uid 65534
  cannot read a virtualenv under /root, and /usr is what the jail can see. Pass
  `python=` and `ro_binds=` for another interpreter that uid 65534 can read.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from assay.sandbox import forkserver
from assay.sandbox.execution import Limits, SandboxError
from assay.sandbox.seccomp import build_filter

JAIL_UID = 65534
DEFAULT_PYTHON = "/usr/bin/python3"
SERVER_SOURCE = Path(forkserver.__file__).read_text(encoding="utf-8")


class PipeTransport:
    """A worker process with the fork server on its stdin/stdout pipes."""

    def __init__(self, command: list[str]) -> None:
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,  # its own process group: killpg reaches setpriv/bwrap
            close_fds=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)  # the pool keeps what does not fit (see pool.py)

    def fileno(self) -> int:
        return self._out

    def write_fileno(self) -> int:
        return self._in

    def write_some(self, data: memoryview) -> int:
        try:
            return os.write(self._in, data)
        except BlockingIOError:
            return 0

    def recv(self) -> bytes:
        data = os.read(self._out, 1 << 16)
        if not data:
            raise EOFError("the sandbox worker closed its output")
        return data

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self._stderr.close()

    def jail_pids(self) -> list[int]:
        """Host pids of every process in this worker's PID namespace, the server first.

        Read from the host's /proc, outside the jail: what a test uses to check that
        nothing survived a run.
        """
        server = _fork_server_pid(self.process.pid)
        if server is None:
            return []
        try:
            namespace = os.readlink(f"/proc/{server}/ns/pid")
        except OSError:
            return []
        others = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != server:
                try:
                    if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                        others.append(int(entry))
                except OSError:
                    continue
        return [server, *sorted(others)]

    def diagnostics(self) -> str:
        """The last lines the worker (bwrap, the server) wrote to stderr."""
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-2000:].decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            text = ""
        code = self.process.poll()
        state = f"exit status {code}" if code is not None else "still running"
        return f"{text} ({state})" if text else state


def _fork_server_pid(bwrap_pid: int) -> int | None:
    """The fork server is bwrap's only child (with --as-pid-1 there is no reaper between)."""
    try:
        with open(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children") as handle:
            children = handle.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


class LocalBackend:
    """bubblewrap jails on this machine."""

    name = "local"

    def __init__(
        self,
        *,
        limits: Limits,
        python: str = DEFAULT_PYTHON,
        ro_binds: Sequence[str] = (),
        seccomp: bool = True,
    ) -> None:
        self.limits = limits
        self.python = python
        self.ro_binds = tuple(ro_binds)
        self.seccomp = seccomp
        self._bwrap = shutil.which("bwrap")
        if self._bwrap is None:
            raise SandboxError("bubblewrap not found: apt-get install bubblewrap")
        self._setpriv = None
        if os.geteuid() == 0:
            self._setpriv = shutil.which("setpriv")
            if self._setpriv is None:
                raise SandboxError(
                    "setpriv not found (needed to leave root before jailing): apt-get install util-linux"
                )
        if not os.access(python, os.X_OK):
            raise SandboxError(
                f"{python} not found: apt-get install python3 (the jail runs the system interpreter)"
            )

    def command(self) -> list[str]:
        lim = self.limits
        args = [self._bwrap or "bwrap"]
        args += ["--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1"]
        args += ["--cap-drop", "ALL", "--uid", str(JAIL_UID), "--gid", str(JAIL_UID)]
        args += ["--hostname", "sandbox"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            if os.path.islink(f"/{name}"):
                args += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                args += ["--ro-bind", f"/{name}", f"/{name}"]
        for path in self.ro_binds:
            args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--size", str(lim.work_mb << 20), "--tmpfs", forkserver.WORK_DIR]
        args += ["--size", str(lim.tmp_mb << 20), "--tmpfs", "/tmp"]
        args += ["--size", str(lim.shm_mb << 20), "--tmpfs", "/dev/shm"]
        # bwrap's /dev is a tmpfs of its own, writable by the jail's uid and without a size
        # limit: read-only, it can neither carry files from one run to the next nor fill
        # the host's memory (/dev/shm is a separate, capped mount and stays writable).
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        args += ["--chdir", forkserver.WORK_DIR, "--clearenv"]
        for key, value in (("PATH", "/usr/bin:/bin"), ("HOME", forkserver.WORK_DIR), ("LANG", "C.UTF-8")):
            args += ["--setenv", key, value]
        args += ["--", self.python, "-I", "-c", SERVER_SOURCE]
        if self._setpriv is not None:
            uid = str(JAIL_UID)
            args = [self._setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *args]
        return args

    def spawn(self) -> PipeTransport:
        try:
            return PipeTransport(self.command())
        except OSError as exc:
            raise SandboxError(f"could not start bubblewrap: {exc}") from None

    def hello(self) -> dict:
        program = build_filter() if self.seccomp else None
        return {"seccomp": program.hex() if program else ""}

    def close(self) -> None:
        pass
