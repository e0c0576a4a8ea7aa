"""Secrets at rest: the database (endpoint whsec_ secrets) and its -wal/-shm, the JSON log file,
and the directories jobhook makes for them are readable by their owner only."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import structlog

from service.logging import configure_logging, flush_logs
from service.store.sqlite import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_its_wal_and_its_directory_are_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    db = var / "jobhook.sqlite3"
    store = SQLiteStore(str(db))
    await store.open()
    try:
        await store.create_endpoint("alice", "https://hooks.example.com/x", [], None)
        # WAL: the -wal and -shm files live while connections are open
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert (mode(var), mode(db), mode(wal), mode(shm)) == (0o700, 0o600, 0o600, 0o600)
    finally:
        await store.close()
    assert mode(db) == 0o600


async def test_an_existing_database_stops_granting_others(tmp_path: Path) -> None:
    db = tmp_path / "jobhook.sqlite3"
    directory = mode(tmp_path)
    first = SQLiteStore(str(db))
    await first.open()
    await first.close()
    os.chmod(db, 0o644)  # as made by an older jobhook
    store = SQLiteStore(str(db))
    await store.open()
    try:
        assert mode(db) == 0o640  # the group keeps what the operator gave it
        assert mode(tmp_path) == directory  # a directory jobhook did not make is left as it is
    finally:
        await store.close()


def test_a_new_log_file_and_its_directory_are_private(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = logs / "jobhook.log"
    configure_logging(level="info", fmt="json", stream=io.BytesIO(), cache=False, file=str(path))
    try:
        structlog.get_logger().info("thing.happened")
        flush_logs()
        assert path.read_bytes().count(b"\n") == 1
        assert (mode(logs), mode(path)) == (0o700, 0o600)
    finally:
        configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)
