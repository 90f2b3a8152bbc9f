"""Confinement of the fork server's children, with no native-code module anywhere in the server.

The server never imports ``ctypes``: anything a child inherits in memory could be turned into a native call.
Namespaces and the filesystem view are set up before the server's interpreter starts (``launcher``), and by
the PID namespace's init (``nsinit``), each in its own process. What is left here uses only ``os``,
``resource`` and ``signal`` (every module the server imports makes every fork dearer): a new session, rlimits,
an unprivileged uid, a private working folder that the server wipes after every child, and sweeping leftover
processes.
"""

from __future__ import annotations

import os
import resource
import signal

_MB = 1024 * 1024


def sweep_orphans(server_pid: int) -> None:
    """Without a PID namespace: kill every process reparented to the server (it is a subreaper) and reap it,
    again until none is left (a killed orphan's own children are reparented to the server in turn)."""
    for _ in range(1000):
        killed = 0
        try:
            entries = os.listdir("/proc")
        except OSError:
            entries = []
        for e in entries:
            if not e.isdigit():
                continue
            try:
                with open(f"/proc/{e}/stat", "rb") as fh:
                    stat = fh.read()
                ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == server_pid:
                try:
                    os.kill(int(e), signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if killed else os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not killed:
            return


class ChildLimits:
    """The rlimits, uid and private folder of every child of one server."""

    __slots__ = ("cpu_s", "memory_mb", "file_size_mb", "open_files", "processes", "uid", "workdir")

    def __init__(self, cpu_s: int, memory_mb: int | None, file_size_mb: int, open_files: int, processes: int,
                 uid: int | None, workdir: str | None) -> None:
        self.cpu_s = cpu_s
        self.memory_mb = memory_mb  # None: no address-space limit (under valgrind)
        self.file_size_mb = file_size_mb
        self.open_files = open_files
        self.processes = processes  # RLIMIT_NPROC, where the child has a uid of its own
        self.uid = uid  # drop to this uid (root only)
        # The child's private, writable folder (wiped by the server after the child); None: the server has
        # already made it its own working folder and TMPDIR, owned by ``uid`` (the private /tmp of the view).
        self.workdir = workdir


def prepare_child(limits: ChildLimits) -> None:
    """Run in a fresh child before any untrusted code: new session, private folder, rlimits, uid drop.

    ``no_new_privs`` was set on the server before its interpreter started, so every child has it.
    """
    os.setsid()
    if limits.workdir is not None:
        os.environ["TMPDIR"] = limits.workdir
        os.chdir(limits.workdir)
        if limits.uid is not None:
            os.chown(limits.workdir, limits.uid, limits.uid)
    setrlimit = resource.setrlimit
    setrlimit(resource.RLIMIT_CORE, (0, 0))
    setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * _MB, limits.file_size_mb * _MB))
    try:
        setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    except ValueError:  # valgrind keeps the hard limit of open files for itself: lower the soft one only
        setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    if limits.memory_mb is not None:
        setrlimit(resource.RLIMIT_AS, (limits.memory_mb * _MB, limits.memory_mb * _MB))
    if limits.uid is not None:
        os.setgroups([])
        os.setresgid(limits.uid, limits.uid, limits.uid)
        os.setresuid(limits.uid, limits.uid, limits.uid)
    if limits.uid is not None or os.geteuid() != 0:
        setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def wipe(folder: str, keep: frozenset[str] = frozenset()) -> None:
    """Empty ``folder`` (what a child wrote there must not reach the next child), but for ``keep``: entries
    present before any child ran (mount points of folders that live under the host's /tmp).

    Iterative, never following links: a child may leave a tree deeper than Python's recursion limit.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    stack = [os.path.join(folder, n) for n in names if n not in keep]
    dirs: list[str] = []
    while stack:
        path = stack.pop()
        try:
            os.unlink(path)
            continue
        except IsADirectoryError:
            pass
        except OSError:
            continue
        dirs.append(path)
        try:
            os.chmod(path, 0o700)  # a child may have made its folder unreadable to others
            stack.extend(os.path.join(path, n) for n in os.listdir(path))
        except OSError:
            pass
    for path in reversed(dirs):
        try:
            os.rmdir(path)
        except OSError:
            pass


def reset_root(folder: str, mode: int, times_ns: tuple[int, int]) -> None:
    """Give a shared private folder back its mode, times and extended attributes after a child: what a child set
    on the folder itself (``chmod``, ``utime``, ``setxattr``) would otherwise reach the next child, a channel
    from one run to the next (the folder's entries are removed by :func:`wipe`)."""
    os.chmod(folder, mode)
    try:
        for name in os.listxattr(folder):
            if name.startswith(("user.", "system.posix_acl")):
                os.removexattr(folder, name)
    except OSError:
        pass
    os.utime(folder, ns=times_ns)
