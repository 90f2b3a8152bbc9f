"""Prompt templates, their override file, and M2WF's readers of recollections and confidence ratings.

Pure Python (no model): what every strategy asks, that a user's --prompt-file replaces only the keys it gives,
and that malformed templates or answers are reported (or fallen back from) rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from effirl.errors import EffirlError, InputFormatError
from effirl.generation.m2wf import format_recollections, parse_confidences, split_recollections
from effirl.generation.prompts import (
    STRATEGIES,
    default_templates,
    fill,
    load_templates,
    render,
    task_text,
    template_texts,
)
from effirl.tasks.model import EntryKind, Task


def _task(prompt: str = "def add(a, b):\n    \"\"\"Return a + b, e.g. {'a': 1}.\"\"\"\n", entry: str = "add",
          kind: EntryKind = EntryKind.FUNCTION) -> Task:
    return Task(id="t/add", suite="t", prompt=prompt, entry_point=entry, entry_kind=kind)


def test_single_step_strategies_render_the_task_and_the_format_instruction():
    task = _task()
    seen = set()
    for strategy in ("direct", "efficient", "cot"):
        msgs = render(task, strategy)
        assert [m["role"] for m in msgs] == ["user"]
        text = msgs[0]["content"]
        assert "```python\ndef add(a, b):" in text  # code prompts are fenced as Python
        assert "{'a': 1}" in text  # braces inside the task are not placeholders
        assert "defines the function `add`" in text
        seen.add(text)
    assert len(seen) == 3
    efficient = render(task, "efficient")[0]["content"]
    assert "bottleneck" in efficient and "Straightforward approach" in efficient  # the paper's Figure 4


def test_method_tasks_ask_for_class_solution_and_text_prompts_stay_unfenced():
    task = _task("Given nums, return the length of the longest increasing subsequence.\n\nclass Solution:\n"
                 "    def lengthOfLIS(self, nums: List[int]) -> int:\n", "lengthOfLIS", EntryKind.METHOD)
    text = render(task, "direct")[0]["content"]
    assert "`class Solution` with the method `lengthOfLIS`" in text
    assert "```python\nGiven" not in text and task_text(task).startswith("Given nums")


def test_builtin_tasks_render_with_every_single_step_strategy(builtin_tasks):
    for task in builtin_tasks:
        for strategy in ("direct", "efficient", "cot"):
            assert task.entry_point in render(task, strategy)[-1]["content"]


def test_unknown_strategy_lists_the_known_ones_and_m2wf_is_not_single_step():
    with pytest.raises(EffirlError,
                       match="unknown strategy 'fast'; known strategies: direct, efficient, cot, m2wf"):
        render(_task(), "fast")
    with pytest.raises(EffirlError, match="several model steps"):
        render(_task(), "m2wf")
    assert STRATEGIES == ("direct", "efficient", "cot", "m2wf")


def test_prompt_file_replaces_only_its_keys_and_changes_the_digest(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text("system: You write Python.\nstrategies:\n  cot: 'Think, then code {entry_point}: {task}'\n"
                 "m2wf:\n  k: 2\n")
    t = load_templates(f)
    assert t.strategies.direct == default_templates().strategies.direct
    assert t.m2wf.k == 2 and t.m2wf.recall == default_templates().m2wf.recall
    msgs = render(_task(), "cot", t)
    assert msgs[0] == {"role": "system", "content": "You write Python."}
    assert msgs[1]["content"].startswith("Think, then code add: ```python")
    assert t.digest != default_templates().digest and t.source == str(f)
    assert load_templates(f).digest == t.digest  # stable


def test_prompt_file_errors_name_file_line_and_key(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text("strategies:\n  direct: ok {task}\n  fast: x\n")
    with pytest.raises(InputFormatError, match=r"p.yaml, row 3, field 'strategies.fast': unknown key"):
        load_templates(f)
    f.write_text("strategies:\n  direct: |\n    {task}\n    {formt}\n")
    with pytest.raises(InputFormatError,
                       match=r"row 2, field 'strategies.direct': unknown placeholder \{formt\}"):
        load_templates(f)
    f.write_text("format:\n  function: 'define {task}'\n")  # {task} is not known in a format instruction
    with pytest.raises(InputFormatError, match=r"field 'format.function': unknown placeholder \{task\}"):
        load_templates(f)
    f.write_text("m2wf:\n  min_confidence: 7\n")
    with pytest.raises(InputFormatError, match=r"row 2, field 'm2wf.min_confidence'"):
        load_templates(f)
    with pytest.raises(InputFormatError, match="no such config file"):
        load_templates(tmp_path / "missing.yaml")


def test_fill_is_one_pass_with_escaped_braces():
    assert fill("{a} {{a}} {b} {x: 1} {}", {"a": "{b}", "b": "B"}) == "{b} {a} B {x: 1} {}"
    with pytest.raises(EffirlError, match=r"\{c\}"):
        fill("{c}", {})


def test_template_texts_have_no_placeholders_and_cover_every_template():
    texts = template_texts()
    assert len(texts) == 9  # system is empty by default
    assert not any("{task}" in t or "{entry_point}" in t for t in texts)
    assert any("Straightforward approach" in t for t in texts)


RECALL = """Sure.

### Problem 1: Two Sum
Find two numbers adding to a target.
Steps: hash map.
```python
def two_sum(nums, t): ...
```

**Problem 2** (3Sum)
Triples summing to zero: sort, two pointers.

Problem #3 - Longest substring
Sliding window.
### Problem 3
duplicate number is ignored
"""


def test_split_recollections_reads_the_common_heading_shapes():
    recs = split_recollections(RECALL)
    assert [r.number for r in recs] == [1, 2, 3]
    assert recs[0].text.startswith("Two Sum\nFind two numbers") and "two_sum" in recs[0].text  # title kept
    assert recs[1].text.startswith("3Sum\nTriples") and recs[2].text == "Longest substring\nSliding window."
    assert split_recollections("I recall nothing useful.") == []


@pytest.mark.parametrize("answer,expected", [
    ("Problem 1: 8/10\nProblem 2: 3/10\nProblem 3: 10/10", {1: 0.8, 2: 0.3, 3: 1.0}),
    ("**Problem 1** - confidence 0.9\n**Problem 2** - confidence: 40%", {1: 0.9, 2: 0.4}),
    ("1. 7\n2) 6 out of 10\n3: 95%", {1: 0.7, 2: 0.6, 3: 0.95}),
    ("Problem 2 (3Sum): 8\nProblem 1 (2 pointers): confidence 6", {2: 0.8, 1: 0.6}),
    ("Problem 1: 8/10\nProblem 1: 2/10\nProblem 9: 9/10",
     {1: 0.8}),  # first rating wins; unknown number ignored
    ("I am fairly confident in all of them.", {}),
    ("Problem 1: 250", {}),  # out of any scale
])
def test_parse_confidences(answer: str, expected: dict[int, float]):
    got = parse_confidences(answer, {1, 2, 3})
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)


def test_format_recollections_orders_by_confidence():
    recs = split_recollections(RECALL)
    text = format_recollections([(recs[0], 0.6), (recs[2], 0.9)])
    assert text.index("Sliding") < text.index("Two") and "(confidence 9/10)" in text
