"""SFT rows and DPO pairs from hand-built scored folders with known verdicts and counts."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from stage1_fixtures import S, make_scored, program, prompt_fn, read_jsonl
from typer.testing import CliRunner

from effirl.batch import RunSpec, record_run
from effirl.cli import app
from effirl.data import DPODataConfig, SFTDataConfig, build_dpo, build_sft
from effirl.errors import EffirlError
from effirl.samples import read_samples
from effirl.tasks import by_id, load

A, B, C, D = "builtin/pair_sum_count", "builtin/fib_mod", "builtin/lis_length", "builtin/merge_intervals"
MSGS = [{"role": "system", "content": "Be fast."}, {"role": "user", "content": "Solve lis_length, fast."}]


def sft(tmp_path: Path, plan: dict[str, list[S]], **kw: object) -> tuple[list[dict], object]:
    folder = make_scored(tmp_path / "scored", plan)
    stats = build_sft(SFTDataConfig(scored=folder, out=tmp_path / "sft", **kw), prompt_fn=prompt_fn)
    return read_jsonl(tmp_path / "sft" / "sft.jsonl"), stats


def dpo(tmp_path: Path, plan: dict[str, list[S]], name: str = "dpo",
        **kw: object) -> tuple[list[dict], object]:
    folder = tmp_path / "scored"
    if not (folder / "run.json").exists():
        make_scored(folder, plan)
    stats = build_dpo(DPODataConfig(scored=folder, out=tmp_path / name, **kw), prompt_fn=prompt_fn)
    return read_jsonl(tmp_path / name / "dpo.jsonl"), stats


def test_sft_takes_the_two_fastest_distinct_correct_samples(tmp_path: Path):
    dup = program(A, 1) + "\n\n# the same program again\n"
    plan = {
        A: [S("pass", 500.0), S("pass", 100.0), S("pass", 300.0), S("pass", 101.0, code=dup),
            S("wrong_answer"), S("pass", None), S("timeout")],
        B: [S("wrong_answer"), S("runtime_error"), S("format_error", code="I would loop.")],
        C: [S("pass", 70.0, messages=MSGS), S("pass", 20.0, messages=MSGS)],
    }
    rows, stats = sft(tmp_path, plan)
    by_task = {t: [r for r in rows if r["task_id"] == t] for t in (A, B, C)}
    a = by_task[A]
    assert [r["rank"] for r in a] == [1, 2]
    assert a[0]["count"] in (100.0, 101.0)
    assert a[1]["count"] == 300.0  # not the duplicate of the fastest
    assert by_task[B] == []  # only failing: skipped ...
    assert stats.skipped["only failing samples"] == [B]  # ... and reported, not fatal
    c = by_task[C]
    assert [r["count"] for r in c] == [20.0, 70.0]
    assert c[0]["messages"][:-1] == MSGS  # the messages that produced the sample are the prompt
    assert c[0]["messages"][-1] == {"role": "assistant", "content": program(C, 1)}  # the response as written
    assert a[0]["messages"][0] == {"role": "user", "content": "Write pair_sum_count."}  # the default prompt
    assert a[0]["messages"][-1]["content"].startswith("```python\ndef pair_sum_count(")  # fenced, as it asks
    assert stats.rows == 4 and stats.tasks_used == 2 and stats.dedup.removed == 1
    assert (stats.correct, stats.incorrect, stats.correct_unmeasured) == (6, 5, 1)


def test_sft_cap_takes_every_tasks_fastest_first(tmp_path: Path):
    plan = {t: [S("pass", 10.0 * (i + 1)) for i in range(3)] for t in (A, B, C)}
    rows, stats = sft(tmp_path, plan, max_rows=4, per_task=3)
    ranks = Counter(r["rank"] for r in rows)
    assert ranks == {1: 3, 2: 1} and stats.rows == 4


def _plentiful() -> dict[str, list[S]]:
    """Four tasks, each with 10 correct samples 1.5x apart (45 efficiency pairs) and 10 failing (100)."""
    statuses = itertools.cycle(["wrong_answer", "runtime_error", "timeout", "no_entry_point", "format_error"])
    return {t: [S("pass", 1000.0 * 1.5 ** i) for i in range(10)] + [S(next(statuses)) for _ in range(10)]
            for t in (A, B, C, D)}


def test_each_pair_beats_its_rejected_by_kind(tmp_path: Path):
    rows, stats = dpo(tmp_path, _plentiful(), proportion=0.5, max_rows=200)
    assert stats.pairs == {"correctness": 100, "efficiency": 100}
    for r in rows:
        assert r["prompt"] == [{"role": "user", "content": f"Write {r['task_id'].split('/')[1]}."}]
        assert r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant"
        assert r["chosen_key"].split("#")[0] == r["rejected_key"].split("#")[0] == r["task_id"]
        if r["kind"] == "correctness":
            assert r["chosen_status"] == "pass" and r["rejected_status"] != "pass"
            assert r["rejected_count"] is None
        else:
            assert r["chosen_status"] == r["rejected_status"] == "pass"
            assert r["rejected_count"] >= 1.1 * r["chosen_count"]
    assert len({(r["chosen_key"], r["rejected_key"]) for r in rows}) == len(rows)  # no pair twice
    assert {r["rejected_status"] for r in rows if r["kind"] == "correctness"} == {
        "wrong_answer", "runtime_error", "timeout", "no_entry_point", "format_error"}


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_the_proportion_holds(tmp_path: Path, p: float):
    rows, stats = dpo(tmp_path, _plentiful(), proportion=p, max_rows=100)
    kinds = Counter(r["kind"] for r in rows)
    assert len(rows) == 100
    assert kinds["efficiency"] == round(100 * p) and kinds["correctness"] == 100 - round(100 * p)
    assert stats.proportion == pytest.approx(p) and stats.short is None
    for kind in ("correctness", "efficiency"):  # balanced across tasks
        per_task = Counter(r["task_id"] for r in rows if r["kind"] == kind)
        if kinds[kind]:
            assert len(per_task) == min(4, kinds[kind])
            assert max(per_task.values()) - min(per_task.values()) <= 1


def test_the_proportion_without_a_cap_uses_as_many_pairs_as_the_share_allows(tmp_path: Path):
    rows, stats = dpo(tmp_path, _plentiful(), proportion=0.5)
    assert stats.pairs_available == {"correctness": 400, "efficiency": 180}
    assert stats.pairs == {"correctness": 180, "efficiency": 180}


def test_same_seed_same_pairs_other_seed_other_pairs(tmp_path: Path):
    first, _ = dpo(tmp_path, _plentiful(), name="a", proportion=0.1, max_rows=50, seed=1)
    again, _ = dpo(tmp_path, _plentiful(), name="b", proportion=0.1, max_rows=50, seed=1)
    other, _ = dpo(tmp_path, _plentiful(), name="c", proportion=0.1, max_rows=50, seed=2)
    assert first == again and first != other


@pytest.mark.parametrize(("min_ratio", "pairs", "near"), [(1.0, 3, 0), (1.1, 2, 1), (2.0, 1, 2), (2.5, 0, 3)])
def test_min_ratio_drops_near_ties(tmp_path: Path, min_ratio: float, pairs: int, near: int):
    plan = {A: [S("pass", 100.0), S("pass", 105.0), S("pass", 200.0), S("wrong_answer")]}
    if pairs == 0:
        with pytest.raises(EffirlError, match="no DPO pairs.*lower --min-ratio"):
            dpo(tmp_path, plan, proportion=1.0, min_ratio=min_ratio)
        return
    rows, stats = dpo(tmp_path, plan, proportion=1.0, min_ratio=min_ratio)
    assert len(rows) == pairs and stats.near_ties == near
    assert all(r["rejected_count"] >= min_ratio * r["chosen_count"] for r in rows)
    assert all(r["rejected_count"] > r["chosen_count"] for r in rows)


def test_a_kind_running_short_is_reported(tmp_path: Path):
    plan = {A: [S("pass", 100.0), S("pass", 300.0)] + [S("wrong_answer") for _ in range(10)]}
    rows, stats = dpo(tmp_path, plan, name="keep", proportion=0.5, max_rows=10)
    assert Counter(r["kind"] for r in rows) == {"efficiency": 1, "correctness": 1}  # the share kept: 2 rows
    assert stats.short == "efficiency" and any("ran short" in n for n in stats.notes)
    rows, stats = dpo(tmp_path, plan, name="fill", proportion=0.5, max_rows=10, fill=True)
    assert Counter(r["kind"] for r in rows) == {"efficiency": 1, "correctness": 9}  # filled up: share 0.1
    assert stats.short == "efficiency" and stats.proportion == pytest.approx(0.1)


def test_a_kind_running_short_is_reported_without_a_cap_too(tmp_path: Path):
    plan = {A: [S("pass", 100.0), S("pass", 300.0)] + [S("wrong_answer") for _ in range(10)]}
    rows, stats = dpo(tmp_path, plan, proportion=0.5)  # 20 correctness pairs, 1 efficiency pair: 2 rows
    assert len(rows) == 2 and stats.pairs_available == {"correctness": 20, "efficiency": 1}
    assert stats.short == "efficiency" and any("ran short" in n for n in stats.notes)


def test_a_rebuild_cut_before_its_end_never_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from effirl.data import export

    plan = {A: [S("pass", 100.0), S("pass", 300.0), S("wrong_answer")]}
    dpo(tmp_path, plan, proportion=0.5)
    assert (tmp_path / "dpo" / "stats.json").is_file()

    def cut(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "save_dataset", cut)
    with pytest.raises(KeyboardInterrupt):
        dpo(tmp_path, plan, proportion=0.5)
    assert not (tmp_path / "dpo" / "stats.json").exists()


def test_pairs_only_between_samples_of_the_same_prompt(tmp_path: Path):
    other = [{"role": "user", "content": "Another wording."}]
    plan = {C: [S("pass", 10.0, messages=MSGS), S("wrong_answer", messages=other),
                S("pass", 50.0, messages=other)]}
    rows, _ = dpo(tmp_path, plan, proportion=0.0)
    assert len(rows) == 1 and rows[0]["prompt"] == other and rows[0]["chosen_count"] == 50.0


def test_a_folder_without_counts_is_refused_for_efficiency_pairs(tmp_path: Path):
    plan = {A: [S("pass"), S("wrong_answer")]}
    folder = make_scored(tmp_path / "scored", plan, meter=None)  # as effirl check writes it
    with pytest.raises(EffirlError, match="no instruction counts.*--proportion 0"):
        build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0.1), prompt_fn=prompt_fn)
    with pytest.raises(EffirlError, match="no instruction counts"):
        build_sft(SFTDataConfig(scored=folder, out=tmp_path / "s"), prompt_fn=prompt_fn)
    stats = build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0.0), prompt_fn=prompt_fn)
    assert stats.pairs == {"correctness": 1, "efficiency": 0}


def test_a_missing_or_changed_samples_file_is_refused(tmp_path: Path):
    folder = make_scored(tmp_path / "scored", {A: [S("pass", 1.0), S("wrong_answer")]})
    samples = folder / "samples.jsonl"
    moved = tmp_path / "elsewhere.jsonl"
    samples.rename(moved)
    with pytest.raises(EffirlError, match="is missing; pass --samples"):
        build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0), prompt_fn=prompt_fn)
    stats = build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0, samples=moved),
                      prompt_fn=prompt_fn)  # the moved copy, same sha256: accepted
    assert stats.rows == 1
    moved.write_text(moved.read_text().replace("return 0", "return 7"))
    with pytest.raises(EffirlError, match="has changed since"):
        build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0, samples=moved),
                  prompt_fn=prompt_fn)


def test_results_of_another_samples_file_are_refused(tmp_path: Path):
    """A run resumed in the same folder with an edited samples file: run.json matches the new file, but the
    results of the old lines must not be joined with the new lines."""
    folder = make_scored(tmp_path / "scored", {A: [S("pass", 1.0), S("wrong_answer")]})
    samples = folder / "samples.jsonl"
    samples.write_text(samples.read_text().replace("return 1", "return 8"))
    record_run(RunSpec(suite="builtin", out=folder, samples=samples),
               read_samples(samples, by_id(load("builtin"))))
    with pytest.raises(EffirlError, match="another version of line 2"):
        build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0), prompt_fn=prompt_fn)


def test_a_folder_without_run_json_and_an_out_of_the_other_kind_are_refused(tmp_path: Path):
    folder = make_scored(tmp_path / "scored", {A: [S("pass", 1.0), S("pass", 3.0), S("wrong_answer")]})
    build_sft(SFTDataConfig(scored=folder, out=tmp_path / "out"), prompt_fn=prompt_fn)
    with pytest.raises(EffirlError, match="holds sft data"):
        build_dpo(DPODataConfig(scored=folder, out=tmp_path / "out"), prompt_fn=prompt_fn)
    (folder / "run.json").unlink()
    with pytest.raises(EffirlError, match="no run.json"):
        build_sft(SFTDataConfig(scored=folder, out=tmp_path / "out"), prompt_fn=prompt_fn)


def test_cli_builds_and_prints_the_stats_table(tmp_path: Path):
    folder = make_scored(tmp_path / "scored", _plentiful())
    got = CliRunner().invoke(app, ["data", "dpo", "--scored", str(folder), "--out", str(tmp_path / "d"),
                                   "--proportion", "0.1", "--max-rows", "50"])
    assert got.exit_code == 0, got.output
    assert "efficiency share" in got.output and "0.1 / 0.100" in got.output
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["pairs"] == {"correctness": 45, "efficiency": 5} and stats["kind"] == "dpo"
    for row in read_jsonl(tmp_path / "d" / "dpo.jsonl"):  # samples without messages: the "direct" prompt
        assert row["prompt"][-1]["role"] == "user"
        assert f"def {row['task_id'].split('/')[1]}(" in row["prompt"][-1]["content"]


@pytest.mark.parametrize(("args", "field"), [
    (["--proportion", "1.5"], "--proportion"),
    (["--proportion", "-0.1"], "--proportion"),
    (["--min-ratio", "0.9"], "--min-ratio"),
    (["--dedup", "fuzzy"], "--dedup"),
])
def test_cli_bad_values_are_one_line(tmp_path: Path, args: list[str], field: str):
    folder = make_scored(tmp_path / "scored", {A: [S("pass", 1.0), S("wrong_answer")]})
    got = CliRunner().invoke(app, ["data", "dpo", "--scored", str(folder), "--out", str(tmp_path / "d"),
                                   *args])
    assert got.exit_code == 2
    assert field in got.output and "Traceback" not in got.output
    assert len(got.output.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_cli_config_file_with_an_unknown_key_names_its_line(tmp_path: Path):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("scored: x\nout: y\nproportoin: 0.2\n")
    got = CliRunner().invoke(app, ["data", "dpo", "--config", str(cfg)])
    assert got.exit_code == 2
    assert "row 3" in got.output and "proportoin" in got.output and "Traceback" not in got.output
