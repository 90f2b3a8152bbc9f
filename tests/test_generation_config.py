"""The settings of ``effirl generate``: a YAML run file with flags on top, and one-line errors for what is
missing or wrong (no model, an unknown key, an optional backend that is not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from effirl.cli import app
from effirl.configfile import load_config
from effirl.errors import InputFormatError
from effirl.generation import GenerateConfig


def _oneline(text: str) -> str:
    return " ".join(text.split())


def test_a_run_file_with_flags_on_top(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("model: some/model\nbackend: openai\nn: 8\ntemperature: 0.2\nopenai:\n  concurrency: 3\n")
    cfg = load_config(GenerateConfig, f, {"n": 4, "openai.base_url": "http://h:1/v1", "seed": None})
    assert (cfg.model, cfg.backend, cfg.n, cfg.temperature, cfg.seed) == ("some/model", "openai", 4, 0.2, 0)
    assert cfg.openai.concurrency == 3 and cfg.openai.base_url == "http://h:1/v1"
    assert cfg.sampling.temperature == 0.2 and cfg.sampling.max_new_tokens == 1024
    assert GenerateConfig(model="/tmp/x/").model == "/tmp/x"  # one spelling per folder in the samples file


def test_run_file_errors_name_the_line_and_key(tmp_path: Path):
    f = tmp_path / "run.yaml"
    f.write_text("model: m\nopenai:\n  concurrency: 3\n  retries: 2\n")
    with pytest.raises(InputFormatError,
                       match=r"run.yaml, row 4, field 'openai.retries': unknown key; known keys "
                                               r"here: api_key_env, base_url, concurrency"):
        load_config(GenerateConfig, f)
    f.write_text("model: m\ntop_p: 1.5\n")
    with pytest.raises(InputFormatError, match=r"row 2, field 'top_p'"):
        load_config(GenerateConfig, f)


def test_cli_without_a_model_or_with_an_uninstalled_backend_is_one_line(tmp_path: Path):
    runner = CliRunner()
    got = runner.invoke(app, ["generate", "--out", str(tmp_path / "s.jsonl")])
    assert got.exit_code == 2 and "--model is required" in got.output and "Traceback" not in got.output
    got = runner.invoke(app, ["generate", "--model", "m", "--n", "0", "--out", str(tmp_path / "s.jsonl")])
    assert got.exit_code == 2 and "Traceback" not in got.output  # typer's own range check
    if importlib.util.find_spec("vllm") is None:
        got = runner.invoke(app, ["generate", "--limit", "1", "--model", "m", "--backend", "vllm", "--out",
                                  str(tmp_path / "s.jsonl")])
        assert got.exit_code == 2 and "--backend vllm needs the 'vllm' extra" in _oneline(got.output)
        assert not (tmp_path / "s.jsonl").exists()
