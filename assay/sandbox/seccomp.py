"""A seccomp filter for the worst system calls, assembled as classic BPF by hand.

Namespaces, a read-only file system and a non-root uid already hold the line;
the filter shrinks the kernel surface that untrusted code can reach behind them:
no ptrace or cross-process memory access, no new namespaces (so no fresh set of
capabilities to play with), no mounts, keyrings, BPF, perf, userfaultfd or
io_uring, no System V IPC that would outlive a run, and no TIOCSTI terminal
injection, and no extended attributes (a channel from one run to the next).
Denied calls fail with EPERM (clone3 with ENOSYS, so that the C library falls
back to clone, whose flags the filter can inspect; the xattr setters with
EOPNOTSUPP, as on a file system without them).

The host builds the program here and sends its bytes to the fork server, which
installs it once; every run inherits it. Only x86-64 and AArch64 have tables;
elsewhere `build_filter` returns None and the sandbox runs without seccomp.
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

#: Calls that always fail (EPERM), by architecture.
DENIED = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "mount_setattr": 442,
        "unshare": 272, "setns": 308, "swapon": 167, "swapoff": 168, "reboot": 169,
        "sethostname": 170, "setdomainname": 171, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "acct": 163,
        "quotactl": 179, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "lookup_dcookie": 212, "iopl": 172, "ioperm": 173,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "fanotify_init": 300, "shmget": 29, "semget": 64, "msgget": 68, "mq_open": 240,
        "syslog": 103, "vhangup": 153, "settimeofday": 164, "clock_settime": 227,
        "adjtimex": 159, "clock_adjtime": 305, "uselib": 134,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "mount_setattr": 442,
        "unshare": 97, "setns": 268, "swapon": 224, "swapoff": 225, "reboot": 142,
        "sethostname": 161, "setdomainname": 162, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "acct": 89,
        "quotactl": 60, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "lookup_dcookie": 18, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "fanotify_init": 262, "shmget": 194,
        "semget": 190, "msgget": 186, "mq_open": 180, "syslog": 116, "vhangup": 58,
        "settimeofday": 170, "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266,
    },
}
#: Calls that fail as on a file system without extended attributes (EOPNOTSUPP, which
#: shutil.copystat and friends ignore): changing an xattr of a scratch directory would
#: carry data from one run to the next without showing in its size, mode or times.
UNSUPPORTED = {
    "x86_64": {
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
        "lremovexattr": 198, "fremovexattr": 199, "setxattrat": 463, "removexattrat": 466,
    },
    "aarch64": {
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
        "lremovexattr": 15, "fremovexattr": 16, "setxattrat": 463, "removexattrat": 466,
    },
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = {"x86_64": 435, "aarch64": 435}
_IOCTL = {"x86_64": 16, "aarch64": 29}

#: clone() flags that would create a namespace.
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
#: ioctl requests that push input into a terminal or talk to the console.
DENIED_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


#: The calls that leave a process group (a candidate's group: see envs/code_judge.py).
GROUP_EXITS = {"x86_64": {"setpgid": 109, "setsid": 112}, "aarch64": {"setpgid": 154, "setsid": 157}}


def build_group_filter(machine: str | None = None) -> bytes | None:
    """A filter that keeps a process and everything it starts in its process group: setsid
    and setpgid fail with EPERM, so killing the group kills them all. None where the
    architecture has no table."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        return None
    numbers = sorted(GROUP_EXITS[machine].values())
    prog = [
        _insn(_LD_W_ABS, 0, 0, _ARCH),
        _insn(_JEQ_K, 1, 0, AUDIT_ARCH[machine]),
        _insn(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),  # a foreign ABI: never ours
        _insn(_LD_W_ABS, 0, 0, _NR),
    ]
    for i, number in enumerate(numbers):
        prog.append(_insn(_JEQ_K, len(numbers) - i, 0, number))  # to the deny below
    prog.append(_insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append(_insn(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM))
    return b"".join(prog)


def build_filter(machine: str | None = None) -> bytes | None:
    """The filter program as the bytes of a `struct sock_filter` array, or None if the
    architecture has no table (the sandbox then runs without seccomp, and says so)."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        return None
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    nosys = SECCOMP_RET_ERRNO | errno.ENOSYS
    unsupported = SECCOMP_RET_ERRNO | errno.EOPNOTSUPP
    denied = sorted(DENIED[machine].values())

    # Layout: [arch check][nr load][x32 check][denied numbers...][unsupported numbers...]
    #         [clone][clone3][ioctl][allow][deny][nosys][unsupported]
    #         [clone flags check..][ioctl args check..]
    prog: list[tuple[int, int, int, int] | str] = []
    prog.append((_LD_W_ABS, 0, 0, _ARCH))
    prog.append((_JEQ_K, 1, 0, AUDIT_ARCH[machine]))
    prog.append((_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS))  # a foreign ABI: never ours
    prog.append((_LD_W_ABS, 0, 0, _NR))
    if machine == "x86_64":
        prog.append(("JGE", 0x40000000, "deny", None))  # the x32 ABI aliases every call
    for number in denied:
        prog.append(("JEQ", number, "deny", None))
    for number in sorted(UNSUPPORTED[machine].values()):
        prog.append(("JEQ", number, "unsupported", None))
    prog.append(("JEQ", _CLONE[machine], "clone", None))
    prog.append(("JEQ", _CLONE3[machine], "nosys", None))
    prog.append(("JEQ", _IOCTL[machine], "ioctl", None))
    labels: dict[str, int] = {}
    labels["allow"] = len(prog)
    prog.append((_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    labels["deny"] = len(prog)
    prog.append((_RET_K, 0, 0, deny))
    labels["nosys"] = len(prog)
    prog.append((_RET_K, 0, 0, nosys))
    labels["unsupported"] = len(prog)
    prog.append((_RET_K, 0, 0, unsupported))
    labels["clone"] = len(prog)  # BPF jumps only forward: each check ends in its own returns
    prog.append((_LD_W_ABS, 0, 0, _ARG0))
    prog.append((_JSET_K, 1, 0, NAMESPACE_FLAGS))
    prog.append((_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append((_RET_K, 0, 0, deny))
    labels["ioctl"] = len(prog)
    prog.append((_LD_W_ABS, 0, 0, _ARG1))
    for i, request in enumerate(DENIED_IOCTLS):
        prog.append((_JEQ_K, len(DENIED_IOCTLS) - i, 0, request))  # to the deny below
    prog.append((_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append((_RET_K, 0, 0, deny))

    out = []
    for index, item in enumerate(prog):
        if isinstance(item[0], str):
            kind, k, on_true, on_false = item
            code = {"JEQ": _JEQ_K, "JGE": _JGE_K, "JSET": _JSET_K}[kind]
            jt = labels[on_true] - index - 1
            jf = 0 if on_false is None else labels[on_false] - index - 1
            if not (0 <= jt < 256 and 0 <= jf < 256):  # pragma: no cover - table too long
                raise ValueError("seccomp jump out of range")
            out.append(_insn(code, jt, jf, k))
        else:
            out.append(_insn(*item))
    return b"".join(out)
