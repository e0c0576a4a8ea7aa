"""Helpers for the adapter contract tests: the providers' documented examples, and answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.providers.base import ProviderResponse

EXAMPLES = Path(__file__).parent.parent / "fixtures" / "providers"


def example_bytes(provider: str, name: str) -> bytes:
    """The raw JSON a provider's docs print, e.g. ("apiframe", "webhook.completed")."""
    return (EXAMPLES / f"{provider}.{name}.json").read_bytes()


def example(provider: str, name: str) -> Any:
    return json.loads(example_bytes(provider, name))


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> ProviderResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ProviderResponse(status_code=status, headers=headers or {}, body=raw)
