"""One frozen Settings object, read from JOBHOOK_* variables and a `.env` file.

A bad value raises ConfigError naming the variable and what is wrong, in one line; `jobhook serve`
prints it as that one line. Values are checked strictly: integers are ASCII digits within a
range, seconds are finite decimal numbers within a range (no nan, inf, signs or exponents), keys
and tokens are printable ASCII without spaces and long enough, URLs parse, enums are enums.

Files jobhook creates are private: directories 0700, files 0600 (`private_dir`,
`private_file`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import ipaddress
import os
import re
import secrets
import stat
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
#: JOBHOOK_DATABASE_URL prefixes of the PostgreSQL store (service/store/postgres.py).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: Signing keys for callback tokens and session cookies: at least this many characters (the
#: generated one has 43: 32 random bytes, URL-safe base64).
MIN_SECRET_KEY_CHARS = 32
#: Client API keys (`JOBHOOK_API_KEYS`) and the metrics token: at least this many characters.
MIN_API_KEY_CHARS = 16
MIN_METRICS_TOKEN_CHARS = 16
#: Standard Webhooks secrets: whsec_ + base64 of at least this many bytes (the spec's minimum).
MIN_WEBHOOK_SECRET_BYTES = 24

#: Accepted ranges, stated in the README's configuration table.
BYTES_RANGE = (1024, 64 * 1_048_576)
TIMEOUT_RANGE = (1.0, 7 * 86400.0)
RECONCILE_RANGE = (1.0, 86400.0)
SIMULATOR_STEP_RANGE = (0.001, 60.0)
RATE_RANGE = (0.01, 100_000.0)
POLL_CONCURRENCY_RANGE = (1, 4096)
CONCURRENCY_RANGE = (0, 100_000)
QUEUE_PER_OWNER_RANGE = (1, 10_000_000)
#: Every provider name JOBHOOK_PROVIDER_RATES may name.
RATED_PROVIDERS = (*PROVIDER_URLS, "simulator", "simulator-apimart", "simulator-vtrix")

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
#: printable ASCII without spaces (keys, tokens: they travel in HTTP headers)
_TOKEN = re.compile(r"[!-~]+")
_OWNER = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
#: whitespace and control characters, which no URL or path setting may hold
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]|\s")
_PATH_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
    #: bearer token required to read /metrics and the details of /readyz; None: open
    metrics_token: str | None = None
    #: `jobhook worker` serves /metrics on this port (JOBHOOK_METRICS_PORT); None: it does not
    metrics_port: int | None = None
    #: ... on this address (JOBHOOK_METRICS_HOST; beyond loopback only with a metrics token)
    metrics_host: str = "127.0.0.1"
    #: requests per second per provider (submissions, polls and modal calls share it), where
    #: set; the rest use service/providers/rates.py's defaults
    provider_rates: Mapping[str, float] = field(default_factory=dict)
    #: polls in flight at once in one worker process, over all providers
    poll_concurrency: int = 64
    #: jobs in flight at a provider (submitted, not terminal), over every process, where set
    #: (JOBHOOK_<PROVIDER>_CONCURRENCY); unset: no cap of jobhook's own
    provider_concurrency: Mapping[str, int] = field(default_factory=dict)
    #: tasks one owner may have waiting in one provider's submission queue (beyond: 429)
    queue_per_owner: int = 1000

    def concurrency(self, provider: str) -> int | None:
        """The most jobs in flight at `provider` (None: no cap)."""
        return self.provider_concurrency.get(provider)

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

    @property
    def postgres(self) -> bool:
        """database_url names a PostgreSQL database (not a SQLite file)."""
        return self.database_url.startswith(POSTGRES_SCHEMES)

    @property
    def database_path(self) -> str:
        """The SQLite file named by database_url."""
        return self.database_url.removeprefix("sqlite:///")

    def with_secrets(self) -> Settings:
        """Fill secret_keys and webhook_secret from ./var, generating them on first run.

        Raises ConfigError (naming JOBHOOK_VAR_DIR) when they cannot be made or read, or what
        is there is not a valid key."""
        secret_keys = self.secret_keys
        if not secret_keys:
            key = _load_or_create(self.var_dir / "secret_key", 32)
            if len(key) < MIN_SECRET_KEY_CHARS or not _TOKEN.fullmatch(key):
                raise ConfigError(
                    f"JOBHOOK_VAR_DIR: {self.var_dir / 'secret_key'} does not hold a signing key "
                    f"(printable ASCII, at least {MIN_SECRET_KEY_CHARS} characters)"
                )
            secret_keys = (key,)
        webhook = self.webhook_secret
        if webhook is None:
            webhook = _load_or_create(self.var_dir / "webhook_secret", 24)
            if not _is_whsec(webhook):
                raise ConfigError(
                    f"JOBHOOK_VAR_DIR: {self.var_dir / 'webhook_secret'} does not hold a "
                    "whsec_ secret"
                )
        return replace(self, secret_keys=secret_keys, webhook_secret=webhook)


def private_dir(path: Path) -> None:
    """Make the directory `path` (and missing parents): one made here is 0700. One that exists
    keeps its mode (it may be the working directory)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:  # made by another process meanwhile (or not a directory)
        if not path.is_dir():
            raise


