"""How a child's death by a signal is judged, and that a fork server never outlives the process that owns it.

* SIGKILL is ``memory_limit`` only when memory caused it (the kernel's OOM killer acted during the run, or the
  child's peak memory reached its address-space limit); a program that kills itself or its process group is a
  ``runtime_error``; the CPU-time hard limit's SIGKILL is a ``timeout``.
* A run that outlasted its wall clock is a ``timeout`` whatever ended it afterwards (an external SIGTERM that
  beat the parent's own kill).
* A killed parent (SIGKILL) takes its fork server, the namespace's init and the running child with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from procs import descendants, running

from effirl.execution import judge
from effirl.execution import worker as worker_module
from effirl.execution.verdict import Status, Verdict
from effirl.execution.worker import RunOutcome, Worker


def run(worker: Worker, code: str, *, timeout_s: float | None = None) -> Verdict:
    return judge.run_tests(worker, textwrap.dedent(code), "f", "function", [[1]], [2], timeout_s=timeout_s)


@pytest.fixture(scope="module")
def small(start_worker: Callable[..., Worker]) -> Worker:
    """A worker whose children may map 256 MB and use 2 s of CPU."""
    return start_worker(5, memory_mb=256, cpu_s=1, test_timeout_s=10.0, total_timeout_s=20.0)


# -- SIGKILL -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["os.killpg(0, signal.SIGKILL)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_a_program_that_kills_itself_is_a_runtime_error(worker: Worker, how: str) -> None:
    v = run(worker, f"""
        import os, signal
        def f(x):
            {how}
            return x + 1
    """)
    assert (v.status, v.error_type) == (Status.RUNTIME_ERROR, "SIGKILL")
    assert v.error_message == "killed by signal SIGKILL"


def test_a_sigkill_near_the_memory_limit_is_memory_limit(small: Worker) -> None:
    """The child's peak memory reached its address-space limit's vicinity (210 of 256 MB): memory was the
    cause (under a real OOM kill the same evidence is there)."""
    v = run(small, """
        import os, signal
        def f(x):
            block = b"x" * (210 << 20)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert (v.status, v.error_type) == (Status.MEMORY_LIMIT, "Killed"), v
    assert v.error_message == "killed by SIGKILL: out of memory"
    lean = run(small, """
        import os, signal
        def f(x):
            block = b"x" * (100 << 20)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert lean.status is Status.RUNTIME_ERROR  # far from its limit: not memory


def test_a_sigkill_while_the_oom_killer_acted_is_memory_limit(worker: Worker,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's OOM-kill count (faked: no OOM can be provoked here) rose during the run: memory_limit. The
    same run with the count unchanged is a runtime error: a program cannot pass its own kill off as memory."""
    count = [1000]
    monkeypatch.setattr(worker_module, "oom_kills", lambda: count[0])
    code = """
        import os, signal
        def f(x):
            os.kill(os.getpid(), signal.SIGKILL)
    """
    monkeypatch.setattr(worker, "_oom_seen", 1000)
    monkeypatch.setattr(worker, "_oom_at", time.monotonic() + 3600)  # no fresh reading before the run
    assert run(worker, code).status is Status.RUNTIME_ERROR
    count[0] = 1001  # the OOM killer acted after the run started
    v = run(worker, code)
    assert (v.status, v.error_type) == (Status.MEMORY_LIMIT, "Killed"), v


def test_the_cpu_hard_limit_is_a_timeout(small: Worker) -> None:
    """SIGXCPU ignored: the kernel's SIGKILL at the hard limit (a second later) is still a time-out."""
    v = run(small, """
        import signal
        def f(x):
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            while True:
                pass
    """)
    assert (v.status, v.error_message) == (Status.TIMEOUT, "CPU time limit exceeded"), v


# -- the wall clock ------------------------------------------------------------------------------------------


def test_a_run_past_its_wall_clock_ended_from_outside_is_a_timeout(worker: Worker,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent is late (stalled for 2 s, as a loaded machine makes it) and the slow child is ended by a
    SIGTERM (from outside; here its own) after its 1 s deadline, before the parent could stop it: timeout, not
    ``runtime_error: killed by signal SIGTERM``."""
    real = worker_module.wait_readable
    stalled: list[bool] = []

    def late(fds: list[int], timeout: float) -> list[int]:
        if not stalled and timeout > 0:
            stalled.append(True)
            time.sleep(2.0)
            return real(fds, 0)
        return real(fds, timeout)

    code = """
        import os, signal, time
        def f(x):
            time.sleep(1.5)
            os.kill(os.getpid(), signal.SIGTERM)
    """
    monkeypatch.setattr(worker_module, "wait_readable", late)
    v = run(worker, code, timeout_s=1.0)
    assert stalled and v.status is Status.TIMEOUT, v
    assert v.error_message == "timeout (killed by SIGTERM after its wall-clock limit)"
    monkeypatch.setattr(worker_module, "wait_readable", real)
    early = run(worker, """
        import os, signal
        def f(x):
            os.kill(os.getpid(), signal.SIGTERM)
    """, timeout_s=1.0)
    assert (early.status, early.error_type) == (Status.RUNTIME_ERROR, "SIGTERM")  # within its time: a crash


def test_the_judge_reads_the_deadline_only_for_signals_sent_from_outside() -> None:
    col = judge._Collector()
    segv = RunOutcome(exit_status=signal.SIGSEGV, deadline_passed=True)
    assert judge.verdict_of(segv, col, 1, None).status is Status.RUNTIME_ERROR  # a crash stays a crash
    term = RunOutcome(exit_status=signal.SIGTERM, deadline_passed=True)
    assert judge.verdict_of(term, col, 1, None).status is Status.TIMEOUT
    killed = RunOutcome(exit_status=signal.SIGKILL, kill_cause="memory")
    assert judge.verdict_of(killed, col, 1, None).status is Status.MEMORY_LIMIT
    unknown = RunOutcome(exit_status=signal.SIGKILL)
    assert judge.verdict_of(unknown, col, 1, None).status is Status.RUNTIME_ERROR


# -- the lifeline --------------------------------------------------------------------------------------------

OWNER = """
import json, sys, threading, time
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.worker import Worker

w = Worker(7, SandboxConfig(workers=1, test_timeout_s=600, total_timeout_s=600, cpu_s=600))
w.start()
spin = "def f(x):\\n    while True:\\n        pass\\n"
threading.Thread(target=judge.run_tests, args=(w, spin, "f", "function", [[1]], [1]), daemon=True).start()
print(json.dumps({"server": w.server_pid}), flush=True)
time.sleep(600)
"""


def test_a_killed_owner_takes_its_fork_server_and_children_with_it(tmp_path: Path) -> None:
    """SIGKILL to the process that owns a worker, while its child spins (with 600 s of CPU allowed): the
    server, its namespace's init and the child are gone within seconds (the server's lifeline)."""
    env = {**os.environ, "EFFIRL_WORKDIR": str(tmp_path)}  # the killed owner cannot remove its folder
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server = json.loads(owner.stdout.readline())["server"]  # type: ignore[union-attr]
        family: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(family) < 2:
            family = descendants(server)  # the namespace's init (if any) and the spinning child
            time.sleep(0.05)
        assert family, "the child never started"
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        left: list[Any] = [server, *family]
        while time.monotonic() < deadline and left:
            left = [p for p in left if running(p)]
            time.sleep(0.05)
        assert left == []
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_the_server_path_is_the_interpreters_own() -> None:
    """The servers' module path does not depend on who starts them (a Ray worker prepends its own folders)."""
    path = worker_module.server_path()
    assert "" not in path and all(os.path.isabs(p) for p in path)
    assert not any("ray/_private/workers" in p for p in path)
    assert worker_module._effirl_root() in path
