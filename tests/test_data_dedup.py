"""AST dedup: renamed locals, comments, blank lines and docstrings collapse; real differences do not."""

from __future__ import annotations

from pathlib import Path

import pytest
from stage1_fixtures import S, make_scored, prompt_fn

from effirl.data.dedup import dedup, normalize
from effirl.data.scored import load_scored

BASE = '''
def pair_sum_count(nums, target):
    """Count pairs."""
    seen = {}
    total = 0
    for x in nums:
        total += seen.get(target - x, 0)
        seen[x] = seen.get(x, 0) + 1
    return total
'''

# Same program: locals renamed, a comment, blank lines, another docstring, other layout.
VARIANT = '''
def pair_sum_count(values, goal):
    # one pass with a hash map



    counts = {}; answer = 0
    for v in values:   # each element
        answer += counts.get(goal - v, 0)
        counts[v] = counts.get(v, 0) + 1
    return answer
'''


@pytest.mark.parametrize("other", [
    BASE.replace("seen = {}", "seen={}").replace("total += ", "total  +=  "),
    BASE.replace('"""Count pairs."""', "'''Another docstring\n    over two lines.'''"),
    BASE.replace("    return total", "\n\n    return total  # done"),
    VARIANT,
])
def test_equivalent_variants_normalize_equal(other: str):
    assert normalize(other) == normalize(BASE)


@pytest.mark.parametrize("other", [
    BASE.replace("seen.get(target - x, 0)", "seen.get(x - target, 0)"),  # other arithmetic
    BASE.replace("def pair_sum_count", "def pair_count"),  # other entry point (not a local)
    BASE.replace("seen = {}", "seen = dict()"),  # a call of a builtin is not a literal
    BASE.replace("seen.get(x, 0) + 1", "seen.get(x, 0) + 2"),
])
def test_real_differences_stay_apart(other: str):
    assert normalize(other) != normalize(BASE)


def test_globals_builtins_and_attributes_keep_their_names():
    a = "import math\nLIMIT = 3\ndef f(x):\n    return math.sqrt(x) + LIMIT + len([x])\n"
    b = "import math\nLIMIT = 3\ndef f(y):\n    return math.sqrt(y) + LIMIT + len([y])\n"
    c = "import math\nLIMIT = 3\ndef f(y):\n    return math.floor(y) + LIMIT + len([y])\n"
    assert normalize(a) == normalize(b) != normalize(c)
    assert "math" in normalize(a) and "LIMIT" in normalize(a)


def test_nested_functions_comprehensions_lambdas_and_methods():
    a = '''
class Solution:
    def count(self, grid):
        n = len(grid)
        def inside(i, j):
            return 0 <= i < n and 0 <= j < n
        cells = [(r, c) for r in range(n) for c in range(n) if inside(r, c)]
        key = lambda p: p[0] * n + p[1]
        return len(sorted(cells, key=key))
'''
    b = '''
class Solution:
    def count(me, board):
        size = len(board)
        def ok(a, b):
            return 0 <= a < size and 0 <= b < size
        pts = [(u, v) for u in range(size) for v in range(size) if ok(u, v)]
        order = lambda q: q[0] * size + q[1]
        return len(sorted(pts, key=order))
'''
    assert normalize(a) == normalize(b)
    assert normalize(a) != normalize(b.replace("def count", "def total"))  # a method name is an attribute


def test_unparseable_text_is_whitespace_normalized_only():
    assert normalize("I would sort   it.\n") == normalize("I would sort it.")
    assert normalize("I would sort it.") != normalize("I would hash it.")


def test_dedup_keeps_one_per_group_at_random_with_the_seed(tmp_path: Path):
    tid = "builtin/pair_sum_count"
    plan = {tid: [S("pass", 100.0, BASE), S("pass", 101.0, VARIANT), S("pass", 99.0, BASE + "\n\n# tail\n"),
                  S("pass", 300.0), S("wrong_answer")]}
    scored = load_scored(make_scored(tmp_path, plan), prompt_fn=prompt_fn)
    result = dedup(scored.samples, "ast", seed=0)
    assert len(result.kept) == 3 and result.removed == 2
    assert result.group_sizes == {1: 2, 3: 1}
    assert result.largest == [(tid, 3)]
    picks = {next(s.index for s in dedup(scored.samples, "ast", seed=k).kept if s.index <= 3)
             for k in range(20)}
    assert len(picks) > 1  # the seed decides which copy is kept ...
    again = [s.key for s in dedup(scored.samples, "ast", seed=5).kept]
    assert again == [s.key for s in dedup(scored.samples, "ast", seed=5).kept]  # ... the same seed, the same
    assert dedup(scored.samples, "exact", seed=0).removed == 0  # the texts all differ
    assert dedup(scored.samples, "none", seed=0).removed == 0


def test_dedup_never_merges_samples_of_different_tasks(tmp_path: Path):
    code = "def f():\n    return 1\n"
    plan = {"builtin/pair_sum_count": [S("wrong_answer", code=code)],
            "builtin/fib_mod": [S("wrong_answer", code=code)]}
    scored = load_scored(make_scored(tmp_path, plan), prompt_fn=prompt_fn)
    assert len(dedup(scored.samples, "ast").kept) == 2


def test_a_program_that_both_passed_and_failed_is_left_out(tmp_path: Path):
    tid = "builtin/pair_sum_count"
    flaky = "def pair_sum_count(nums, target):\n    return 0\n"
    plan = {tid: [S("pass", 100.0, flaky), S("timeout", code=flaky + "\n# the same program\n"),
                  S("pass", 300.0), S("wrong_answer")]}
    scored = load_scored(make_scored(tmp_path, plan), prompt_fn=prompt_fn)
    result = dedup(scored.samples, "ast", seed=0)
    assert result.mixed_groups == 1 and result.removed == 2
    assert sorted(s.index for s in result.kept) == [3, 4]  # neither copy can be a chosen or a rejected side
