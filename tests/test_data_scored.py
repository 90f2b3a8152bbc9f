"""A real batch run records which samples it scored (run.json); the data builder joins its results back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from effirl.batch import RUN_FILE, RunSpec, run
from effirl.data.scored import load_scored
from effirl.errors import EffirlError
from effirl.execution.config import SandboxConfig
from effirl.tasks import by_id, load
from effirl.tasks.builtin_loader import builtin_dir

TASKS = by_id(load("builtin"))
A = "builtin/pair_sum_count"


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}```\n"


def test_a_check_run_records_its_samples_and_joins_back(tmp_path: Path, sandbox_config: SandboxConfig):
    task = TASKS[A]
    fast = task.references[-1].code
    messages = [{"role": "user", "content": "Count the pairs."}]
    rows = [{"task_id": A, "solution": fenced(fast), "messages": messages},
            {"task_id": A, "solution": fenced(fast.replace("return", "return 1 +", 1)), "messages": messages},
            {"task_id": A, "solution": "I would use a hash map."},
            {"task_id": A, "completion": "    return 0\n"}]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "check"
    run(RunSpec(suite="builtin", out=out, samples=samples, sandbox=sandbox_config))
    entry = json.loads((out / RUN_FILE).read_text())["results.jsonl"]
    assert entry["samples"] == str(samples.resolve()) and entry["n_samples"] == 4
    assert entry["suite"] == "builtin"
    assert len(entry["samples_sha256"]) == 64 and entry["meter"] is None

    scored = load_scored(out, prompt_fn=lambda t: [{"role": "user", "content": f"Solve {t.entry_point}."}])
    got = {s.index: s for s in scored.samples}
    assert [got[i].status for i in (1, 2, 3, 4)] == ["pass", "wrong_answer", "format_error", "wrong_answer"]
    assert not scored.measured and scored.unscored == 0
    assert got[1].prompt == messages and got[1].response == rows[0]["solution"]  # as the model wrote it
    assert got[3].prompt == [{"role": "user", "content": "Solve pair_sum_count."}]
    assert got[3].response == "I would use a hash map." and got[3].code is None
    assert got[4].response.startswith("```python\n" + task.prompt.splitlines()[0])  # the whole program
    assert got[1].code is not None and "def pair_sum_count" in got[1].code


def test_a_references_run_is_rebuilt_from_the_suite_and_a_changed_suite_refused(
        tmp_path: Path, sandbox_config: SandboxConfig):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("pair_sum_count", "fib_mod"):
        shutil.copy(builtin_dir() / f"{name}.toml", suite / f"{name}.toml")
    out = tmp_path / "refs"
    run(RunSpec(suite="builtin", source=str(suite), out=out, sandbox=sandbox_config))
    entry = json.loads((out / RUN_FILE).read_text())["results.jsonl"]
    assert entry["samples"] is None and entry["source"] == str(suite.resolve())
    scored = load_scored(out, prompt_fn=lambda t: [{"role": "user", "content": t.entry_point}])
    n_refs = sum(len(TASKS[f"builtin/{n}"].references) for n in ("pair_sum_count", "fib_mod"))
    assert len(scored.samples) == n_refs and all(s.passed for s in scored.samples)
    assert all(s.response.startswith("```python\n") for s in scored.samples)
    toml = suite / "fib_mod.toml"
    text = toml.read_text()
    at = text.index("[[references]]")  # edit a reference's code (the prompt is not what was scored)
    toml.write_text(text[:at] + text[at:].replace("def fib_mod(ns):", "def fib_mod(ns) :", 1))
    with pytest.raises(EffirlError, match="references of builtin has changed since"):
        load_scored(out, prompt_fn=lambda t: [])
