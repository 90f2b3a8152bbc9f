"""The two-stage pipeline: every stage on CPU in seconds, resume after a kill, --force, plans, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl", reason="the 'train' extra (torch, transformers, trl) is not installed")

from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.errors import EffirlError, InputFormatError  # noqa: E402
from effirl.pipeline import load_pipeline_config, make_plan, run_pipeline, shipped_configs  # noqa: E402
from effirl.pipeline.config import stage_names  # noqa: E402

FAST = Path(__file__).parent / "fixtures" / "pipeline" / "fast.yaml"
STAGES = ["base", "sample", "score", "dpo_data", "dpo", "rl", "evaluate"]


def fast_config(tmp_path: Path, **changes: object) -> Path:
    """The fast test config with dotted keys changed, written to ``tmp_path``."""
    data = yaml.safe_load(FAST.read_text())
    for key, value in changes.items():
        here = data
        parts = key.split(".")
        for part in parts[:-1]:
            here = here.setdefault(part, {})
        here[parts[-1]] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stage_record(out: Path, name: str) -> dict:
    return json.loads((out / name / "stage.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of the fast config."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = run_pipeline(load_pipeline_config(FAST), out)
    assert result.ran == STAGES
    return out


def test_every_stage_runs_and_the_summary_has_every_model_and_split(finished: Path):
    summary = json.loads((finished / "summary.json").read_text())
    rows = {(r["name"], r["split"]): r for r in summary["stages"]}
    assert set(rows) == {(m, s) for m in ("base", "dpo-p0.1", "rloo-s0") for s in ("train", "heldout")}
    for row in rows.values():
        assert set(row) >= {"name", "model", "pass_at_1", "dps_norm", "beyond", "reward_mean", "split"}
        assert 0.0 <= row["pass_at_1"] <= 1.0 and (finished / row["model"]).is_dir()  # relative to the run
    for name in STAGES:
        rec = stage_record(finished, name)
        assert rec["finished"] is True and rec["config_hash"]
    assert stage_record(finished, "rl")["inputs"] == {"dpo/out": stage_record(finished, "rl")["inputs"]["dpo/out"]}
    report = (finished / "report.md").read_text()
    assert "### builtin, train split" in report and "rloo" in report and "pass_vs_dps.png" in report
    assert (finished / "pass_vs_dps.png").stat().st_size > 0 and (finished / "rl_curves.png").stat().st_size > 0
    assert summary["rl_curves"]["rloo-s0"][0]["step"] == 0  # the curve starts before the first RL step
    # The references of a split were measured once and shared: every model's folder holds the same counts.
    refs = [(finished / "evaluate" / "out" / "builtin-train" / m / "references.jsonl").read_text()
            for m in ("base", "dpo-p0.1", "rloo-s0")]
    counts = [sorted((json.loads(line)["key"], json.loads(line).get("counts")) for line in r.splitlines())
              for r in refs]
    assert counts[0] == counts[1] == counts[2]


def test_a_rerun_skips_every_finished_stage(finished: Path):
    before = {n: stage_record(finished, n)["finished_at"] for n in STAGES}
    result = run_pipeline(load_pipeline_config(FAST), finished)
    assert result.ran == [] and result.skipped == STAGES
    assert {n: stage_record(finished, n)["finished_at"] for n in STAGES} == before


def test_a_moved_run_folder_resumes_from_anywhere(finished: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    import shutil

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(finished, moved, symlinks=True)
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = run_pipeline(load_pipeline_config(FAST), Path("run"))  # relative, from another folder
    assert result.ran == [] and result.skipped == STAGES
    rec = stage_record(moved, "dpo")
    assert not Path(rec["outputs"]["models"]["p0.1"]).is_absolute()  # paths are kept relative to the run


def test_force_redoes_that_stage_and_those_after_it(finished: Path, tmp_path: Path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    before = {n: stage_record(out, n)["finished_at"] for n in STAGES}
    result = run_pipeline(load_pipeline_config(FAST), out, force="rl")
    assert result.ran == ["rl", "evaluate"] and result.skipped == STAGES[:5]
    after = {n: stage_record(out, n)["finished_at"] for n in STAGES}
    assert all(after[n] == before[n] for n in STAGES[:5]) and all(after[n] > before[n] for n in ("rl", "evaluate"))
    with pytest.raises(EffirlError, match="no such stage"):
        run_pipeline(load_pipeline_config(FAST), out, force="sft")


def test_a_changed_input_is_refused_until_forced(finished: Path, tmp_path: Path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    data = out / "dpo_data" / "out" / "p0.1" / "dpo.jsonl"
    data.write_text(data.read_text() + "\n")
    with pytest.raises(EffirlError, match="dpo_data/out changed since it finished"):
        run_pipeline(load_pipeline_config(FAST), out)
    shutil.rmtree(out / "sample" / "out")
    with pytest.raises(EffirlError, match="sample/out was removed since it finished"):
        run_pipeline(load_pipeline_config(FAST), out)


def _kill_when(config: Path, out: Path, ready: Callable[[], bool], timeout_s: float = 240.0) -> None:
    """Start ``effirl pipeline run`` in a subprocess and SIGKILL it (its whole group) once ``ready()``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "effirl.cli", "pipeline", "run", "--config", str(config),
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the run never reached the point of the kill")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_a_kill_during_sample_resumes_without_redoing_samples(tmp_path: Path):
    config = fast_config(tmp_path, **{"sample.generate.transformers.batch_size": 2, "rl.enabled": False})
    out = tmp_path / "run"
    samples = out / "sample" / "out" / "samples.jsonl"
    _kill_when(config, out, lambda: len(_lines(samples)) >= 4)
    kept = _lines(samples)
    assert 4 <= len(kept) < 12 and not stage_record(out, "sample")["finished"]
    result = run_pipeline(load_pipeline_config(config), out)
    assert result.ran == ["sample", "score", "dpo_data", "dpo", "evaluate"] and result.skipped == ["base"]
    final = _lines(samples)
    assert len(final) == 12 and final[: len(kept)] == kept  # the finished samples were kept, not made again
    assert len({(r["task_id"], r["sample_index"]) for r in final}) == 12


