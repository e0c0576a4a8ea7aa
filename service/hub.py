"""Every wake-up after a commit goes through here: long-poll waiters per task, live-stream
subscribers, and the workers (a poll scheduled, deliveries written). Web handlers and ingest
say what happened; whoever listens (in this process, or, through a store's notifications, in
others) is woken. Nothing here re-reads the database.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

#: Tasks whose last published sequence is remembered (older ones may be said again, harmlessly).
PUBLISHED_MEMORY = 50_000


class Hub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._streams: dict[asyncio.Queue[dict[str, Any]], str] = {}
        self._published: OrderedDict[str, int] = OrderedDict()
        #: called with the due time of a newly scheduled poll (the poller sleeps until one)
        self.poll_listeners: list[Callable[[float], None]] = []
        #: called when outbox rows were written (the deliverer sleeps until one is due)
        self.delivery_listeners: list[Callable[[], None]] = []
        #: called when a task was queued for submission, or a task ended (a provider slot
        #: may be free): the submitter sleeps until one
        self.submit_listeners: list[Callable[[], None]] = []

    def poll_scheduled(self, due: float) -> None:
        for wake in self.poll_listeners:
            wake(due)

    def deliveries_written(self) -> None:
        for wake in self.delivery_listeners:
            wake()

    def submissions_queued(self) -> None:
        for wake in self.submit_listeners:
            wake()

    def publish(self, task: dict[str, Any], owner: str) -> None:
        # The change feed may bring back what ingest already published: say each change once.
        if self._published.get(task["id"], -1) >= task["sequence"]:
            return
        self._published[task["id"]] = task["sequence"]
        self._published.move_to_end(task["id"])
        if len(self._published) > PUBLISHED_MEMORY:
            self._published.popitem(last=False)
        for waiter in self._waiters.pop(task["id"], ()):
            waiter.set()
        if task["finished_at"] is not None:  # a provider slot may be free
            self.submissions_queued()
        for queue, reader in self._streams.items():
            if reader == owner and queue.qsize() < 1000:  # a stuck reader loses updates, not memory
                queue.put_nowait(task)

    def wants(self, task_id: str, owner: str, sequence: int) -> bool:
        """Whether a change (another process's) is news here: not published yet, and someone
        waits on the task or streams its owner's tasks. Only then is the task read."""
        if self._published.get(task_id, -1) >= sequence:
            return False
        return task_id in self._waiters or owner in self._streams.values()

    def wake_waiters(self) -> None:
        """Every long-poll looks at its task again (after notices may have been missed)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def register(self, task_id: str) -> asyncio.Event:
        """An event set by the task's next committed change in this process. Register before
        reading the task, so a change between the read and the wait is not missed."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        return event

    def unregister(self, task_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[task_id]

    def subscribe(self, owner: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue of `owner`'s task changes, from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._streams[queue] = owner
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._streams.pop(queue, None)

    @property
    def streams(self) -> int:
        return len(self._streams)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
