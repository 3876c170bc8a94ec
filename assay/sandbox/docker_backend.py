"""The Docker backend: the same fork servers, each in a locked-down container.

No registry is reachable from our machines, so the image is built locally: a
`docker import` of a tiny root file system (empty mount points, /bin and /lib
symlinks into /usr, an /etc/passwd naming uid 65534), and every container binds
the host's /usr read-only, which brings the system interpreter /usr/bin/python3.

Each worker is one long-lived container running the fork server as its PID 1
(so, exactly as in the local backend, nothing in the container can signal it,
and `kill(-1)` after each run removes every leftover process). The container has
no network, a read-only root, size-capped tmpfs mounts on /work, /tmp and
/dev/shm, all capabilities dropped, no-new-privileges, uid 65534, and memory,
pids and CPU limits; each run additionally gets the fork server's rlimits and
seccomp filter. Reusing the container is safe because every run is a fresh
fork whose processes and files are all gone before the next run starts.

The host talks to the server over the container's attached stdin/stdout
(a socket carrying Docker's multiplexed stream format).
"""

from __future__ import annotations

import io
import socket
import struct
import tarfile
import threading
from typing import Any

from assay.sandbox import forkserver
from assay.sandbox.execution import Limits, SandboxError
from assay.sandbox.local import DEFAULT_PYTHON, JAIL_UID, SERVER_SOURCE
from assay.sandbox.seccomp import build_filter

IMAGE = "assay-sandbox:1"
_MUX_HEADER = struct.Struct(">BxxxI")


def rootfs_tar() -> bytes:
    """The image's whole root file system, as an uncompressed tar archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)

        for name in ("usr", "etc", "proc", "sys", "dev"):
            add_dir(name)
        for name in ("work", "tmp"):
            add_dir(name, 0o1777)
        for name in ("bin", "sbin", "lib", "lib64"):
            add_link(name, f"usr/{name}")
        add_file("etc/passwd", f"root:x:0:0:root:/root:/bin/false\nnobody:x:{JAIL_UID}:{JAIL_UID}:nobody:/work:/bin/false\n")
        add_file("etc/group", f"root:x:0:\nnogroup:x:{JAIL_UID}:\n")
    return buffer.getvalue()


def _docker_client() -> Any:
    try:
        import docker
    except ImportError:
        raise SandboxError(
            "the docker backend needs the Docker SDK: pip install docker (or pip install 'assay[docker]')"
        ) from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        raise SandboxError(
            f"no Docker daemon answers ({type(exc).__name__}: {exc}); "
            "start one with scripts/setup-system.sh (apt-get install docker.io; dockerd)"
        ) from None
    return client


def ensure_image(client: Any, image: str = IMAGE) -> str:
    """Build the sandbox image locally (docker import) unless it exists; returns its name."""
    import docker

    try:
        client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = image.partition(":")
    client.api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag or "latest")
    client.images.get(image)  # raises if the import did not produce it
    return image


class DockerTransport:
    """A container's attached stdin/stdout, demultiplexed into the server's byte stream."""

    def __init__(self, container: Any, attached: Any) -> None:
        self.container = container
        self._attached = attached  # keeps the HTTP response (and so the socket) alive
        self._sock: socket.socket = attached._sock
        self._stderr = bytearray()
        self._killed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def write_fileno(self) -> int:
        return self._sock.fileno()

    def write_some(self, data: memoryview) -> int:
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    def recv(self) -> bytes:
        """The server's stdout bytes in the next multiplexed frame (stderr frames are kept
        for diagnostics and give b"")."""
        stream, size = _MUX_HEADER.unpack(self._recv_exact(_MUX_HEADER.size))
        payload = self._recv_exact(size)
        if stream == 2:
            self._stderr += payload
            del self._stderr[:-4000]
            return b""
        return payload

    def _recv_exact(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError("the container closed its output")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (auto-removed) or the daemon went away
            pass

    def diagnostics(self) -> str:
        text = self._stderr.decode("utf-8", errors="replace").strip()
        try:
            self.container.reload()
            state = f"container {self.container.status}"
        except Exception:
            state = "container gone"
        return f"{text} ({state})" if text else state


class DockerBackend:
    """Fork servers in Docker containers (`Sandbox(backend="docker")`)."""

    name = "docker"

    def __init__(
        self,
        *,
        limits: Limits,
        image: str = IMAGE,
        python: str = DEFAULT_PYTHON,
        cpus: float = 1.0,
        container_memory_mb: int = 2048,
        seccomp: bool = True,
    ) -> None:
        self.limits = limits
        self.python = python
        self.cpus = cpus
        self.container_memory_mb = container_memory_mb
        self.seccomp = seccomp
        self.client = _docker_client()
        try:
            self.image = ensure_image(self.client, image)
        except Exception as exc:
            raise SandboxError(f"could not build the sandbox image {image!r}: {exc}") from None
        self._lock = threading.Lock()

    def spawn(self) -> DockerTransport:
        lim = self.limits
        tmpfs = {
            forkserver.WORK_DIR: f"size={lim.work_mb}m,mode=1777",
            "/tmp": f"size={lim.tmp_mb}m,mode=1777",
            "/dev/shm": f"size={lim.shm_mb}m,mode=1777",
        }
        api = self.client.api
        try:
            with self._lock:
                host_config = api.create_host_config(
                    network_mode="none",
                    read_only=True,
                    tmpfs=tmpfs,
                    binds={"/usr": {"bind": "/usr", "mode": "ro"}},
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    mem_limit=f"{self.container_memory_mb}m",
                    memswap_limit=f"{self.container_memory_mb}m",
                    pids_limit=lim.processes + 16,
                    nano_cpus=int(self.cpus * 1e9),
                    ipc_mode="private",
                    auto_remove=True,
                )
                created = api.create_container(
                    self.image,
                    command=[self.python, "-I", "-c", SERVER_SOURCE],
                    user=f"{JAIL_UID}:{JAIL_UID}",
                    working_dir=forkserver.WORK_DIR,
                    environment={"PATH": "/usr/bin:/bin", "HOME": forkserver.WORK_DIR, "LANG": "C.UTF-8"},
                    stdin_open=True,
                    detach=False,  # with stdin_open: attach stdin once, so the host hanging
                    tty=False,  # up closes the server's stdin and the server exits
                    labels={"assay.sandbox": "worker"},
                    host_config=host_config,
                )
                container = self.client.containers.get(created["Id"])
                attached = api.attach_socket(
                    container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                )
                api.start(container.id)
        except Exception as exc:
            raise SandboxError(f"could not start a sandbox container: {type(exc).__name__}: {exc}") from None
        return DockerTransport(container, attached)

    def hello(self) -> dict:
        program = build_filter() if self.seccomp else None
        return {"seccomp": program.hex() if program else ""}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
