"""``evaluate``: run the samples and the reference pools with one meter, score them, write the report.

Why it exists: it is the one entry point behind ``effirl evaluate``. It runs the samples through the batch run (``effirl.batch``)
(verdicts, then counts; resumable), re-measures every involved task's references the same way, refuses to
compare counts from different meters or inputs, scores each task (``scoring.score_task``), then writes
``results.jsonl`` (each record with ``reward``, ``dps``, ``dps_norm``, ``beyond``, ``net_ratio``),
``summary.json``, ``report.md`` and the PNG figures into the output folder.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from effirl.batch import Progress, RunSpec, record_run, run
from effirl.errors import EffirlError
from effirl.evaluation import markdown, plots
from effirl.evaluation.consistency import check_inputs, check_meters, check_resume
from effirl.evaluation.references import REFERENCE_RESULTS, measure_references, write_reference_samples
from effirl.evaluation.scoring import SampleOutcome, TaskScore, Tie, score_task, total
from effirl.evaluation.summary import Summary, TaskRow, aggregate, role_metrics
from effirl.execution.verdict import Status
from effirl.samples import read_records, read_samples
from effirl.scoring.reward import RewardConfig
from effirl.tasks import Task, by_id, load

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.md"


@dataclass(frozen=True)
class EvalConfig:
    """How samples are scored. ``min_correct``/``max_profile``: EvalPerf's task rules (it uses 10 and 20)."""

    reward: RewardConfig = field(default_factory=RewardConfig)
    min_correct: int = 1
    max_profile: int = 20
    tie: Tie | None = None  # None: EvalPerf's noise term for instruction counts, 5 % for other units


def _noop(phase: str, done: int, total: int) -> None:
    return None


def evaluate(spec: RunSpec, progress: Progress = _noop, config: EvalConfig | None = None) -> Summary:
    """Evaluate ``spec.samples`` (default: the suite's references) on ``spec.suite``; see the module doc."""
    cfg = config or EvalConfig()
    if spec.meter is None:
        raise EffirlError("evaluate needs a meter (perf, callgrind or cputime)")
    tasks = load(spec.suite, spec.source)
    index = by_id(tasks)
    if spec.samples is not None:
        wanted = {s.task_id for s in read_samples(spec.samples, index)}  # fails early on a bad file
        involved = [t for t in tasks if t.id in wanted]
    else:
        involved = tasks
    layout = write_reference_samples(spec.out, involved)
    check_resume([*_existing(spec.out / RESULTS), *_existing(spec.out / REFERENCE_RESULTS)], spec.meter,
                 spec.inputs_seed, _planned_scales(spec, involved))

    records: list[dict[str, Any]] = []
    if spec.samples is not None:
        log.info("evaluating %s on %d task(s)", spec.samples, len(involved))
        records = run(spec, progress)
    log.info("measuring the references of %d task(s)", len(layout.keys))
    refs = measure_references(spec, layout, progress)
    if spec.samples is None:  # the references are the samples: measured once, scored as samples
        records = [dict(refs[k]) for t in involved for k in layout.keys.get(t.id, []) if k in refs]
        record_run(replace(spec, samples=layout.path, results_name=RESULTS), read_samples(layout.path, index))

    meter = check_meters([*records, *refs.values()], spec.meter)
    if cfg.tie is None:
        unit = (meter or {}).get("unit", spec.meter.unit)
        cfg = replace(cfg, tie="evalperf" if unit == "instructions" else 0.05)
    scored = _score(involved, records, refs, layout.keys, cfg)
    _annotate(records, scored)
    _write_jsonl(spec.out / RESULTS, records)
    summary = _summarize(spec, cfg, tasks, records, scored, meter, refs)
    _write_outputs(spec.out, summary, scored)
    return summary


def _planned_scales(spec: RunSpec, tasks: list[Task]) -> dict[str, int]:
    """The generator scale each task's inputs will have in this run (as the batch run picks it), where known."""
    out = {}
    for t in tasks:
        scale = spec.scale or spec.scales.get(t.id) or t.default_scale
        if t.generator and scale is not None:
            out[t.id] = scale
    return out


def _existing(path: Path) -> list[dict[str, Any]]:
    """The records an earlier run left in ``path`` (cut or foreign lines skipped, as the batch run does)."""
    return read_records(path)