def private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 (its directory by private_dir) unless it exists;
    True when it was created here. An existing file keeps its mode."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def close_to_others(path: Path) -> bool:
    """Take away what `path` grants to others (neither its owner nor its group): True if it
    granted anything. A missing file, or one this process may not chmod, is left as it is."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not mode & 0o007:
            return False
        os.chmod(path, mode & ~0o007)
    except OSError:
        return False
    return True


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot be read ({reason})") from None
    out: dict[str, str] = {}
    for line in text.splitlines():
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
    try:
        return _read_or_create(path, nbytes)
    except OSError as exc:
        raise ConfigError(
            f"JOBHOOK_VAR_DIR: cannot create or read {path} ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"JOBHOOK_VAR_DIR: {path} is not UTF-8 text") from None


def _read_or_create(path: Path, nbytes: int) -> str:
    if path.is_file():
        return path.read_text().strip()
    private_dir(path.parent)
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


def _show(raw: str) -> str:
    """A value for an error message: quoted (control characters escaped), at most ~80 chars."""
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")


def _text(values: Mapping[str, str], name: str) -> str:
    return values.get(name, "").strip()


def _seconds(
    values: Mapping[str, str], name: str, default: float, *, within: tuple[float, float]
) -> float:
    raw = _text(values, name)
    if not raw:
        return default
    low, high = within
    number = float(raw) if _DECIMAL.fullmatch(raw) else None
    if number is None or not low <= number <= high:
        raise ConfigError(
            f"{name}: expected a number of seconds from {low:g} to {high:g}, got {_show(raw)}"
        )
    return number


def _bytes(values: Mapping[str, str], name: str, default: int) -> int:
    raw = _text(values, name)
    if not raw:
        return default
    low, high = BYTES_RANGE
    # at most 12 digits: int() of a very long string is slow (and refused past 4300 digits)
    number = int(raw) if _DIGITS.fullmatch(raw) and len(raw) <= 12 else None
    if number is None or not low <= number <= high:
        raise ConfigError(
            f"{name}: expected a whole number of bytes from {low} to {high}, got {_show(raw)}"
        )
    return number


def _count(values: Mapping[str, str], name: str, default: int, *, within: tuple[int, int]) -> int:
    raw = _text(values, name)
    if not raw:
        return default
    low, high = within
    number = int(raw) if _DIGITS.fullmatch(raw) and len(raw) <= 12 else None
    if number is None or not low <= number <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {_show(raw)}")
    return number


def concurrency_variable(provider: str) -> str:
    """JOBHOOK_APIMART_CONCURRENCY, JOBHOOK_SIMULATOR_APIMART_CONCURRENCY, ..."""
    return f"JOBHOOK_{provider.upper().replace('-', '_')}_CONCURRENCY"


def _concurrency(values: Mapping[str, str]) -> dict[str, int]:
    """JOBHOOK_<PROVIDER>_CONCURRENCY per provider, where set (0 or empty: no cap)."""
    found: dict[str, int] = {}
    for provider in RATED_PROVIDERS:
        cap = _count(values, concurrency_variable(provider), 0, within=CONCURRENCY_RANGE)
        if cap:
            found[provider] = cap
    return found


def _rates(raw: str) -> dict[str, float]:
    """`apimart=20,vtrix=5`: requests per second per provider."""
    name = "JOBHOOK_PROVIDER_RATES"
    rates: dict[str, float] = {}
    low, high = RATE_RANGE
    for item in filter(None, (part.strip() for part in raw.split(","))):
        provider, sep, value = (p.strip() for p in item.partition("="))
        if not sep or provider not in RATED_PROVIDERS:
            raise ConfigError(
                f"{name}: expected provider=requests-per-second pairs with a provider among "
                f"{', '.join(RATED_PROVIDERS)}, got {_show(item)}"
            )
        rate = float(value) if _DECIMAL.fullmatch(value) else None
        if rate is None or not low <= rate <= high:
            raise ConfigError(
                f"{name}: {provider}: expected requests per second from {low:g} to {high:g}, "
                f"got {_show(value)}"
            )
        if provider in rates:
            raise ConfigError(f"{name}: {provider} is named twice")
        rates[provider] = rate
    return rates


def _choice(values: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (any case), or `default` when unset."""
    raw = _text(values, name)
    if not raw:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name}: expected one of {'|'.join(choices)}, got {_show(raw)}")