def test_a_kill_during_rl_resumes_from_its_last_checkpoint(tmp_path: Path):
    config = fast_config(tmp_path, **{"rl.train.max_steps": 3})
    out = tmp_path / "run"
    checkpoints = out / "rl" / "out" / "rloo-s0" / "checkpoints"
    _kill_when(config, out, lambda: (checkpoints / "checkpoint-2" / "trainer_state.json").exists())
    assert not stage_record(out, "rl")["finished"]
    result = run_pipeline(load_pipeline_config(config), out)
    assert result.ran == ["rl", "evaluate"]
    metrics = _lines(out / "rl" / "out" / "rloo-s0" / "metrics.jsonl")
    steps = [r["step"] for r in metrics if "loss" in r]
    assert steps == [1, 2, 3]  # steps 1 and 2 were not trained again
    assert json.loads((out / "rl" / "out" / "rloo-s0" / "train_summary.json").read_text())["steps"] == 3


def test_the_init_and_warmup_base(tmp_path: Path):
    config = fast_config(tmp_path, base={"init": {"size": "tiny", "seed": 1},
                                         "warmup": {"mix": {"broken_per_task": 1},
                                                    "train": {"max_steps": 2, "batch_size": 4,
                                                              "per_device_batch_size": 4}}})
    from effirl.pipeline import stages
    from effirl.pipeline.splits import select_tasks, split_tasks
    from effirl.tasks import load

    cfg = load_pipeline_config(config)
    tasks = split_tasks(select_tasks(load("builtin"), cfg.tasks), cfg.split)
    ctx = stages.Context(config=cfg, run_dir=tmp_path / "run", tasks=tasks, progress=lambda *a: None)
    made = stages.run_base(ctx)
    assert made["origin"] == "init:tiny+warmup" and (Path(ctx.path(made["model"])) / "model.safetensors").is_file()
    assert made["corpus"]["tasks"] == 4 and made["corpus"]["by_kind"]["slow reference"] == 3 * 4
    rows = _lines(tmp_path / "run" / "base" / "out" / "warmup" / "corpus.jsonl")
    assert {r["kind"] for r in rows} == {"slow reference", "faster reference", "broken variant"}


