"""The Ray executor: the local pool's verdicts and counts, dead actors replaced (or their slots retired),
runs lost twice reported as the sandbox's failure, weakly isolated actors and bad clusters refused, nothing
left behind.

Runs on a local Ray cluster of two CPUs, started and shut down by this module (``ray.init(num_cpus=2)``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import descendants, running

from effirl.batch import RunSpec, run
from effirl.errors import EffirlError
from effirl.execution import judge
from effirl.execution.config import SandboxConfig
from effirl.execution.executor import ExecutorConfig, make_pool
from effirl.execution.measuring import MeasureItem, PerfInput, measure_one
from effirl.execution.pool import Pool
from effirl.execution.report import IsolationReport
from effirl.execution.verdict import Status
from effirl.extras import MissingExtraError
from effirl.meters.base import Meter
from effirl.meters.callgrind import CallgrindMeter
from effirl.meters.callgrind import probe as callgrind_probe
from effirl.tasks import Task

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

import effirl.execution.ray_pool as ray_pool  # noqa: E402 - after the skip: needs ray
from effirl.execution.ray_pool import (  # noqa: E402 - after the skip: needs ray
    LostWorker,
    NoSandboxActorLeft,
    PoolView,
    RayPool,
    SandboxActorLost,
    dumps_fn,
    isolation_refusal,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HUMANEVAL = SHARED / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
LEADERBOARD = SHARED / "evalperf-leaderboard" / "leaderboard_brief_results"
CALLGRIND_OK, CALLGRIND_WHY = callgrind_probe()
RAY = ExecutorConfig(kind="ray")
BOX = SandboxConfig(workers=2, test_timeout_s=1.0, total_timeout_s=10.0, cpu_s=10)


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Ray cluster of two CPUs for the whole module (its actors' folders in a temporary folder, where
    the tests can see what is left behind)."""
    if ray.is_initialized():
        ray.shutdown()
    saved = os.environ.get("EFFIRL_WORKDIR")
    os.environ["EFFIRL_WORKDIR"] = str(tmp_path_factory.mktemp("actors"))  # inherited by Ray's workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # The functions mapped below live in this module, which the actors cannot import: shipped by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("EFFIRL_WORKDIR", None)
    else:
        os.environ["EFFIRL_WORKDIR"] = saved


