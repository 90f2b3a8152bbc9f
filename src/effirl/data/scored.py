"""A scored folder joined back with what was scored: each result with its sample's code, prompt and response.

Why it exists: ``effirl evaluate``/``measure`` write one result per sample (status, counts) keyed
``task_id#<line>`` of the samples file, and ``run.json`` says which samples file (and its sha256) each results
file scored. Training data needs the other half of each row: the chat messages that produced the sample (or
the default prompt of its task) and the response itself. A samples file that is missing, or has changed since
it was scored, is refused: a row must never be paired with a verdict that belongs to other code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effirl.batch import RUN_FILE, sample_digest, samples_sha256
from effirl.errors import EffirlError, InputFormatError
from effirl.execution.checking import Sample
from effirl.execution.parse import program_from_sample
from effirl.execution.verdict import Status
from effirl.samples import reference_samples
from effirl.tasks import Task, by_id, load
from effirl.tasks._records import read_jsonl

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
Message = dict[str, str]
PromptFn = Callable[[Task], list[Message]]
Progress = Callable[[str, int, int], None]  # (phase, done, total)


def default_prompt(task: Task) -> list[Message]:
    """The generation issue's default ("direct") prompt of a task, for samples that carry no ``messages``."""
    try:
        from effirl.generation.prompts import render
    except ImportError as exc:
        raise EffirlError(f"samples without 'messages' need the default prompt of effirl.generation.prompts, "
                          f"which is not importable here ({exc})") from None
    return [dict(m) for m in render(task, "direct")]


@dataclass(frozen=True)
class ScoredSample:
    """One sample with its verdict and count, ready to become a training row."""

    key: str  # "task_id#line" of the samples file
    task_id: str
    index: int
    status: str
    count: float | None  # total count over the performance inputs; None: failed or not measured
    prompt: list[Message]  # the chat messages that produced the response (the user turn(s))
    response: str  # the assistant's content
    code: str | None  # the program that ran (None: no parseable code)

    @property
    def passed(self) -> bool:
        return self.status == Status.PASS.value

    @property
    def measured(self) -> bool:
        return self.count is not None


@dataclass
class ScoredSet:
    """Everything in a scored folder, joined."""

    folder: Path
    suite: str
    source: str | None
    samples_path: Path | None  # None: the suite's own references
    tasks: dict[str, Task]
    samples: list[ScoredSample]
    meter: str | None  # the meter of the counts (None: no counts at all)
    unscored: int = 0  # sample lines without a result (an interrupted run)
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return any(s.measured for s in self.samples)


def _read_run(folder: Path, results_name: str) -> dict[str, Any]:
    path = folder / RUN_FILE
    if not (folder / results_name).is_file():
        raise EffirlError(f"{folder} has no {results_name}: not an effirl evaluate or measure output folder")
    if not path.is_file():
        raise EffirlError(f"{folder} has no {RUN_FILE} saying which samples file it scored (made by an older "
                          f"effirl?); run effirl evaluate on it again")
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFormatError(str(path), f"not valid JSON ({exc})") from None
    entry = runs.get(results_name) if isinstance(runs, dict) else None
    if not (isinstance(entry, dict) and isinstance(entry.get("suite"), str) and "samples_sha256" in entry):
        raise InputFormatError(str(path), f"no record of the samples behind {results_name}",
                               field=results_name)
    return entry


def _samples_file(folder: Path, entry: dict[str, Any], override: Path | None) -> Path | None:
    """The samples file to join: the override, the recorded path, or a file of that name in ``folder``."""
    if override is not None:
        if not Path(override).is_file():
            raise EffirlError(f"samples file {override} does not exist")
        return Path(override)
    recorded = entry.get("samples")
    if recorded is None:
        return None
    path = Path(recorded)
    if path.is_file():
        return path
    beside = folder / path.name
    if beside.is_file():  # the folder moved with its own copy (evaluate's reference_samples.jsonl)
        return beside
    raise EffirlError(f"the samples file {recorded} that {folder} scored is missing; pass --samples to point "
                      f"at a copy (its sha256 must be {str(entry['samples_sha256'])[:16]}...)")


def _messages(value: Any, source: str, row: int) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise InputFormatError(source, "expected a non-empty list of chat messages", row=row,
                               field="messages")
    out = []
    for m in value:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise InputFormatError(source, "each message needs a string 'role' and 'content'", row=row,
                                   field="messages")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _total(counts: Any) -> float | None:
    if not isinstance(counts, list) or not counts or any(not isinstance(c, (int, float)) for c in counts):
        return None
    return float(sum(counts))


