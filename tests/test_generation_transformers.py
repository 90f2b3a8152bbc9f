"""``effirl generate`` with the transformers backend and ``effirl model init``'s tiny model, on the CPU.

N samples per task with their metadata; the same text for the same seed whatever the batch (rerun, resume,
other batch size, other task order); resume after a real kill of a subprocess, after a cut last line, and when
``n`` grows; a file of another run refused untouched; the sampler's distribution; bad input as one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")
pytest.importorskip("transformers", reason="the 'train' extra (transformers) is not installed")

from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.errors import EffirlError, InputFormatError  # noqa: E402
from effirl.generation import GenerateConfig, generate, render  # noqa: E402
from effirl.generation.backends.hf import TransformersBackend  # noqa: E402
from effirl.generation.backends.hf_sampling import SeededGumbelSampler, nucleus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 24


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture(scope="module")
def backend(tiny: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny), batch_size=16)


@pytest.fixture(scope="module")
def tasks(builtin_tasks: list[Any]) -> list[Any]:
    return builtin_tasks[:3]


def _cfg(tiny: Path, **kw: Any) -> GenerateConfig:
    return GenerateConfig(model=str(tiny), n=kw.pop("n", 3), max_new_tokens=kw.pop("max_new_tokens", TOKENS),
                          **kw)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _texts(records: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    return {(r["task_id"], r["sample_index"]): r["solution"] for r in records}


def test_writes_n_samples_per_task_with_their_metadata(tiny: Path, backend: TransformersBackend,
                                                       tasks: list[Any], tmp_path: Path):
    out = tmp_path / "s.jsonl"
    summary = generate(_cfg(tiny, n=3), tasks[:2], out, backend=backend)
    recs = _lines(out)
    assert summary.written == 6 and summary.existing == 0 and len(recs) == 6
    wanted = [(t.id, i) for t in tasks[:2] for i in range(3)]
    assert sorted((r["task_id"], r["sample_index"]) for r in recs) == wanted
    tok = backend.tokenizer
    for r in recs:
        task = next(t for t in tasks if t.id == r["task_id"])
        assert r["messages"] == render(task, "direct")
        prompt = tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True)
        assert r["prompt_tokens"] == len(tok(prompt, add_special_tokens=False)["input_ids"])
        assert (r["model"], r["backend"], r["strategy"], r["temperature"], r["top_p"], r["seed"]) == \
            (str(tiny), "transformers", "direct", 1.0, 1.0, 0)
        assert r["max_new_tokens"] == TOKENS and 1 <= r["completion_tokens"] <= TOKENS
        assert r["finish_reason"] in ("stop", "length")
        if r["finish_reason"] == "length":
            assert r["completion_tokens"] == TOKENS
        assert isinstance(r["solution"], str) and "steps" not in r
        assert r["metadata"]["templates"] and isinstance(r["metadata"]["sample_seed"], int)
    assert summary.completion_tokens == sum(r["completion_tokens"] for r in recs)


def test_same_seed_same_text_whatever_the_batch_and_another_seed_differs(tiny: Path,
                                                                         backend: TransformersBackend,
                                                                         tasks: list[Any]):
    ref = _texts(generate(_cfg(tiny, n=4), tasks, None, backend=backend).records)
    assert len(set(ref.values())) == len(ref)  # 12 distinct samples
    again = _texts(generate(_cfg(tiny, n=4), tasks, None, backend=backend).records)
    small = TransformersBackend(backend.model, backend.tokenizer, batch_size=3)  # other batches and order
    other_batches = _texts(generate(_cfg(tiny, n=4), tasks[::-1], None, backend=small).records)
    assert again == ref and other_batches == ref
    reseeded = _texts(generate(_cfg(tiny, n=4, seed=1), tasks, None, backend=backend).records)
    assert sum(reseeded[k] != ref[k] for k in ref) >= 10


def test_raising_n_adds_only_the_new_indices(tiny: Path, backend: TransformersBackend, tasks: list[Any],
                                             tmp_path: Path):
    out = tmp_path / "s.jsonl"
    generate(_cfg(tiny, n=2), tasks[:2], out, backend=backend)
    before = out.read_bytes()
    summary = generate(_cfg(tiny, n=4), tasks[:2], out, backend=backend)
    assert summary.existing == 4 and summary.written == 4
    assert out.read_bytes().startswith(before)  # nothing rewritten
    full = _texts(generate(_cfg(tiny, n=4), tasks[:2], None, backend=backend).records)
    assert _texts(_lines(out)) == full
    again = generate(_cfg(tiny, n=4), tasks[:2], out, backend=backend)  # nothing missing: no model needed
    assert again.written == 0 and again.existing == 8


def test_a_cut_last_line_is_dropped_and_redone(tiny: Path, backend: TransformersBackend, tasks: list[Any],
                                               tmp_path: Path):
    out = tmp_path / "s.jsonl"
    generate(_cfg(tiny, n=3), tasks[:1], out, backend=backend)
    whole = out.read_text()
    lines = whole.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # as a kill mid-write leaves it
    summary = generate(_cfg(tiny, n=3), tasks[:1], out, backend=backend)
    assert summary.written == 1 and summary.existing == 2
    assert _texts(_lines(out)) == _texts([json.loads(x) for x in lines])


def test_a_file_of_another_run_is_refused_and_left_untouched(tiny: Path, backend: TransformersBackend,
                                                             tasks: list[Any], tmp_path: Path):
    out = tmp_path / "s.jsonl"
    generate(_cfg(tiny, n=1), tasks[:1], out, backend=backend)
    before = out.read_bytes()
    with pytest.raises(InputFormatError,
                       match=r"s.jsonl, row 1: belongs to another run \(temperature 1.0 there, 0.5 here\)"):
        generate(_cfg(tiny, n=2, temperature=0.5), tasks[:1], out, backend=backend)
    with pytest.raises(InputFormatError,
                       match=r"belongs to another run \(strategy 'direct' there, 'cot' here\)"):
        generate(_cfg(tiny, n=2, strategy="cot"), tasks[:1], out, backend=backend)
    prompts = tmp_path / "p.yaml"
    prompts.write_text("system: Be brief.\n")
    with pytest.raises(InputFormatError, match=r"prompt templates .* another --prompt-file"):
        generate(_cfg(tiny, n=2, prompt_file=prompts), tasks[:1], out, backend=backend)
    assert out.read_bytes() == before
    evalplus = tmp_path / "evalplus.jsonl"
    evalplus.write_text(json.dumps({"task_id": tasks[0].id, "solution": "x"}) + "\n")
    with pytest.raises(InputFormatError, match="not a sample written by `effirl generate`"):
        generate(_cfg(tiny, n=1), tasks[:1], evalplus, backend=backend)


def test_a_model_object_samples_like_its_folder_and_keeps_its_training_mode(tiny: Path,
                                                                            backend: TransformersBackend,
                                                                            tasks: list[Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny)
    model.train()
    # The model's own sampling defaults must not leak in: effirl samples softmax(logits / T) in the nucleus.
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.top_k = 3
    model.generation_config.no_repeat_ngram_size = 2
    in_memory = TransformersBackend(model, AutoTokenizer.from_pretrained(tiny), batch_size=5)
    got = _texts(generate(_cfg(tiny, n=2), tasks[:2], None, backend=in_memory).records)
    assert got == _texts(generate(_cfg(tiny, n=2), tasks[:2], None, backend=backend).records)
    assert model.training
    with pytest.raises(EffirlError, match="needs its tokenizer"):
        TransformersBackend(model)


def test_greedy_is_the_nucleus_of_one_token(tiny: Path, backend: TransformersBackend, tasks: list[Any]):
    greedy = generate(_cfg(tiny, n=3, temperature=0.0), tasks[:1], None, backend=backend).records
    assert len({r["solution"] for r in greedy}) == 1
    narrow = generate(_cfg(tiny, n=2, top_p=1e-6), tasks[:1], None, backend=backend).records
    assert {r["solution"] for r in narrow} == {greedy[0]["solution"]}


def test_gumbel_max_draws_from_softmax_of_tempered_logits_within_the_nucleus():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    rows = 6000
    seeds = list(range(rows))
    for temperature, top_p in ((1.0, 1.0), (0.7, 1.0), (1.3, 0.8)):
        sampler = SeededGumbelSampler(seeds, temperature, top_p, torch.device("cpu"))
        out = sampler(torch.zeros((rows, 1), dtype=torch.long), logits.repeat(rows, 1))
        assert torch.isneginf(out).sum(dim=1).eq(len(logits) - 1).all()  # one finite score per row
        counts = torch.bincount(out.argmax(dim=1), minlength=len(logits)).double()
        expected = nucleus((logits / temperature)[None], top_p)[0].softmax(-1).double() * rows
        kept = expected > 0
        assert counts[~kept].sum() == 0  # never outside the nucleus
        chi2 = (((counts - expected)[kept]) ** 2 / expected[kept]).sum().item()
        assert chi2 < 25.0, (temperature, top_p, counts, expected)  # df <= 5: p < 1e-4 if it were right
    # A row's draw depends only on its own seed, not on its position or batch-mates.
    a = SeededGumbelSampler([7, 8, 9], 1.0, 1.0, torch.device("cpu"))
    b = SeededGumbelSampler([9], 1.0, 1.0, torch.device("cpu"))
    big = torch.randn(3, 50)
    for _ in range(5):
        assert a(None, big)[2].argmax() == b(None, big[2:3])[0].argmax()


def _shrunk_context(tiny: Path, dest: Path, context: int) -> Path:
    shutil.copytree(tiny, dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["max_position_embeddings"] = context
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def test_responses_stop_at_the_context_and_a_prompt_that_cannot_fit_is_one_line(tiny: Path, tasks: list[Any],
                                                                                 tmp_path: Path):
    prompt_len = TransformersBackend(str(tiny)).count_prompt_tokens(render(tasks[0]))
    near = _shrunk_context(tiny, tmp_path / "near", prompt_len + 3)
    recs = generate(_cfg(near, n=2, temperature=0.0, max_new_tokens=50), tasks[:1], None).records
    assert all(r["completion_tokens"] <= 3 for r in recs)  # the budget is what the context leaves
    assert any(r["finish_reason"] == "length" for r in recs)

    short = _shrunk_context(tiny, tmp_path / "short", 64)
    out = tmp_path / "s.jsonl"
    got = CliRunner().invoke(app, ["generate", "--limit", "2", "--model", str(short), "--n", "2", "--out",
                                   str(out)])
    assert got.exit_code == 2, got.output
    assert "prompt longer than the model's context (64 tokens): builtin/" in got.output
    assert "Traceback" not in got.output and not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--strategy", "fast"], "unknown strategy; known strategies: direct, efficient, cot, m2wf"),
    (["--backend", "tgi"], "field '--backend': Input should be 'transformers', 'openai' or 'vllm'"),
    (["--tasks", "builtin/nope"], "unknown task 'builtin/nope'"),
])
def test_bad_arguments_are_one_line(tiny: Path, tmp_path: Path, args: list[str], message: str):
    got = CliRunner().invoke(app, ["generate", "--model", str(tiny), "--out", str(tmp_path / "s.jsonl"),
                                   *args])
    assert got.exit_code == 2 and message in " ".join(got.output.split()), got.output
    assert "Traceback" not in got.output


def test_a_missing_model_folder_is_one_line_and_keeps_the_samples(tiny: Path, tasks: list[Any],
                                                                  tmp_path: Path):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    out = tmp_path / "s.jsonl"
    runner = CliRunner()
    args = ["generate", "--limit", "1", "--model", str(model), "--max-new-tokens", str(TOKENS), "--out",
            str(out)]
    assert runner.invoke(app, [*args, "--n", "1"]).exit_code == 0
    before = out.read_bytes()
    shutil.rmtree(model)  # resuming with more samples, but the model folder has gone
    got = runner.invoke(app, [*args, "--n", "2"])
    assert got.exit_code == 2 and "no model folder at" in got.output and "Traceback" not in got.output
    assert out.read_bytes() == before
    nofile = runner.invoke(app, ["generate", "--model", str(tmp_path), "--out", str(tmp_path / "x.jsonl")])
    assert nofile.exit_code == 2
    assert "is not a model folder (it has no config.json)" in " ".join(nofile.output.split())
    assert not (tmp_path / "x.jsonl").exists()


def test_m2wf_with_a_random_model_falls_back_to_direct_and_says_why(tiny: Path, backend: TransformersBackend,
                                                                   tasks: list[Any]):
    recs = generate(_cfg(tiny, n=2, strategy="m2wf"), tasks[:1], None, backend=backend).records
    for r in recs:
        assert [s["name"] for s in r["steps"]] == ["recall", "direct"]
        why = "m2wf fell back to direct: the recall step gave no 'Problem <number>' sections"
        assert r["metadata"]["fallback"] == why
        assert r["messages"] == render(tasks[0], "direct") and r["solution"] == r["steps"][-1]["response"]
        assert r["metadata"]["total_completion_tokens"] == sum(s["completion_tokens"] for s in r["steps"])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "effirl.cli", "generate", *args]


def test_resume_after_a_killed_run_completes_only_the_missing_pairs(tiny: Path, backend: TransformersBackend,
                                                                    tasks: list[Any], tmp_path: Path):
    out = tmp_path / "s.jsonl"
    args = ["--limit", "3", "--model", str(tiny), "--n", "6", "--max-new-tokens", "40", "--batch-size", "1",
            "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survived = out.read_bytes()
    kept = [json.loads(x) for x in survived.decode().split("\n")[:-1] if x.strip()]  # complete lines only
    assert 3 <= len(kept) < 18
    got = CliRunner().invoke(app, ["generate", *args])
    assert got.exit_code == 0, got.output
    recs = _lines(out)
    keys = [(r["task_id"], r["sample_index"]) for r in recs]
    assert len(keys) == len(set(keys)) == 18
    assert out.read_bytes().startswith(survived[: survived.rfind(b"\n") + 1])  # what was written stays
    written = re.search(r"samples written\W+(\d+)", got.output)
    assert written and int(written.group(1)) == 18 - len(kept)  # only the missing ones were made
    ref = generate(GenerateConfig(model=str(tiny), n=6, max_new_tokens=40), tasks, None,
                   backend=backend).records
    assert _texts(recs) == _texts(ref)  # the resumed samples are those an uninterrupted run makes


def test_an_unreachable_hub_id_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = CliRunner().invoke(app, ["generate", "--limit", "1", "--model", "effirl-test/no-such-model",
                                   "--out",
                                   str(tmp_path / "s.jsonl")])
    assert got.exit_code == 2 and "Traceback" not in got.output
    assert "cannot load model 'effirl-test/no-such-model' as a hub id (is the hub reachable?" in " ".join(
        got.output.split())
