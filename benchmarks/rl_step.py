"""Where an RL step's time goes: generation, the efficiency reward, and the update (RLOO or GRPO on TRL).

Why it exists: the issue asks that the reward not dominate a step of training. This script trains a few
steps of ``effirl train rloo|grpo`` (the same code as the CLI) with a random model of a chosen shape and
prints, per step, the seconds spent generating (TRL's ``_generate``), in the reward (TRL's
``_calculate_rewards``, with the reward's own split into inputs, check and measure) and in the rest
(log-probabilities, loss, backward, optimizer). A random model writes no code, so ``--references K`` puts the
task's references (slowest first) in place of the first K completions of each group before scoring, so that
the reward checks and measures as it would for a model that writes code (K = 0: the model's text only).

    # a GPU: a Qwen2.5-0.5B-shaped random model in bf16, 8 prompts x 8 completions of 512 tokens
    python benchmarks/rl_step.py --shape qwen2.5-0.5b --steps 3 --prompts 8 --generations 8 \
        --max-new-tokens 512
    # this CPU: the tiny model, to check that the script works
    python benchmarks/rl_step.py --shape tiny --steps 2 --prompts 2 --generations 4 --max-new-tokens 48
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Qwen2.5-0.5B's layers (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, tied embeddings); the
# vocabulary is effirl's tokenizer's (no pretrained tokenizer can be downloaded here).
QWEN_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
            "tie_word_embeddings": True, "rms_norm_eps": 1e-6}
TASKS = ["lis_length", "pair_sum_count", "fib_mod", "max_subarray_sum", "trapped_rain", "anagram_group_count",
         "count_inversions", "merge_intervals"]


def make_model(shape: str, folder: Path) -> Path:
    """A random model folder (weights and tokenizer) of ``shape``."""
    from effirl.models import init_model

    tiny = folder / "tiny"
    init_model(tiny, "tiny", seed=0)
    if shape == "tiny":
        return tiny
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    vocab = -(-len(tokenizer) // 64) * 64
    config = Qwen2Config(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, **QWEN_05B)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    out = folder / shape
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"model: {shape}-shaped, {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, "
          f"vocabulary {vocab}")
    return out


class Timer:
    """Seconds spent in methods of the trainer, per optimizer step."""

    def __init__(self) -> None:
        self.current: Counter[str] = Counter()
        self.steps: list[dict[str, float]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync()
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                _sync()
                self.current[label] += time.perf_counter() - start

        setattr(owner, name, timed)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_callback(timer: Timer) -> Any:
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _sync()
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _sync()
            total = time.perf_counter() - self.start
            row = {"step": state.global_step, "total": total, **timer.current}
            timer.steps.append(row)
            timer.current = Counter()

    return StepTimes()


def with_references(reward_cls: type, k: int) -> type:
    """The efficiency reward scoring each group with its first ``k`` completions replaced by the task's
    references (slowest first, repeated if the task has fewer)."""

    class WithReferences(reward_cls):  # type: ignore[misc, valid-type]
        def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                     completion_ids: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
            seen: Counter[str] = Counter()
            out = []
            for prompt, completion, task_id in zip(prompts or [], completions or [], kwargs["task_id"],
                                                   strict=True):
                key = task_id + json.dumps(prompt)
                i = seen[key]
                seen[key] += 1
                if i < k:
                    refs = self.tasks[task_id].references
                    text = f"```python\n{refs[i % len(refs)].code.strip()}\n```"
                    chat = isinstance(completion, list)
                    completion = [{"role": "assistant", "content": text}] if chat else text
                out.append(completion)
            return super().__call__(prompts, out, completion_ids, **kwargs)

    return WithReferences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "qwen2.5-0.5b"), default="tiny")
    parser.add_argument("--algo", choices=("rloo", "grpo"), default="rloo")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--per-device", type=int, default=None, help="completions per pass (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--meter", default="callgrind")
    parser.add_argument("--references", type=int, default=2, help="completions per group given references")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per CPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from effirl.execution.config import SandboxConfig
    from effirl.tasks import load
    from effirl.training.reward import EfficiencyReward
    from effirl.training.rl_common import train_rl

    if args.algo == "rloo":
        from effirl.training.rloo_config import RLOOConfig as Config
        from effirl.training.rloo_trainer import build_rloo_trainer as build
    else:
        from effirl.training.grpo_config import GRPOConfig as Config  # type: ignore[assignment]
        from effirl.training.grpo_trainer import build_grpo_trainer as build  # type: ignore[assignment]

    root = args.out or Path(tempfile.mkdtemp(prefix="effirl-rl-step-"))
    model = make_model(args.shape, root)
    names = TASKS if args.prompts <= len(TASKS) else [t.id for t in load("builtin")]
    tasks = names[: args.prompts]
    completions = args.prompts * args.generations
    cfg = Config(model=str(model), out=root / "run", tasks=tasks, batch_size=args.prompts,
                 mini_batch_size=args.prompts, per_device_batch_size=args.per_device or completions,
                 num_generations=args.generations, max_completion_length=args.max_new_tokens,
                 max_steps=args.steps, save_steps=10**6, learning_rate=1e-6, evaluation={"every": 0},
                 reward={"meter": args.meter, "workers": args.workers}, resume=False)
    sandbox = SandboxConfig() if args.workers is None else SandboxConfig(workers=args.workers)
    reward = with_references(EfficiencyReward, args.references)(
        suite="builtin", meter=args.meter, workers=args.workers, num_generations=args.generations,
        sandbox=sandbox)
    run = build(cfg, reward=reward)
    timer = Timer()
    timer.wrap(run.trainer, "_generate", "generation")
    timer.wrap(run.trainer, "_calculate_rewards", "reward")
    run.trainer.add_callback(step_callback(timer))
    device = next(run.trainer.model.parameters())
    dtype = str(device.dtype).replace("torch.", "")
    print(f"{args.algo} on {device.device} ({dtype}): {args.prompts} prompts x {args.generations} "
          f"completions of up to {cfg.max_completion_length} tokens per step, meter {reward.meter.name}, "
          f"{args.references} reference(s) per group")
    train_rl(run, args.algo)

    lines = (cfg.out / "metrics.jsonl").read_text().splitlines()
    by_step = {r["step"]: r for r in map(json.loads, filter(None, lines)) if "efficiency/seconds" in r}
    header = ("step", "total s", "generate", "reward", "(inputs", "check", "measure)", "update+", "reward %",
              "tokens")
    print(" ".join(f"{h:>9}" for h in header))
    for row in timer.steps:
        gen, rew = row.get("generation", 0.0), row.get("reward", 0.0)
        m = by_step.get(row["step"], {})
        cells = [row["total"], gen, rew, m.get("efficiency/inputs_seconds", 0.0),
                 m.get("efficiency/check_seconds", 0.0), m.get("efficiency/measure_seconds", 0.0),
                 row["total"] - gen - rew]
        print(f"{row['step']:>9} " + " ".join(f"{c:>9.2f}" for c in cells)
              + f" {100 * rew / row['total']:>8.0f}% {m.get('completions/mean_length', 0.0):>9.0f}")
    later = timer.steps[1:] or timer.steps
    share = sum(r.get("reward", 0.0) for r in later) / sum(r["total"] for r in later)
    print(f"reward share of the step time (steps after the first, which measures the references' clocks): "
          f"{100 * share:.0f}%  (outputs in {root})")


if __name__ == "__main__":
    main()