def _outcome(rec: dict[str, Any]) -> SampleOutcome:
    verdict = rec.get("verdict") or {}
    gate = verdict.get("status") == Status.PASS.value if verdict else None
    return SampleOutcome(status=rec["status"], count=total(rec.get("counts")), gate_passed=gate)


def _ref_count(rec: dict[str, Any] | None) -> float | None:
    if rec is None or rec.get("status") != Status.PASS.value:
        return None
    return total(rec.get("counts"))


def _dataset_scores(task: Task) -> list[float] | None:
    """EvalPerf ships cluster scores, one per reference; other suites have none."""
    scores = task.metadata.get("scores")
    if isinstance(scores, list) and task.references and len(scores) == len(task.references):
        return [float(s) for s in scores]
    return None


@dataclass
class Scored:
    task: Task
    score: TaskScore
    records: list[dict[str, Any]]
    ref_records: list[dict[str, Any] | None]
    inputs: dict[str, Any] | None


def _score(tasks: list[Task], records: list[dict[str, Any]], refs: dict[str, dict[str, Any]],
           keys: dict[str, list[str]], cfg: EvalConfig) -> list[Scored]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_task[rec["task_id"]].append(rec)
    out = []
    for task in tasks:
        recs = sorted(by_task.get(task.id, []), key=lambda r: r["index"])
        if not recs:
            continue
        ref_recs = [refs.get(k) for k in keys.get(task.id, [])]
        inputs = check_inputs(task.id, [*recs, *(r for r in ref_recs if r is not None)])
        score = score_task(task.id, [_outcome(r) for r in recs], [_ref_count(r) for r in ref_recs],
                           dataset_scores=_dataset_scores(task), reward_config=cfg.reward,
                           min_correct=cfg.min_correct, max_profile=cfg.max_profile,
                           tie=cfg.tie if cfg.tie is not None else "evalperf")
        out.append(Scored(task, score, recs, ref_recs, inputs))
    return out


def _annotate(records: list[dict[str, Any]], scored: list[Scored]) -> None:
    for item in scored:
        for rec, s in zip(item.records, item.score.samples, strict=True):
            rec.update(reward=s.reward, dps=s.dps, dps_norm=s.dps_norm, beyond=s.beyond, net_ratio=s.net_ratio)


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".scored.tmp")
    tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def _role(task: Task, rec: dict[str, Any]) -> str | None:
    """Whether a sample is the task's slowest, fastest or another reference (by its label), else None."""
    label = rec.get("reference")
    labels = [r.label for r in task.references]
    if not isinstance(label, str) or label not in labels or len(labels) < 2:
        return None
    i = labels.index(label)
    return "slowest reference" if i == 0 else "fastest reference" if i == len(labels) - 1 else "middle reference"


def _isolation(spec: RunSpec) -> dict[str, Any]:
    """The isolation asked for, and what the workers reported (kept from the last run when none started now)."""
    from effirl.execution import pool

    reported = sorted(getattr(pool, "_warned", set()))  # what the workers announced in this process
    if not reported and (spec.out / SUMMARY).exists():
        try:
            reported = list(json.loads((spec.out / SUMMARY).read_text())["isolation"]["reported"])
        except (ValueError, KeyError, TypeError):
            reported = []
    return {"requested": spec.sandbox.isolation, "reported": reported}


