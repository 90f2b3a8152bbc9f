"""From what a TRL trainer passes a reward function to the groups the group reward is computed over.

Why it exists: TRL calls a reward function with ``prompts``, ``completions`` (text, or chat messages), the
dataset's columns repeated once per completion, and hooks; the efficiency reward needs, for each completion,
its task, its response text and the group (same prompt, same step) it is scored against. This module does that
reading, says in one line what is wrong with a batch (no ``task_id`` column, an unknown task, lengths that do
not match), and refuses a group split across processes: under several processes each one scores only its own
completions, and a group reward computed on half a group is wrong without any sign (trl issue #3896).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from effirl.errors import EffirlError

SPLIT_ADVICE = ("keep every group in one process: make per_device_train_batch_size x steps_per_generation "
                "(gradient_accumulation_steps by default) a multiple of num_generations")


@dataclass(frozen=True)
class Entry:
    """One completion as the reward sees it."""

    index: int  # position in the call's lists
    task_id: str
    text: str  # the response (the assistant's messages, joined)
    group: str  # the key of its group: task and prompt


def message_text(message: Any) -> str:
    """The text of one chat message (``content`` as a string, or as a list of typed parts)."""
    if not isinstance(message, Mapping):
        return str(message)
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                if part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def completion_text(completion: Any) -> str:
    """The response text of a completion: a string, or (conversational) the assistant messages, joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return message_text(completion)
    if isinstance(completion, Sequence):
        said = [message_text(m) for m in completion
                if not isinstance(m, Mapping) or m.get("role", "assistant") == "assistant"]
        return "\n\n".join(said)
    raise EffirlError(f"a completion must be a string or a list of chat messages, "
                      f"not {type(completion).__name__}")


def prompt_key(prompt: Any) -> str:
    """A stable key of a prompt (a string, or chat messages)."""
    if isinstance(prompt, str):
        text = prompt
    else:
        text = json.dumps(prompt, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def read_batch(prompts: Sequence[Any] | None, completions: Sequence[Any], task_ids: Sequence[Any] | None,
               known: Mapping[str, Any], suite: str) -> list[Entry]:
    """The entries of one call; an :class:`EffirlError` (one line) for a batch the reward cannot score."""
    n = len(completions)
    if task_ids is None:
        raise EffirlError("the efficiency reward needs a 'task_id' column in the training dataset (the id of "
                          f"each prompt's task in suite {suite!r}); the batch has none")
    if len(task_ids) != n:
        raise EffirlError(f"the 'task_id' column has {len(task_ids)} values for {n} completions")
    if prompts is not None and len(prompts) != n:
        raise EffirlError(f"{len(prompts)} prompts for {n} completions")
    entries = []
    for i, (completion, task_id) in enumerate(zip(completions, task_ids, strict=True)):
        if not isinstance(task_id, str) or not task_id:
            raise EffirlError(f"completion {i}: task_id must be a non-empty string, got {task_id!r}")
        if task_id not in known:
            some = ", ".join(list(known)[:3])
            raise EffirlError(f"completion {i}: unknown task {task_id!r}: not in suite {suite!r} "
                              f"({len(known)} tasks, e.g. {some})")
        group = f"{task_id}|{prompt_key(prompts[i]) if prompts is not None else ''}"
        entries.append(Entry(i, task_id, completion_text(completion), group))
    return entries


def groups_of(entries: Sequence[Entry]) -> dict[str, list[int]]:
    """Indices of the entries of each group, in the order the groups first appear (entries may interleave)."""
    out: dict[str, list[int]] = {}
    for e in entries:
        out.setdefault(e.group, []).append(e.index)
    return out


def _distributed() -> Any:
    """``torch.distributed`` when this process is one of several of an initialized process group (never
    imports
    torch: a trainer that runs several processes has loaded it already)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except (RuntimeError, ValueError):
        return None
    return None


def check_groups_whole(sizes: Mapping[str, int], num_generations: int | None, names: Mapping[str, str],
                       dist: Any = None) -> None:
    """Refuse (one line) a group whose completions are spread over several processes.

    ``sizes``: each local group's number of completions. With several processes (``dist``: an initialized
    ``torch.distributed``, found by itself when ``None``) the processes exchange their groups' keys and sizes
    (every process calls the reward at the same point of the step, so the collective is safe); a group present
    in more than one process is split, unless ``num_generations`` is known and every share is a multiple of it
    (then the same prompt was drawn twice, each copy whole). In one process every group is whole.
    """
    dist = dist or _distributed()
    if dist is None:
        return
    mine = sorted(sizes.items())
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    where: dict[str, list[tuple[int, int]]] = {}
    for rank, groups in enumerate(everyone):
        for key, n in groups or ():
            where.setdefault(key, []).append((rank, n))
    for key, shares in sorted(where.items()):
        if len(shares) < 2:
            continue
        if num_generations and all(n % num_generations == 0 for _, n in shares):
            continue
        desc = ", ".join(f"{n} in process {r}" for r, n in shares)
        task = names.get(key, key.split("|")[0])
        raise EffirlError(f"the completions of one prompt of task {task!r} are split across processes "
                          f"({desc}): a group reward on part of a group is wrong (trl issue #3896); "
                          f"{SPLIT_ADVICE}"
                          + (f" ({num_generations})" if num_generations else ""))