def _bench() -> Any:
    """benchmarks/ray_executor.py, whose leaderboard samples (mixed verdicts) the check test uses."""
    path = ROOT / "benchmarks" / "ray_executor.py"
    spec = importlib.util.spec_from_file_location("ray_executor_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if running(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if running(p)]


# -- same verdicts, same counts ------------------------------------------------------------------------------


@pytest.mark.skipif(not (HUMANEVAL.exists() and LEADERBOARD.is_dir()),
                    reason=f"shared data absent ({SHARED})")
def test_check_through_ray_gives_the_local_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaderboard HumanEval+ solutions, a share changed to fail every way (the 1,000-sample run is the
    benchmark's): the batch run through Ray writes the verdicts the local one writes, sample by sample."""
    monkeypatch.setenv("EFFIRL_CACHE", str(tmp_path / "cache"))
    records = _bench().leaderboard_samples(100)
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    results = {}
    for kind in ("local", "ray"):
        spec = RunSpec(suite="humaneval+", source=str(HUMANEVAL), samples=samples, out=tmp_path / kind,
                       sandbox=BOX, executor=ExecutorConfig(kind=kind))  # type: ignore[arg-type]
        results[kind] = {r["key"]: r for r in run(spec)}
    assert len(results["local"]) == len(results["ray"]) == len(records)

    def verdict(r: dict[str, Any]) -> tuple[Any, ...]:
        v = r["verdict"]
        return r["status"], v["tests_run"], v["failed_test"], v["error_type"], v["error_message"]

    differ = {k: (verdict(r), verdict(results["ray"][k])) for k, r in results["local"].items()
              if verdict(r) != verdict(results["ray"][k])}
    assert not differ
    statuses = {r["status"] for r in results["local"].values()}
    assert {"pass", "wrong_answer", "runtime_error", "no_entry_point", "format_error"} <= statuses, statuses


def _measure_items(tasks: dict[str, Task]) -> list[MeasureItem]:
    items = []
    work = (("anagram_group_count", [["abc", "bca", "xyz", "zyx"] * 200]),
            ("lis_length", [list(range(400, 0, -1))]), ("count_inversions", [list(range(300, 0, -1))]))
    for name, args in work:
        t = tasks[f"builtin/{name}"]
        items += [MeasureItem(t.id, t, ref.code, 0, PerfInput(args)) for ref in t.references]
    return items


@pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
def test_a_callgrind_count_through_ray_equals_the_local_one_exactly(builtin_by_id: dict[str, Task]) -> None:
    """The same runs, in the same order, on a fresh server: through an actor the instruction counts are the
    local ones to the instruction (the hop adds nothing to what is counted)."""
    items = _measure_items(builtin_by_id)
    box = SandboxConfig(workers=1)
    with Pool(box, meter=CallgrindMeter()) as pool:
        local = [r.value for item in items for _, r in pool.map(measure_one, [item])]
    with make_pool(box, CallgrindMeter(), ExecutorConfig(kind="ray", actors=1)) as rpool:
        remote = [r.value for item in items for _, r in rpool.map(measure_one, [item])]
    assert all(v is not None and v > 100_000 for v in local), local
    assert remote == local


def test_ray_pool_streams_every_result_once_with_the_callers_items() -> None:
    """Results of several chunks and both actors come back once each, paired with the caller's own objects."""
    items = [{"i": i} for i in range(40)]
    with RayPool(BOX, executor=RAY) as pool:
        assert len(pool.slots) == 2  # one per CPU of the cluster
        got = list(pool.map(_double, items))
        again = list(pool.map(_double, items[:3]))  # a pool serves several maps
    assert sorted(r for _, r in got) == [2 * i for i in range(40)]
    assert all(item is items[r // 2] for item, r in got)
    assert sorted(r for _, r in again) == [0, 2, 4]


def _double(worker: Any, item: dict[str, int]) -> int:
    assert worker.server_pid is not None  # the actor's own fork server, started before any run
    return 2 * item["i"]


def test_an_error_of_fn_reaches_the_consumer_as_itself() -> None:
    with RayPool(BOX, executor=RAY) as pool, pytest.raises(KeyError, match="missing"):
        list(pool.map(_lookup, [{"a": 1}, {}]))


def _lookup(worker: Any, item: dict[str, int]) -> int:
    if "a" not in item:
        raise KeyError("missing")
    return item["a"]


# -- dying actors --------------------------------------------------------------------------------------------


def _die_once(worker: Any, item: tuple[str, int]) -> int:
    """Kills its actor's process the first time it runs item 3 (a marker file says whether it did); every run
    notes the process it ran in."""
    folder, i = item
    with open(os.path.join(folder, f"ran-{i}"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if i == 3 and not os.path.exists(os.path.join(folder, "killed")):
        open(os.path.join(folder, "killed"), "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def test_an_actor_that_dies_is_replaced_and_its_runs_rerun_once(tmp_path: Path) -> None:
    items = [(str(tmp_path), i) for i in range(12)]
    with RayPool(BOX, executor=RAY) as pool:
        got = sorted(r for _, r in pool.map(_die_once, items))
        generations = [s.gen for s in pool.slots]
    assert got == list(range(12))
    runs = {i: (tmp_path / f"ran-{i}").read_text().split() for i in range(12)}
    killed = runs[3][0]
    assert len(runs[3]) == 2 and runs[3][1] != killed  # killed once, then run again on another actor
    again = {i: pids for i, pids in runs.items() if len(pids) > 1}
    # Only what the dead actor had in flight ran again, each once, elsewhere.
    assert all(len(pids) == 2 and pids[0] == killed != pids[1] for pids in again.values()), again
    assert sorted(generations) == [0, 1]


def _judged(worker: Any, item: Any) -> judge.Verdict:
    """Kills its actor's process on item "die" (never the driver's: a lost worker has no server); else a
    passing program on one test."""
    if item == "die" and worker.server_pid is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    if item == "needs a server" and worker.server_pid is None:
        raise RuntimeError("no fork server to ask")
    if item == "needs a server":
        os.kill(os.getpid(), signal.SIGKILL)
    x = item if isinstance(item, int) else 0
    return judge.run_tests(worker, "def f(x):\n    return x\n", "f", "function", [[x]], [x])


def test_a_run_lost_twice_is_a_sandbox_failure_of_that_run_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose actors die twice comes back as the local pool reports a dead fork server (runtime_error,
    WorkerDied: what the reward retries or counts as a worker failure), the map goes on and the pool serves
    the next; a function that cannot report a dead worker fails its map with one error; when the only slot's
    actors keep dying it is retired, and the next map says in one line that no actor is left, and why."""
    monkeypatch.setattr(ray_pool, "REPLACE_LIMIT", 5)
    with RayPool(BOX, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        got = list(pool.map(_judged, ["die"]))  # deaths 1 and 2
        assert [item for item, _ in got] == ["die"]
        verdict = got[0][1]
        assert verdict.status is Status.RUNTIME_ERROR and verdict.error_type == "WorkerDied", verdict
        assert {v.status for _, v in pool.map(_judged, [1, 2, 3])} == {Status.PASS}
        assert pool.slots[0].gen == 2 and pool.slots[0].dead is None
        with pytest.raises(SandboxActorLost, match="could not report a dead worker.*no fork server"):
            list(pool.map(_judged, ["needs a server"]))  # deaths 3 and 4
        with pytest.raises(NoSandboxActorLeft) as err:
            list(pool.map(_judged, ["die", 1]))  # death 5: the slot is retired
        text = str(err.value)
        assert "no sandbox actor is left" in text and "died 5 times" in text and "\n" not in text
        assert pool.slots[0].dead is not None
        with pytest.raises(NoSandboxActorLeft):  # and so for every later map, at once
            list(pool.map(_judged, [1]))


def test_the_lost_worker_reports_a_dead_server_and_runs_nothing() -> None:
    worker = LostWorker(3, BOX)
    verdict = judge.run_tests(worker, "import os\nos.system('touch /tmp/x')\ndef f(x):\n    return x\n", "f",
                              "function", [[1]], [1])
    assert verdict.status is Status.RUNTIME_ERROR and verdict.error_type == "WorkerDied"
    measured = judge.measure_once(worker, "def f(x):\n    return x\n", "f", "function", [1], expected=1,
                                  check_output=True)
    assert measured.value is None and measured.verdict.error_type == "WorkerDied"


def _kill_slot0(worker: Any, item: int) -> judge.Verdict:
    if worker.index == 0 and worker.server_pid is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return judge.run_tests(worker, "def f(x):\n    return x\n", "f", "function", [[item]], [item])


def test_a_slot_whose_actors_keep_dying_is_retired_and_the_others_carry_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Slot 0's actors die on every run: after ``REPLACE_LIMIT`` deaths the slot is retired (said once), every
    item still comes back (passing, or the sandbox's failure where a run was lost twice), and later maps run
    on the slot that is left."""
    items = list(range(10))
    with caplog.at_level(logging.WARNING, logger="effirl.execution.ray_pool"), \
            RayPool(BOX, executor=RAY) as pool:
        deadline = time.monotonic() + 120
        while pool.slots[0].dead is None and time.monotonic() < deadline:
            # Maps until slot 0 has had its three actors (slot 1 may finish a map while one starts).
            got = list(pool.map(_kill_slot0, items))
            assert sorted(item for item, _ in got) == items
            kinds = {(v.status, v.error_type) for _, v in got}
            assert kinds <= {(Status.PASS, None), (Status.RUNTIME_ERROR, "WorkerDied")}, kinds
            time.sleep(0.2)
        assert pool.slots[0].dead is not None and "died 3 times" in pool.slots[0].dead
        assert pool.slots[1].dead is None and pool.slots[1].gen == 0
        again = list(pool.map(_kill_slot0, items[:4]))
        assert {v.status for _, v in again} == {Status.PASS}
    retired = [r for r in caplog.records if "going on with the others" in r.getMessage()]
    assert len(retired) == 1, [r.getMessage() for r in retired]


def test_deaths_spread_over_a_long_run_never_exhaust_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """More actor deaths over the pool's life than any fixed budget (2n + 4 used to end every later map):
    with deaths far apart (a window of 0 s here), each is replaced and every map goes on."""
    monkeypatch.setattr(ray_pool, "REPLACE_WINDOW_S", 0.0)
    with RayPool(BOX, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        for k in range(7):  # 2 x 1 + 4 deaths, and one more
            pool.kill_actor(0)
            assert [r for _, r in pool.map(_double, [{"i": k}])] == [2 * k]
        assert pool.slots[0].dead is None and pool.slots[0].gen == 7


def _spin(worker: Any, item: int) -> judge.Verdict:
    spin = "def f(x):\n    while True:\n        pass\n"
    return judge.run_tests(worker, spin, "f", "function", [[item]], [item])


def test_a_killed_actor_takes_its_fork_server_and_children_with_it() -> None:
    """Killed mid-run (SIGKILL, as Ray kills an actor): the actor's fork server, its namespace's init and the
    child it ran are all gone within seconds; the run is done again once on the replacement (a time-out)."""
    box = SandboxConfig(workers=1, test_timeout_s=3.0, total_timeout_s=3.0)
    with RayPool(box, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.extend(pool.map(_spin, [7])), daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        family: list[int] = []
        while time.monotonic() < deadline:
            pids = pool.pids(0) if pool.slots[0].ready else {}
            family = descendants(pids["pid"]) if pids.get("server_pid") else []
            if len(family) >= 3:  # server, its init, the spinning child
                break
            time.sleep(0.1)
        assert len(family) >= 3, family
        pool.kill_actor(0)
        assert _wait_gone([pids["pid"], *family]) == []
        t.join(timeout=60)
    assert len(got) == 1 and got[0][1].status is Status.TIMEOUT


NODE_LOSS = """
import json, os, sys, time
import ray
from ray.cluster_utils import Cluster
from effirl.execution.config import SandboxConfig
from effirl.execution.executor import ExecutorConfig
from effirl.execution.ray_pool import RayPool

folder = sys.argv[1]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
node = cluster.add_node(num_cpus=1)
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()

def fn(worker, i):
    import ray, time
    with open(os.path.join(folder, str(i)), "a") as fh:
        fh.write(ray.get_runtime_context().get_node_id() + "\\n")
    time.sleep(0.3)
    return i

pool = RayPool(SandboxConfig(workers=2), executor=ExecutorConfig(kind="ray"))
got = []
for item, value in pool.map(fn, list(range(30))):
    got.append(value)
    if len(got) == 8:
        cluster.remove_node(node)  # the second node is lost with what runs there
print(json.dumps({"got": sorted(got), "lost": node.node_id, "generations": [s.gen for s in pool.slots]}))
pool.close()
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_a_node_lost_mid_batch_costs_only_its_runs_in_flight(tmp_path: Path) -> None:
    """A two-node cluster (in its own process) loses a node mid-batch: every item still comes back, and only
    the items that were in flight there ran twice; the batch ends on the node that is left."""
    script = tmp_path / "node_loss.py"
    script.write_text(NODE_LOSS)
    runs = tmp_path / "runs"
    runs.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["EFFIRL_WORKDIR"] = str(tmp_path / "actors")
    out = subprocess.run([sys.executable, str(script), str(runs)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["got"] == list(range(30))
    assert sorted(result["generations"]) == [0, 1]  # the lost node's actor was replaced
    where = {int(f.name): f.read_text().split() for f in runs.iterdir()}
    assert sorted(where) == list(range(30))
    again = {i: nodes for i, nodes in where.items() if len(nodes) > 1}
    assert all(len(nodes) == 2 and nodes[0] == result["lost"] != nodes[1] for nodes in again.values()), again
    assert len(again) <= 2 * 3  # at most its calls in flight (lanes + 1), a run each at first


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
def test_callgrind_on_nodes_without_valgrind_is_refused_before_any_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe is faked (every node here has valgrind): the pool is refused, naming the node, and no actor
    is ever started."""
    def no_spawn(self: RayPool, index: int) -> Any:
        raise AssertionError("an actor was started")

    monkeypatch.setattr(RayPool, "_spawn", no_spawn)
    node_ip = ray.util.get_node_ip_address()
    with pytest.raises(EffirlError) as err:
        RayPool(BOX, CallgrindMeter(), RAY, node_probe=lambda name: (False, "valgrind is not installed"))
    text = str(err.value)
    assert "meter 'callgrind' is not available on 1 of 1 Ray node(s)" in text
    assert node_ip in text and "valgrind is not installed" in text and "\n" not in text


@pytest.mark.skipif(not CALLGRIND_OK, reason=f"callgrind unavailable: {CALLGRIND_WHY}")
def test_nodes_counting_in_another_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RayPool, "_spawn", lambda self, index: pytest.fail("an actor was started"))
    monkeypatch.setattr(CallgrindMeter, "version", lambda self: "valgrind-0.0-here")  # the nodes keep theirs
    with pytest.raises(EffirlError, match="another meter version or environment"):
        RayPool(BOX, CallgrindMeter(), RAY)
    # verl's pools: the nodes need only agree with one another (its counts never meet this machine's).
    spawned: list[int] = []
    monkeypatch.setattr(RayPool, "_spawn", lambda self, index: spawned.append(index))
    monkeypatch.setattr(RayPool, "_start", staticmethod(lambda handle: None))
    RayPool(BOX, CallgrindMeter(), ExecutorConfig(kind="ray", match_driver=False))
    assert spawned == [0, 1]


def test_no_ray_installed_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError) as err:
        make_pool(BOX, executor=RAY)
    assert "'ray' extra" in str(err.value) and "pip install 'effirl[ray]'" in str(err.value)


def test_an_unreachable_address_is_one_line_from_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-m", "effirl.cli", "check", "--suite", "builtin", "--out",
                          str(tmp_path), "--executor", "ray", "--ray-address", "127.0.0.1:1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in lines[0], out.stderr


def test_executor_flags_are_checked() -> None:
    with pytest.raises(ValueError, match="only apply to the ray executor"):
        ExecutorConfig(kind="local", address="auto")


class _StartFails(Meter):
    """A meter whose worker cannot start where ``fails(uid)`` says (its folder cannot be prepared)."""

    name = "start-fails"

    def __init__(self, only_first: bool) -> None:
        self.only_first = only_first

    def prepare_workdir(self, workdir: str, uid: int) -> None:
        if uid == BOX.base_uid or not self.only_first:
            raise OSError("no room for the meter's files")

    def collect(self, handle: Any, workdir: str, exited: dict[str, Any]) -> float | None:
        return 0.0


def _index(worker: Any, item: int) -> int:
    return worker.index


def test_an_actor_that_cannot_start_is_retired_once_and_the_others_carry_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Slot 0's fork server cannot start: the slot is retired and said once in the log, and every map runs on
    slot 1 (it used to raise on every map); when no actor can start, every map raises one clear line."""
    with caplog.at_level(logging.WARNING, logger="effirl.execution.ray_pool"), \
            RayPool(BOX, _StartFails(only_first=True), RAY) as pool:
        for _ in range(3):
            assert [r for _, r in pool.map(_index, [1, 2, 3])] == [1, 1, 1]
        assert pool.slots[0].dead is not None and "no room for the meter's files" in pool.slots[0].dead
    said = [r.getMessage() for r in caplog.records if "could not start its fork server" in r.getMessage()]
    assert len(said) == 1 and ray.util.get_node_ip_address() in said[0], said
    with RayPool(BOX, _StartFails(only_first=False), RAY) as pool:
        for _ in range(2):
            with pytest.raises(NoSandboxActorLeft) as err:
                list(pool.map(_index, [1]))
            text = str(err.value)
            assert text.startswith("no sandbox actor is left to run on (2 on ") and "\n" not in text
            assert "could not start its fork server: OSError: no room for the meter's files" in text
            assert "other reason" not in text


# -- isolation -----------------------------------------------------------------------------------------------


def test_isolation_refusal_accepts_only_full_isolation_or_an_explicit_none() -> None:
    full = IsolationReport(namespaces=True, network_isolated=True, pid_namespace=True, filesystem_view=True)
    weak = IsolationReport(problems=["user namespaces are disabled (kernel.unprivileged_userns_clone=0)"])
    assert isolation_refusal(SandboxConfig(), full) is None
    why = isolation_refusal(SandboxConfig(), weak)
    assert why is not None and "unprivileged_userns_clone" in why and "isolation to 'none'" in why
    assert isolation_refusal(SandboxConfig(isolation="namespaces"), weak) is not None
    assert isolation_refusal(SandboxConfig(), None) is not None
    assert isolation_refusal(SandboxConfig(isolation="none"), weak) is None


def test_actors_without_full_isolation_are_refused_naming_their_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node here has namespaces, so the driver is told the reports are not full: no actor runs anything,
    and the map fails in one line naming the node and what is missing."""
    monkeypatch.setattr(IsolationReport, "full", property(lambda self: False))
    ran: list[int] = []
    with RayPool(BOX, executor=RAY) as pool, pytest.raises(NoSandboxActorLeft) as err:
        ran += [r for _, r in pool.map(_index, [1, 2])]
    text = str(err.value)
    assert not ran and "\n" not in text
    assert f"2 on {ray.util.get_node_ip_address()}" in text and "no full isolation" in text, text


def test_an_explicit_isolation_none_runs_with_weak_isolation() -> None:
    box = BOX.model_copy(update={"isolation": "none"})
    with RayPool(box, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        got = [v for _, v in pool.map(_judged, [4, 5])]
        report = IsolationReport(**(pool.slots[0].info or {})["report"])
    assert not report.full  # what "none" asks for, and accepted
    assert {v.status for v in got} == {Status.PASS}


# -- nothing left behind -------------------------------------------------------------------------------------


def test_a_killed_actors_folder_is_removed() -> None:
    base = Path(os.environ["EFFIRL_WORKDIR"])
    before = set(base.iterdir())
    with RayPool(BOX, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        assert [r for _, r in pool.map(_double, [{"i": 1}])] == [2]
        killed = Path((pool.slots[0].info or {})["workdir"])
        assert killed.is_dir() and killed.parent == base
        pool.kill_actor(0)
        assert [r for _, r in pool.map(_double, [{"i": 2}])] == [4]  # on its replacement
    assert not killed.exists()
    assert set(base.iterdir()) - before == set()  # the replacement's, removed by its own shutdown


def test_a_pool_that_fails_to_start_kills_the_actors_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    spawn = RayPool._spawn

    def recording(self: RayPool, index: int) -> Any:
        made.append(spawn(self, index))
        return made[-1]

    def start(handle: Any) -> Any:
        if len(made) == 2:
            raise RuntimeError("the cluster went away")
        return handle.start.options(concurrency_group="control").remote()

    monkeypatch.setattr(RayPool, "_spawn", recording)
    monkeypatch.setattr(RayPool, "_start", staticmethod(start))
    with pytest.raises(RuntimeError, match="went away"):
        RayPool(BOX, executor=RAY)
    assert len(made) == 2
    for handle in made:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(handle.pids.options(concurrency_group="control").remote(), timeout=60)


def _sleepy(worker: Any, item: int) -> int:
    time.sleep(0.2 if item == 0 else 2.0)
    return item


def test_cancelled_calls_weigh_on_their_actor_until_they_end() -> None:
    """A consumer that stops early: the calls still running on the actor count in its load (the next map puts
    its runs on the least loaded actors) until they end, then no more."""
    with RayPool(BOX, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        assert [r for _, r in pool.map(_double, [{"i": 0}])] == [0]  # started
        results = pool.map(_sleepy, list(range(6)))
        assert next(results)[1] == 0  # items 1 and 2 are still running (three calls in flight, one item each)
        results.close()
        assert pool.slots[0].load == 2
        time.sleep(3.0)
        assert [r for _, r in pool.map(_double, [{"i": 1}])] == [2]
        assert pool.slots[0].load == 0 and not pool._orphans


# -- what travels to an actor --------------------------------------------------------------------------------


def test_functions_travel_with_fresh_locks_and_a_view_of_their_pool() -> None:
    """A closure over a lock-holding resolver and over the pool itself (as check_samples' is) can be
    shipped."""
    import pickle

    lock = threading.Lock()
    with RayPool(BOX, executor=ExecutorConfig(kind="ray", actors=1)) as pool:
        lock.acquire()  # held here: the actor's copy must not be

        def fn(worker: Any, item: int) -> int:
            with lock:
                return item + pool.config.seed

        shipped = pickle.loads(dumps_fn(fn))
        assert shipped(None, 1) == 1
        view = pickle.loads(dumps_fn(pool))
        assert isinstance(view, PoolView) and view.config == pool.config
        lock.release()
