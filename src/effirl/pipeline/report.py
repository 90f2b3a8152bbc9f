"""The run's results for people: ``summary.json``, ``report.md`` (shaped like the paper's Table 7) and figures.

Why it exists: the point of a pipeline run is the comparison of its models (base, SFT, DPO, RL arms) on the
same evaluation, and of RL arms over seeds. This module only reads what the stages wrote (the evaluation's
``metrics.json``, each trainer's ``metrics.jsonl``, each stage's ``stage.json``) and lays it out.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from effirl.pipeline.config import PipelineConfig

SUMMARY = "summary.json"
REPORT = "report.md"
TRADEOFF_PLOT = "pass_vs_dps.png"
CURVES_PLOT = "rl_curves.png"
FIELDS = ("pass_at_1", "dps_norm", "beyond", "reward_mean")
LABELS = {"pass_at_1": "pass@1", "dps_norm": "DPS_norm", "beyond": "Beyond", "reward_mean": "reward"}


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _arm(name: str) -> str:
    """The arm of a model name: ``rloo-s1`` -> ``rloo``; other names are their own arm."""
    return re.sub(r"-s\d+$", "", name)


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def arms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (suite, split, arm): the mean and sample sd of each figure over the arm's seeds."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["suite"], r["split"], _arm(r["name"]))].append(r)
    out = []
    for (suite, split, arm), members in grouped.items():
        entry: dict[str, Any] = {"suite": suite, "split": split, "arm": arm, "n": len(members)}
        for f in FIELDS:
            vals = [m[f] for m in members if m.get(f) is not None]
            entry[f] = mean_sd(vals) if vals else None
        out.append(entry)
    return out


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        mean, sd = value
        return f"{mean * scale:.{digits}f}" + (f" ± {sd * scale:.{digits}f}" if sd is not None else "")
    return f"{value * scale:.{digits}f}"


def _delta(value: float | None, base: float | None, scale: float, digits: int) -> str:
    if value is None or base is None:
        return ""
    d = (value - base) * scale
    return f" ({'+' if d >= 0 else ''}{d:.{digits}f})"


_SCALE = {"pass_at_1": (100.0, 1), "dps_norm": (1.0, 1), "beyond": (100.0, 1), "reward_mean": (1.0, 3)}


def table7(rows: list[dict[str, Any]], arm_rows: list[dict[str, Any]]) -> str:
    """Per (suite, split): one line per model (or arm, mean ± sd over seeds), each figure with its change from
    the base model."""
    parts = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in arm_rows:
        groups[(r["suite"], r["split"])].append(r)
    for (suite, split), members in groups.items():
        base = next((m for m in members if m["arm"] == "base"), None)
        parts.append(f"### {suite}, {split} split\n")
        parts.append("| model | seeds | pass@1 (%) | DPS_norm | Beyond (%) | reward |")
        parts.append("| --- | --- | --- | --- | --- | --- |")
        for m in members:
            cells = []
            for f in FIELDS:
                scale, digits = _SCALE[f]
                value = m[f]
                mean = value[0] if isinstance(value, tuple) else None
                base_mean = base[f][0] if base and isinstance(base[f], tuple) else None
                cells.append(_fmt(value, scale, digits)
                             + ("" if m is base else _delta(mean, base_mean, scale, digits)))
            parts.append(f"| {m['arm']} | {m['n']} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def _curves(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each RL run's periodic evaluations (``step``, ``pass@1``, ``dps_norm``, ``reward``) from its metrics."""
    from effirl.training.metrics import METRICS
    from effirl.training.rl_curves import eval_rows

    found: dict[str, list[dict[str, Any]]] = {}
    root = out / "rl" / "out"
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = eval_rows(folder / METRICS)
        if rows:
            found[folder.name] = rows
    return found


