"""Reading M2WF's intermediate answers: the recalled problems and the model's confidence in each.

Why it exists: M2WF (arXiv 2501.07892) plans only from the recollections the model is confident in, so the
sampler must read two free-text answers. Models format them loosely ("Problem 2: 7/10", "**Problem 2** —
confidence 0.7", "2. 70%"), so the readers here accept the common shapes and report ``None`` rather than
guess; the strategy then falls back to the direct prompt and says why in the sample's metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A heading line that opens a recollection: "### Problem 2", "**Problem 2:** ...", "Problem #2 - ...".
_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:problem|example|recollection)"
                      r"[ \t]*#?[ \t]*(\d{1,2})\b([^\n]*)$", re.I | re.M)
# The number of the recollection a rating line is about: "Problem 2", "#2", or a leading "2." / "2)" / "2:".
_ABOUT = re.compile(r"(?:problem|example|recollection)[ \t]*#?[ \t]*(\d{1,2})\b"
                    r"|^[ \t*#-]*(\d{1,2})[ \t]*[.):]", re.I)
# A rating: "7/10", "7 / 10", "0.7", "70%", "7 out of 10", "8.5".
_RATING = re.compile(r"(\d+(?:\.\d+)?)[ \t]*"
                     r"(?:(/)[ \t]*(\d+(?:\.\d+)?)|(%)|out[ \t]+of[ \t]+(\d+(?:\.\d+)?))?", re.I)
_KEYED = re.compile(r"confiden\w*\W{0,3}(?:is\W{0,2}|of\W{0,2})?(\d+(?:\.\d+)?)", re.I)


@dataclass(frozen=True)
class Recollection:
    """One recalled problem: its number in the recall answer and its text (its heading's title first)."""

    number: int
    text: str


def split_recollections(response: str) -> list[Recollection]:
    """The recall answer cut at its ``Problem <n>`` heading lines; first occurrence of a number wins."""
    heads = list(_HEADING.finditer(response))
    out: list[Recollection] = []
    seen: set[int] = set()
    for i, m in enumerate(heads):
        number = int(m.group(1))
        end = heads[i + 1].start() if i + 1 < len(heads) else len(response)
        title = m.group(2).strip(" \t:.-*_#)(\u2013\u2014")
        body = response[m.end():end].strip()
        body = f"{title}\n{body}".strip() if title else body
        if number in seen or not body:
            continue
        seen.add(number)
        out.append(Recollection(number, body))
    return out


def _normalise(value: float, denominator: float | None, percent: bool) -> float | None:
    if percent:
        score = value / 100
    elif denominator is not None:
        if denominator <= 0:
            return None
        score = value / denominator
    elif value <= 1:
        score = value
    elif value <= 10:
        score = value / 10
    elif value <= 100:
        score = value / 100
    else:
        return None
    return score if 0.0 <= score <= 1.0 else None


def parse_confidences(response: str, numbers: set[int]) -> dict[int, float]:
    """Confidence in [0, 1] of each recollection number of ``numbers`` that a line of ``response`` rates.

    A line counts when it names one of ``numbers`` and a rating follows the name; ratings on a 0-10 scale, as
    fractions, percentages or ``x/y`` are normalised. A number rated twice keeps its first rating.
    """
    out: dict[int, float] = {}
    for line in response.splitlines():
        about = _ABOUT.search(line)
        if not about:
            continue
        number = int(about.group(1) or about.group(2))
        if number not in numbers or number in out:
            continue
        score = _rating(line[about.end():])
        if score is not None:
            out[number] = score
    return out


def _rating(text: str) -> float | None:
    """The rating in the rest of a line: the first with an explicit scale ("7/10", "70%", "7 out of 10"), else
    the number after "confidence", else the last number (so that "Problem 2 (3Sum): 8" reads 8)."""
    bare: list[float] = []
    for m in _RATING.finditer(text):
        value = float(m.group(1))
        den = m.group(3) or m.group(5)
        if den or m.group(4):
            return _normalise(value, float(den) if den else None, bool(m.group(4)))
        bare.append(value)
    keyed = _KEYED.search(text)
    if keyed:
        return _normalise(float(keyed.group(1)), None, False)
    return _normalise(bare[-1], None, False) if bare else None


def format_recollections(kept: list[tuple[Recollection, float]]) -> str:
    """The kept recollections as the plan step shows them, most confident first."""
    parts = []
    for i, (rec, score) in enumerate(sorted(kept, key=lambda x: -x[1]), start=1):
        parts.append(f"### Recalled problem {i} (confidence {score * 10:.0f}/10)\n{rec.text}")
    return "\n\n".join(parts)
