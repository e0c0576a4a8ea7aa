"""Callback URL tokens: itsdangerous-signed, timestamped, provider-salted task ids.

Keys rotate: the first of JOBHOOK_SECRET_KEYS signs, every key in the list verifies.
"""

from __future__ import annotations

from collections.abc import Sequence

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


#: A dashboard session lasts a working day.
SESSION_MAX_AGE = 12 * 3600


class SessionCookies:
    """The dashboard's login: the owner name, signed and timestamped (keys rotate as above)."""

    def __init__(self, secret_keys: Sequence[str], *, max_age: int = SESSION_MAX_AGE) -> None:
        self._serializer = _Serializer(list(reversed(secret_keys)), salt="jobhook.session")
        self.max_age = max_age

    def issue(self, owner: str) -> str:
        return str(self._serializer.dumps(owner))

    def verify(self, cookie: str) -> str | None:
        try:
            value = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None
