"""Typed configs read from YAML (or JSON) files, with command-line flags on top.

Why it exists: every trainer and every pipeline stage has a typed (pydantic) config, and a user's mistake in one
must come back as one line naming the file, the line and the key, never as a pydantic traceback. Flags given on
the command line override the file's keys (dotted names reach nested sections).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from effirl.errors import InputFormatError

M = TypeVar("M", bound=BaseModel)
Lines = dict[tuple[str, ...], int]


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> Lines:
    """The 1-based line of every mapping key in a composed YAML document, by its path."""
    out: Lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            out.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            out.update(_key_lines(item, path))
    return out


def read_mapping(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """The top-level mapping of a YAML/JSON file and the line of each key; errors name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFormatError(str(p), "no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(str(p), f"cannot read the config: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputFormatError(str(p), f"not valid YAML: {problem}",
                               row=mark.line + 1 if mark is not None else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputFormatError(str(p), f"a config must be a mapping of keys, not {type(data).__name__}", row=1)
    return data, _key_lines(node)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key == "a.b"``, creating the sections on the way."""
    parts = key.split(".")
    here = data
    for part in parts[:-1]:
        nxt = here.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            here[part] = nxt
        here = nxt
    here[parts[-1]] = value


def _line_of(loc: tuple[str, ...], lines: Lines) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The field names of the (sub)model that holds ``loc``'s last key, to list them in an error."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}) or {})


def validate(model: type[M], data: Mapping[str, Any], source: str, lines: Lines | None = None,
             flags: set[str] | None = None) -> M:
    """``model`` built from ``data``; the first problem becomes an error naming the source, line and key.

    ``flags``: dotted keys whose values came from the command line (their errors name the flag, not the file).
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc = tuple(str(x) for x in err["loc"])
        key = ".".join(loc) or None
        unknown = [".".join(str(x) for x in e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        if err["type"] == "extra_forbidden":
            parents = {u.rpartition(".")[0] for u in unknown}
            known = _fields_at(model, loc) if len(parents) == 1 else []
            message = "unknown key" + (f"s {', '.join(unknown)}" if len(unknown) > 1 else "")
            message += f"; known keys here: {', '.join(known)}" if known else ""
            errors = [e for e in errors if e["type"] != "extra_forbidden"] + [err]
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        more = len(errors) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        if flags and key in flags:
            raise InputFormatError("command line", message, field=f"--{key.replace('_', '-')}") from None
        raise InputFormatError(source, message, row=_line_of(loc, lines or {}), field=key) from None


def load_config(model: type[M], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                defaults: Mapping[str, Any] | None = None) -> M:
    """A typed config: ``defaults``, then the file's keys, then ``overrides`` (dotted keys; ``None`` skipped)."""
    data: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        set_dotted(data, key, value)
    lines: Lines = {}
    source = "command line"
    if path is not None:
        from_file, lines = read_mapping(path)
        _merge(data, from_file)
        source = str(path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        set_dotted(data, key, value)
    return validate(model, data, source, lines, flags=set(given))


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write a config as YAML (what a run used, kept beside its outputs)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
