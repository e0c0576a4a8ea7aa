"""The one URL parser: every URL jobhook takes (callback URLs, endpoints, URLs a provider is
asked to fetch) is read here, so a malformed one is always the same clear refusal, never a 500.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urlsplit

#: The longest URL taken.
MAX_URL_CHARS: Final = 2048
SCHEMES: Final = ("http", "https")


class BadURL(ValueError):
    """The URL is malformed; `reason` says how, for the client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_url(url: str) -> SplitResult:
    """An absolute http(s) URL, split; raises BadURL with the reason it is refused.

    urlsplit would quietly drop tabs, CR and LF (and keep other blanks): a URL with any of them
    is refused instead, so what is stored and called is exactly what was sent.
    """
    if len(url) > MAX_URL_CHARS:
        raise BadURL(f"the URL is longer than {MAX_URL_CHARS} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise BadURL("the URL has blanks or control characters (CR, LF, tab ...)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed bracket, a bracketed host that is not an IPv6 address
        raise BadURL("the URL is not valid") from None
    if parts.scheme not in SCHEMES:
        raise BadURL("only http and https URLs are allowed")
    if not host:
        raise BadURL("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise BadURL("the port is not a number between 1 and 65535")
    return parts
