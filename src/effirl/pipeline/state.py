"""Each stage's folder and its ``stage.json``: what it was made from, and whether it finished.

Why it exists: a pipeline run takes from minutes (the CPU miniature) to days (the paper's), and finished work
must never be redone or lost. A stage records the hash of its own config section and the digests of its input
folders; a rerun skips a finished stage whose record still matches, resumes an unfinished one (each stage's
package resumes from its own checkpoints or result lines), and refuses one whose inputs were removed or changed
since it ran, unless ``--force`` names it (or an earlier stage).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.errors import EffirlError

STAGE_FILE = "stage.json"
# Files a stage may add to its inputs' folders later without changing what they mean (a report re-drawn).
_VOLATILE = {STAGE_FILE, "report.md", "loss.png"}
LARGE_FILE = 256 * 1024 * 1024
# Cache files that readers add beside what they read (``datasets`` writes ``cache-*.arrow`` next to a dataset
# it maps): reading a stage's output must not make it look changed.
_CACHE = re.compile(r"^cache-[0-9a-f]+\.arrow$")


def config_hash(section: Any) -> str:
    """A short, stable hash of a stage's config section (any JSON-able value)."""
    text = json.dumps(section, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_digest(path: Path) -> str:
    """What a finished stage's output folder holds: names, sizes and contents of its files, hashed.

    Only the stage's result files count (checkpoints of a finished training are left out: they are resume
    state, not output). Files over ``LARGE_FILE`` (a 7B model's shards) are known by size and modification
    time: hashing them at every rerun would take minutes.
    """
    h = hashlib.sha256()
    if not path.exists():
        return "missing"
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _VOLATILE
                   and not _CACHE.match(p.name) and "checkpoints" not in p.relative_to(path).parts)
    for p in files:
        rel = p.relative_to(path).as_posix()
        st = p.stat()
        h.update(rel.encode() + b"\0" + str(st.st_size).encode() + b"\0")
        if st.st_size > LARGE_FILE:  # model weights of billions of parameters: size and time, not content
            h.update(str(st.st_mtime_ns).encode())
            continue
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class StageRecord:
    """The content of ``stage.json``."""

    name: str
    config_hash: str
    inputs: dict[str, str] = field(default_factory=dict)  # input folder (relative to the run) -> its digest
    finished: bool = False
    output_digest: str | None = None
    started: float | None = None
    finished_at: float | None = None
    wall_s: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # what the stage made (model paths, stats)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Stage:
    """One stage's folder under the run folder."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.run_dir = run_dir
        self.name = name
        self.dir = run_dir / name
        self.file = self.dir / STAGE_FILE

    def read(self) -> StageRecord | None:
        if not self.file.is_file():
            return None
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            return StageRecord(**data)
        except (ValueError, TypeError) as exc:
            raise EffirlError(f"{self.file} is not a stage record ({exc}); remove it or use --force "
                              f"{self.name}") from None

    def write(self, record: StageRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.as_dict(), indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.file)

    def input_digests(self, inputs: list[str]) -> dict[str, str]:
        return {rel: folder_digest(self.run_dir / rel) for rel in inputs}

    def status(self, section_hash: str, inputs: list[str]) -> str:
        """``todo`` (never started), ``resume`` (started, same config), ``done`` (finished and still valid).

        Raises when the stage ran with another config or its inputs were removed or changed since.
        """
        rec = self.read()
        if rec is None:
            return "todo"
        if rec.config_hash != section_hash:
            raise EffirlError(f"stage {self.name} in {self.dir} was made with another config (its section "
                              f"changed since); rerun with --force {self.name}, or use another --out")
        now = self.input_digests(list(rec.inputs))
        for rel, digest in rec.inputs.items():
            if now.get(rel) == "missing":
                raise EffirlError(f"stage {self.name}: its input {self.run_dir / rel} was removed since it "
                                  f"ran; rerun with --force {rel.split('/')[0]}")
            if now.get(rel) != digest:
                raise EffirlError(f"stage {self.name}: its input {self.run_dir / rel} changed since it ran; "
                                  f"rerun with --force {self.name}")
        if not rec.finished:
            return "resume"
        if rec.output_digest is not None:
            now_out = folder_digest(self.dir / "out")
            if now_out != rec.output_digest:
                what = "was removed" if now_out == "missing" else "changed"
                raise EffirlError(f"stage {self.name}: its output {self.dir / 'out'} {what} since it finished; "
                                  f"rerun with --force {self.name}")
        return "done"

    def begin(self, section_hash: str, inputs: list[str]) -> StageRecord:
        rec = self.read()
        if rec is None or rec.finished:
            rec = StageRecord(name=self.name, config_hash=section_hash)
        rec.inputs = self.input_digests(inputs)
        rec.started = rec.started or time.time()
        self.write(rec)
        return rec

    def finish(self, rec: StageRecord, outputs: dict[str, Any]) -> None:
        rec.finished = True
        rec.finished_at = time.time()
        rec.wall_s = round(rec.finished_at - (rec.started or rec.finished_at), 1)
        rec.outputs = outputs
        rec.output_digest = folder_digest(self.dir / "out")
        self.write(rec)

    def clear(self) -> None:
        """Forget this stage entirely (``--force``)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
