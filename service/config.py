"""One frozen Settings object, read from JOBHOOK_* variables and a `.env` file.

A bad value raises ConfigError naming the variable; `jobhook serve` prints it as one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROVIDER_URLS = {
    "apimart": "https://api.apimart.ai",
    "apiframe": "https://api.apiframe.ai",
    "vtrix": "https://cloud.vtrix.ai",
}


DEFAULT_DATABASE_URL = "sqlite:///./var/jobhook.sqlite3"


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: client API key -> owner name; empty means loopback-only development mode
    api_keys: Mapping[str, str] = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()
    public_url: str | None = None
    webhook_secret: str | None = None
    outbound_allow: tuple[IPNetwork, ...] = ()
    default_provider: str = "simulator"
    modal_timeout: float = 1800.0
    #: seconds a task may wait SUBMITTED (queued at the provider) before it fails as `timeout`
    queue_timeout: float = 7200.0
    #: seconds a task may stay IN_PROGRESS before it fails as `timeout`
    run_timeout: float = 3600.0
    #: seconds a task may stay NOT_START (jobhook stopped mid-submission)
    submit_timeout: float = 300.0
    reconcile_after: float = 60.0
    max_body_bytes: int = 1_048_576
    #: the larger limit of the two client routes that may carry a base64 mask (12 MiB decoded)
    max_upload_bytes: int = 17 * 1_048_576
    sqlite_synchronous: str = "NORMAL"
    provider_keys: Mapping[str, str] = field(default_factory=dict)
    provider_urls: Mapping[str, str] = field(default_factory=lambda: dict(PROVIDER_URLS))
    var_dir: Path = Path("var")
    log_level: str = "info"
    log_format: str = "auto"
    #: also append every log line as JSON to this file (`jobhook tail` follows it)
    log_file: str | None = None
    #: run the built-in provider simulator inside jobhook (provider `simulator`)
    simulator: bool = True
    #: seconds per step of the embedded simulator's clock
    simulator_step: float = 1.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read settings from `env` (default: os.environ) over the values in `env_file`."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(_read_env_file(Path(env_file)))
        values.update(os.environ if env is None else env)
        return _parse(values)

    @property
    def dev_mode(self) -> bool:
        """No client keys: jobhook must serve on loopback only."""
        return not self.api_keys

    def with_secrets(self) -> Settings:
        """Fill secret_keys and webhook_secret from ./var, generating them on first run."""
        secret_keys = self.secret_keys or (_load_or_create(self.var_dir / "secret_key", 32),)
        webhook = self.webhook_secret or _load_or_create(self.var_dir / "webhook_secret", 24)
        return replace(self, secret_keys=secret_keys, webhook_secret=webhook)


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def _load_or_create(path: Path, nbytes: int) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name == "webhook_secret":  # Standard Webhooks: whsec_ + standard base64
        value = "whsec_" + base64.b64encode(secrets.token_bytes(nbytes)).decode()
    else:
        value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (web and worker start together) made it first
        for _ in range(50):
            if text := path.read_text().strip():
                return text
            time.sleep(0.01)
        raise
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _number(values: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if number < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g}, got {raw!r}")
    return number


def _is_whsec(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) >= 16
    except (binascii.Error, ValueError):
        return False


def _flag(values: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = values.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name}: expected on or off, got {raw!r}")


def _url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: expected an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _api_keys(raw: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, key = item.partition(":")
        if not sep:
            key, name = item, "key_" + hashlib.sha256(item.encode()).hexdigest()[:10]
        if len(key) < 8 or not name:
            raise ConfigError("JOBHOOK_API_KEYS: each key needs at least 8 characters")
        keys[key] = name
    return keys


def _parse(values: Mapping[str, str]) -> Settings:
    get = values.get
    database_url = get("JOBHOOK_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    if not database_url.startswith("sqlite:///"):
        raise ConfigError(
            f"JOBHOOK_DATABASE_URL: expected sqlite:///path (PostgreSQL is not supported yet), "
            f"got {database_url.split(':', 1)[0]}:..."
        )
    synchronous = (get("JOBHOOK_SQLITE_SYNCHRONOUS", "") or "NORMAL").strip().upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise ConfigError(
            f"JOBHOOK_SQLITE_SYNCHRONOUS: expected NORMAL or FULL, got {synchronous!r}"
        )
    allow: list[IPNetwork] = []
    for cidr in filter(None, (c.strip() for c in get("JOBHOOK_OUTBOUND_ALLOW", "").split(","))):
        try:
            allow.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(f"JOBHOOK_OUTBOUND_ALLOW: {cidr!r} is not a CIDR") from None
    webhook_secret = get("JOBHOOK_WEBHOOK_SECRET", "").strip() or None
    if webhook_secret is not None and not _is_whsec(webhook_secret):
        raise ConfigError("JOBHOOK_WEBHOOK_SECRET: expected whsec_ followed by base64")
    public_url = get("JOBHOOK_PUBLIC_URL", "").strip() or None
    provider_keys = {
        p: get(f"{p.upper()}_API_KEY", "").strip()
        for p in PROVIDER_URLS
        if get(f"{p.upper()}_API_KEY", "").strip()
    }
    provider_urls = {
        p: _url(f"JOBHOOK_{p.upper()}_BASE_URL", get(f"JOBHOOK_{p.upper()}_BASE_URL", "") or url)
        for p, url in PROVIDER_URLS.items()
    }
    api_keys = _api_keys(get("JOBHOOK_API_KEYS", ""))
    # The simulator is a development fake: on by default only in loopback-only dev mode.
    simulator = _flag(values, "JOBHOOK_SIMULATOR", default=not api_keys)
    simulators = ("simulator", "simulator-apimart", "simulator-vtrix")
    fallback = "simulator" if simulator else next(iter(provider_keys), "")
    default_provider = (get("JOBHOOK_DEFAULT_PROVIDER", "") or fallback).strip()
    if not default_provider:
        raise ConfigError(
            "JOBHOOK_DEFAULT_PROVIDER: no provider is enabled; set APIMART_API_KEY, "
            "APIFRAME_API_KEY or VTRIX_API_KEY (or JOBHOOK_SIMULATOR=on)"
        )
    if default_provider not in (*simulators, *PROVIDER_URLS):
        raise ConfigError(
            f"JOBHOOK_DEFAULT_PROVIDER: expected one of {', '.join(simulators)}, "
            f"{', '.join(PROVIDER_URLS)}; got {default_provider!r}"
        )
    if default_provider in PROVIDER_URLS and default_provider not in provider_keys:
        raise ConfigError(
            f"JOBHOOK_DEFAULT_PROVIDER: {default_provider} is not enabled "
            f"(set {default_provider.upper()}_API_KEY)"
        )
    if default_provider in simulators and not simulator:
        raise ConfigError(
            "JOBHOOK_DEFAULT_PROVIDER: the simulator is off (JOBHOOK_SIMULATOR=off); "
            "name a provider with a key"
        )
    log_level = (get("JOBHOOK_LOG_LEVEL", "") or "info").strip().lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"JOBHOOK_LOG_LEVEL: expected debug|info|warning|error, got {log_level!r}"
        )
    log_format = (get("JOBHOOK_LOG_FORMAT", "") or "auto").strip().lower()
    if log_format not in ("auto", "json", "console"):
        raise ConfigError(f"JOBHOOK_LOG_FORMAT: expected auto|json|console, got {log_format!r}")
    max_body = _number(values, "JOBHOOK_MAX_BODY_BYTES", 1_048_576, minimum=1024)
    max_upload = _number(values, "JOBHOOK_MAX_UPLOAD_BYTES", 17 * 1_048_576, minimum=1024)
    for name, value in (
        ("JOBHOOK_MAX_BODY_BYTES", max_body),
        ("JOBHOOK_MAX_UPLOAD_BYTES", max_upload),
    ):
        if value != int(value):
            raise ConfigError(f"{name}: expected a whole number of bytes")
    return Settings(
        database_url=database_url,
        api_keys=api_keys,
        secret_keys=tuple(
            k.strip() for k in get("JOBHOOK_SECRET_KEYS", "").split(",") if k.strip()
        ),
        public_url=_url("JOBHOOK_PUBLIC_URL", public_url) if public_url else None,
        webhook_secret=webhook_secret,
        outbound_allow=tuple(allow),
        default_provider=default_provider,
        modal_timeout=_number(values, "JOBHOOK_MODAL_TIMEOUT", 1800, minimum=1),
        queue_timeout=_number(values, "JOBHOOK_QUEUE_TIMEOUT", 7200, minimum=1),
        run_timeout=_number(values, "JOBHOOK_RUN_TIMEOUT", 3600, minimum=1),
        submit_timeout=_number(values, "JOBHOOK_SUBMIT_TIMEOUT", 300, minimum=1),
        reconcile_after=_number(values, "JOBHOOK_RECONCILE_AFTER", 60, minimum=1),
        max_body_bytes=int(max_body),
        max_upload_bytes=int(max_upload),
        sqlite_synchronous=synchronous,
        provider_keys=provider_keys,
        provider_urls=provider_urls,
        var_dir=Path(get("JOBHOOK_VAR_DIR", "") or "var"),
        log_level=log_level,
        log_format=log_format,
        log_file=get("JOBHOOK_LOG_FILE", "").strip() or None,
        simulator=simulator,
        simulator_step=_number(values, "JOBHOOK_SIMULATOR_STEP", 1.0, minimum=0.001),
    )
