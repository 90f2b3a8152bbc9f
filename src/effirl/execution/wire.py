"""What crosses the boundary between the untrusted child and the trusted parent, and how.

The child turns each return value into *plain data* (exact built-in types only: no subclasses, no arbitrary
objects; LeetCode ``ListNode``/``TreeNode`` become lists) and sends it as a length-prefixed ``marshal`` frame.
The parent treats every byte as hostile: frames are bounded, decoding errors are protocol violations, and a
decoded value is checked again for exact plain types before anything compares it.
"""

from __future__ import annotations

import collections
import marshal
import struct
from typing import Any

HEADER = struct.Struct("<Ici")  # payload length, kind, test index (negative: before any test)
MAX_FRAME = 64 * 1024 * 1024  # one return value may not exceed this many bytes

KIND_VALUE = b"V"  # payload: marshal of a plain value
KIND_ERROR = b"E"  # payload: marshal of (exception type name, message)
KIND_NO_ENTRY = b"N"  # payload: marshal of a message
KIND_DONE = b"D"  # every input was run
KIND_READY = b"R"  # a measured child is about to run the program: its count starts (meters that wait for it)

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
# The standard library's dict flavours compare equal to plain dicts; they travel as plain dicts.
_DICT_LIKE = (collections.Counter, collections.OrderedDict, collections.defaultdict)
_CONTAINERS = (list, tuple, set, frozenset)
MAX_DEPTH = 200
MAX_LINKED = 10_000_000


class NotPlainError(TypeError):
    """A value holds something other than exact built-in data."""


def _is_node(obj: Any, *fields: str) -> bool:
    return all(hasattr(type(obj), f) or hasattr(obj, f) for f in fields)


def _linked_list(node: Any) -> list[Any]:
    out: list[Any] = []
    seen: set[int] = set()
    while node is not None:
        if id(node) in seen or len(out) > MAX_LINKED:
            raise NotPlainError("linked list has a cycle or is too long")
        seen.add(id(node))
        out.append(to_plain(node.val))
        node = node.next
    return out


def _tree(root: Any) -> list[Any]:
    """LeetCode's level-order serialization with trailing ``None`` removed."""
    out: list[Any] = []
    queue = [root]
    seen: set[int] = set()
    i = 0
    while i < len(queue):
        node = queue[i]
        i += 1
        if node is None:
            out.append(None)
            continue
        if id(node) in seen or len(queue) > MAX_LINKED:
            raise NotPlainError("tree has a cycle or is too large")
        seen.add(id(node))
        out.append(to_plain(node.val))
        queue.append(node.left)
        queue.append(node.right)
    while out and out[-1] is None:
        out.pop()
    return out


def _numpy_plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise NotPlainError(f"cannot convert {type(value).__name__}")
    return tolist()


def to_plain(value: Any, depth: int = 0) -> Any:
    """Convert a return value to exact built-in data, or raise :class:`NotPlainError`.

    Runs in the child. Whatever it returns is checked again by :func:`check_plain` in the parent, so a
    tampered converter gains nothing.
    """
    if depth > MAX_DEPTH:
        raise NotPlainError("value is nested too deeply")
    t = type(value)
    if t in _SCALARS:
        return value
    if t in _CONTAINERS:
        return t(to_plain(v, depth + 1) for v in value)
    if t is dict or t in _DICT_LIKE:
        return {to_plain(k, depth + 1): to_plain(v, depth + 1) for k, v in value.items()}
    if t.__name__ == "ListNode" and _is_node(value, "val", "next"):
        return _linked_list(value)
    if t.__name__ == "TreeNode" and _is_node(value, "val", "left", "right"):
        return _tree(value)
    if t.__module__ == "numpy":
        return to_plain(_numpy_plain(value), depth + 1)
    raise NotPlainError(f"returned an object of type {t.__module__}.{t.__qualname__}, not plain data")


def check_plain(value: Any, depth: int = 0) -> None:
    """Raise :class:`NotPlainError` unless ``value`` is made only of exact built-in types (parent side)."""
    if depth > MAX_DEPTH:
        raise NotPlainError("value is nested too deeply")
    t = type(value)
    if t in _SCALARS:
        return
    if t in _CONTAINERS:
        for v in value:
            check_plain(v, depth + 1)
        return
    if t is dict:
        for k, v in value.items():
            check_plain(k, depth + 1)
            check_plain(v, depth + 1)
        return
    raise NotPlainError(f"frame holds a {t.__name__}")


