"""The change feed of SQLite's `follow` (a web process whose workers run elsewhere: `serve
--no-workers`): once a second it reads the tasks changed since its last look and publishes them
to the hub, so long-polls and live streams see what `jobhook worker` commits. With the workers
in-process, ingest publishes on commit and no feed runs; PostgreSQL hears of commits at once
(LISTEN/NOTIFY) instead."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from service.domain.clock import utcnow_iso
from service.errors import JobhookError
from service.hub import Hub
from service.logging import log

INTERVAL = 1.0


class _Changes(Protocol):
    async def changed_since(self, since: str) -> list[tuple[str, dict[str, Any]]]: ...


class ChangeFeed:
    def __init__(self, store: _Changes, hub: Hub, *, interval: float = INTERVAL) -> None:
        self.store = store
        self.hub = hub
        self.interval = interval
        self._since = utcnow_iso()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.once()
            except Exception as exc:  # never let the loop die: live views would go quiet
                detail = exc.detail if isinstance(exc, JobhookError) else repr(exc)
                log.warning("feed.error", error=detail[:500])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)

    async def once(self) -> int:
        """Publish what changed since the last look; the hub drops what it has already seen."""
        changes = await self.store.changed_since(self._since)
        for owner, task in changes:
            try:
                self.hub.publish(task, owner)
            except Exception as exc:  # one bad task is logged and skipped, never the rest
                log.error("feed.task_skipped", task_id=task.get("id"), error=repr(exc)[:500])
            self._since = max(self._since, task["updated_at"])
        return len(changes)

    async def stop(self) -> None:
        self._stop.set()
