"""Broken variants by AST mutation: one plausible edit each, and only those the sandbox judges wrong are kept."""

from __future__ import annotations

import ast
import random

from effirl.data.mutants import OPERATORS, failing_variants, mutants, sample_mutants
from effirl.execution.pool import Pool
from effirl.tasks.model import Reference, Task, TestCase

CODE = '''
def count_small(nums, limit):
    """How many values are below limit."""
    if not nums:
        return 0
    count = 0
    for i in range(len(nums)):
        if nums[i] < limit:
            count += 1
    return max(count, 0)
'''


def test_each_mutant_is_one_edit_of_the_original_and_parses():
    got = list(mutants(CODE))
    assert {m.operator for m in got} == set(OPERATORS)
    original = ast.unparse(ast.parse(CODE))
    texts = [m.code for m in got]
    assert len(set(texts)) == len(texts) and original + "\n" not in texts
    for m in got:
        ast.parse(m.code)
        changed = [a for a, b in zip(original.splitlines(), m.code.splitlines(), strict=False) if a != b]
        assert len(m.code.splitlines()) <= len(original.splitlines())
        assert len(changed) <= 1 or m.operator == "drop_guard"
    assert any("range(len(nums) - 1)" in t for t in texts)
    assert any("nums[i] <= limit" in t for t in texts)
    assert any("count = 1" in t for t in texts)
    assert any("min(count, 0)" in t for t in texts)
    assert any("if not nums" not in t for t in texts)


def test_sampling_is_seeded_and_spread_over_operators():
    a = sample_mutants(CODE, 4, random.Random(1))
    b = sample_mutants(CODE, 4, random.Random(1))
    assert a == b and len({m.operator for m in a}) == 4
    assert list(mutants("def broken(:\n")) == []


def test_only_mutants_that_fail_are_kept(pool: Pool):
    # The guard is invisible to these tests (no negative input), so dropping it gives a program that passes:
    # it must not be offered as "broken".
    ref = "def f(n):\n    if n < 0:\n        return 0\n    total = 0\n    for _ in range(2):\n        total += n\n    return total\n"
    task = Task(id="t/double", suite="t", prompt="def f(n):\n", entry_point="f",
                tests=(TestCase(args=(1,), expected=2), TestCase(args=(5,), expected=10)),
                references=(Reference(label="ref", code=ref),))
    assert any(m.operator == "drop_guard" for m in mutants(ref))
    kept = failing_variants(pool, [task], per_reference=10)
    assert {b.mutant.operator for b in kept} == {"range_bound", "initial_value"}
    assert all(b.status == "wrong_answer" for b in kept)
    assert "drop_guard" not in {b.mutant.operator for b in kept}
