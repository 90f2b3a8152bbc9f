"""Plausible broken variants of a correct program: the bugs a model makes, made on purpose by AST mutation.

Why it exists: the CPU miniature's warm-up corpus must make its base model fail sometimes (as an LLM's prior
does), and tests and benchmarks need realistic wrong answers beside the references. Each operator makes one
small, typical slip: an off-by-one range bound, a flipped comparison, a dropped edge-case guard, a wrong
initial value, min for max. A mutant is only a *candidate*: whether it really fails is decided by running it
(:func:`failing_variants` keeps those the sandbox judges wrong), never assumed.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from effirl.execution.checking import Sample, check_samples
from effirl.execution.pool import Pool
from effirl.tasks.model import Task

_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}


@dataclass(frozen=True)
class Mutant:
    """A one-edit variant of a program, and which operator made it where."""

    code: str
    operator: str
    site: int  # index of the edited node among the operator's candidate sites


def _range_bound(node: ast.AST) -> ast.AST | None:
    """``range(.., b)`` -> ``range(.., b - 1)``: the loop misses its last element."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and 1 <= len(node.args) <= 2 and not node.keywords):
        new = copy.deepcopy(node)
        new.args[-1] = ast.BinOp(left=new.args[-1], op=ast.Sub(), right=ast.Constant(1))
        return new
    return None


def _flip_compare(node: ast.AST) -> ast.AST | None:
    """``a < b`` -> ``a <= b`` (and the other strict/non-strict pairs): a boundary handled wrongly."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
        new = copy.deepcopy(node)
        new.ops = [_FLIP[type(node.ops[0])]()]
        return new
    return None


def _drop_guard(node: ast.AST) -> ast.AST | None:
    """A function's leading ``if ...: return ...`` guard removed: the edge case it handled is forgotten."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body = list(node.body)
        start = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else 0
        for i in range(start, len(body) - 1):
            stmt = body[i]
            if isinstance(stmt, ast.If) and not stmt.orelse and any(isinstance(s, ast.Return) for s in stmt.body):
                new = copy.deepcopy(node)
                del new.body[i]
                return new
    return None


def _initial_value(node: ast.AST) -> ast.AST | None:
    """``x = 0`` -> ``x = 1`` (and 1 -> 0): an accumulator started at the wrong value."""
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant) and type(node.value.value) is int
            and node.value.value in (0, 1)):
        new = copy.deepcopy(node)
        new.value = ast.Constant(1 - node.value.value)
        return new
    return None


def _min_max(node: ast.AST) -> ast.AST | None:
    """``max(..)`` <-> ``min(..)``: the wrong extreme."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
        new = copy.deepcopy(node)
        new.func = ast.Name(id="min" if node.func.id == "max" else "max", ctx=ast.Load())
        return new
    return None


OPERATORS: dict[str, Callable[[ast.AST], ast.AST | None]] = {
    "range_bound": _range_bound,
    "flip_compare": _flip_compare,
    "drop_guard": _drop_guard,
    "initial_value": _initial_value,
    "min_max": _min_max,
}


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target = target
        self.replacement = replacement

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.replacement
        return super().generic_visit(node)


def mutants(code: str) -> Iterator[Mutant]:
    """Every one-edit variant of ``code`` the operators make, in a fixed order, each different from ``code``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return
    original = ast.unparse(tree)
    seen = {original}
    for name, op in OPERATORS.items():
        n_sites = sum(1 for n in ast.walk(tree) if op(n) is not None)
        for i in range(n_sites):
            clone = copy.deepcopy(tree)  # the walk order of a copy is the original's: the i-th site is the same
            site = [n for n in ast.walk(clone) if op(n) is not None][i]
            replacement = op(site)
            assert replacement is not None
            mutated = _Replace(site, replacement).visit(clone)
            text = ast.unparse(ast.fix_missing_locations(mutated))
            if text not in seen:
                seen.add(text)
                yield Mutant(code=text + "\n", operator=name, site=i)


def sample_mutants(code: str, k: int, rng: random.Random) -> list[Mutant]:
    """Up to ``k`` distinct mutants of ``code``, chosen with ``rng`` spread over the operators."""
    by_op: dict[str, list[Mutant]] = {}
    for m in mutants(code):
        by_op.setdefault(m.operator, []).append(m)
    for group in by_op.values():
        rng.shuffle(group)
    ops = sorted(by_op)
    rng.shuffle(ops)
    out: list[Mutant] = []
    while len(out) < k and any(by_op.values()):
        for op in ops:
            if by_op[op] and len(out) < k:
                out.append(by_op[op].pop())
    return out


def task_mutants(task: Task, per_reference: int, seed: int = 0) -> list[tuple[str, Mutant]]:
    """Candidate broken variants of each of ``task``'s references: ``(reference label, mutant)`` pairs."""
    rng = random.Random(f"{seed}:{task.id}")
    return [(ref.label, m) for ref in task.references for m in sample_mutants(ref.code, per_reference, rng)]


@dataclass(frozen=True)
class BrokenVariant:
    """A mutant the sandbox judged not to pass, with the status it got."""

    task_id: str
    reference: str
    mutant: Mutant
    status: str


def failing_variants(pool: Pool, tasks: list[Task], per_reference: int, seed: int = 0) -> list[BrokenVariant]:
    """The candidate mutants of every task's references that really fail its tests (run on ``pool``).

    A mutant that still passes (an edit the tests cannot see, or one that does not matter) is dropped: a
    "broken" variant that is in fact correct would teach the opposite of what it is meant to.
    """
    samples: list[Sample] = []
    origin: dict[str, tuple[str, Mutant]] = {}
    for task in tasks:
        for label, m in task_mutants(task, per_reference, seed):
            s = Sample(task_id=task.id, record={"task_id": task.id, "solution": m.code}, index=len(samples))
            samples.append(s)
            origin[s.key] = (label, m)
    index = {t.id: t for t in tasks}
    out = [BrokenVariant(s.task_id, *origin[s.key], status=v.status.value)
           for s, v in check_samples(pool, index, samples) if not v.passed]
    return sorted(out, key=lambda b: (b.task_id, b.reference, b.mutant.operator, b.mutant.site))
