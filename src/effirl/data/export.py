"""Writing a build: JSON Lines, a Hugging Face ``datasets`` folder, LlamaFactory files, and ``stats.json``.

Why it exists: the rows are TRL's conversational formats (``messages`` for SFT;
``prompt``/``chosen``/``rejected`` lists of messages for DPO), which ``effirl train`` reads from
``OUT/dataset``; the paper trained with LlamaFactory, whose users get the same rows as ShareGPT files
registered in a ``dataset_info.json``. Every file is written to a temporary name and moved into place, and
``stats.json`` comes last: a folder with it is complete.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from effirl.data.stats import DataStats
from effirl.errors import EffirlError
from effirl.extras import require

Kind = Literal["sft", "dpo"]
STATS = "stats.json"
DATASET = "dataset"
LLAMAFACTORY = "llamafactory"
DATASET_INFO = "dataset_info.json"
_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system"}


def check_out(out: Path, kind: Kind) -> None:
    """Refuse an output folder that holds a build of the other kind (their files would be mixed)."""
    path = out / STATS
    if not path.is_file():
        return
    try:
        other = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (ValueError, AttributeError):
        return
    if other and other != kind:
        raise EffirlError(f"{out} holds {other} data; write the {kind} data to another --out folder")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    _write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def features(kind: Kind) -> Any:
    """The ``datasets`` schema of each kind (explicit, so that a column of nulls keeps its type)."""
    datasets = require("datasets", "train", "writing a datasets folder")
    value = datasets.Value
    messages = [{"role": value("string"), "content": value("string")}]
    if kind == "sft":
        return datasets.Features({"task_id": value("string"), "key": value("string"), "rank": value("int32"),
                                  "count": value("float64"), "messages": messages})
    return datasets.Features({
        "task_id": value("string"), "kind": value("string"), "prompt": messages, "chosen": messages,
        "rejected": messages, "chosen_key": value("string"), "rejected_key": value("string"),
        "chosen_status": value("string"), "rejected_status": value("string"),
        "chosen_count": value("float64"), "rejected_count": value("float64")})


def save_dataset(rows: list[dict[str, Any]], path: Path, kind: Kind) -> None:
    """``rows`` as a ``datasets.Dataset`` saved with ``save_to_disk`` (read back with ``load_from_disk``)."""
    datasets = require("datasets", "train", "writing a datasets folder")
    ds = datasets.Dataset.from_list(rows, features=features(kind))
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per write would interleave with the CLI's own
    try:
        ds.save_to_disk(str(tmp))
    finally:
        if bars:
            datasets.enable_progress_bars()
    if path.exists():
        shutil.rmtree(path)
    tmp.replace(path)


def _split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return "", messages


def write_llamafactory(rows: list[dict[str, Any]], folder: Path, kind: Kind) -> None:
    """ShareGPT-format files (OpenAI-style role/content tags) and their ``dataset_info.json`` entry."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[dict[str, Any]] = []
    for r in rows:
        if kind == "sft":
            system, messages = _split_system(r["messages"])
            out.append({"messages": messages, "system": system})
        else:
            system, messages = _split_system(r["prompt"])
            out.append({"messages": messages, "chosen": r["chosen"][-1], "rejected": r["rejected"][-1],
                        "system": system})
    has_system = any(o["system"] for o in out)
    if not has_system:
        for o in out:
            del o["system"]
    columns: dict[str, str] = {"messages": "messages"}
    if kind == "dpo":
        columns.update(chosen="chosen", rejected="rejected")
    if has_system:
        columns["system"] = "system"
    entry: dict[str, Any] = {"file_name": f"{kind}.json", "formatting": "sharegpt", "columns": columns,
                             "tags": dict(_TAGS)}
    if kind == "dpo":
        entry["ranking"] = True
    _write_text(folder / f"{kind}.json", json.dumps(out, ensure_ascii=False, indent=1))
    _write_text(folder / DATASET_INFO, json.dumps({f"effirl_{kind}": entry}, indent=2))


def write_all(out: Path, rows: list[dict[str, Any]], kind: Kind, stats: DataStats) -> DataStats:
    """Every output of a build; ``stats.files`` lists them."""
    out.mkdir(parents=True, exist_ok=True)
    (out / STATS).unlink(missing_ok=True)  # written last: a build cut in the middle never looks complete
    write_jsonl(out / f"{kind}.jsonl", rows)
    save_dataset(rows, out / DATASET, kind)
    write_llamafactory(rows, out / LLAMAFACTORY, kind)
    stats.files = {"jsonl": str(out / f"{kind}.jsonl"), "dataset": str(out / DATASET),
                   "llamafactory": str(out / LLAMAFACTORY / DATASET_INFO), "stats": str(out / STATS)}
    _write_text(out / STATS, stats.model_dump_json(indent=2))
    return stats