def write_report(config: PipelineConfig, out: Path, ctx: Any = None) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and the figures of the run in ``out``; returns their paths."""
    from effirl.pipeline import plots

    rows = _read(out / "evaluate" / "out" / "metrics.json") or []
    arm_rows = arms(rows)
    curves = _curves(out)
    stages = {}
    for name in ("base", "sample", "score", "sft", "dpo_data", "dpo", "rl", "evaluate"):
        rec = _read(out / name / "stage.json")
        if rec is not None:
            stages[name] = {"finished": rec.get("finished"), "wall_s": rec.get("wall_s"),
                            "outputs": rec.get("outputs")}
    figures: dict[str, str] = {}
    if rows:
        figures["pass@1 vs DPS_norm"] = plots.tradeoff(rows, config, out / TRADEOFF_PLOT).name
    if curves:
        figures["RL training curves"] = plots.curves(curves, out / CURVES_PLOT).name
    summary = {
        "name": config.name,
        "stages": [{k: r.get(k) for k in ("name", "model", "suite", "split", *FIELDS)} for r in rows],
        "arms": [{**a, **{f: list(a[f]) if isinstance(a[f], tuple) else None for f in FIELDS}} for a in arm_rows],
        "runs": stages,
        "rl_curves": curves,
        "files": {"report": str(out / REPORT), "figures": [str(out / f) for f in figures.values()]},
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    (out / REPORT).write_text(render(config, rows, arm_rows, stages, figures, out), encoding="utf-8")
    return {"summary": str(out / SUMMARY), "report": str(out / REPORT), **summary["files"]}


def render(config: PipelineConfig, rows: list[dict[str, Any]], arm_rows: list[dict[str, Any]],
           stages: dict[str, Any], figures: dict[str, str], out: Path | None = None) -> str:
    lines = [f"# effirl pipeline: {config.name}", ""]
    if config.description:
        lines += [config.description.strip(), ""]
    for title, text in config.report.items():
        lines += [f"## {title}", "", text.strip(), ""]
    base = (stages.get("base") or {}).get("outputs") or {}
    if base.get("corpus"):
        corpus = base["corpus"]
        lines += ["## Warm-up corpus (the stand-in for pretraining)", "",
                  f"{corpus.get('rows')} rows over {corpus.get('tasks')} tasks: "
                  + ", ".join(f"{k} {v}" for k, v in (corpus.get("by_kind") or {}).items())
                  + "; broken variants by status: "
                  + ", ".join(f"{k} {v}" for k, v in (corpus.get("broken_statuses") or {}).items())
                  + f". Mix: `{json.dumps(corpus.get('mix'))}`.", ""]
    elif base.get("card"):
        card = base["card"]
        lines += ["## Base model", "", f"`{base.get('origin')}`: " + ", ".join(
            f"{k}: {v}" for k, v in card.items() if k in ("parameters", "steps", "final_loss", "seed", "corpus",
                                                           "command")), ""]
    tasks = _read(out / "tasks.json") if out is not None else None
    if tasks:
        lines += ["## Tasks", "", f"train: {len(tasks.get('train', []))} tasks; held out (never in stage-1 data "
                  f"or RL): {len(tasks.get('heldout', []))} ({', '.join(tasks.get('heldout', [])) or 'none'})"
                  + (f"; dropped by decontamination: {', '.join(d['task_id'] for d in tasks['decontaminated'])}"
                     if tasks.get("decontaminated") else ""), ""]
    if rows:
        lines += ["## Results (Table 7's shape; in brackets the change from the base model)", "",
                  table7(rows, arm_rows)]
    else:
        lines += ["## Results", "", "The evaluate stage has not finished yet.", ""]
    for title, name in figures.items():
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    lines += ["## Stages", "", "| stage | finished | wall (s) |", "| --- | --- | --- |"]
    for name, st in stages.items():
        lines.append(f"| {name} | {'yes' if st.get('finished') else 'no'} | {st.get('wall_s') or '-'} |")
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).strip(),
              "```", ""]
    return "\n".join(lines)