def _is_whsec(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        secret = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(secret) >= MIN_WEBHOOK_SECRET_BYTES


def _flag(values: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = _text(values, name).lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name}: expected on or off, got {_show(raw)}")


def _url(name: str, raw: str) -> str:
    if _UNSAFE.search(raw):
        raise ConfigError(f"{name}: a URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port  # parses it: a bad port raises here
    except ValueError as exc:
        raise ConfigError(f"{name}: not a valid URL ({exc}): {_show(raw)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigError(f"{name}: expected an http(s) URL with a host, got {_show(raw)}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{name}: must not carry a user or password (user:password@)")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise ConfigError(f"{name}: must not have a query or fragment, got {_show(raw)}")
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    """sqlite:///path naming a file, or postgresql://[user[:password]@]host[:port]/db (also
    postgres://). Messages never repeat a PostgreSQL URL: it may carry a password."""
    name = "JOBHOOK_DATABASE_URL"
    if raw.startswith(POSTGRES_SCHEMES):
        expected = "expected postgresql://user@host:port/database"
        if _UNSAFE.search(raw):
            raise ConfigError(f"{name}: a URL must not contain whitespace or control characters")
        try:
            parts = urlsplit(raw)
            port = parts.port  # parses it: a bad port raises here
        except ValueError:
            raise ConfigError(f"{name}: {expected} (the host or port does not parse)") from None
        if not parts.hostname:
            raise ConfigError(f"{name}: {expected} (no host)")
        if port == 0:
            raise ConfigError(f"{name}: {expected} (port 0)")
        database = parts.path.removeprefix("/")
        if not database or "/" in database:
            raise ConfigError(f"{name}: {expected} (no database name after the host)")
        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigError(
                f"{name}: PostgreSQL needs the postgres extra: pip install 'jobhook[postgres]'"
            )
        return raw
    if not raw.startswith("sqlite:///"):
        raise ConfigError(
            f"{name}: expected sqlite:///path or postgresql://user@host:port/database, "
            f"got {raw.split(':', 1)[0][:20]!r}:..."
        )
    path = _path(name, raw.removeprefix("sqlite:///"))
    if path in ("", ":memory:") or path.endswith("/"):
        raise ConfigError(f"{name}: expected sqlite:///path naming a file, got {_show(path)}")
    return raw


def redacted_url(url: str) -> str:
    """A database URL fit for a message or a log line: its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def _path(name: str, raw: str) -> str:
    if _PATH_UNSAFE.search(raw):
        raise ConfigError(f"{name}: a path must not contain control characters, got {_show(raw)}")
    return raw


def _token(name: str, raw: str, *, minimum: int, what: str = "the value") -> str:
    """A key or token: printable ASCII without spaces, at least `minimum` characters. The value
    itself is never part of the message (it is a secret)."""
    if not _TOKEN.fullmatch(raw):
        raise ConfigError(f"{name}: {what} must be printable ASCII without spaces")
    if len(raw) < minimum:
        raise ConfigError(
            f"{name}: {what} has {len(raw)} characters; at least {minimum} are needed"
        )
    return raw


def _api_keys(raw: str) -> dict[str, str]:
    name_ = "JOBHOOK_API_KEYS"
    keys: dict[str, str] = {}
    for n, item in enumerate(filter(None, (part.strip() for part in raw.split(","))), 1):
        name, sep, key = item.partition(":")
        if not sep:
            key, name = item, "key_" + hashlib.sha256(item.encode()).hexdigest()[:10]
        elif not _OWNER.fullmatch(name):
            raise ConfigError(
                f"{name_}: the owner name of key {n} must be 1-64 of A-Z a-z 0-9 . _ @ + -"
            )
        _token(name_, key, minimum=MIN_API_KEY_CHARS, what=f"key {n}")
        if key in keys:
            raise ConfigError(f"{name_}: key {n} is listed twice")
        keys[key] = name
    return keys


def _secret_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for n, key in enumerate(keys, 1):
        _token("JOBHOOK_SECRET_KEYS", key, minimum=MIN_SECRET_KEY_CHARS, what=f"key {n}")
    return keys


def _parse(values: Mapping[str, str]) -> Settings:
    database_url = _database_url(_text(values, "JOBHOOK_DATABASE_URL") or DEFAULT_DATABASE_URL)
    synchronous = _choice(values, "JOBHOOK_SQLITE_SYNCHRONOUS", "NORMAL", ("NORMAL", "FULL"))
    allow: list[IPNetwork] = []
    cidrs = (c.strip() for c in values.get("JOBHOOK_OUTBOUND_ALLOW", "").split(","))
    for cidr in filter(None, cidrs):
        try:
            allow.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(f"JOBHOOK_OUTBOUND_ALLOW: {_show(cidr)} is not a CIDR") from None
    webhook_secret = _text(values, "JOBHOOK_WEBHOOK_SECRET") or None
    if webhook_secret is not None and not _is_whsec(webhook_secret):
        raise ConfigError(
            "JOBHOOK_WEBHOOK_SECRET: expected whsec_ followed by standard base64 of at least "
            f"{MIN_WEBHOOK_SECRET_BYTES} bytes"
        )
    public_url = _text(values, "JOBHOOK_PUBLIC_URL") or None
    provider_keys = {
        p: _token(f"{p.upper()}_API_KEY", key, minimum=1)
        for p in PROVIDER_URLS
        if (key := _text(values, f"{p.upper()}_API_KEY"))
    }
    provider_urls = {}
    for p, url in PROVIDER_URLS.items():
        name = f"JOBHOOK_{p.upper()}_BASE_URL"
        provider_urls[p] = _url(name, _text(values, name) or url)
    api_keys = _api_keys(values.get("JOBHOOK_API_KEYS", ""))
    # The simulator is a development fake: on by default only in loopback-only dev mode.
    simulator = _flag(values, "JOBHOOK_SIMULATOR", default=not api_keys)
    simulators = ("simulator", "simulator-apimart", "simulator-vtrix")
    fallback = "simulator" if simulator else next(iter(provider_keys), "")
    default_provider = _text(values, "JOBHOOK_DEFAULT_PROVIDER") or fallback
    if not default_provider:
        raise ConfigError(
            "JOBHOOK_DEFAULT_PROVIDER: no provider is enabled; set APIMART_API_KEY, "
            "APIFRAME_API_KEY or VTRIX_API_KEY (or JOBHOOK_SIMULATOR=on)"
        )
    if default_provider not in (*simulators, *PROVIDER_URLS):
        raise ConfigError(
            f"JOBHOOK_DEFAULT_PROVIDER: expected one of {', '.join(simulators)}, "
            f"{', '.join(PROVIDER_URLS)}; got {_show(default_provider)}"
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
    levels = ("debug", "info", "warning", "error")
    log_file = _text(values, "JOBHOOK_LOG_FILE") or None
    metrics_token = _text(values, "JOBHOOK_METRICS_TOKEN") or None
    if metrics_token is not None:
        _token("JOBHOOK_METRICS_TOKEN", metrics_token, minimum=MIN_METRICS_TOKEN_CHARS)
    metrics_port = _count(values, "JOBHOOK_METRICS_PORT", 0, within=(0, 65535)) or None
    metrics_host = _text(values, "JOBHOOK_METRICS_HOST") or "127.0.0.1"
    if metrics_host != "localhost":
        try:
            ipaddress.ip_address(metrics_host)
        except ValueError:
            raise ConfigError(
                f"JOBHOOK_METRICS_HOST: expected an IP address, got {_show(metrics_host)}"
            ) from None
    if metrics_token is None and not (
        metrics_host == "localhost" or ipaddress.ip_address(metrics_host).is_loopback
    ):
        raise ConfigError(
            "JOBHOOK_METRICS_HOST: beyond loopback, /metrics needs JOBHOOK_METRICS_TOKEN"
        )
    return Settings(
        database_url=database_url,
        api_keys=api_keys,
        secret_keys=_secret_keys(values.get("JOBHOOK_SECRET_KEYS", "")),
        public_url=_url("JOBHOOK_PUBLIC_URL", public_url) if public_url else None,
        webhook_secret=webhook_secret,
        outbound_allow=tuple(allow),
        default_provider=default_provider,
        modal_timeout=_seconds(values, "JOBHOOK_MODAL_TIMEOUT", 1800, within=TIMEOUT_RANGE),
        queue_timeout=_seconds(values, "JOBHOOK_QUEUE_TIMEOUT", 7200, within=TIMEOUT_RANGE),
        run_timeout=_seconds(values, "JOBHOOK_RUN_TIMEOUT", 3600, within=TIMEOUT_RANGE),
        submit_timeout=_seconds(values, "JOBHOOK_SUBMIT_TIMEOUT", 300, within=TIMEOUT_RANGE),
        reconcile_after=_seconds(values, "JOBHOOK_RECONCILE_AFTER", 60, within=RECONCILE_RANGE),
        max_body_bytes=_bytes(values, "JOBHOOK_MAX_BODY_BYTES", 1_048_576),
        max_upload_bytes=_bytes(values, "JOBHOOK_MAX_UPLOAD_BYTES", 17 * 1_048_576),
        sqlite_synchronous=synchronous,
        provider_keys=provider_keys,
        provider_urls=provider_urls,
        var_dir=Path(_path("JOBHOOK_VAR_DIR", _text(values, "JOBHOOK_VAR_DIR") or "var")),
        log_level=_choice(values, "JOBHOOK_LOG_LEVEL", "info", levels),
        log_format=_choice(values, "JOBHOOK_LOG_FORMAT", "auto", ("auto", "json", "console")),
        log_file=_path("JOBHOOK_LOG_FILE", log_file) if log_file else None,
        simulator=simulator,
        simulator_step=_seconds(values, "JOBHOOK_SIMULATOR_STEP", 1.0, within=SIMULATOR_STEP_RANGE),
        metrics_token=metrics_token,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        provider_rates=_rates(_text(values, "JOBHOOK_PROVIDER_RATES")),
        poll_concurrency=_count(
            values, "JOBHOOK_POLL_CONCURRENCY", 64, within=POLL_CONCURRENCY_RANGE
        ),
        provider_concurrency=_concurrency(values),
        queue_per_owner=_count(
            values, "JOBHOOK_QUEUE_PER_OWNER", 1000, within=QUEUE_PER_OWNER_RANGE
        ),
    )
