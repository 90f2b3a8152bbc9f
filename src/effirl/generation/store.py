"""The samples file: evalplus-style JSONL, one line per sample, appended and flushed as samples finish.

Why it exists: sampling 100 solutions per problem takes hours, so a run must survive a kill and resume with
only the missing (task_id, sample_index) pairs. Every line records the settings that shape its sample (model,
backend, strategy, temperature, top-p, token limit, seed, prompt-template digest); a resume checks them line
by line and refuses a file of another run with one line naming the difference, before touching it. A last line
cut by a kill is dropped (and redone); a lock keeps two runs from appending to the same file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError, InputFormatError

log = logging.getLogger(__name__)

# Top-level fields of a sample line that must match for a file to be resumed; the template digest is in
# metadata["templates"].
IDENTITY = ("model", "backend", "strategy", "temperature", "top_p", "max_new_tokens", "seed")

Key = tuple[str, int]


class SampleStore:
    """Where samples go: the keys already there, and :meth:`write`."""

    done: set[Key]
    existing: int

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryStore(SampleStore):
    """Samples kept in memory (the Python API without an output file)."""

    def __init__(self) -> None:
        self.done = set()
        self.existing = 0
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.done.add((record["task_id"], record["sample_index"]))


class SampleFile(SampleStore):
    """An append-only samples file of one run (see the module docstring)."""

    def __init__(self, path: str | Path, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        self.identity = identity
        if self.path.is_dir():
            raise EffirlError(f"{self.path} is a folder; --out names the samples file (e.g. samples.jsonl)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = not self.path.exists()
        self._fh = self.path.open("a", encoding="utf-8")
        try:
            self._lock()
            self.done = self._scan()
        except BaseException:
            self.close()
            raise
        self.existing = len(self.done)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EffirlError(f"{self.path} is being written by another run (it holds the file's lock); "
                              "wait for it or choose another --out") from None

    def _check(self, rec: Any, lineno: int) -> Key:
        src = str(self.path)
        if not isinstance(rec, dict):
            raise InputFormatError(src, f"expected a JSON object, got {type(rec).__name__}", row=lineno)
        if "model" not in rec or "sample_index" not in rec:
            raise InputFormatError(src, "not a sample written by `effirl generate` (no 'model' or "
                                        "'sample_index'); choose another --out", row=lineno)
        for name in IDENTITY:
            theirs, ours = rec.get(name), self.identity[name]
            if theirs != ours:
                raise InputFormatError(src, f"belongs to another run ({name} {theirs!r} there, {ours!r} "
                                            "here); choose another --out, or rerun with that run's settings "
                                            "to resume it", row=lineno)
        meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
        if meta.get("templates") != self.identity["templates"]:
            theirs = meta.get("templates")
            raise InputFormatError(src, f"belongs to another run (prompt templates {theirs!r} "
                                        f"there, {self.identity['templates']!r} here: another "
                                        "--prompt-file?); choose another --out", row=lineno)
        task_id, index = rec.get("task_id"), rec.get("sample_index")
        if not isinstance(task_id, str):
            raise InputFormatError(src, "missing or not a string", row=lineno, field="task_id")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise InputFormatError(src, "missing or not a non-negative integer", row=lineno,
                                   field="sample_index")
        return task_id, index

    def _scan(self) -> set[Key]:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        done: set[Key] = set()
        lineno = 0
        for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputFormatError(str(self.path), f"not valid JSON ({exc}); this line is not the last, "
                                                       "so it was not cut by a kill: fix or remove it",
                                       row=lineno) from None
            done.add(self._check(rec, lineno))
        tail = data[end:]
        if tail.strip():
            try:
                rec = json.loads(tail)
            except (json.JSONDecodeError, UnicodeDecodeError):
                rec = None
            if rec is not None:  # a complete last line without its newline (written by another tool)
                done.add(self._check(rec, lineno + 1))
                self._fh.write("\n")
                self._fh.flush()
                return done
            log.warning("%s: dropped its last line (%d bytes), cut by an interruption; that sample is redone",
                        self.path, len(tail))
        if tail:
            self._fh.flush()
            self._fh.truncate(end)
        return done

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done.add((record["task_id"], record["sample_index"]))

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        if self._created and self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()
