"""Hardware instruction counts (``perf_event_open``), opened by the trusted parent on the child.

The parent opens a user-space instructions counter on the child's pid (inherited by its threads and children),
disabled, as soon as the child exists. The child does its set-up (limits, checker, compiling the program,
importing the installed modules its import statements name), then writes READY and blocks on a pipe; the
parent resets and enables the counter and only then lets the child go on, into the program's module body. So
the count is the program's own work, not the imports it names (``import statistics`` alone is ~12 M
instructions) nor the harness's set-up. Why this point, and why it cannot be abused: no program code runs
before READY (the harness writes it before executing the program), the parent acts on the first READY only (a
later one is a protocol error), and the counter lives in the parent's file table, so the program can neither
reset, disable nor read it. Needs a PMU: VMs and containers often have none, in which case :func:`probe` says
why and ``auto`` falls back to callgrind. Only ctypes; no compiled dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from collections.abc import Callable
from typing import Any

from effirl.meters.base import COUNTS, Meter

PERF_TYPE_HARDWARE = 0
PERF_COUNT_HW_INSTRUCTIONS = 1
PERF_FLAG_FD_CLOEXEC = 1 << 3
IOC_ENABLE = 0x2400
IOC_RESET = 0x2403
ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5; the kernel accepts any published size
BIT_DISABLED, BIT_INHERIT, BIT_EXCLUDE_KERNEL, BIT_EXCLUDE_HV = 0, 1, 5, 6
SYSCALL_NR = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}

Syscall = Callable[[bytes, int, int, int, int], int]  # (attr, pid, cpu, group_fd, flags) -> fd or -errno


def attr_bytes(inherit: bool = True) -> bytes:
    """A ``perf_event_attr`` for user-space instructions, created disabled."""
    flags = (1 << BIT_DISABLED) | (1 << BIT_EXCLUDE_KERNEL) | (1 << BIT_EXCLUDE_HV)
    if inherit:
        flags |= 1 << BIT_INHERIT
    buf = bytearray(ATTR_SIZE)
    struct.pack_into("<IIQQQQQ", buf, 0, PERF_TYPE_HARDWARE, ATTR_SIZE, PERF_COUNT_HW_INSTRUCTIONS, 0, 0, 0,
                     flags)
    return bytes(buf)


def _libc_syscall() -> Syscall:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    nr = SYSCALL_NR.get(platform.machine().lower())

    def call(attr: bytes, pid: int, cpu: int, group: int, flags: int) -> int:
        if nr is None:
            return -errno.ENOSYS
        buf = ctypes.create_string_buffer(attr, len(attr))
        fd = libc.syscall(nr, buf, ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group),
                          ctypes.c_ulong(flags))
        return fd if fd >= 0 else -ctypes.get_errno()

    return call


_REASONS = {
    errno.ENOENT: "this CPU/kernel exposes no hardware instructions event (no PMU: VM or container?)",
    errno.EOPNOTSUPP: "hardware counters are not supported here",
    errno.ENODEV: "no PMU device",
    errno.EACCES: "not permitted (kernel.perf_event_paranoid too high?)",
    errno.EPERM: "not permitted (kernel.perf_event_paranoid too high, or seccomp)",
    errno.ENOSYS: "perf_event_open is not available on this system",
    errno.EINVAL: "the kernel rejected the counter configuration",
}


def explain(err: int) -> str:
    return _REASONS.get(err, os.strerror(err))


def open_counter(pid: int, syscall: Syscall | None = None, enable: bool = True) -> int:
    """Open a counter on ``pid`` (reset and enabled unless ``enable`` is false: see :func:`start_counter`);
    raise ``OSError`` with a readable reason."""
    call = syscall or _libc_syscall()
    fd = call(attr_bytes(), pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise OSError(-fd, explain(-fd))
    if enable:
        start_counter(fd)
    return fd


def start_counter(fd: int) -> None:
    """Reset an opened counter to zero and enable it."""
    import fcntl

    fcntl.ioctl(fd, IOC_RESET, 0)
    fcntl.ioctl(fd, IOC_ENABLE, 0)


def read_counter(fd: int) -> int:
    data = os.read(fd, 8)
    if len(data) != 8:
        raise OSError(errno.EIO, "short read from perf counter")
    return struct.unpack("<Q", data)[0]


def probe(syscall: Syscall | None = None) -> tuple[bool, str]:
    """Try a counter on this very process: ``(True, "")`` or ``(False, why)``."""
    call = syscall or _libc_syscall()
    fd = call(attr_bytes(inherit=False), 0, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        return False, explain(-fd)
    os.close(fd)
    return True, ""


class PerfMeter(Meter):
    name = "perf"
    unit = "instructions"
    needs_go = True

    def __init__(self, syscall: Syscall | None = None) -> None:
        self._syscall = syscall

    def version(self) -> str:
        return f"perf_event_open/{platform.release()}+{COUNTS}"

    def attach(self, pid: int) -> Any:
        return open_counter(pid, self._syscall, enable=False)  # counts nothing until the child's READY

    def start(self, handle: Any) -> None:
        start_counter(handle)

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        if handle is None:
            return None
        try:
            value = read_counter(handle)
        finally:
            os.close(handle)
        if os.WIFSIGNALED(exited["status"]):
            return None
        return float(value)