def test_the_shipped_base_was_trained_on_the_corpus_this_code_builds(pool):  # noqa: ANN001
    from effirl.data.warmup import WarmupMix, warmup_rows
    from effirl.models.shipped import shipped_card
    from effirl.tasks import load

    card = shipped_card("builtin-tiny-warm")
    _, stats = warmup_rows(load("builtin"), WarmupMix(**card["corpus"]["mix"]), pool, seed=card["seed"])
    assert stats["messages_sha256_16"] == card["corpus"]["messages_sha256_16"]


def test_plan_of_every_shipped_config():
    assert {"cpu-demo", "cpu-ablation", "paper-qwen7b"} <= set(shipped_configs())
    runner = CliRunner()
    for name in shipped_configs():
        got = runner.invoke(app, ["pipeline", "plan", "--config", name])
        assert got.exit_code == 0, got.output
        assert "estimate:" in got.output
        cfg = load_pipeline_config(name)
        assert [s.name for s in make_plan(cfg)] == stage_names(cfg)
    paper = load_pipeline_config("paper-qwen7b")
    assert paper.rl.algorithms == ["rloo"] and paper.dpo_data.proportions == [0.1]
    assert paper.rl.train["learning_rate"] == 1e-6 and paper.rl.train["num_generations"] == 64
    ablation = load_pipeline_config("cpu-ablation")
    assert set(ablation.rl.algorithms) == {"rloo", "grpo", "grpo_round"} and len(ablation.rl.seeds) == 3
    assert ablation.dpo_data.proportions == [0.0, 0.1, 0.5, 1.0]


@pytest.mark.parametrize(("change", "message"), [
    ({"dpo.train.lerning_rate": 1.0}, "field 'dpo.train.lerning_rate': unknown key"),
    ({"rl.train.num_generations": "many"}, "field 'rl.train.num_generations'"),
    ({"sample.generate.model": "x"}, "field 'sample.generate.model': this key is filled in by the pipeline"),
    ({"rl.proportion": 0.5}, "rl.proportion 0.5 is not among dpo_data.proportions"),
    ({"evaluate.inputs_sed": 3}, "field 'evaluate.inputs_sed': unknown key"),
    ({"base.model": "x"}, "give exactly one of model, shipped, init"),
    ({"sample.split": "all"}, "sample.split is 'all' but some tasks are held out"),
    ({"dpo_data.proportions": [0.1, 1.5]}, "field 'dpo_data.proportions.1'"),
    ({"evaluate.suites": [{"suite": "nosuch"}]}, "unknown suite 'nosuch'"),
    ({"evaluate.suites": [{"suite": "humaneval+", "splits": ["heldout"]}]}, "is not the training suite"),
    ({"evaluate.generate.seed": 3}, "field 'evaluate.generate.seed': this key is filled in by the pipeline"),
    ({"rl.train.resume": False}, "field 'rl.train.resume': this key is filled in by the pipeline"),
])
def test_config_errors_name_the_file_and_key(tmp_path: Path, change: dict, message: str):
    config = fast_config(tmp_path, **change)
    with pytest.raises(InputFormatError) as err:
        load_pipeline_config(config)
    assert message in str(err.value) and str(config) in str(err.value)
    if "lerning" in message:
        assert "row" in str(err.value)


def test_cli_errors_are_one_line():
    runner = CliRunner()
    got = runner.invoke(app, ["pipeline", "run", "--config", "no-such-config", "--out", "x"])
    assert got.exit_code == 2 and "unknown config 'no-such-config'; shipped configs: " in got.output
    assert "cpu-demo" in got.output and "Traceback" not in got.output
    got = runner.invoke(app, ["pipeline", "plan", "--config", "missing/file.yaml"])
    assert got.exit_code == 2 and "does not exist" in got.output
