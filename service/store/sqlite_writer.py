"""The single SQLite writer: one thread, one connection, group commit.

Units of work are queued from the event loop; the thread drains the queue, runs a batch inside
one `BEGIN IMMEDIATE ... COMMIT` (if a unit raises, the batch is rolled back and each unit is run
in a transaction of its own, so an error stays with its caller), then resolves every caller's
future. One thread hop per batch, never two
transactions interleaved on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass
from typing import Any, TypeVar

from service.errors import StoreUnavailable
from service.logging import log

T = TypeVar("T")
Unit = Callable[..., Any]

#: Units committed together at most; bounds the latency a batch adds to its first caller.
MAX_BATCH = 256


class _UnitFailed(Exception):
    """A unit of a batch raised; the batch was rolled back."""


@dataclass(slots=True)
class _Item:
    fn: Unit
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SQLiteWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="jobhook-sqlite-writer", daemon=True)
        self._ready: ThreadFuture[None] = ThreadFuture()
        self.batches = 0
        self.units = 0

    async def start(self) -> None:
        self._thread.start()
        await asyncio.wrap_future(self._ready)

    async def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` in the next committed batch; return once it is durable."""
        if not self._thread.is_alive():
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Item(fn, args, future, loop))
        return await future

    def _together(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[tuple[bool, Any]]:
        """Run `batch` in one transaction. No savepoint per unit: each statement hands the GIL
        to the event loop and back, so the happy path is BEGIN, the units' statements, COMMIT.

        Raises _UnitFailed (all rolled back) when a unit of a larger batch raised.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [(True, item.fn(conn, *item.args)) for item in batch]
        except Exception as exc:
            conn.execute("ROLLBACK")
            if len(batch) > 1:
                raise _UnitFailed from exc
            if isinstance(exc, sqlite3.OperationalError):
                raise
            return [(False, exc)]
        conn.execute("COMMIT")
        return results

    def _alone(self, conn: sqlite3.Connection, item: _Item) -> tuple[bool, Any]:
        try:
            return self._together(conn, [item])[0]
        except sqlite3.Error as exc:
            return self._unavailable(conn, exc)

    @staticmethod
    def _unavailable(conn: sqlite3.Connection, exc: sqlite3.Error) -> tuple[bool, Any]:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        log.error("store.commit_failed", error=str(exc))
        return False, StoreUnavailable("the store could not commit; retry")

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        try:
            results = self._together(conn, batch)
        except _UnitFailed:
            # One unit failed and took the batch down: run each unit on its own, so the failure
            # stays with its caller and the others commit (and are reported as committed).
            results = [self._alone(conn, item) for item in batch]
        except sqlite3.Error as exc:
            results = [self._unavailable(conn, exc)] * len(batch)
        self.batches += 1
        self.units += len(batch)
        for item, (ok, value) in zip(batch, results, strict=True):
            # RuntimeError: the caller's loop has closed, so nobody is waiting.
            with contextlib.suppress(RuntimeError):
                item.loop.call_soon_threadsafe(_resolve, item.future, ok, value)