MARSHAL_VERSION = 2  # no back-references: a frame cannot describe a shared-structure (DAG) bomb


def encode(kind: bytes, index: int = 0, payload: Any = None) -> bytes:
    """One frame: header then the marshalled payload (``None`` payload → empty)."""
    body = b"" if payload is None else marshal.dumps(payload, MARSHAL_VERSION)
    return HEADER.pack(len(body), kind, index) + body


_FIXED = {ord("N"): 0, ord("T"): 0, ord("F"): 0, ord("i"): 4, ord("g"): 8, ord("y"): 16}
_SIZED = {ord("s"): 1, ord("u"): 1, ord("t"): 1, ord("a"): 1, ord("A"): 1}  # 4-byte length, then bytes
_SHORT = {ord("z"), ord("Z")}  # 1-byte length, then bytes
_CONTAINER = {ord("("), ord("["), ord("<"), ord(">")}  # 4-byte count, then items
_SMALL_TUPLE = ord(")")  # 1-byte count
_DICT, _DICT_END, _LONG = ord("{"), ord("0"), ord("l")


def prescan(body: bytes) -> None:
    """Check a marshal (version 2) stream before ``marshal.loads`` touches it.

    Only plain-data type codes, no back-references, and every announced length or count must fit in the
    bytes that remain — so a five-byte frame cannot make the parent allocate gigabytes.
    """
    n = len(body)
    pos = 0
    stack = [1]  # items still expected at each open level (dicts: -1, until their end marker)
    while stack:
        if stack[-1] == 0:
            stack.pop()
            continue
        if pos >= n:
            raise ValueError("truncated frame")
        code = body[pos] & 0x7F
        if body[pos] & 0x80:
            raise ValueError("back-references are not allowed")
        pos += 1
        if stack[-1] > 0:
            stack[-1] -= 1
        if code == _DICT_END:
            if stack[-1] != -1:
                raise ValueError("unexpected dict end")
            stack.pop()
            continue
        if code in _FIXED:
            pos += _FIXED[code]
        elif code in _SIZED or code == _LONG or code in _CONTAINER:
            if pos + 4 > n:
                raise ValueError("truncated frame")
            count = int.from_bytes(body[pos:pos + 4], "little", signed=True)
            pos += 4
            if code == _LONG:
                count = abs(count)  # the sign of the digit count is the number's sign
            if count < 0 or count > n - pos:
                raise ValueError("a length exceeds the frame")
            if code in _SIZED:
                pos += count
            elif code == _LONG:
                pos += 2 * count
            else:
                stack.append(count)
        elif code in _SHORT:
            if pos >= n:
                raise ValueError("truncated frame")
            pos += 1 + body[pos]
        elif code == _SMALL_TUPLE:
            if pos >= n:
                raise ValueError("truncated frame")
            stack.append(body[pos])
            pos += 1
        elif code == _DICT:
            stack.append(-1)
        else:
            raise ValueError(f"type code {chr(code)!r} is not plain data")
        if pos > n:
            raise ValueError("truncated frame")
    if pos != n:
        raise ValueError("trailing bytes in frame")


def decode_payload(body: bytes) -> Any:
    """Decode a frame body from the untrusted side; any failure is a :class:`ValueError`."""
    if not body:
        return None
    prescan(body)
    try:
        value = marshal.loads(body)
    except (EOFError, ValueError, TypeError, MemoryError) as exc:
        raise ValueError(f"undecodable frame: {exc}") from None
    try:
        check_plain(value)
    except NotPlainError as exc:
        raise ValueError(str(exc)) from None
    return value


class FrameReader:
    """Incremental parser of the child's result stream (parent side)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        """Add bytes; return every complete ``(kind, index, body)`` frame. Raises ValueError on garbage."""
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            length, kind, index = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
            if kind not in (KIND_VALUE, KIND_ERROR, KIND_NO_ENTRY, KIND_DONE, KIND_READY):
                raise ValueError(f"unknown frame kind {kind!r}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((kind, index, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)
