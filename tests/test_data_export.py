"""A build's outputs: JSON Lines, a datasets folder TRL's collators accept, LlamaFactory files, stats.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage1_fixtures import S, make_scored, prompt_fn, read_jsonl

pytest.importorskip("trl", reason="the 'train' extra (trl) is not installed")

from effirl.data import DPODataConfig, SFTDataConfig, build_dpo, build_sft  # noqa: E402

A, B = "builtin/pair_sum_count", "builtin/fib_mod"
SYSTEM = [{"role": "system", "content": "You write fast code."}, {"role": "user", "content": "Count pairs."}]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    plan = {A: [S("pass", 100.0, messages=SYSTEM), S("pass", 400.0, messages=SYSTEM),
                S("wrong_answer", messages=SYSTEM), S("runtime_error", messages=SYSTEM)],
            B: [S("pass", 10.0), S("pass", 30.0), S("timeout")]}
    folder = make_scored(root / "scored", plan)
    build_sft(SFTDataConfig(scored=folder, out=root / "sft"), prompt_fn=prompt_fn)
    build_dpo(DPODataConfig(scored=folder, out=root / "dpo", proportion=0.5), prompt_fn=prompt_fn)
    return root


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model


def test_the_datasets_folders_load_and_match_the_jsonl(built: Path):
    from datasets import load_from_disk

    for kind in ("sft", "dpo"):
        ds = load_from_disk(str(built / kind / "dataset"))
        rows = read_jsonl(built / kind / f"{kind}.jsonl")
        assert len(ds) == len(rows) > 0
        assert [dict(r) for r in ds] == rows
    dpo = load_from_disk(str(built / "dpo" / "dataset"))
    assert set(dpo.column_names) >= {"prompt", "chosen", "rejected", "kind", "task_id", "chosen_count"}
    assert dpo.features["rejected_count"].dtype == "float64"  # nulls keep their type


def test_llamafactory_files_are_sharegpt_with_their_dataset_info(built: Path):
    info = json.loads((built / "dpo" / "llamafactory" / "dataset_info.json").read_text())
    entry = info["effirl_dpo"]
    assert entry["formatting"] == "sharegpt" and entry["ranking"] is True
    assert entry["columns"] == {"messages": "messages", "chosen": "chosen", "rejected": "rejected",
                                "system": "system"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    rows = json.loads((built / "dpo" / "llamafactory" / entry["file_name"]).read_text())
    dpo = read_jsonl(built / "dpo" / "dpo.jsonl")
    assert len(rows) == len(dpo)
    for lf, row in zip(rows, dpo, strict=True):
        assert lf["chosen"] == row["chosen"][0] and lf["rejected"] == row["rejected"][0]
        system = [m for m in row["prompt"] if m["role"] == "system"]
        assert lf["system"] == (system[0]["content"] if system else "")
        assert [m for m in row["prompt"] if m["role"] != "system"] == lf["messages"]
        assert lf["messages"][-1]["role"] == "user"  # a ranking conversation ends with the user's turn
    sft_info = json.loads((built / "sft" / "llamafactory" / "dataset_info.json").read_text())["effirl_sft"]
    assert "ranking" not in sft_info
    sft_rows = json.loads((built / "sft" / "llamafactory" / "sft.json").read_text())
    assert all(r["messages"][-1]["role"] == "assistant" for r in sft_rows)


def test_stats_json_counts_the_build(built: Path):
    stats = json.loads((built / "dpo" / "stats.json").read_text())
    assert stats["kind"] == "dpo" and stats["rows"] == len(read_jsonl(built / "dpo" / "dpo.jsonl"))
    assert stats["pairs_available"] == {"correctness": 6, "efficiency": 2}
    assert stats["pairs"] == {"correctness": 2, "efficiency": 2}
    assert set(stats["files"]) == {"jsonl", "dataset", "llamafactory", "stats"}


def test_trl_preference_and_sft_collators_accept_the_rows(built: Path, tiny: Path, tmp_path: Path):
    from effirl.training.dpo_config import DPOConfig
    from effirl.training.dpo_trainer import build_dpo_trainer
    from effirl.training.sft_config import SFTConfig
    from effirl.training.sft_trainer import build_sft_trainer

    common = {"model": str(tiny), "batch_size": 2, "per_device_batch_size": 2, "max_steps": 1}
    trainer, tok = build_dpo_trainer(DPOConfig(data=str(built / "dpo"), out=tmp_path / "d", **common))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["input_ids"].shape[0] == 4  # two chosen, then two rejected
    assert int(batch["completion_mask"].sum()) > 0
    first = tok.decode(batch["input_ids"][0][batch["completion_mask"][0].bool()])
    assert first.startswith("```python") or "def " in first  # the completion is the response, not the prompt
    trainer, tok = build_sft_trainer(SFTConfig(data=str(built / "sft"), out=tmp_path / "s", **common))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    labels = batch["labels"][0]
    assert (labels == -100).any() and (labels != -100).any()  # the prompt is masked, the response is learned
