"""Reward hacks against the efficiency reward: none of them may earn more than the honest program it imitates.

The paper reports two hacks that survived its first reward: an ``lru_cache`` kept across repeated
measurements, and a table of answers for the known tests. Here, under callgrind, a memo (``lru_cache``, a
module-level dict, a file in /tmp) is no cheaper on its second call than on its first, even on the very same
inputs; a program that hard-codes the visible tests' answers and falls back to a slow loop scores like the
honest slow program, since every step measures it on fresh inputs it has never seen; printing PASS or exiting
early scores at most 0; and the count cannot be split, paused or moved to the imports the reward does not
charge.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import reward_cases as rc

from effirl.execution.config import SandboxConfig
from effirl.meters import callgrind
from effirl.training import EfficiencyReward

CALLGRIND_OK, CALLGRIND_WHY = callgrind.probe()
pytestmark = pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
BOX = SandboxConfig(workers=2, test_timeout_s=2.0, total_timeout_s=30.0, cpu_s=30)
TOLERANCE = 0.02  # reward units: two measurements of one program on different inputs differ a little


def make(**kwargs: object) -> EfficiencyReward:
    return EfficiencyReward(suite="builtin", meter="callgrind", workers=2, scales=rc.SCALES, sandbox=BOX,
                            **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reward() -> Iterator[EfficiencyReward]:
    with make() as r:
        yield r


@pytest.fixture(scope="module")
def fixed_inputs() -> Iterator[EfficiencyReward]:
    """The same performance inputs on every call: what a memo would need to pay off."""
    with make(fresh_inputs=False) as r:
        yield r


def group(name: str, texts: list[str]) -> dict[str, list[str]]:
    t = rc.task(name)
    return {"prompts": [t.prompt] * len(texts), "completions": texts, "task_id": [t.id] * len(texts)}


LIS = rc.task("lis_length")
SLOW_BODY = LIS.references[0].code.replace("def lis_length(nums):", "def _slow(nums):")
MEMOS = {
    "lru_cache": "import functools\n\n" + SLOW_BODY + """

@functools.lru_cache(maxsize=None)
def _cached(key):
    return _slow(list(key))

def lis_length(nums):
    return _cached(tuple(nums))
""",
    "module_dict": SLOW_BODY + """

_MEMO = {}

def lis_length(nums):
    key = tuple(nums)
    if key not in _MEMO:
        _MEMO[key] = _slow(nums)
    return _MEMO[key]
""",
    "tmp_file": "import hashlib, json, os\n\n" + SLOW_BODY + """

def lis_length(nums):
    path = "/tmp/memo-" + hashlib.sha256(json.dumps(nums).encode()).hexdigest()
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    value = _slow(nums)
    with open(path, "w") as fh:
        json.dump(value, fh)
    return value
""",
}


@pytest.mark.parametrize("kind", sorted(MEMOS))
@pytest.mark.parametrize("inputs", ["fresh", "fixed"])
def test_a_memo_earns_nothing_on_its_second_call(reward: EfficiencyReward, fixed_inputs: EfficiencyReward,
                                                 kind: str, inputs: str) -> None:
    r = reward if inputs == "fresh" else fixed_inputs
    texts = [rc.completion(LIS, "slow"), rc.completion(LIS, "fast"), rc.fenced(MEMOS[kind])]
    batch = group("lis_length", texts)
    first = rc.call(r, batch, trainer_state=rc.Step(100))
    first_count = r.last_details[2].count
    second = rc.call(r, batch, trainer_state=rc.Step(101))
    second_count = r.last_details[2].count
    assert r.last_details[2].status == "pass"
    print(f"\n{kind} ({inputs} inputs): rewards {first[2]:.3f} then {second[2]:.3f}; counts "
          f"{first_count:,.0f} then {second_count:,.0f}; slow reference {r.last_details[0].count:,.0f}")
    assert second[2] <= first[2] + TOLERANCE
    assert second[2] <= second[0] + 0.1  # no better than the honest slow program it wraps
    assert first_count is not None and second_count is not None
    if inputs == "fixed":  # the same inputs twice: nothing survived from the first measurement
        assert abs(second_count - first_count) / first_count < 1e-3


def test_hard_coded_test_answers_with_a_slow_fallback_score_as_the_honest_slow_program(
        reward: EfficiencyReward) -> None:
    answers = {tuple(tc.args[0]): tc.expected for tc in LIS.tests}
    table = SLOW_BODY + f"""

_KNOWN = {answers!r}

def lis_length(nums):
    key = tuple(nums)
    if key in _KNOWN:  # the visible tests: answered at once
        return _KNOWN[key]
    return _slow(nums)
