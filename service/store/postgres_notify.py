"""Other processes' commits, heard at once: `LISTEN jobhook` on a connection of its own.

Every ingest that changes something sends `pg_notify('jobhook', {"t": [task id, owner, sequence],
"p": next poll due, "d": 1})` in its own transaction, so a notice arrives only for what committed.
Here each notice becomes a hub wake-up: the poller and the deliverer of this process wake, and a
changed task is read and published when someone here waits on it or streams its owner's tasks.
A lost connection is reconnected with backoff; then every long-poll re-reads its task and the
workers look at their due times again, so nothing waits on a notice that was missed (a live
stream may miss the changes made while deaf; a client re-reads the task on reconnecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
import orjson

from service.hub import Hub
from service.logging import log

CHANNEL = "jobhook"
#: Seconds between attempts to listen again after the connection was lost (doubling, capped).
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0


class _Reader(Protocol):
    async def get_task(self, ref: str, *, owner: str | None) -> dict[str, Any] | None: ...


def _set(event: asyncio.Event, *_: object) -> None:
    event.set()


async def follow(url: str, store: _Reader, hub: Hub, ready: asyncio.Event) -> None:
    """Until cancelled: turn notices into wake-ups and publications on `hub`. `ready` is set
    once listening (a process serves only then: a change committed before would be missed)."""
    wait = RECONNECT_MIN
    reads: set[asyncio.Task[None]] = set()

    async def publish(task_id: str, owner: str) -> None:
        task = await store.get_task(task_id, owner=None)
        if task is not None:
            hub.publish(task, owner)

    def heard(conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            said = orjson.loads(payload)
            if "p" in said:
                hub.poll_scheduled(float(said["p"]))
            if said.get("d"):
                hub.deliveries_written()
            if "t" in said:
                task_id, owner, sequence = said["t"]
                if hub.wants(task_id, owner, int(sequence)):
                    read = asyncio.get_running_loop().create_task(publish(task_id, owner))
                    reads.add(read)
                    read.add_done_callback(reads.discard)
        except Exception as exc:  # one odd notice is logged, never the end of listening
            log.warning("store.notice_unreadable", error=repr(exc)[:200])

    while True:
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(url, server_settings={"application_name": "jobhook"})
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("store.listen_failed", error=type(exc).__name__, retry_in=wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECONNECT_MAX)
            continue
        try:
            conn.add_termination_listener(functools.partial(_set, lost))
            await conn.add_listener(CHANNEL, heard)
            if ready.is_set():  # listening again: what was missed while deaf is looked at anew
                hub.poll_scheduled(0.0)
                hub.deliveries_written()
                hub.wake_waiters()
            ready.set()
            wait = RECONNECT_MIN
            log.debug("store.listening", channel=CHANNEL)
            await lost.wait()
            log.warning("store.listen_lost", retry_in=wait)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))