def _summarize(spec: RunSpec, cfg: EvalConfig, tasks: list[Task], records: list[dict[str, Any]],
               scored: list[Scored], meter: dict[str, Any] | None, refs: dict[str, dict[str, Any]]) -> Summary:
    by_difficulty: dict[str, list[TaskScore]] = defaultdict(list)
    roles: dict[str, list[tuple[Any, bool]]] = defaultdict(list)
    rows: list[TaskRow] = []
    low: list[dict[str, Any]] = []
    sources: Counter[str] = Counter()
    for item in scored:
        t, s = item.task, item.score
        by_difficulty[t.difficulty or "unknown"].append(s)
        for rec, sample in zip(item.records, s.samples, strict=True):
            role = _role(t, rec)
            if role is not None:
                roles[role].append((sample, rec["status"] == Status.PASS.value))
        flags = list(s.flags)
        if item.inputs is not None:
            sources[str(item.inputs.get("source"))] += 1
            if item.inputs.get("low_contrast"):
                flags.insert(0, f"low-contrast inputs ({item.inputs.get('source')})")
        if any(r is not None and r.get("measure_error") and r.get("status") == Status.PASS.value
               for r in item.ref_records):
            flags.append("performance inputs unavailable")
        rows.append(TaskRow(task_id=t.id, difficulty=t.difficulty, n_samples=s.n_samples, n_passed=s.n_passed,
                            pass_at_1=s.pass_at_1, mean_reward=s.mean_reward, dps=s.dps, dps_norm=s.dps_norm,
                            beyond=s.beyond, net=s.net, n_refs=s.n_refs, n_refs_failed=s.n_refs_failed,
                            n_clusters=len(s.ref_counts), canonical_count=s.canonical_count, inputs=item.inputs,
                            flags=flags))
        contrast = [f for f in flags if f.startswith(("low-contrast", "references indistinguishable", "tiny counts",
                                                      "no measured reference", "performance inputs"))]
        if contrast:
            low.append({"task_id": t.id, "reasons": contrast})
    order = ["slowest reference", "middle reference", "fastest reference"]
    ref_failures = [{"task_id": r["task_id"], "reference": r.get("reference"), "status": r["status"],
                     "error": r.get("measure_error") or (r.get("verdict") or {}).get("error_message")}
                    for r in refs.values() if r["status"] != Status.PASS.value]
    return Summary(
        suite=spec.suite,
        source=spec.source,
        samples=str(spec.samples) if spec.samples is not None else "references",
        overall=aggregate([i.score for i in scored]),
        by_difficulty={d: aggregate(v) for d, v in sorted(by_difficulty.items())},
        by_reference_role={r: role_metrics(roles[r]) for r in order if roles.get(r)},
        statuses=dict(Counter(r["status"] for r in records).most_common()),
        meter=meter,
        inputs={"seed": spec.inputs_seed, "scale": spec.scale, "repeats": spec.repeats,
                "calibrated_scales": len(spec.scales), "sources": dict(sources)},
        isolation=_isolation(spec),
        low_contrast_tasks=low,
        config={"reward": cfg.reward.model_dump(), "min_correct": cfg.min_correct,
                "max_profile": cfg.max_profile, "tie": cfg.tie, "tasks_in_suite": len(tasks), "reference_failures": ref_failures},
        tasks=rows,
        files={},
    )


def _write_outputs(out: Path, summary: Summary, scored: list[Scored]) -> None:
    points = [(i.task.id, i.task.difficulty, i.score.pass_at_1 or 0.0, i.score.dps_norm) for i in scored]
    by_group: dict[str, list[float]] = defaultdict(list)
    ref_ratios: list[float] = []
    for item in scored:
        canon = item.score.canonical_count
        if not canon:
            continue
        for rec, s in zip(item.records, item.score.samples, strict=True):
            if s.net_ratio is not None:
                group = _role(item.task, rec) or (item.task.difficulty or "unknown")
                by_group[group.replace(" reference", "")].append(s.net_ratio)
        ref_ratios += [c / canon for c in (total((r or {}).get("counts")) for r in item.ref_records
                                           if r is not None and r.get("status") == Status.PASS.value)
                       if c is not None]
    figures = {
        "Efficiency vs pass rate": plots.efficiency_vs_pass(points, out / plots.EFFICIENCY_VS_PASS).name,
        "Counts relative to the fastest reference":
            plots.counts_vs_reference(dict(sorted(by_group.items())), ref_ratios,
                                      out / plots.COUNTS_VS_REFERENCE).name,
    }
    summary.files = {"results": str(out / RESULTS), "references": str(out / REFERENCE_RESULTS),
                     "summary": str(out / SUMMARY), "report": str(out / REPORT),
                     "plots": [str(out / name) for name in figures.values()]}
    tmp = out / (SUMMARY + ".tmp")
    tmp.write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(out / SUMMARY)
    (out / REPORT).write_text(markdown.render(summary, figures), encoding="utf-8")
    log.info("wrote %s, %s and %d figure(s)", out / SUMMARY, out / REPORT, len(figures))
