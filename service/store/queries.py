"""Named SQL: each store keeps its statements in one `.sql` file of `-- name: verb` blocks
(procrastinate's pattern), read once and looked up by name: greppable, reviewable, no SQL
assembled across modules."""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@functools.cache
def load(filename: str) -> dict[str, str]:
    """The named statements in `service/store/<filename>`, read once (every module of a store
    shares them); a comment line above a name's line documents it, lines starting `--` inside a
    block are kept out of the statement."""
    text = (resources.files("service.store") / filename).read_text()
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        statement = "\n".join(lines).strip().rstrip(";")
        if name in queries:
            raise ValueError(f"{filename}: query {name!r} is named twice")
        queries[name] = statement
    return queries
