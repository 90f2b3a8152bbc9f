"""Per-sample seeded sampling inside ``transformers.generate``: the same seed gives the same text, whatever
else shares the batch.

Why it exists: ``generate(do_sample=True)`` draws every row from one global random stream, so a sample depends
on its batch-mates and on their order; a resumed run (different batches) or a different ``--batch-size`` would
give different text. Here every row owns a ``torch.Generator`` seeded from (run seed, task, sample index,
step) and the token is chosen by the Gumbel-max trick: ``argmax(logits / T + G)`` with G standard Gumbel noise
is an exact draw from ``softmax(logits / T)``, restricted to the nucleus when ``top_p < 1``. The processor
returns a one-hot score row (0 for the chosen token, -inf elsewhere), so ``generate``'s own sampling step, and
any warper after it, can only pick that token. A second criterion stops each row at its own token budget (rows
whose prompt leaves less room in the context stop earlier), independently of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria


class SeededGumbelSampler(LogitsProcessor):
    """Temperature, nucleus (top-p) and a per-row seeded Gumbel-max choice; ``temperature == 0`` is greedy."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: torch.device) -> None:
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.generators = []
        for seed in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(seed))
            self.generators.append(g)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float()
        if self.temperature == 0.0:
            choice = logits.argmax(dim=-1)
        else:
            logits = logits / self.temperature
            if self.top_p < 1.0:
                logits = nucleus(logits, self.top_p)
            noise = torch.stack([
                torch.rand(logits.shape[-1], generator=g, device=logits.device, dtype=torch.float32)
                for g in self.generators
            ])
            # Gumbel(0, 1) = -log(-log(U)); U == 0 gives -inf (never chosen), clamp keeps U < 1 finite.
            gumbel = -torch.log(-torch.log(noise.clamp(max=1.0 - 1e-7)))
            choice = (logits + gumbel).argmax(dim=-1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, choice[:, None], 0.0)
        return out


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` with every token outside the smallest set of probability mass >= ``top_p`` set to -inf (the
    most likely token always stays)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class RowBudget(StoppingCriteria):
    """Stops row ``i`` once it has generated ``budgets[i]`` tokens (prompts are ``prompt_width`` wide)."""

    def __init__(self, budgets: Sequence[int], prompt_width: int, device: torch.device) -> None:
        self.budgets = torch.tensor(list(budgets), dtype=torch.long, device=device)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_width
        return self.budgets <= generated  # type: ignore[return-value]
