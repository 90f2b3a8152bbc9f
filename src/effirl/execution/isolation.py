"""Linux namespaces and the minimal filesystem view of a worker, set up BEFORE its fork server starts.

Used by :mod:`effirl.execution.launcher` (and :mod:`effirl.execution.nsinit`), never by the fork server: this is
the only place with ``ctypes``, and it lives in processes that untrusted code never shares memory with. The
launcher enters new mount, network, IPC and UTS namespaces (and a user namespace when not root), pivots into a
read-only view of the filesystem (the interpreter and its libraries; no task files, datasets, home or project
folders), mounts a size-limited private ``/tmp``, unshares a PID namespace for the server's children, sets
``no_new_privs``, then ``exec``s the server. Where namespaces are not available, the report says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
import sysconfig

from effirl.execution.report import IsolationReport

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def pivot_root(new_root: str, put_old: str) -> None:
    import platform

    nr = SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown architecture")
    _check(_libc.syscall(nr, new_root.encode(), put_old.encode()), "pivot_root")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _interpreter_paths() -> list[str]:
    """Folders the interpreter needs to keep importing: stdlib, extension modules, site-packages."""
    paths = {sys.base_prefix, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    for key in ("purelib", "platlib"):
        paths.add(sysconfig.get_paths()[key])
    # Site folders of the running interpreter (a venv's site-packages), never the project folder itself.
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p):
            paths.add(p)
    return sorted(p for p in paths if p and os.path.isdir(p))


_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _bind(src: str, root: str, writable: bool = False) -> None:
    dst = root + src
    if os.path.islink(src):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink(os.readlink(src), dst)
        return
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            open(dst, "w").close()
    mount(src, dst, None, MS_BIND | MS_REC)
    nodev = 0 if src.startswith("/dev/") else MS_NODEV
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | nodev | (0 if writable else MS_RDONLY)
    try:
        mount(None, dst, None, flags)
    except OSError:
        mount(None, dst, None, flags | MS_NOEXEC)  # some bind mounts carry a locked noexec flag


def _covered(path: str, done: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in done)


def build_root(root: str, writable: dict[str, str], readonly: list[str]) -> None:
    """Populate ``root`` (a fresh tmpfs) with read-only binds of what the interpreter needs."""
    done: list[str] = []
    for src in list(_SYSTEM_DIRS) + _interpreter_paths() + readonly:
        if os.path.islink(src) and not _covered(src, done):
            _bind(src, root)  # /bin -> usr/bin on merged-/usr systems: the link itself
        elif os.path.lexists(src) and not _covered(os.path.realpath(src), done) and not _covered(src, done):
            _bind(src, root)
            done.append(src)
    for f in _SYSTEM_FILES + _DEVICES:
        if os.path.exists(f):
            _bind(f, root, writable=f.startswith("/dev/"))
    for inside, host in writable.items():
        os.makedirs(root + inside, exist_ok=True)
        mount(host, root + inside, None, MS_BIND)
    for d in ("/tmp", "/proc", "/.old"):
        os.makedirs(root + d, exist_ok=True)
    os.chmod(root + "/tmp", 0o1777)


def enter_worker_sandbox(mode: str, writable: dict[str, str], workdir: str, readonly: list[str] | None = None,
                         tmp_mb: int = 64, host_proc: bool = False) -> IsolationReport:
    """Put the current process (the launcher, about to exec the server) into namespaces and a filesystem view.

    ``readonly`` folders are bound too (effirl's own sources, for the server to import; ``nsinit`` removes that
    bind before any child runs).
    """
    report = IsolationReport()
    if mode == "none":
        report.problems.append("isolation disabled by configuration")
        _subreaper(report)
        return report
    if not sys.platform.startswith("linux"):
        report.problems.append(f"namespaces need Linux (this is {sys.platform})")
        _subreaper(report)
        return report
    root_user = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    try:
        unshare(flags if root_user else flags | CLONE_NEWUSER)
    except OSError as exc:
        report.problems.append(f"cannot create namespaces ({exc.strerror}; unprivileged user namespaces off?)")
        _subreaper(report)
        return report
    report.namespaces = report.network_isolated = True
    if not root_user:
        report.user_namespace = True
        try:
            _write_file("/proc/self/setgroups", "deny")
        except OSError:
            pass
        _write_file("/proc/self/uid_map", f"0 {uid} 1")
        _write_file("/proc/self/gid_map", f"0 {gid} 1")
    report.uid_drop = root_user
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        root = os.path.join(workdir, "root")
        os.makedirs(root, exist_ok=True)
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
        # /tmp first: binds of folders that live under the host's /tmp (a clone or venv there) go on top of it
        os.makedirs(root + "/tmp", exist_ok=True)
        mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_mb}m")
        build_root(root, writable, readonly or [])
        if host_proc:  # valgrind reads /proc/self/maps; other uids' processes stay invisible to children
            mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        pivot_root(root, root + "/.old")
        os.chdir("/")
        umount2("/.old", MNT_DETACH)
        os.rmdir("/.old")
        mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        report.filesystem_view = True
    except OSError as exc:
        report.problems.append(f"cannot build the read-only filesystem view ({exc})")
    try:
        unshare(CLONE_NEWPID)
        report.pid_namespace = True
    except OSError as exc:
        report.problems.append(f"cannot create a PID namespace ({exc.strerror})")
        _subreaper(report)
    return report


def _subreaper(report: IsolationReport) -> None:
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        report.problems.append("cannot become a subreaper")


