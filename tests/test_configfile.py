"""Typed configs from YAML: unknown keys, wrong types and bad YAML name the file, line and key; flags win."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from effirl.configfile import load_config
from effirl.errors import InputFormatError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-6
    steps: int = 10


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    train: Inner = Inner()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_file_then_flags(tmp_path: Path):
    p = write(tmp_path, "name: a\ntrain:\n  lr: 0.5\n")
    cfg = load_config(Outer, p, {"train.steps": 3, "train.lr": None})
    assert cfg == Outer(name="a", train=Inner(lr=0.5, steps=3))


def test_unknown_nested_key_names_file_line_and_known_keys(tmp_path: Path):
    p = write(tmp_path, "name: a\ntrain:\n  lr: 0.5\n  stepz: 3\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p)
    msg = str(err.value)
    assert str(p) in msg and "row 4" in msg and "train.stepz" in msg and "lr, steps" in msg


def test_every_unknown_key_is_named(tmp_path: Path):
    p = write(tmp_path, "name: a\nnmae: b\ntrain:\n  lr: 0.5\n  stepz: 3\n  lrr: 1\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p)
    msg = str(err.value)
    assert "unknown keys" in msg and all(k in msg for k in ("nmae", "train.stepz", "train.lrr"))
    assert "more problem" not in msg and "known keys here" not in msg  # keys of several sections: no one list
    p = write(tmp_path, "name: a\ntrain:\n  stepz: 3\n  lrr: 1\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p)
    assert "unknown keys train.stepz, train.lrr; known keys here: lr, steps" in str(err.value)


def test_wrong_type_names_the_key(tmp_path: Path):
    p = write(tmp_path, "name: a\ntrain:\n  steps: many\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p)
    assert "row 3" in str(err.value) and "train.steps" in str(err.value) and "'many'" in str(err.value)


def test_bad_flag_is_named_as_a_flag(tmp_path: Path):
    p = write(tmp_path, "name: a\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p, {"train.steps": "x"})
    assert "--train.steps" in str(err.value) and "command line" in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path: Path):
    p = write(tmp_path, "name: a\ntrain: [unclosed\n")
    with pytest.raises(InputFormatError) as err:
        load_config(Outer, p)
    assert "not valid YAML" in str(err.value) and "row" in str(err.value)
    with pytest.raises(InputFormatError, match="no such config file"):
        load_config(Outer, tmp_path / "absent.yaml")
    with pytest.raises(InputFormatError, match="required key is missing"):
        load_config(Outer, write(tmp_path, "train: {}\n"))
