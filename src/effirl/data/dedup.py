"""Grouping a task's samples into "homogeneous functions": programs whose normalized ASTs are equal.

Why it exists: a model sampled 100 times writes the same program many times over, differing only in names,
comments, docstrings or layout. Training on each copy would overweight it, and a DPO pair of two copies
teaches nothing. The paper groups AST-equivalent snippets and keeps one per group; so does :func:`dedup`,
choosing the kept member at random with the seed.

Normalization: the program is parsed; docstrings and other bare string statements are removed (comments and
formatting never reach the AST); the names local to each function, lambda and comprehension (parameters,
assigned names, loop and ``with``/``except`` targets, local imports, nested definitions) are renamed to
canonical names in order of first appearance. Names that are not local (globals, builtins, attributes,
top-level functions, keyword-argument names) keep their spelling, since renaming them changes behaviour.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from effirl.data.scored import ScoredSample

S = TypeVar("S", bound=ScoredSample)
Mode = Literal["ast", "exact", "none"]
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def _strip_docstrings(tree: ast.AST) -> None:
    """Remove bare string statements (docstrings included) from every body; an emptied body gets ``pass``."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            if len(kept) != len(body):
                setattr(node, name, kept or [ast.Pass()])


def _children_in_scope(node: ast.AST) -> Iterable[ast.AST]:
    """Pre-order walk of ``node``'s own scope: nested scopes are yielded but not entered."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, (*_SCOPES, ast.ClassDef)):
            yield from _children_in_scope(child)


def _binding_names(scope: ast.AST) -> list[str]:
    """The names bound in ``scope`` (a function, lambda or comprehension), in order of first appearance."""
    names: list[str] = []
    declared: set[str] = set()

    def add(name: str | None) -> None:
        if name and name not in names:
            names.append(name)

    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        for arg in _all_args(a):
            add(arg.arg)
        body: list[ast.AST] = list(scope.body) if isinstance(scope.body, list) else [scope.body]
    else:  # a comprehension: its targets are its own; the rest are read from the enclosing scope
        body = []
        for gen in scope.generators:  # type: ignore[attr-defined]
            for n in ast.walk(gen.target):
                if isinstance(n, ast.Name):
                    add(n.id)
        return names
    for stmt in body:
        for n in [stmt, *_children_in_scope(stmt)]:
            if isinstance(n, (ast.Global, ast.Nonlocal)):
                declared.update(n.names)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(n.name)
            elif isinstance(n, ast.ExceptHandler):
                add(n.name)
            elif isinstance(n, ast.alias):
                add(n.asname or n.name.split(".")[0])
            elif isinstance(n, (ast.MatchAs, ast.MatchStar)):
                add(n.name)
            elif isinstance(n, ast.MatchMapping):
                add(n.rest)
    return [n for n in names if n not in declared and n != "*"]


def _all_args(a: ast.arguments) -> list[ast.arg]:
    return [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs,
            *([a.kwarg] if a.kwarg else [])]


class _Renamer(ast.NodeTransformer):
    """Renames each local name to ``_<depth>_<i>``; a name read from an enclosing function keeps its new
    name."""

    def __init__(self) -> None:
        self.stack: list[dict[str, str]] = [{}]  # the module scope renames nothing

    def _rename(self, name: str | None) -> str | None:
        if name is None:
            return None
        return self.stack[-1].get(name, name)

    def _enter(self, scope: ast.AST) -> None:
        mapping = dict(self.stack[-1])
        depth = len(self.stack)
        for i, name in enumerate(_binding_names(scope)):
            mapping[name] = f"_{depth}_{i}"
        self.stack.append(mapping)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        # Decorators, defaults and annotations are evaluated in the enclosing scope; the name binds there.
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        self._defaults(node.args)
        if node.returns is not None:
            node.returns = self.visit(node.returns)
        node.name = self._rename(node.name) or node.name
        self._enter(node)
        for arg in _all_args(node.args):
            if arg.annotation is not None:
                self.stack.append(self.stack[-2])
                arg.annotation = self.visit(arg.annotation)
                self.stack.pop()
            arg.arg = self._rename(arg.arg) or arg.arg
        node.body = [self.visit(s) for s in node.body]
        self.stack.pop()
        return node

    visit_FunctionDef = _function  # noqa: N815 - ast.NodeTransformer's naming
    visit_AsyncFunctionDef = _function  # noqa: N815

    def _defaults(self, args: ast.arguments) -> None:
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [None if d is None else self.visit(d) for d in args.kw_defaults]

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:  # noqa: N802
        self._defaults(node.args)
        self._enter(node)
        for arg in _all_args(node.args):
            arg.arg = self._rename(arg.arg) or arg.arg
        node.body = self.visit(node.body)
        self.stack.pop()
        return node

    def _comprehension(self, node: ast.AST) -> ast.AST:
        # The first iterable is evaluated in the enclosing scope; everything else in the comprehension's.
        gens = node.generators  # type: ignore[attr-defined]
        gens[0].iter = self.visit(gens[0].iter)
        self._enter(node)
        for i, gen in enumerate(gens):
            gen.target = self.visit(gen.target)
            if i:
                gen.iter = self.visit(gen.iter)
            gen.ifs = [self.visit(c) for c in gen.ifs]
        for name in ("elt", "key", "value"):
            if getattr(node, name, None) is not None:
                setattr(node, name, self.visit(getattr(node, name)))
        self.stack.pop()
        return node

    visit_ListComp = _comprehension  # noqa: N815
    visit_SetComp = _comprehension  # noqa: N815
    visit_DictComp = _comprehension  # noqa: N815
    visit_GeneratorExp = _comprehension  # noqa: N815

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:  # noqa: N802
        # The class's name binds in the enclosing scope; its body's names are attributes, not locals.
        node.name = self._rename(node.name) or node.name
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        attributes = {n.id for s in node.body for n in [s, *_children_in_scope(s)]
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        attributes |= {s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.ClassDef))}
        self.stack.append({k: v for k, v in self.stack[-1].items() if k not in attributes})
        node.body = [self.visit(s) for s in node.body]
        self.stack.pop()
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802
        node.id = self._rename(node.id) or node.id
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:  # noqa: N802
        node.name = self._rename(node.name)
        return self.generic_visit(node)

    def visit_alias(self, node: ast.alias) -> ast.AST:
        bound = node.asname or node.name.split(".")[0]
        new = self._rename(bound)
        if new != bound and "." not in node.name:
            node.asname = new
        return node

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.AST:  # noqa: N802
        node.name = self._rename(node.name)
        return self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.AST:  # noqa: N802
        node.name = self._rename(node.name)
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.AST:  # noqa: N802
        node.rest = self._rename(node.rest)
        return self.generic_visit(node)


def normalize(code: str) -> str:
    """The normalized form of a program (see the module doc); text that does not parse is only
    whitespace-normalized."""
    try:
        with warnings.catch_warnings():  # a sample's invalid escape sequences are not our concern
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return "unparsed:" + re.sub(r"\s+", " ", code).strip()
    _strip_docstrings(tree)
    try:
        tree = _Renamer().visit(tree)
        return ast.dump(tree, annotate_fields=False, include_attributes=False)
    except RecursionError:
        return "unparsed:" + re.sub(r"\s+", " ", code).strip()


def group_key(sample: ScoredSample, mode: Mode) -> str:
    """The key under which ``sample`` is a duplicate of another of its task (``none``: its own key)."""
    if mode == "none":
        return sample.key
    text = sample.code if sample.code is not None else sample.response
    if mode == "exact":
        body = text.strip()
    else:
        body = normalize(text)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class DedupResult:
    """The kept samples, and how the groups looked."""

    kept: list[ScoredSample]
    group_sizes: dict[int, int] = field(default_factory=dict)  # group size -> number of groups
    removed: int = 0
    mixed_groups: int = 0  # groups whose members disagree on pass/fail (flaky code): left out entirely
    largest: list[tuple[str, int]] = field(default_factory=list)  # (task id, size) of the largest groups


def dedup(samples: Sequence[S], mode: Mode = "ast", seed: int = 0,
          progress: Callable[[str, int, int], None] | None = None) -> DedupResult:
    """Keep one sample per group of equal keys within each task, chosen at random (seeded); a group whose
    members disagree on pass/fail is left out (``mixed_groups``)."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[ScoredSample]] = defaultdict(list)
    for n, s in enumerate(samples, start=1):
        groups[(s.task_id, group_key(s, mode))].append(s)
        if progress is not None and (n % 500 == 0 or n == len(samples)):
            progress(f"dedup ({mode})", n, len(samples))
    kept_keys: set[str] = set()
    sizes: Counter[int] = Counter()
    mixed = 0
    for (_, _), members in sorted(groups.items(), key=lambda kv: kv[0]):
        sizes[len(members)] += 1
        if len({m.passed for m in members}) > 1:
            # One program that both passed and failed (flaky, or timed out under load): its verdict is not
            # reproducible, so no copy of it may be a chosen or a rejected side. The group is left out.
            mixed += 1
            continue
        choice = members[0] if len(members) == 1 else rng.choice(sorted(members, key=lambda s: s.index))
        kept_keys.add(choice.key)
    largest = sorted(((tid, len(m)) for (tid, _), m in groups.items() if len(m) > 1),
                     key=lambda x: (-x[1], x[0]))
    kept = [s for s in samples if s.key in kept_keys]
    return DedupResult(kept=kept, group_sizes=dict(sorted(sizes.items())), removed=len(samples) - len(kept),
                       mixed_groups=mixed, largest=largest[:5])
