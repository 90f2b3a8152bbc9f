"""Length-prefixed ``marshal`` messages over pipes, between the trusted parent and its own fork servers.

Messages are plain values (dicts of str, int, bytes, lists). Untrusted children never hold these pipes. No
``pickle`` and no sockets: the fork server imports as little as it can, since every module it holds makes
every fork dearer.
"""

from __future__ import annotations

import marshal
import os
from typing import Any

_HEADER = 8
PID_BYTES = 4  # a child's pid, as the fork server writes it on its pid pipe (pid_max is at most 2**22)


def send(fd: int, message: Any) -> None:
    body = marshal.dumps(message, 2)  # no reference table: less for the fork server to allocate per message
    data = memoryview(len(body).to_bytes(_HEADER, "little") + body)
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    if n == 0:
        return b""
    first = os.read(fd, n)
    if len(first) == n or not first:
        return first or None
    chunks = [first]
    n -= len(first)
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(fd: int) -> Any:
    """The next message, or ``None`` when the other side has gone."""
    header = _read_exact(fd, _HEADER)
    if header is None:
        return None
    body = _read_exact(fd, int.from_bytes(header, "little"))
    if body is None:
        return None
    return marshal.loads(body)
