"""What a worker's isolation could enforce: built by the launcher, passed to the server, shown to the user.

Kept apart from :mod:`effirl.execution.confine` so that the fork server, whose memory every child inherits
and whose size every fork pays for, does not import ``dataclasses`` (and ``inspect`` with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IsolationReport:
    """What a worker could enforce; shown once to the user, loudly when something is missing."""

    namespaces: bool = False
    user_namespace: bool = False
    network_isolated: bool = False
    pid_namespace: bool = False
    filesystem_view: bool = False
    uid_drop: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.namespaces and self.network_isolated and self.pid_namespace and self.filesystem_view

    def describe(self) -> str:
        if self.full:
            who = "an unprivileged uid per worker" if self.uid_drop else "a user namespace"
            return f"isolation: namespaces (no network, own PID namespace, read-only minimal filesystem), {who}"
        missing = "; ".join(self.problems) or "namespaces disabled"
        return (
            "WARNING: effirl runs untrusted code WITHOUT full OS isolation (" + missing + "). Still enforced: "
            "expected outputs never enter the child, verdicts decided by the parent, rlimits (CPU, memory, file "
            "size, open files, processes), wall-clock kills of the process group, fresh process per measurement, "
            "private temp folder, audit hooks against native code."
        )
