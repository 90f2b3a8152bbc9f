"""The warm-up corpus: references weighted slowest-first, broken variants that really fail, made once per OUT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the 'train' extra (torch, transformers, trl) is not installed")

from effirl.data.warmup import WarmupMix  # noqa: E402
from effirl.errors import EffirlError  # noqa: E402
from effirl.training.warmup_config import WarmupConfig  # noqa: E402
from effirl.training.warmup_trainer import CORPUS_STATS, write_corpus  # noqa: E402

TASKS = ["builtin/pair_sum_count", "builtin/fib_mod"]


def test_the_corpus_weights_the_slowest_reference_and_its_broken_variants_fail(tmp_path: Path):
    cfg = WarmupConfig(model="unused", out=tmp_path / "w", tasks=TASKS, mix=WarmupMix(broken_per_task=2))
    rows = [json.loads(line) for line in write_corpus(cfg).read_text().splitlines()]
    stats = json.loads((tmp_path / "w" / CORPUS_STATS).read_text())
    assert stats["by_kind"]["slow reference"] == 3 * len(TASKS) and stats["tasks"] == 2
    assert all(r["status"] != "pass" for r in rows if r["kind"] == "broken variant")
    assert {r["task_id"] for r in rows} == set(TASKS)
    for r in rows:  # a chat row in the format the generation prompt asks for
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][1]["content"].startswith("```python\n")


def test_a_corpus_made_from_other_settings_is_refused(tmp_path: Path):
    out = tmp_path / "w"
    write_corpus(WarmupConfig(model="unused", out=out, tasks=TASKS))
    again = write_corpus(WarmupConfig(model="unused", out=out, tasks=TASKS))  # a resumed run: the same rows
    assert again == out / "corpus.jsonl"
    with pytest.raises(EffirlError, match="made from other settings"):
        write_corpus(WarmupConfig(model="unused", out=out, tasks=TASKS, mix=WarmupMix(slow_weight=1)))
