"""Decontamination: training tasks sharing an entry-point signature or a prompt with an evaluation task go."""

from __future__ import annotations

from pathlib import Path

import pytest
from stage1_fixtures import S, make_scored, prompt_fn

from effirl.data import DPODataConfig, build_dpo
from effirl.data.decontaminate import decontaminate, normalized_prompt, parse_suites, signatures
from effirl.errors import EffirlError
from effirl.tasks import Reference, Task, TestCase, load
from effirl.tasks.builtin_loader import builtin_dir
from effirl.tasks.model import EntryKind

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "evalplus"
HUMANEVAL = SHARED / "HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP = SHARED / "MbppPlus-v0.2.0.jsonl.gz"


def task(tid: str, prompt: str, entry: str, code: str = "", kind: EntryKind = EntryKind.FUNCTION) -> Task:
    refs = (Reference(label="ref", code=code),) if code else ()
    return Task(id=tid, suite="train", prompt=prompt, entry_point=entry, entry_kind=kind,
                tests=(TestCase(args=(1,), expected=1),), references=refs)


def test_signatures_from_prompt_code_references_and_methods():
    t = task("t/1", "def close(numbers: list[float], threshold: float = 0.5) -> bool:\n    ...\n", "close")
    assert signatures(t) == {"close(numbers, threshold)"}
    prose = task("t/2", "Write a function.\nassert add_up(1, 2) == 3\n", "add_up",
                 "def add_up(a, b):\n    return a + b\n")
    assert signatures(prose) == {"add_up(a, b)"}
    method = task("t/3", "Two sum.", "twoSum",
                  "class Solution:\n    def twoSum(self, nums, target):\n        pass\n", EntryKind.METHOD)
    assert signatures(method) == {"twosum(nums, target)"}
    header_only = task("t/4", "Complete:\ndef f(a, b=2, *rest):\n", "f")  # no code: read from the header
    assert signatures(header_only) == {"f(a, b, *rest)"}


def test_a_task_matching_by_signature_or_normalized_prompt_is_dropped():
    evaluation = [task("eval/1", "def has_close_elements(numbers, threshold):\n    pass\n",
                       "has_close_elements"),
                  task("eval/2", "Return the SUM of a list!", "total")]
    train = [task("train/sig", "Are two numbers close?", "has_close_elements",
                  "def has_close_elements(numbers, threshold):\n    return False\n"),
             task("train/prompt", "return the sum  of a list", "my_sum"),
             task("train/other-params", "Close?", "has_close_elements",
                  "def has_close_elements(xs, eps):\n    return False\n"),
             task("train/keep", "Something else.", "other")]
    kept, dropped = decontaminate(train, evaluation)
    assert [t.id for t in kept] == ["train/other-params", "train/keep"]
    assert [(d.task_id, d.reason, d.match) for d in dropped] == [("train/sig", "signature", "eval/1"),
                                                                 ("train/prompt", "prompt", "eval/2")]
    assert normalized_prompt(train[1]) == normalized_prompt(evaluation[1])


def test_parse_suites():
    assert parse_suites(["humaneval+,mbpp+:/data/m.jsonl.gz", "evalperf"]) == [
        ("humaneval+", None), ("mbpp+", "/data/m.jsonl.gz"), ("evalperf", None)]
    with pytest.raises(EffirlError):
        parse_suites([":x"])


@pytest.mark.skipif(not (HUMANEVAL.is_file() and MBPP.is_file()),
                    reason="HumanEval+/MBPP+ files not in ../shared/data/evalplus")
def test_a_task_with_a_humaneval_or_mbpp_signature_is_dropped():
    he, mbpp = load("humaneval+", str(HUMANEVAL)), load("mbpp+", str(MBPP))
    train = [task("train/he", "Check if any two numbers are closer than the threshold.", "has_close_elements",
                  "def has_close_elements(numbers, threshold):\n    return False\n"),
             task("train/mbpp", "Shared elements.", "similar_elements",
                  "def similar_elements(test_tup1, test_tup2):\n    return ()\n"),
             *load("builtin")]
    kept, dropped = decontaminate(train, [*he, *mbpp])
    assert {(d.task_id, d.match) for d in dropped} == {("train/he", "HumanEval/0"), ("train/mbpp", "Mbpp/2")}
    assert len(kept) == len(train) - 2  # none of the builtin tasks is a HumanEval or MBPP problem


def test_the_builder_drops_and_reports(tmp_path: Path):
    plan = {"builtin/pair_sum_count": [S("pass", 1.0), S("wrong_answer")],
            "builtin/fib_mod": [S("pass", 1.0), S("wrong_answer")]}
    folder = make_scored(tmp_path / "scored", plan)
    # An evaluation suite (in the builtin format) that asks pair_sum_count under another id.
    suite = tmp_path / "evalsuite"
    suite.mkdir()
    text = (builtin_dir() / "pair_sum_count.toml").read_text()
    (suite / "pair_sum_count.toml").write_text(text)
    stats = build_dpo(DPODataConfig(scored=folder, out=tmp_path / "d", proportion=0,
                                    decontaminate=[f"builtin:{suite}"]), prompt_fn=prompt_fn)
    assert [(d.task_id, d.reason) for d in stats.dropped] == [("builtin/pair_sum_count", "signature")]
    assert stats.tasks == 2 and stats.tasks_kept == 1 and stats.pairs["correctness"] == 1
    assert stats.decontaminated_against == [f"builtin:{suite}"]
