"""Choosing a meter: ``auto`` takes perf if a counter opens, else callgrind, else CPU time with a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable

from effirl.errors import EffirlError
from effirl.meters import callgrind, perf
from effirl.meters.base import Meter
from effirl.meters.callgrind import CallgrindMeter
from effirl.meters.cputime import CpuTimeMeter
from effirl.meters.perf import PerfMeter

log = logging.getLogger(__name__)
METERS = ("auto", "perf", "callgrind", "cputime")
CPUTIME_WARNING = (
    "WARNING: neither hardware counters nor valgrind are available; measuring CPU time, which is noisy. "
    "Efficiency results from this run are not comparable across machines or runs."
)


def available_meters(
    perf_probe: Callable[[], tuple[bool, str]] = perf.probe,
    callgrind_probe: Callable[[], tuple[bool, str]] = callgrind.probe,
) -> dict[str, tuple[bool, str]]:
    """Each meter with whether it works here and, if not, why."""
    return {"perf": perf_probe(), "callgrind": callgrind_probe(), "cputime": (True, "")}


def _usable(perf_probe: Callable[[], tuple[bool, str]],
            callgrind_probe: Callable[[], tuple[bool, str]]) -> str:
    """The meters that work here, as ``effirl meters`` lists them."""
    found = [n for n, (ok, _) in available_meters(perf_probe, callgrind_probe).items() if ok]
    return f"available here: {', '.join(found)} (see `effirl meters`)"


def select_meter(
    name: str = "auto",
    perf_probe: Callable[[], tuple[bool, str]] = perf.probe,
    callgrind_probe: Callable[[], tuple[bool, str]] = callgrind.probe,
) -> Meter:
    """The meter called ``name``; an explicit choice that cannot work is an error, not a silent fallback."""
    if name not in METERS:
        raise EffirlError(f"unknown meter {name!r}; choose one of {', '.join(METERS)}; "
                          f"{_usable(perf_probe, callgrind_probe)}")
    if name == "cputime":
        log.warning(CPUTIME_WARNING)
        return CpuTimeMeter()
    if name in ("perf", "callgrind"):
        ok, why = (perf_probe if name == "perf" else callgrind_probe)()
        if not ok:
            raise EffirlError(f"meter {name!r} is not available here: {why}; "
                              f"{_usable(perf_probe, callgrind_probe)}")
        return PerfMeter() if name == "perf" else CallgrindMeter()
    ok, why = perf_probe()
    if ok:
        return PerfMeter()
    log.info("perf meter unavailable (%s); trying callgrind", why)
    ok, why2 = callgrind_probe()
    if ok:
        return CallgrindMeter()
    log.warning("callgrind unavailable (%s)", why2)
    log.warning(CPUTIME_WARNING)
    return CpuTimeMeter()
