"""Callback tokens, ids, and the log redaction that keeps secrets and blobs out of log lines."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import orjson
import structlog

from service.domain.ids import is_id, new_id
from service.logging import configure_logging, flush_logs
from service.security.tokens import CallbackTokens


def test_tokens_round_trip_and_are_provider_salted() -> None:
    tokens = CallbackTokens(["k1"])
    token = tokens.issue("apiframe", "task_1")
    assert tokens.verify("apiframe", token) == "task_1"
    assert tokens.verify("simulator", token) is None
    assert tokens.verify("apiframe", token[:-2] + "xx") is None
    assert CallbackTokens(["other"]).verify("apiframe", token) is None


def test_rotated_keys_still_verify_old_tokens() -> None:
    old = CallbackTokens(["old"]).issue("apiframe", "task_1")
    rotated = CallbackTokens(["new", "old"])
    assert rotated.verify("apiframe", old) == "task_1"
    fresh = rotated.issue("apiframe", "task_2")
    assert CallbackTokens(["new"]).verify("apiframe", fresh) == "task_2"


def test_expired_tokens_are_refused() -> None:
    tokens = CallbackTokens(["k"], max_age=-1)
    assert tokens.verify("apiframe", tokens.issue("apiframe", "t")) is None


def test_ids_are_time_ordered_and_well_formed() -> None:
    ids = [new_id("task") for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert all(is_id(i, "task") and len(i) == 31 for i in ids)
    assert not is_id("task_short", "task") and not is_id(ids[0], "evt")


def test_json_lines_redact_secrets_and_base64() -> None:
    out = io.BytesIO()
    configure_logging(level="info", fmt="json", stream=out, cache=False)
    try:
        blob = base64.b64encode(os.urandom(600)).decode()
        structlog.get_logger().info(
            "thing.happened",
            task_id="task_1",
            api_key="afk_supersecret",
            headers={"Authorization": "Bearer sk-live-123", "X-Other": "fine"},
            params={"mask": "data:image/png;base64," + blob, "prompt": "a fox"},
            blob=blob,
        )
    finally:
        import sys

        configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)
    line = out.getvalue()
    assert line.count(b"\n") == 1
    record = orjson.loads(line)
    assert record["event"] == "thing.happened" and record["level"] == "info"
    assert record["timestamp"].endswith("Z") and record["task_id"] == "task_1"
    text = line.decode()
    for secret in ("afk_supersecret", "sk-live-123", blob[:40]):
        assert secret not in text
    assert record["params"]["prompt"] == "a fox"
    assert record["headers"]["X-Other"] == "fine"


def test_a_log_file_gets_every_line_as_json(tmp_path: Path) -> None:
    import sys

    path = tmp_path / "logs" / "jobhook.log"
    configure_logging(level="info", fmt="json", stream=io.BytesIO(), cache=False, file=str(path))
    try:
        structlog.get_logger().info("task.transition", task_id="task_1", api_key="afk_secret")
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)
    [record] = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert record["event"] == "task.transition" and record["api_key"] == "[redacted]"


def test_flush_logs_writes_the_batched_lines_at_once() -> None:
    import asyncio
    import sys

    out = io.BytesIO()
    configure_logging(level="info", fmt="json", stream=out, cache=False)

    async def shutting_down() -> bytes:
        structlog.get_logger().info("jobhook.stopped")
        before = out.getvalue()  # batched: written up to 50 ms later, on the loop
        flush_logs()
        return before

    try:
        before = asyncio.run(shutting_down())
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)
    assert before == b""
    assert orjson.loads(out.getvalue())["event"] == "jobhook.stopped"


def test_a_loop_that_closed_before_its_flush_does_not_hold_back_later_lines() -> None:
    import asyncio
    import sys

    out = io.BytesIO()
    configure_logging(level="info", fmt="json", stream=out, cache=False)

    async def log(event: str, *, linger: float) -> None:
        structlog.get_logger().info(event)
        await asyncio.sleep(linger)

    try:
        asyncio.run(log("first", linger=0))  # the loop closes with its flush still pending
        asyncio.run(log("second", linger=0.2))  # a flush of its own, 50 ms later
        written = out.getvalue()
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)
    assert [orjson.loads(line)["event"] for line in written.splitlines()] == ["first", "second"]
