"""``effirl model init``: a Qwen2 with random weights and a local tokenizer, loadable as any HF model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the 'train' extra (transformers) is not installed")

from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.models import init_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    init_model(out, "tiny", seed=3)
    return out


def test_tiny_loads_as_a_causal_lm_with_a_chat_template(tiny: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    n = sum(p.numel() for p in model.parameters())
    assert 1e6 <= n <= 3e6
    assert model.config.model_type == "qwen2"
    text = tok.apply_chat_template([{"role": "user", "content": "def f(x):"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\ndef f(x):<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    code = "def f(nums):\n    return sorted(set(nums))  # ünïcode survives\n"
    assert tok.decode(tok(code)["input_ids"]) == code  # byte-level: any text round-trips
    card = json.loads((tiny / "effirl_model.json").read_text())
    assert card["parameters"] == n and card["seed"] == 3 and card["suite"] == "builtin"


def test_same_seed_same_weights_other_seed_other_weights(tiny: Path, tmp_path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    init_model(tmp_path / "a", "tiny", seed=3)
    init_model(tmp_path / "b", "tiny", seed=4)
    ref = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    same = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    other = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert not all(torch.equal(ref[k], other[k]) for k in ref)


def test_small_size_and_unknown_size_via_cli(tmp_path: Path):
    runner = CliRunner()
    got = runner.invoke(app, ["model", "init", "--out", str(tmp_path / "s"), "--size", "small"])
    assert got.exit_code == 0, got.output
    card = json.loads((tmp_path / "s" / "effirl_model.json").read_text())
    assert 20e6 <= card["parameters"] <= 40e6
    bad = runner.invoke(app, ["model", "init", "--out", str(tmp_path / "x"), "--size", "huge"])
    assert bad.exit_code == 2 and "unknown model size 'huge'" in bad.output and "Traceback" not in bad.output
