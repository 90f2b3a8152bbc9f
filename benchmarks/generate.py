"""Generation throughput: the transformers backend on the CPU (batch 1 vs 16), the openai backend against a
loopback server (concurrency 1 vs 32), and, on a GPU machine, a Qwen2.5-0.5B-shaped model in bf16.

* transformers, CPU: ``effirl model init``'s tiny (~1.2 M) and small (~27 M) models (random weights) each
  make the same ``--rows`` samples of one builtin task (``--tokens`` new tokens at most) at batch 1 and at
  batch 16, in interleaved rounds. Samples are seeded per sample, so both batch sizes make exactly the same
  tokens: the ratio is pure batching. A third column runs plain ``model.generate(do_sample=True)`` at batch
  16 (one global random stream, no per-sample seeds) as the baseline of what effirl's seeded sampler costs.
* openai: ``--requests`` samples, one request each, from the test suite's loopback server answering after
  ``--delay`` seconds, at concurrency 1 and 32: the speed-up shows that requests really overlap (ideal: 32x,
  or requests/1 when fewer).
* ``--gpu``: tokens/s of a Qwen2.5-0.5B-shaped model (24 layers, width 896, vocabulary 151936, random weights)
  in bf16 at batch 64 on CUDA (skipped, saying so, where there is none).

Usage: ``python benchmarks/generate.py [--sizes tiny,small] [--rounds 3] [--tokens 64] [--rows 16]
[--requests 64] [--delay 0.2] [--gpu]``. About a minute on two CPU cores without ``--gpu``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback server lives with the tests

from openai_loopback import Loopback  # noqa: E402

from effirl.generation import GenerateConfig, generate, render  # noqa: E402
from effirl.generation.config import OpenAIOptions  # noqa: E402
from effirl.generation.prompts import template_texts  # noqa: E402
from effirl.tasks import load  # noqa: E402

console = Console()
if not console.is_terminal:
    console = Console(width=200)


def _rate(tokens: float, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else float("nan")


def transformers_rows(sizes: list[str], rounds: int, tokens: int, rows: int, workdir: Path) -> Table:
    import torch
    from transformers import GenerationConfig as HFGenerationConfig

    from effirl.generation.backends.hf import TransformersBackend
    from effirl.models import init_model

    task = load("builtin")[0]
    threads = torch.get_num_threads()
    table = Table(title=f"transformers on the CPU ({threads} threads): tokens/s, {rows} samples of {tokens} "
                        f"new tokens at most, median of {rounds} rounds")
    for col in ("model", "batch 1", "batch 16", "batch 16 / batch 1", "plain HF sampling, batch 16",
                "effirl / plain"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for size in sizes:
        folder = workdir / size
        init_model(folder, size, extra_texts=template_texts())
        one = TransformersBackend(str(folder), batch_size=1, device="cpu")
        sixteen = TransformersBackend(one.model, one.tokenizer, batch_size=16)
        cfg = GenerateConfig(model=str(folder), n=rows, max_new_tokens=tokens)
        rates: dict[str, list[float]] = {"1": [], "16": [], "plain": []}
        prompt = one._prompt_ids(render(task))  # the same prompt as effirl's samples
        ids = torch.tensor([prompt])
        plain = HFGenerationConfig(max_new_tokens=tokens, do_sample=True, top_k=0, num_return_sequences=16,
                                   eos_token_id=one.eos_ids, pad_token_id=one.pad_id)
        generate(cfg.model_copy(update={"n": 2}), [task], None, backend=sixteen)  # warm-up
        for _ in range(rounds):
            for label, backend in (("1", one), ("16", sixteen)):
                s = generate(cfg, [task], None, backend=backend)
                rates[label].append(_rate(s.generated_tokens, s.elapsed_s))
            made = 0
            start = time.perf_counter()
            with torch.inference_mode():
                for _ in range(max(1, rows // 16)):
                    out = one.model.generate(ids, attention_mask=torch.ones_like(ids),
                                             generation_config=plain)
                    gen = out[:, ids.shape[1]:]
                    made += int((gen != one.pad_id).sum())
            rates["plain"].append(_rate(made, time.perf_counter() - start))
        m = {k: statistics.median(v) for k, v in rates.items()}
        table.add_row(size, f"{m['1']:,.0f}", f"{m['16']:,.0f}", f"{m['16'] / m['1']:.2f}x",
                      f"{m['plain']:,.0f}",
                      f"{m['16'] / m['plain']:.2f}x")
    return table


def openai_rows(requests: int, delay: float, rounds: int) -> Table:
    tasks = load("builtin")
    n = -(-requests // len(tasks))
    chosen = tasks[: -(-requests // n)]
    table = Table(title=f"openai backend against a loopback server answering after {delay:g} s: samples/s, "
                        f"{len(chosen) * n} requests of one sample, median of {rounds} rounds")
    for col in ("concurrency 1", "concurrency 32", "32 / 1", "ideal"):
        table.add_column(col, justify="right")
    rates: dict[int, list[float]] = {1: [], 32: []}
    with Loopback(delay_s=delay) as srv:
        for _ in range(rounds):
            for c in (1, 32):
                cfg = GenerateConfig(model="loopback-model", backend="openai", n=n, max_new_tokens=64,
                                     openai=OpenAIOptions(base_url=srv.url, concurrency=c,
                                                          max_n_per_request=1))
                s = generate(cfg, chosen, None)
                rates[c].append(_rate(s.written, s.elapsed_s))
    m = {k: statistics.median(v) for k, v in rates.items()}
    table.add_row(f"{m[1]:.2f}", f"{m[32]:.2f}", f"{m[32] / m[1]:.1f}x", f"{min(32, len(chosen) * n)}x")
    return table


def gpu_rows(batch: int, tokens: int, device: str) -> Table | str:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from effirl.generation.backends.hf import TransformersBackend, pick_device, pick_dtype
    from effirl.models import init_model

    dev = pick_device(device)
    if not dev.startswith("cuda") and device == "auto":
        return "--gpu: no CUDA device on this machine; the Qwen2.5-0.5B-shaped bf16 figure was not taken"
    with tempfile.TemporaryDirectory() as tmp:
        init_model(Path(tmp), "tiny")  # only for its tokenizer (ids past its vocabulary decode to nothing)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dev, dtype=pick_dtype(dev))
    model.eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    backend = TransformersBackend(model, tokenizer, batch_size=batch)
    task = load("builtin")[0]
    cfg = GenerateConfig(model="qwen2.5-0.5b-shaped", n=batch, max_new_tokens=tokens)
    generate(cfg.model_copy(update={"n": min(batch, 4), "max_new_tokens": 8}), [task], None, backend=backend)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    s = generate(cfg, [task], None, backend=backend)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else dev
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    table = Table(title=f"transformers on {dev} ({name}): Qwen2.5-0.5B-shaped ({params:.0f} M parameters, "
                        f"random weights), {dtype}, batch {batch}")
    for col in ("samples", "tokens", "seconds", "tokens/s"):
        table.add_column(col, justify="right")
    table.add_row(str(s.written), str(s.generated_tokens), f"{s.elapsed_s:.1f}",
                  f"{_rate(s.generated_tokens, s.elapsed_s):,.0f}")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per sample (transformers)")
    ap.add_argument("--rows", type=int, default=16, help="samples per round and batch size (transformers)")
    ap.add_argument("--requests", type=int, default=64, help="requests per round (openai)")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the loopback server takes per answer")
    ap.add_argument("--gpu", action="store_true", help="also the Qwen2.5-0.5B-shaped bf16 model on CUDA")
    ap.add_argument("--gpu-batch", type=int, default=64)
    ap.add_argument("--gpu-tokens", type=int, default=256)
    ap.add_argument("--gpu-device", default="auto",
                    help="auto (CUDA if present) | cpu (a smoke test of the code)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: transformers, openai")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "transformers" not in skip:
            sizes = [s for s in args.sizes.split(",") if s]
            console.print(transformers_rows(sizes, args.rounds, args.tokens, args.rows, Path(tmp)))
    if "openai" not in skip:
        console.print(openai_rows(args.requests, args.delay, args.rounds))
    if args.gpu:
        result: Any = gpu_rows(args.gpu_batch, args.gpu_tokens, args.gpu_device)
        console.print(result)


if __name__ == "__main__":
    main()
