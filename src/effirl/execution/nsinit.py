"""PID 1 of a worker's PID namespace: hides effirl's sources, mounts /proc, and sweeps leftover processes.

Started by the fork server as its first child (so it is the namespace's init) as a separate program, so that
its ``ctypes`` never enters the server's memory. On each request it kills every other process in the
namespace (daemons, ``setsid`` escapes) and acknowledges; when the server goes away (its pipe closes) it exits
and the kernel kills whatever is left in the namespace.
"""

from __future__ import annotations

import os
import signal
import sys

from effirl.execution import channel, isolation


def main() -> None:
    cmd_r, ack_w, mount_proc, hide = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "proc", sys.argv[4:]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # orphans reparented here are reaped by the kernel
    problems = []
    for path in hide:
        try:
            isolation.umount2(path, isolation.MNT_DETACH)
        except OSError as exc:
            problems.append(f"cannot hide {path} ({exc.strerror})")
    if mount_proc:
        try:
            isolation.mount("proc", "/proc", "proc", isolation.MS_NOSUID | isolation.MS_NODEV | isolation.MS_NOEXEC)
        except OSError:
            pass  # /proc stays empty (e.g. in a user namespace): nothing depends on it
    channel.send(ack_w, problems)
    while True:
        if not os.read(cmd_r, 1):
            os._exit(0)
        try:
            os.kill(-1, signal.SIGKILL)  # every process of the namespace but init itself
        except ProcessLookupError:
            pass
        # Leftovers are this process's children (orphans are reparented here). With SIGCHLD ignored, wait blocks
        # until every one has exited: once acknowledged, no process of the run holds a pipe or writes anything.
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            pass
        os.write(ack_w, b"k")


if __name__ == "__main__":
    main()
