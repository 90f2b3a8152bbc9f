"""TRL SFT and DPO on CPU with the tiny model: two steps each, a checkpoint that generates, resume, LoRA, and
one clear line for a bad config, a model without a tokenizer or data of the wrong kind."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest
from stage1_fixtures import S, make_scored, prompt_fn, read_jsonl

pytest.importorskip("trl", reason="the 'train' extra (trl) is not installed")

from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.configfile import load_config  # noqa: E402
from effirl.data import DPODataConfig, SFTDataConfig, build_dpo, build_sft  # noqa: E402
from effirl.errors import EffirlError, InputFormatError  # noqa: E402
from effirl.training.common import LoraSettings, accumulation_steps  # noqa: E402
from effirl.training.dpo_config import DPOConfig  # noqa: E402
from effirl.training.dpo_trainer import train_dpo  # noqa: E402
from effirl.training.sft_config import SFTConfig  # noqa: E402
from effirl.training.sft_trainer import train_sft  # noqa: E402

A, B, C = "builtin/pair_sum_count", "builtin/fib_mod", "builtin/lis_length"
TINY = {"batch_size": 2, "per_device_batch_size": 1, "learning_rate": 1e-3, "save_steps": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    plan = {t: [S("pass", 100.0), S("pass", 250.0), S("wrong_answer"), S("runtime_error")] for t in (A, B, C)}
    folder = make_scored(root / "scored", plan)
    build_sft(SFTDataConfig(scored=folder, out=root / "sft"), prompt_fn=prompt_fn)
    build_dpo(DPODataConfig(scored=folder, out=root / "dpo", proportion=0.5), prompt_fn=prompt_fn)
    return root


def generates(folder: Path) -> str:
    """Greedy generation from the saved model and tokenizer: new tokens come out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    text = tok.apply_chat_template([{"role": "user", "content": "Write pair_sum_count."}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return tok.decode(out[0][ids["input_ids"].shape[1]:])


def losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


def test_sft_two_steps_then_the_checkpoint_generates(tiny: Path, data: Path, tmp_path: Path):
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    cfg = SFTConfig(model=str(tiny), data=str(data / "sft"), out=tmp_path / "run", max_steps=2,
                    report_to=["tensorboard"] if tensorboard else [], **TINY)
    final = train_sft(cfg)
    if tensorboard:  # the tracker asked for gets the metrics too
        assert list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert final == tmp_path / "run" / "final"
    got = losses(tmp_path / "run")
    assert [s for s, _ in got] == [1, 2] and all(v > 0 for _, v in got)
    assert (final / "tokenizer.json").is_file() and (tmp_path / "run" / "loss.png").is_file()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["algo"] == "sft"
    generates(final)
    assert "epochs: 10.0" in (tmp_path / "run" / "config.yaml").read_text()  # the paper's default kept


def test_dpo_two_steps_then_resume_and_the_checkpoint_generates(tiny: Path, data: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture):
    cfg = DPOConfig(model=str(tiny), data=str(data / "dpo"), out=tmp_path / "run", max_steps=2, **TINY)
    train_dpo(cfg)
    first = losses(tmp_path / "run")
    assert [s for s, _ in first] == [1, 2]
    assert first[0][1] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start: ln 2
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all("rewards/margins" in r for r in records if "loss" in r)
    shutil.rmtree(tmp_path / "run" / "final")
    with caplog.at_level(logging.INFO, logger="effirl.training.common"):
        final = train_dpo(cfg.model_copy(update={"max_steps": 3}))
    assert f"resuming from {tmp_path / 'run' / 'checkpoints' / 'checkpoint-2'}" in caplog.text
    again = losses(tmp_path / "run")
    assert [s for s, _ in again] == [1, 2, 3] and again[:2] == first
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-3").is_dir()
    generates(final)


def test_lora_saves_the_adapter_and_a_merged_model(tiny: Path, data: Path, tmp_path: Path):
    cfg = DPOConfig(model=str(tiny), data=str(data / "dpo"), out=tmp_path / "run", max_steps=1,
                    lora=LoraSettings(r=4, alpha=8), **TINY)
    final = train_dpo(cfg)
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert not (final / "adapter_config.json").exists()  # final/ is a plain model that loads alone
    generates(final)


def test_accumulation_reaches_the_effective_batch():
    assert accumulation_steps(1024, 4, 1) == 256
    assert accumulation_steps(1024, 4, 8) == 32
    assert accumulation_steps(10, 4, 1) == 3  # 12: the nearest reachable above


def test_cli_flags_override_the_config_file(tiny: Path, data: Path, tmp_path: Path):
    cfg = tmp_path / "dpo.yaml"
    cfg.write_text(f"model: {tiny}\ndata: {data / 'dpo'}\nout: {tmp_path / 'ignored'}\nmax_steps: 50\n"
                   "batch_size: 2\nper_device_batch_size: 1\nbeta: 0.2\n")
    got = CliRunner().invoke(app, ["train", "dpo", "--config", str(cfg), "--out", str(tmp_path / "run"),
                                   "--max-steps", "1", "--set", "save_steps=1"])
    assert got.exit_code == 0, got.output
    assert "final model" in got.output and "training loss" in got.output
    used = (tmp_path / "run" / "config.yaml").read_text()
    assert "max_steps: 1" in used and "beta: 0.2" in used and not (tmp_path / "ignored").exists()


@pytest.mark.parametrize(("text", "expect"), [
    ("model: m\ndata: d\nout: o\nlearning_rat: 0.1\n", ["row 4", "learning_rat", "unknown key"]),
    ("model: m\ndata: d\nout: o\nmax_steps: many\n", ["row 4", "max_steps"]),
    ("model: m\ndata: d\nout: o\nlora:\n  r: 8\n  rank: 3\n", ["row 6", "lora.rank"]),
])
def test_a_bad_config_key_or_type_names_it(tmp_path: Path, text: str, expect: list[str]):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(InputFormatError) as err:
        load_config(DPOConfig, path)
    for piece in expect:
        assert piece in str(err.value)
    got = CliRunner().invoke(app, ["train", "dpo", "--config", str(path)])
    assert got.exit_code == 2 and "Traceback" not in got.output and expect[1] in got.output


def test_a_model_folder_without_a_tokenizer_is_one_line(tiny: Path, data: Path, tmp_path: Path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in tiny.iterdir():
        if f.name.startswith(("config", "model", "generation")):
            shutil.copy(f, bare / f.name)
    got = CliRunner().invoke(app, ["train", "sft", "--model", str(bare), "--data", str(data / "sft"), "--out",
                                   str(tmp_path / "run"), "--max-steps", "1"])
    assert got.exit_code == 2 and "has no tokenizer" in got.output and "Traceback" not in got.output


def test_a_tracker_that_is_not_installed_is_one_line(tiny: Path, data: Path, tmp_path: Path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    got = CliRunner().invoke(app, ["train", "dpo", "--model", str(tiny), "--data", str(data / "dpo"), "--out",
                                   str(tmp_path / "run"), "--report-to", "wandb"])
    assert got.exit_code == 2 and "needs the wandb package" in got.output and "Traceback" not in got.output
    assert not (tmp_path / "run").exists()


def test_data_of_the_wrong_kind_or_missing_is_one_line(tiny: Path, data: Path, tmp_path: Path):
    with pytest.raises(EffirlError, match="holds dpo data; effirl train sft needs sft data"):
        train_sft(SFTConfig(model=str(tiny), data=str(data / "dpo"), out=tmp_path / "a", max_steps=1, **TINY))
    with pytest.raises(EffirlError, match="does not exist"):
        train_dpo(DPOConfig(model=str(tiny), data=str(tmp_path / "none.jsonl"), out=tmp_path / "b",
                            max_steps=1, **TINY))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(EffirlError, match="dpo training needs prompt\\+chosen\\+rejected"):
        train_dpo(DPOConfig(model=str(tiny), data=str(rows), out=tmp_path / "c", max_steps=1, **TINY))
