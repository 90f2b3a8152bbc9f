"""``effirl generate --backend openai`` against a real OpenAI-compatible HTTP server on 127.0.0.1.

The chat-completions schema over HTTP with ``n > 1`` (and a server that ignores ``n``); retries of a 429 and
of a 500 that stays; malformed answers, a bad key, a wrong URL, an unreachable server and a prompt the server
finds too long, each one line with the finished samples kept; bounded, overlapping requests; every strategy,
M2WF's four steps and its fallbacks, with the server scripted to answer each step.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai", reason="the 'openai' extra is not installed")

from openai_loopback import Fail, Loopback, Raw, Reply, default_text, words  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from effirl.cli import app  # noqa: E402
from effirl.errors import EffirlError  # noqa: E402
from effirl.generation import GenerateConfig, generate, render  # noqa: E402
from effirl.generation.config import OpenAIOptions  # noqa: E402
from effirl.generation.prompts import default_templates  # noqa: E402


@pytest.fixture(autouse=True)
def _no_ambient_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def tasks(builtin_tasks: list[Any]) -> list[Any]:
    return builtin_tasks[:3]


def _cfg(url: str, **kw: Any) -> GenerateConfig:
    options = {"base_url": url, "retry_base_s": 0.01, "retry_max_s": 0.05, "max_retries": 2, "concurrency": 4,
               **kw.pop("openai", {})}
    return GenerateConfig(model="loopback-model", backend="openai", n=kw.pop("n", 2), max_new_tokens=64,
                          openai=OpenAIOptions(**options), **kw)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _oneline(text: str) -> str:
    return " ".join(text.split())


def test_one_request_per_task_with_n_and_the_chat_schema(tasks: list[Any], tmp_path: Path):
    out = tmp_path / "s.jsonl"
    with Loopback() as srv:
        summary = generate(_cfg(srv.url, n=4, temperature=0.7, top_p=0.9), tasks, out)
    seen = srv.chat_requests
    assert len(seen) == 3 and summary.written == 12
    by_task = {}
    for s in seen:
        body = s.body
        assert body["model"] == "loopback-model" and body["n"] == 4 and body["max_tokens"] == 64
        assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and 0 <= body["seed"] < 2 ** 31
        assert s.headers["authorization"] == "Bearer EMPTY" and s.path == "/v1/chat/completions"
        by_task[body["messages"][-1]["content"]] = body
    for r in _lines(out):
        task = next(t for t in tasks if t.id == r["task_id"])
        body = by_task[render(task)[-1]["content"]]
        assert r["messages"] == body["messages"] == render(task)
        assert r["solution"] == default_text(body, r["sample_index"])  # choice i is sample i of the request
        assert r["prompt_tokens"] == sum(words(m["content"]) for m in body["messages"])
        assert r["backend"] == "openai" and r["model"] == "loopback-model" and r["finish_reason"] == "stop"
        assert r["metadata"]["tokens_estimated"] is True  # one usage total shared by the 4 choices
    total = sum(words(default_text(b, i)) for b in by_task.values() for i in range(4))
    assert summary.completion_tokens == total


def test_large_n_is_split_and_a_server_that_ignores_n_is_asked_per_sample(tasks: list[Any]):
    with Loopback() as srv:
        recs = generate(_cfg(srv.url, n=5, openai={"max_n_per_request": 2}), tasks[:1], None).records
    assert sorted(s.body["n"] for s in srv.chat_requests) == [1, 2, 2] and len(recs) == 5
    with Loopback(supports_n=False) as srv:
        recs = generate(_cfg(srv.url, n=3), tasks[:1], None).records
    assert sorted(r["sample_index"] for r in recs) == [0, 1, 2]
    assert [s.body["n"] for s in srv.chat_requests] == [3, 1, 1]
    assert len({r["solution"] for r in recs}) == 3  # each sample its own request and seed
    assert all("tokens_estimated" not in r["metadata"] for r in recs)  # one choice each: exact counts


def test_a_429_is_retried_then_succeeds(tasks: list[Any]):
    def script(body: dict[str, Any], i: int) -> Any:
        return Fail(429, "slow down", headers={"retry-after-ms": "5"}) if i == 0 else Reply()

    with Loopback(script) as srv:
        recs = generate(_cfg(srv.url, n=2, openai={"concurrency": 1}), tasks[:1], None).records
    assert len(recs) == 2 and len(srv.chat_requests) == 2
    assert srv.chat_requests[0].body == srv.chat_requests[1].body  # the same request again


def test_a_500_that_stays_is_one_line_after_the_retries_and_finished_samples_stay(tasks: list[Any],
                                                                                  tmp_path: Path):
    bad = render(tasks[1])[-1]["content"]

    def script(body: dict[str, Any], i: int) -> Any:
        return Fail(500, "engine died") if body["messages"][-1]["content"] == bad else Reply()

    out = tmp_path / "s.jsonl"
    with Loopback(script) as srv:
        got = CliRunner().invoke(app, ["generate", "--limit", "2", "--model", "m", "--backend", "openai",
                                       "--base-url", srv.url, "--n", "2", "--concurrency", "1",
                                       "--out", str(out), "--config", str(_fast_retries(tmp_path))])
    assert got.exit_code == 2, got.output
    expected = f"error: {srv.url}: HTTP 500: engine died (after 3 attempts); the samples already written are"
    assert expected in _oneline(got.output) and "Traceback" not in got.output
    assert sum(s.body["messages"][-1]["content"] == bad for s in srv.chat_requests) == 3  # 1 + 2 retries
    kept = _lines(out)
    assert {r["task_id"] for r in kept} == {tasks[0].id} and len(kept) == 2
    with Loopback() as srv:  # the server is back: the rerun makes only the missing samples
        again = CliRunner().invoke(app, ["generate", "--limit", "2", "--model", "m", "--backend", "openai",
                                         "--base-url", srv.url, "--n", "2", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert len(srv.chat_requests) == 1 and srv.chat_requests[0].body["messages"][-1]["content"] == bad
    assert _lines(out)[:2] == kept and len(_lines(out)) == 4


def _fast_retries(tmp_path: Path) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("openai:\n  max_retries: 2\n  retry_base_s: 0.01\n  retry_max_s: 0.05\n")
    return cfg


@pytest.mark.parametrize("answer,message", [
    (Raw(b'{"id": "x", "choices": ['),
     "the answer is not JSON (JSONDecodeError at '{\"id\": \"x\", \"choices\": ['...)"),
    (Raw(b"<html>proxy error</html>", content_type="text/html"), "the answer is not JSON"),
    (Raw(b'{"id": "x", "object": "chat.completion"}'), "the answer is JSON but has no 'choices' list"),
])
def test_a_malformed_answer_is_one_line(tasks: list[Any], tmp_path: Path, answer: Raw, message: str):
    with Loopback(lambda body, i: answer) as srv:
        got = CliRunner().invoke(app, ["generate", "--limit", "1", "--model", "m", "--backend", "openai",
                                       "--base-url", srv.url, "--out", str(tmp_path / "s.jsonl"),
                                       "--config", str(_fast_retries(tmp_path))])
    assert got.exit_code == 2 and message in _oneline(got.output), got.output
    assert "(after 3 attempts)" in got.output
    assert "Traceback" not in got.output and not (tmp_path / "s.jsonl").exists()


def test_a_bad_key_fails_at_once_and_the_right_key_is_sent(tasks: list[Any], monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path):
    monkeypatch.setenv("MY_KEY", "wrong")
    with Loopback(api_key="secret") as srv:
        with pytest.raises(EffirlError,
                           match=r"refused the API key \(HTTP 401: Incorrect API key provided\); put "
                                              r"the right key in \$MY_KEY"):
            generate(_cfg(srv.url, openai={"api_key_env": "MY_KEY"}), tasks[:1], None)
        assert len(srv.chat_requests) == 1  # a 401 is not retried
        monkeypatch.setenv("MY_KEY", "secret")
        assert len(generate(_cfg(srv.url, openai={"api_key_env": "MY_KEY"}), tasks[:1], None).records) == 2
    got = CliRunner().invoke(app, ["generate", "--limit", "1", "--model", "m", "--backend", "openai",
                                   "--base-url", srv.url, "--api-key-env", "NOT_SET_ANYWHERE",
                                   "--out", str(tmp_path / "s.jsonl")])
    assert got.exit_code == 2
    assert "the environment variable NOT_SET_ANYWHERE is not set" in _oneline(got.output)


def test_a_wrong_url_or_an_unreachable_server_is_one_line(tasks: list[Any], tmp_path: Path):
    with Loopback() as srv:
        with pytest.raises(EffirlError, match="answered HTTP 404 .* check --base-url"):
            generate(_cfg(srv.url.replace("/v1", "/v2")), tasks[:1], None)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = CliRunner().invoke(app, ["generate", "--limit", "1", "--model", "m", "--backend", "openai",
                                   "--base-url",
                                   f"http://127.0.0.1:{port}/v1", "--out", str(tmp_path / "s.jsonl"),
                                   "--config", str(_fast_retries(tmp_path))])
    assert got.exit_code == 2 and "Traceback" not in got.output
    assert re.search(rf"127.0.0.1:{port}/v1: cannot connect \(.*\) \(after 3 attempts\)",
                     _oneline(got.output))


def test_a_prompt_the_server_finds_too_long_is_one_line(tasks: list[Any]):
    refusal = Fail(400,
                   "This model's maximum context length is 2048 tokens. However, you requested 9000 tokens.")
    with Loopback(lambda body, i: refusal) as srv:
        with pytest.raises(EffirlError,
                           match=r"task builtin/\w+: prompt longer than the model's context \(the server "
                                              r"says: This model's maximum context length is 2048"):
            generate(_cfg(srv.url), tasks[:1], None)
    assert len(srv.chat_requests) == 1
    with Loopback(lambda body, i: Fail(422, "temperature must be <= 2")) as srv:
        with pytest.raises(EffirlError, match=r"rejected the request \(HTTP 422: temperature must be <= 2\)"):
            generate(_cfg(srv.url), tasks[:1], None)
    assert len(srv.chat_requests) == 1


def test_requests_overlap_up_to_the_concurrency(builtin_tasks: list[Any]):
    with Loopback(delay_s=0.15) as srv:
        summary = generate(_cfg(srv.url, n=1, openai={"concurrency": 4}), builtin_tasks[:12], None)
    assert summary.written == 12 and srv.max_in_flight == 4
    assert summary.elapsed_s < 12 * 0.15 / 2  # one at a time would take 1.8 s


def test_runs_from_inside_an_event_loop(tasks: list[Any]):
    async def main(url: str) -> int:
        return len(generate(_cfg(url), tasks[:1], None).records or [])

    with Loopback() as srv:
        assert asyncio.run(main(srv.url)) == 2


@pytest.mark.parametrize("strategy", ["direct", "efficient", "cot"])
def test_single_step_strategies_send_their_prompt(tasks: list[Any], strategy: str):
    with Loopback() as srv:
        recs = generate(_cfg(srv.url, n=1, strategy=strategy), tasks[:2], None).records
    assert sorted(s.body["messages"][-1]["content"] for s in srv.chat_requests) == \
        sorted(render(t, strategy)[-1]["content"] for t in tasks[:2])
    assert all(r["strategy"] == strategy and "steps" not in r for r in recs)


RECALL = ("### Problem 1: Two Sum\nUse a hash map.\n```python\ndef two_sum(a, t): ...\n```\n"
          "### Problem 2: Bogo sort\nShuffle until sorted.\n"
          "### Problem 3: Prefix sums\nAccumulate, then subtract.\n")


def _m2wf_script(evaluate: str) -> Any:
    def script(body: dict[str, Any], i: int) -> Reply:
        last = body["messages"][-1]["content"]
        if "Do not solve it yet" in last:
            return Reply([RECALL])
        if "rate from 0 to 10" in last:
            return Reply([evaluate])
        if "step-by-step plan" in last:
            return Reply(["1. Count with a dictionary.\n2. Return the count."])
        if "following your plan" in last:
            return Reply(["```python\ndef solution():\n    return 42\n```"])
        return Reply(["```python\ndef direct():\n    return 0\n```"])  # the direct prompt (fallback)

    return script


def test_m2wf_runs_its_four_steps_and_plans_from_the_confident_recollections(tasks: list[Any],
                                                                             tmp_path: Path):
    out = tmp_path / "s.jsonl"
    with Loopback(_m2wf_script("Problem 1: 9/10\nProblem 2: 2/10\nProblem 3: 7/10")) as srv:
        got = CliRunner().invoke(app, ["generate", "--limit", "1", "--model", "m", "--backend", "openai",
                                       "--base-url", srv.url, "--n", "2", "--strategy", "m2wf",
                                       "--out", str(out)])
    assert got.exit_code == 0, got.output
    t = default_templates()
    recs = _lines(out)
    assert len(recs) == 2
    assert len(srv.chat_requests) == 1 + 3 * 2  # the shared recall (n=2), then 3 steps each
    for r in recs:
        steps = r["steps"]
        assert [s["name"] for s in steps] == ["recall", "evaluate", "plan", "guide"]
        assert steps[0]["messages"][-1]["content"].startswith("Here is a Python programming task.")
        assert steps[0]["response"] == RECALL
        assert steps[1]["messages"][-2] == {"role": "assistant",
                                            "content": RECALL}  # evaluate continues recall
        plan_prompt = steps[2]["messages"][-1]["content"]
        assert len(steps[2]["messages"]) == 1  # the plan starts afresh, with the kept recollections only
        assert "Two Sum" in plan_prompt and "Prefix sums" in plan_prompt and "Bogo" not in plan_prompt
        assert plan_prompt.index("Two Sum") < plan_prompt.index("Prefix sums")  # most confident first
        assert steps[3]["messages"][:2] == [steps[2]["messages"][0], {"role": "assistant",
                                                                      "content": steps[2]["response"]}]
        assert steps[3]["messages"][-1]["content"].startswith(t.m2wf.guide.split("{")[0].strip())
        assert r["messages"] == steps[3]["messages"] and r["solution"] == steps[3]["response"]
        assert "def solution" in r["solution"] and "fallback" not in r["metadata"]
        assert r["metadata"]["confidence"] == {"1": 0.9, "2": 0.2, "3": 0.7} and r["metadata"]["kept"] == [1,
                                                                                                           3]
        assert r["metadata"]["total_completion_tokens"] == sum(s["completion_tokens"] for s in steps)
    assert "fell back to direct" in got.output and re.search(r"fell back to direct\W+0", got.output)


@pytest.mark.parametrize("evaluate,why", [
    ("They all look fine to me.", "no confidence score could be read from the evaluate step"),
    ("Problem 1: 2/10\nProblem 2: 1/10\nProblem 3: 4/10",
     "no recollection reached confidence 0.5 (best 0.4)"),
])
def test_m2wf_falls_back_to_direct_and_says_why(tasks: list[Any], evaluate: str, why: str):
    with Loopback(_m2wf_script(evaluate)) as srv:
        recs = generate(_cfg(srv.url, n=1, strategy="m2wf"), tasks[:1], None).records
    (r,) = recs
    assert [s["name"] for s in r["steps"]] == ["recall", "evaluate", "direct"]
    assert r["metadata"]["fallback"] == f"m2wf fell back to direct: {why}"
    assert r["messages"] == render(tasks[0], "direct") and "def direct" in r["solution"]
