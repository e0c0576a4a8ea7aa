"""Callback URL tokens (itsdangerous-signed, timestamped, provider-salted task ids) and the
dashboard's session cookies.

Keys rotate: the first of JOBHOOK_SECRET_KEYS signs, every key in the list verifies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer

#: Tokens outlive the longest task: queue + run + a MODAL wait + provider retries (3 days).
TOKEN_MAX_AGE = 7 * 24 * 3600


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous builds a new signer (and its key list) for every token it checks; ours
    builds it once: a callback's token is checked on the hot path."""

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is not None and salt != self.salt:
            return super().make_signer(salt)
        cached: Signer | None = getattr(self, "_signer", None)
        if cached is None:
            cached = super().make_signer(salt)
            self._signer = cached
        return cached


class CallbackTokens:
    def __init__(self, secret_keys: Sequence[str], *, max_age: int = TOKEN_MAX_AGE) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        # itsdangerous signs with the last key and verifies with all of them.
        self._keys = list(reversed(secret_keys))
        self._max_age = max_age
        self._serializers: dict[str, URLSafeTimedSerializer] = {}

    def _serializer(self, provider: str) -> URLSafeTimedSerializer:
        serializer = self._serializers.get(provider)
        if serializer is None:  # one per provider: building one costs more than a check
            serializer = _Serializer(self._keys, salt=f"jobhook.callback.{provider}")
            self._serializers[provider] = serializer
        return serializer

    def issue(self, provider: str, task_id: str) -> str:
        return str(self._serializer(provider).dumps(task_id))

    def verify(self, provider: str, token: str) -> str | None:
        """The task id the token was issued for, or None if it is forged, expired or not ours."""
        try:
            value = self._serializer(provider).loads(token, max_age=self._max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


#: A dashboard session lasts a working day; signing out ends it sooner.
SESSION_MAX_AGE = 8 * 3600
#: signed-out sessions remembered per process (each only until it would have expired anyway)
MAX_REVOKED_SESSIONS = 100_000


class SessionCookies:
    """The dashboard's login: `[owner, session id]`, signed and timestamped (keys rotate as
    above).

    Signing out revokes the session id: this process refuses it from then on, until the cookie
    would have expired anyway (`max_age`). The revocation set lives in memory, so it is per
    process and a restart forgets it; what a copied cookie can still do after its owner signed
    out is then bounded by the session's short life, and it only ever reads.
    """

    def __init__(
        self,
        secret_keys: Sequence[str],
        *,
        max_age: int = SESSION_MAX_AGE,
        max_revoked: int = MAX_REVOKED_SESSIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._serializer = _Serializer(list(reversed(secret_keys)), salt="jobhook.session")
        self.max_age = max_age
        self._max_revoked = max_revoked
        self._clock = clock
        #: session id -> when its cookie expires anyway
        self._revoked: dict[str, float] = {}

    def issue(self, owner: str) -> str:
        return str(self._serializer.dumps([owner, secrets.token_urlsafe(16)]))

    def _load(self, cookie: str) -> tuple[str, str, float] | None:
        """(owner, session id, issued at) of a good, unexpired cookie."""
        try:
            value, signed_at = self._serializer.loads(
                cookie, max_age=self.max_age, return_timestamp=True
            )
        except BadSignature:
            return None
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) and part for part in value)
        ):
            return None  # not a session of this version (a bare owner name: sign in again)
        return value[0], value[1], signed_at.timestamp()

    def verify(self, cookie: str) -> str | None:
        """The owner of a good, unexpired session that has not signed out; else None."""
        loaded = self._load(cookie)
        if loaded is None or loaded[1] in self._revoked:
            return None
        return loaded[0]

    def revoke(self, cookie: str) -> bool:
        """Sign the cookie's session out; False if it was no good session anyway."""
        loaded = self._load(cookie)
        if loaded is None:
            return False
        _, session_id, issued_at = loaded
        now = self._clock()
        if len(self._revoked) >= self._max_revoked:
            self._revoked = {s: t for s, t in self._revoked.items() if t > now}
            if len(self._revoked) >= self._max_revoked:  # all still live: drop the oldest
                keep = sorted(self._revoked.items(), key=lambda item: item[1])
                self._revoked = dict(keep[len(keep) - self._max_revoked + 1 :])
        self._revoked[session_id] = issued_at + self.max_age
        return True

    @property
    def revoked(self) -> int:
        return len(self._revoked)