"""
    batch = group("lis_length", [rc.completion(LIS, "slow"), rc.completion(LIS, "fast"), rc.fenced(table)])
    for step in (200, 201):
        rewards = rc.call(reward, batch, trainer_state=rc.Step(step))
        d = reward.last_details
        assert d[2].status == "pass"  # it is correct: the fallback answers the fresh inputs
        print(f"\nstep {step}: table+fallback {d[2].count:,.0f} ({rewards[2]:.3f}), honest slow "
              f"{d[0].count:,.0f} ({rewards[0]:.3f}), fast {d[1].count:,.0f}")
        assert rewards[2] <= rewards[0] + 0.1


def test_a_table_answering_only_the_known_tests_fails_the_fresh_inputs(reward: EfficiencyReward) -> None:
    answers = {tuple(tc.args[0]): tc.expected for tc in LIS.tests}
    table = f"_KNOWN = {answers!r}\n\ndef lis_length(nums):\n    return _KNOWN.get(tuple(nums), 0)\n"
    rewards = rc.call(reward, group("lis_length", [rc.completion(LIS, "slow"), rc.fenced(table)]),
                      trainer_state=rc.Step(300))
    d = reward.last_details[1]
    assert d.status == "wrong_answer" and d.on_perf_input and rewards[1] == 0.0, d


TRICKS = {
    "print PASS": 'print("PASS")\n',
    "print PASS in the entry point": 'def lis_length(nums):\n    print("PASS")\n'
                                     '    print("All tests passed")\n',
    "sys.exit(0) at import": "import sys\nsys.exit(0)\n",
    "sys.exit(0) in the call": "import sys\n\ndef lis_length(nums):\n    print('OK')\n    sys.exit(0)\n",
    "os._exit(0) in the call": "import os\n\ndef lis_length(nums):\n    os._exit(0)\n",
    "raise SystemExit": "def lis_length(nums):\n    raise SystemExit(0)\n",
    "KeyboardInterrupt": "def lis_length(nums):\n    raise KeyboardInterrupt\n",
    "a forged DONE frame": "import os, struct\n\ndef lis_length(nums):\n"
                           "    os.write(3, struct.pack('<Ici', 0, b'D', 0))\n    os._exit(0)\n",
    "exit at import after defining": "import os\n\ndef lis_length(nums):\n    return 1\n\nos._exit(0)\n",
}


def test_pass_printing_and_early_exit_tricks_score_at_most_zero(reward: EfficiencyReward) -> None:
    texts = [rc.completion(LIS, "slow"), rc.completion(LIS, "fast")] + [rc.fenced(c) for c in TRICKS.values()]
    rewards = rc.call(reward, group("lis_length", texts), trainer_state=rc.Step(400))
    for (name, _), d in zip(TRICKS.items(), reward.last_details[2:], strict=True):
        print(f"\n{name}: {d.status} -> {d.reward} ({d.error})")
        assert d.status != "pass" and d.reward <= 0.0, (name, d)
    assert rewards[:2] == [1.0, 2.0]


def test_the_count_start_cannot_be_reached_again_or_moved_to_the_imports(reward: EfficiencyReward) -> None:
    """``os.lockf`` is where callgrind cuts the set-up off: a program reaching it is refused (it could only
    have
    split its count, all summed). Work hidden in an import hook, an ``__import__`` override or a module-level
    table is the program's own, and counted: none of them scores above the honest slow program."""
    lockf = "import os\n\n" + SLOW_BODY + "\n\ndef lis_length(nums):\n    os.lockf(0, os.F_TEST, 0)\n" \
                                          "    return _slow(nums)\n"
    hook = "import sys, builtins\n\n" + SLOW_BODY + """

_real = builtins.__import__
_SEEN = {}

def _import(name, *args, **kwargs):
    if "nums" in _SEEN and "answer" not in _SEEN:
        _SEEN["answer"] = _slow(_SEEN["nums"])  # the work, done inside an import
    return _real(name, *args, **kwargs)

builtins.__import__ = _import

def lis_length(nums):
    _SEEN.pop("answer", None)
    _SEEN["nums"] = nums
    import bisect  # installed and preimported, but the override still runs, counted
    return _SEEN["answer"]
"""
    finder = "import sys\n\n" + SLOW_BODY + """

class _Finder:
    nums = None
    answer = None

    def find_spec(self, name, path=None, target=None):
        if name == "zz_effirl_work" and _Finder.nums is not None:
            _Finder.answer = _slow(_Finder.nums)
        return None

sys.meta_path.insert(0, _Finder())

def lis_length(nums):
    _Finder.nums = nums
    try:
        import zz_effirl_work  # not installed: the finder runs, in the count
    except ImportError:
        pass
    return _Finder.answer
"""
    texts = [rc.completion(LIS, "slow"), rc.completion(LIS, "fast"), rc.fenced(lockf), rc.fenced(hook),
             rc.fenced(finder)]
    rewards = rc.call(reward, group("lis_length", texts), trainer_state=rc.Step(500))
    d = reward.last_details
    assert d[2].status == "runtime_error" and rewards[2] == 0.0
    assert "os.lockf is not allowed" in (d[2].error or "")
    for i in (3, 4):
        assert d[i].status == "pass", d[i]
        name = ["hook", "finder"][i - 3]
        print(f"\n{name}: {d[i].count:,.0f} instructions, slow reference {d[0].count:,.0f}")
        assert d[i].count is not None and d[0].count is not None and d[i].count >= 0.95 * d[0].count
        assert rewards[i] <= rewards[0] + TOLERANCE


LINE_READER = """
import sys

def lis_length(nums):
    if sys._getframe().f_lineno > 5:
        return -1  # only in a layout where this line is further down
    return _slow(nums)
"""


def test_two_layouts_of_one_syntax_tree_are_judged_apart(reward: EfficiencyReward) -> None:
    """In-call dedup keys on the program's text: two programs with the same tree but other line numbers can
    behave differently (here the second, two blank lines lower, answers garbage), and each gets its own
    verdict instead of sharing the first one's pass."""
    from effirl.execution.parse import normalized

    plain = LINE_READER + SLOW_BODY
    shifted = LINE_READER.replace("import sys\n", "import sys\n\n\n") + SLOW_BODY
    assert normalized(plain) == normalized(shifted) and plain != shifted
    texts = [rc.completion(LIS, "fast"), rc.fenced(plain), rc.fenced(shifted), rc.fenced(plain, "Again:")]
    rewards = rc.call(reward, group("lis_length", texts), trainer_state=rc.Step(600))
    d = reward.last_details
    assert [x.duplicate_of for x in d] == [None, None, None, 1]
    assert d[1].status == d[3].status == "pass" and d[1].count == d[3].count
    assert d[2].status == "wrong_answer" and rewards[2] == 0.0, d[2]
