"""Processes of the tests' sandboxes and actors, read from /proc: what is still running below a process."""

from __future__ import annotations

import os


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, through the children of each of its threads."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        kids: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    kids += [int(k) for k in fh.read().split()]
        except OSError:
            pass
        out += kids
        stack += kids
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
