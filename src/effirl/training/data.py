"""The training rows of ``effirl train``: an ``effirl data`` folder, a ``datasets`` folder, a JSON Lines file
or a hub dataset, checked to have the columns its trainer reads.

Why it exists: ``--data`` should accept what ``effirl data sft|dpo`` writes and what users already have, and a
wrong one (DPO pairs given to the SFT trainer, a file without ``messages``) must be one clear line before any
model is loaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from effirl.errors import EffirlError
from effirl.extras import require
from effirl.training.common import first_line

log = logging.getLogger(__name__)
Kind = Literal["sft", "dpo"]
COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "sft": [("messages",), ("prompt", "completion")],
    "dpo": [("prompt", "chosen", "rejected")],
}


def _local(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 \
        or name.endswith((".json", ".jsonl", ".jsonl.gz", ".parquet"))


def load_rows(data: str, kind: Kind) -> Any:
    """The ``datasets.Dataset`` of ``data`` for the ``kind`` trainer (see the module doc)."""
    datasets = require("datasets", "train", "loading training data")
    path = Path(data).expanduser()
    if path.is_dir():
        stats = path / "stats.json"
        if stats.is_file() and (path / "dataset").is_dir():  # written by effirl data
            try:
                built = json.loads(stats.read_text(encoding="utf-8")).get("kind")
            except (ValueError, AttributeError):
                built = None
            if built and built != kind:
                raise EffirlError(f"{data} holds {built} data; effirl train {kind} needs {kind} data "
                                  f"(effirl data {kind})")
            ds = datasets.load_from_disk(str(path / "dataset"))
        elif (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(path))
        else:
            raise EffirlError(f"{data} is neither an effirl data folder nor a datasets folder (save_to_disk)")
    elif path.is_file():
        builder = "parquet" if path.name.endswith(".parquet") else "json"
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:  # noqa: BLE001 - pyarrow/json errors of many kinds: one line
            raise EffirlError(f"cannot read {data} as {builder} rows: {first_line(exc)}") from None
    elif _local(data):
        raise EffirlError(f"training data {data} does not exist")
    else:
        try:
            ds = datasets.load_dataset(data, split="train")
        except Exception as exc:  # noqa: BLE001 - network, auth, unknown dataset: one line
            raise EffirlError(f"cannot load the dataset {data} from the hub: {first_line(exc)}") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise EffirlError(f"{data} has no 'train' split (it has {', '.join(ds)})")
        ds = ds["train"]
    _check_columns(ds, data, kind)
    if len(ds) == 0:
        raise EffirlError(f"{data} has no rows")
    log.info("%d %s rows from %s", len(ds), kind, data)
    return ds


def _check_columns(ds: Any, data: str, kind: Kind) -> None:
    names = set(ds.column_names)
    if not any(set(want) <= names for want in COLUMNS[kind]):
        wanted = " or ".join("+".join(w) for w in COLUMNS[kind])
        raise EffirlError(f"{data} has columns {', '.join(sorted(names))}; {kind} training needs {wanted}")


def to_prompt_completion(ds: Any) -> Any:
    """SFT rows of ``messages`` as conversational prompt/completion (the last assistant turn is the
    completion), so that the loss falls on the response only, as LlamaFactory does by default."""
    if "prompt" in ds.column_names and "completion" in ds.column_names:
        return ds.select_columns(["prompt", "completion"])

    def split(row: dict[str, Any]) -> dict[str, Any]:
        messages = row["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise EffirlError("an SFT row's messages must end with the assistant's turn")
        return {"prompt": messages[:-1], "completion": messages[-1:]}

    return ds.map(split, remove_columns=ds.column_names)
