"""`jobhook backup FILE`: an online copy of the SQLite database, safe while jobhook runs.

SQLite's backup API copies a consistent snapshot page by page (WAL readers are never blocked, a
writer waits at most one step), so the copy is a database that opens on its own, with the same
schema and rows as the moment it finished. The copy is created 0600: it holds webhook secrets.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from service.config import ConfigError, Settings

#: Pages copied per step; between steps the live database's writer gets its turn.
PAGES_PER_STEP = 1024


def backup(settings: Settings, target: Path) -> tuple[int, int]:
    """Copy the database to `target` (which must not exist); returns (tasks, bytes)."""
    if not settings.database_url.startswith("sqlite:///"):
        raise ConfigError(
            "JOBHOOK_DATABASE_URL: jobhook backup copies SQLite databases; back PostgreSQL up "
            "with its own tools (pg_dump, or your provider's snapshots)"
        )
    source = settings.database_path
    if not Path(source).is_file():
        raise ConfigError(f"JOBHOOK_DATABASE_URL: there is no database at {source}")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{target} exists: name a new file") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {target}: {exc.strerror}") from None
    os.close(fd)
    try:
        with (
            sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live,
            sqlite3.connect(target) as copy,
        ):
            live.backup(copy, pages=PAGES_PER_STEP)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            (ok,) = copy.execute("PRAGMA quick_check").fetchone()
            if ok != "ok":
                raise ConfigError(f"the copy at {target} failed its check: {ok}")
            (tasks,) = copy.execute("SELECT count(*) FROM tasks").fetchone()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise ConfigError(f"backup of {source} failed: {exc}") from None
    return int(tasks), target.stat().st_size
