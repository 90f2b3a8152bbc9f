"""Stage 1 end to end on the builtin suite: samples -> effirl evaluate -> effirl data dpo -> effirl train dpo.

Why it exists: it is the reproducible demonstration that the offline stage's pieces fit: the samples are every
builtin task's reference solutions (slow and fast, as a model would answer them: fenced, with the chat
messages of the "direct" prompt) plus deliberately broken variants made here (a cosmetic copy of the fast
reference that AST dedup must collapse, a wrong answer, a crash, no entry point, prose without code). They are
scored with instruction counts, turned into DPO pairs at the paper's proportion (0.1 efficiency pairs), and a
tiny model (random weights, ``effirl model init``) is trained on them for a few steps. Every step is a CLI
command, run as a user would; each resumes or rebuilds, so the script can be run again.

    python examples/stage1_builtin.py --out runs/stage1-builtin              # callgrind: minutes on 2 cores
    python examples/stage1_builtin.py --out runs/quick --meter cputime       # a first, noisier try

The tiny model is trained at a higher learning rate than the paper's 5e-6 (``--lr``): its random weights would
not move visibly in a few steps at the paper's rate. Outputs: ``OUT/eval`` (report, results), ``OUT/dpo``
(pairs, stats.json), ``OUT/train`` (metrics.jsonl, loss.png, final/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from effirl.generation.prompts import render
from effirl.tasks import Task, load

PERTURB = '''

def _effirl_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value + [value[0]] if value else [0]
    if isinstance(value, tuple):
        return value + (0,)
    return None


_effirl_original = {entry}


def {entry}(*args, **kwargs):
    return _effirl_perturb(_effirl_original(*args, **kwargs))
'''


def fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def variants(task: Task) -> list[tuple[str, str]]:
    """(label, response) of every sample of ``task``: its references, then the broken variants."""
    slow, fast = task.references[0].code, task.references[-1].code
    entry = task.entry_point
    out = [(f"reference {r.label}", fenced(r.code)) for r in task.references]
    out += [
        ("cosmetic copy of the fastest reference",
         fenced(f"# {entry}: the fast version\n\n" + fast.replace("\n", "\n\n", 1) + "\n# end\n")),
        ("wrong answer", fenced(fast + PERTURB.format(entry=entry))),
        ("crash", fenced(slow + f"\n\ndef {entry}(*args, **kwargs):\n    raise ValueError('not yet')\n")),
        ("no entry point", fenced(fast.replace(f"def {entry}(", f"def {entry}_impl(", 1))),
        ("prose", f"To solve {entry}, I would sort the input first and then scan it once."),
    ]
    return out


def write_samples(path: Path) -> int:
    rows = []
    for task in load("builtin"):
        messages = render(task, "direct")
        rows += [{"task_id": task.id, "solution": response, "messages": messages, "variant": label}
                 for label, response in variants(task)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged: the evaluation resumes
        path.write_text(text, encoding="utf-8")
    return len(rows)


def effirl(*args: str) -> None:
    cmd = [sys.executable, "-m", "effirl.cli", *args]
    print("$ effirl " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/stage1-builtin"))
    ap.add_argument("--meter", default="callgrind", help="callgrind (exact) | cputime (noisy, fast) | perf")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--proportion", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=40, help="DPO optimizer steps of the tiny model")
    ap.add_argument("--lr", type=float, default=5e-5)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    samples = out / "samples.jsonl"
    print(f"{write_samples(samples)} samples in {samples}")
    effirl("evaluate", "--suite", "builtin", "--samples", str(samples), "--out", str(out / "eval"),
           "--meter", args.meter, "--workers", str(args.workers))
    effirl("data", "dpo", "--scored", str(out / "eval"), "--proportion", str(args.proportion), "--out",
           str(out / "dpo"))
    if not (out / "tiny" / "config.json").exists():
        effirl("model", "init", "--out", str(out / "tiny"), "--size", "tiny")
    effirl("train", "dpo", "--model", str(out / "tiny"), "--data", str(out / "dpo"), "--out",
           str(out / "train"), "--max-steps", str(args.steps), "--batch-size", "8",
           "--per-device-batch-size", "4", "--lr", str(args.lr),
           "--set", f"save_steps={max(1, args.steps // 2)}")


if __name__ == "__main__":
    main()