def _results(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The records of a results file with their line numbers (a line cut by an interruption is skipped)."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                out.append((lineno, rec))
    return out


def load_scored(folder: str | Path, samples: str | Path | None = None, prompt_fn: PromptFn | None = None,
                results_name: str = RESULTS, progress: Progress | None = None) -> ScoredSet:
    """Join ``folder/results.jsonl`` with the samples it scored (checked by sha256) and the suite's tasks.

    ``samples``: where the samples file is now, if it has moved. ``prompt_fn``: the prompt of a sample without
    ``messages`` (default: the generation's "direct" prompt).
    """
    folder = Path(folder)
    entry = _read_run(folder, results_name)
    path = _samples_file(folder, entry, Path(samples) if samples is not None else None)
    suite, source = entry["suite"], entry.get("source")
    tasks = by_id(load(suite, source))
    lines: dict[int, dict[str, Any]]
    if path is None:
        refs: list[Sample] = reference_samples(tasks.values())
        digest = samples_sha256(None, refs)
        lines = {s.index: s.record for s in refs}
        source_name = f"the references of {suite}"
    else:
        digest = samples_sha256(path, [])
        source_name = str(path)
    if digest != entry["samples_sha256"]:
        raise EffirlError(f"{source_name} has changed since {folder} scored it (sha256 {digest[:16]}... now, "
                          f"{str(entry['samples_sha256'])[:16]}... then); score it again")
    if path is not None:
        lines = {row.index: row.data for row in read_jsonl(path)}
    prompt_of = prompt_fn or default_prompt
    default_prompts: dict[str, list[Message]] = {}
    results_path = folder / results_name
    joined: list[ScoredSample] = []
    meters: set[str] = set()
    records = _results(results_path)
    for n, (lineno, rec) in enumerate(records, start=1):
        if progress is not None and (n % 500 == 0 or n == len(records)):
            progress("join results and samples", n, len(records))
        task_id, index = rec.get("task_id"), rec.get("index")
        sample = lines.get(index) if isinstance(index, int) else None
        if sample is None or sample.get("task_id") != task_id or task_id not in tasks:
            raise InputFormatError(str(results_path), f"result {rec.get('key')!r} matches no line of "
                                   f"{source_name} (scored from another samples file?)", row=lineno)
        if "sample_digest" in rec and rec["sample_digest"] != sample_digest(sample):
            raise InputFormatError(str(results_path), f"result {rec['key']!r} was scored from another "
                                   f"version of line {index} of {source_name}", row=lineno)
        task = tasks[task_id]
        if "messages" in sample:
            prompt = _messages(sample["messages"], source_name, index)
        else:
            if task_id not in default_prompts:
                default_prompts[task_id] = prompt_of(task)
            prompt = [dict(m) for m in default_prompts[task_id]]
        code = program_from_sample(task, sample)
        response = _response(sample, "messages" in sample, code, task)
        status = str(rec.get("status"))
        count = _total(rec.get("counts")) if status == Status.PASS.value else None
        if count is not None and isinstance(rec.get("meter"), dict):
            meters.add(str(rec["meter"].get("name")))
        joined.append(ScoredSample(key=str(rec["key"]), task_id=task_id, index=index, status=status,
                                   count=count, prompt=prompt, response=response, code=code))
    if len(meters) > 1:
        raise EffirlError(f"{results_path} mixes counts of several meters ({', '.join(sorted(meters))}); "
                          "counts of different meters cannot be compared")
    unscored = len(lines) - len({s.index for s in joined})
    out = ScoredSet(folder=folder, suite=suite, source=source, samples_path=path, tasks=tasks, samples=joined,
                    meter=next(iter(meters), None), unscored=unscored)
    if unscored:
        out.notes.append(f"{unscored} sample(s) of {source_name} have no result in {results_path} "
                         "(an unfinished run)")
    log.info("joined %d results of %s with %s", len(joined), folder, source_name)
    return out


def _response(sample: dict[str, Any], has_messages: bool, code: str | None, task: Task) -> str:
    """The assistant's content.

    With ``messages`` (a model's sample): the response exactly as the model wrote it (``solution``, or the
    ``completion``). Without (a reference, an evalplus sample), the row is given the default prompt, which
    asks for one fenced Python block: the answer is then the program, fenced (a markdown or prose solution as
    written).
    """
    if has_messages:
        solution = sample.get("solution")
        return solution if isinstance(solution, str) else str(sample["completion"])
    solution = sample.get("solution")
    if isinstance(solution, str) and ("```" in solution or code is None):
        return solution  # already markdown, or no code at all (prose): as written
    if code is None:
        return task.prompt + str(sample.get("completion") or "")
    return "```python\n" + code.strip("\n") + "\n```"
