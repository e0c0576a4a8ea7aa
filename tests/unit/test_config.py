"""Settings from the environment and .env: defaults, parsing, one clear error per bad value."""

from __future__ import annotations

import base64
import math
import stat
from pathlib import Path

import pytest

from service.config import ConfigError, Settings

KEY_A = "alice-key-0123456"  # client API keys: at least 16 characters
KEY_B = "plainkey-45678901"
SIGNING_NEW = "n" * 32  # signing keys: at least 32
SIGNING_OLD = "o" * 40
WHSEC_16 = "whsec_" + base64.b64encode(b"x" * 16).decode()  # under the 24 bytes asked for


def test_defaults_need_nothing() -> None:
    s = Settings.from_env({}, env_file=None)
    assert s.database_url == "sqlite:///./var/jobhook.sqlite3"
    assert s.dev_mode and s.default_provider == "simulator"
    assert s.max_body_bytes == 1_048_576 and s.sqlite_synchronous == "NORMAL"
    assert s.provider_urls["apiframe"] == "https://api.apiframe.ai"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "JOBHOOK_API_KEYS": f"alice:{KEY_A},{KEY_B}",
            "JOBHOOK_OUTBOUND_ALLOW": "127.0.0.0/8, ::1/128",
            "JOBHOOK_SQLITE_SYNCHRONOUS": "full",
            "APIFRAME_API_KEY": "afk_x",
            "JOBHOOK_APIFRAME_BASE_URL": "http://127.0.0.1:9000/",
            "JOBHOOK_SECRET_KEYS": f"{SIGNING_NEW}, {SIGNING_OLD}",
        },
        env_file=None,
    )
    assert s.api_keys[KEY_A] == "alice"
    assert s.api_keys[KEY_B].startswith("key_")
    assert len(s.outbound_allow) == 2 and s.sqlite_synchronous == "FULL"
    assert s.provider_keys == {"apiframe": "afk_x"}
    assert s.provider_urls["apiframe"] == "http://127.0.0.1:9000"
    assert s.secret_keys == (SIGNING_NEW, SIGNING_OLD) and not s.dev_mode


BAD_VALUES = [
    ("JOBHOOK_DATABASE_URL", "mysql://x"),
    ("JOBHOOK_DATABASE_URL", "sqlite:///"),
    ("JOBHOOK_DATABASE_URL", "sqlite:///:memory:"),
    ("JOBHOOK_DATABASE_URL", "sqlite:///var/"),
    ("JOBHOOK_DATABASE_URL", "sqlite:///var/a\x00b.sqlite3"),
    ("JOBHOOK_DATABASE_URL", "sqlite:///var/a\nb.sqlite3"),
    ("JOBHOOK_MODAL_TIMEOUT", "soon"),
    ("JOBHOOK_MODAL_TIMEOUT", "nan"),
    ("JOBHOOK_MODAL_TIMEOUT", "inf"),
    ("JOBHOOK_MODAL_TIMEOUT", "0"),
    ("JOBHOOK_MODAL_TIMEOUT", "1e3"),
    ("JOBHOOK_MODAL_TIMEOUT", "1_800"),
    ("JOBHOOK_MODAL_TIMEOUT", "\uff19\uff10"),  # full-width digits: float() takes them
    ("JOBHOOK_MODAL_TIMEOUT", "604801"),
    ("JOBHOOK_QUEUE_TIMEOUT", "NaN"),
    ("JOBHOOK_QUEUE_TIMEOUT", "-1"),
    ("JOBHOOK_RUN_TIMEOUT", "Infinity"),
    ("JOBHOOK_RUN_TIMEOUT", "0.5"),
    ("JOBHOOK_SUBMIT_TIMEOUT", "+300"),
    ("JOBHOOK_SUBMIT_TIMEOUT", "-nan"),
    ("JOBHOOK_RECONCILE_AFTER", "-5"),
    ("JOBHOOK_RECONCILE_AFTER", "86401"),
    ("JOBHOOK_SIMULATOR_STEP", "0"),
    ("JOBHOOK_SIMULATOR_STEP", "nan"),
    ("JOBHOOK_SIMULATOR_STEP", "61"),
    ("JOBHOOK_PROVIDER_RATES", "apimart"),
    ("JOBHOOK_PROVIDER_RATES", "apimart=fast"),
    ("JOBHOOK_PROVIDER_RATES", "apimart=0"),
    ("JOBHOOK_PROVIDER_RATES", "apimart=nan"),
    ("JOBHOOK_PROVIDER_RATES", "apimart=1e9"),
    ("JOBHOOK_PROVIDER_RATES", "midjourney=5"),
    ("JOBHOOK_PROVIDER_RATES", "apimart=5,apimart=6"),
    ("JOBHOOK_POLL_CONCURRENCY", "0"),
    ("JOBHOOK_POLL_CONCURRENCY", "4097"),
    ("JOBHOOK_POLL_CONCURRENCY", "8.5"),
    ("JOBHOOK_MAX_BODY_BYTES", "12.5k"),
    ("JOBHOOK_MAX_BODY_BYTES", "inf"),
    ("JOBHOOK_MAX_BODY_BYTES", "nan"),
    ("JOBHOOK_MAX_BODY_BYTES", "1e6"),
    ("JOBHOOK_MAX_BODY_BYTES", "1048576.0"),
    ("JOBHOOK_MAX_BODY_BYTES", "-1048576"),
    ("JOBHOOK_MAX_BODY_BYTES", "1023"),
    ("JOBHOOK_MAX_BODY_BYTES", "67108865"),
    ("JOBHOOK_MAX_BODY_BYTES", "9" * 5000),  # int() refuses strings past 4300 digits
    ("JOBHOOK_MAX_BODY_BYTES", "\uff11\uff10\uff12\uff14\uff10"),  # full-width digits
    ("JOBHOOK_MAX_UPLOAD_BYTES", "0x1000000"),
    ("JOBHOOK_MAX_UPLOAD_BYTES", "17 MiB"),
    ("JOBHOOK_SQLITE_SYNCHRONOUS", "OFF"),
    ("JOBHOOK_OUTBOUND_ALLOW", "not-a-cidr"),
    ("JOBHOOK_OUTBOUND_ALLOW", "127.0.0.0/8,10.0.0.0/33"),
    ("JOBHOOK_WEBHOOK_SECRET", "plain"),
    ("JOBHOOK_WEBHOOK_SECRET", "whsec_not*base64"),
    ("JOBHOOK_WEBHOOK_SECRET", WHSEC_16),
    ("JOBHOOK_PUBLIC_URL", "ftp://x"),
    ("JOBHOOK_PUBLIC_URL", "http://[::1/"),
    ("JOBHOOK_PUBLIC_URL", "http://[::zz]/"),
    ("JOBHOOK_PUBLIC_URL", "http://"),
    ("JOBHOOK_PUBLIC_URL", "http://x:99999"),
    ("JOBHOOK_PUBLIC_URL", "http://x:port"),
    ("JOBHOOK_PUBLIC_URL", "http://x:0"),
    ("JOBHOOK_PUBLIC_URL", "http://jobhook.example.com\r\nX-Evil: 1"),
    ("JOBHOOK_PUBLIC_URL", "http://job hook.example.com"),
    ("JOBHOOK_PUBLIC_URL", "http://user:pass@jobhook.example.com"),
    ("JOBHOOK_PUBLIC_URL", "https://jobhook.example.com/?a=1"),
    ("JOBHOOK_PUBLIC_URL", "https://jobhook.example.com/#top"),
    ("JOBHOOK_DEFAULT_PROVIDER", "midjourney"),
    ("JOBHOOK_API_KEYS", "short"),
    ("JOBHOOK_API_KEYS", "alice:" + "k" * 15),
    ("JOBHOOK_API_KEYS", f"alice:{KEY_A},bob:{KEY_A}"),
    ("JOBHOOK_API_KEYS", f"al ice:{KEY_A}"),
    ("JOBHOOK_API_KEYS", f":{KEY_A}"),
    ("JOBHOOK_API_KEYS", "alice:key with spaces 123456"),
    ("JOBHOOK_API_KEYS", "alice:" + "k\x7f" * 10),
    ("JOBHOOK_SECRET_KEYS", "abc"),
    ("JOBHOOK_SECRET_KEYS", "s" * 31),
    ("JOBHOOK_SECRET_KEYS", f"{SIGNING_NEW},short"),
    ("JOBHOOK_SECRET_KEYS", "a signing key with spaces in it, ok?"),
    ("JOBHOOK_SECRET_KEYS", "\u00e9" * 40),
    ("JOBHOOK_APIFRAME_BASE_URL", "nope"),
    ("JOBHOOK_APIMART_BASE_URL", "http://[::1/"),
    ("JOBHOOK_VTRIX_BASE_URL", "https://cloud.vtrix.ai\nX"),
    ("APIFRAME_API_KEY", "afk secret"),
    ("APIMART_API_KEY", "sk-x\r\nX-Evil: 1"),
    ("JOBHOOK_SIMULATOR", "maybe"),
    ("JOBHOOK_LOG_LEVEL", "verbose"),
    ("JOBHOOK_LOG_FORMAT", "xml"),
    ("JOBHOOK_LOG_FILE", "var/a\x00b.log"),
    ("JOBHOOK_LOG_FILE", "var/a\nb.log"),
    ("JOBHOOK_VAR_DIR", "v\x00ar"),
    ("JOBHOOK_METRICS_TOKEN", "short"),
    ("JOBHOOK_METRICS_TOKEN", "m" * 15),
    ("JOBHOOK_METRICS_TOKEN", "a token with spaces 123"),
    ("JOBHOOK_METRICS_PORT", "65536"),
    ("JOBHOOK_METRICS_PORT", "nine"),
    ("JOBHOOK_METRICS_HOST", "metrics.example"),
    ("JOBHOOK_METRICS_HOST", "192.0.2.10"),  # beyond loopback, but no JOBHOOK_METRICS_TOKEN
]

#: variables whose values are secrets: their error messages must not repeat them
SECRET_VARIABLES = {
    "JOBHOOK_API_KEYS",
    "JOBHOOK_SECRET_KEYS",
    "JOBHOOK_WEBHOOK_SECRET",
    "JOBHOOK_METRICS_TOKEN",
    "APIFRAME_API_KEY",
    "APIMART_API_KEY",
}


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value}, env_file=None)
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert message.isprintable(), message  # one line: no newline or control character
    assert len(message) < 200
    if name in SECRET_VARIABLES:
        for part in value.replace(":", ",").split(","):
            assert len(part) < 8 or part.strip() not in message


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("JOBHOOK_MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
        ("JOBHOOK_MAX_BODY_BYTES", "67108864", "max_body_bytes", 67108864),
        ("JOBHOOK_MAX_UPLOAD_BYTES", " 0017825792 ", "max_upload_bytes", 17825792),
        ("JOBHOOK_MODAL_TIMEOUT", "1", "modal_timeout", 1.0),
        ("JOBHOOK_MODAL_TIMEOUT", "604800", "modal_timeout", 604800.0),
        ("JOBHOOK_QUEUE_TIMEOUT", "1.5", "queue_timeout", 1.5),
        ("JOBHOOK_RUN_TIMEOUT", "90.", "run_timeout", 90.0),
        ("JOBHOOK_RECONCILE_AFTER", "86400", "reconcile_after", 86400.0),
        ("JOBHOOK_SIMULATOR_STEP", ".001", "simulator_step", 0.001),
        ("JOBHOOK_SQLITE_SYNCHRONOUS", "full", "sqlite_synchronous", "FULL"),
        ("JOBHOOK_LOG_LEVEL", "WARNING", "log_level", "warning"),
        (
            "JOBHOOK_PUBLIC_URL",
            "https://hooks.example.com/jobhook/",
            "public_url",
            "https://hooks.example.com/jobhook",
        ),
        ("JOBHOOK_PUBLIC_URL", "http://[::1]:8000", "public_url", "http://[::1]:8000"),
        (
            "JOBHOOK_WEBHOOK_SECRET",
            "whsec_" + base64.b64encode(b"w" * 24).decode(),
            "webhook_secret",
            "whsec_" + base64.b64encode(b"w" * 24).decode(),
        ),
        ("JOBHOOK_SECRET_KEYS", "s" * 32, "secret_keys", ("s" * 32,)),
        ("JOBHOOK_METRICS_TOKEN", "m" * 16, "metrics_token", "m" * 16),
        ("JOBHOOK_METRICS_TOKEN", "  ", "metrics_token", None),
        ("JOBHOOK_METRICS_PORT", "9101", "metrics_port", 9101),
        ("JOBHOOK_METRICS_PORT", "", "metrics_port", None),
        ("JOBHOOK_METRICS_HOST", "::1", "metrics_host", "::1"),
        ("JOBHOOK_LOG_FILE", "var/my log.json", "log_file", "var/my log.json"),
        (
            "JOBHOOK_PROVIDER_RATES",
            " apimart = 2.5, simulator-apimart=1000,, ",
            "provider_rates",
            {"apimart": 2.5, "simulator-apimart": 1000.0},
        ),
        ("JOBHOOK_PROVIDER_RATES", "", "provider_rates", {}),
        ("JOBHOOK_POLL_CONCURRENCY", "256", "poll_concurrency", 256),
        ("JOBHOOK_POLL_CONCURRENCY", "", "poll_concurrency", 64),
    ],
)
def test_a_good_value_is_taken(name: str, value: str, attribute: str, expected: object) -> None:
    got = getattr(Settings.from_env({name: value}, env_file=None), attribute)
    assert got == expected
    if isinstance(got, float):
        assert math.isfinite(got)


def test_the_metrics_token_is_unset_by_default() -> None:
    assert Settings.from_env({}, env_file=None).metrics_token is None


def test_a_bad_env_file_is_one_line_naming_it(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"JOBHOOK_LOG_LEVEL=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"\.env: cannot be read \(not UTF-8 text\)"):
        Settings.from_env({}, env_file=env)


def test_a_bad_secret_in_var_is_one_line_naming_the_var_dir(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("too-short\n")
    with pytest.raises(ConfigError, match=r"^JOBHOOK_VAR_DIR: .*secret_key does not hold"):
        Settings(var_dir=tmp_path).with_secrets()
    (tmp_path / "secret_key").unlink()
    (tmp_path / "webhook_secret").write_text(WHSEC_16 + "\n")
    with pytest.raises(ConfigError, match=r"^JOBHOOK_VAR_DIR: .*webhook_secret does not hold"):
        Settings(var_dir=tmp_path).with_secrets()
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match=r"^JOBHOOK_VAR_DIR: cannot create or read"):
        Settings(var_dir=blocked / "var").with_secrets()


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# comment\nJOBHOOK_MODAL_TIMEOUT=60\nexport JOBHOOK_LOG_LEVEL="debug"\n')
    s = Settings.from_env({"JOBHOOK_MODAL_TIMEOUT": "90"}, env_file=env)
    assert s.modal_timeout == 90 and s.log_level == "debug"


def test_secrets_are_generated_once_into_var(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path).with_secrets()
    assert s.secret_keys and s.webhook_secret and s.webhook_secret.startswith("whsec_")
    again = Settings(var_dir=tmp_path).with_secrets()
    assert (again.secret_keys, again.webhook_secret) == (s.secret_keys, s.webhook_secret)
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_a_var_dir_made_for_the_secrets_is_private(tmp_path: Path) -> None:
    var = tmp_path / "deep" / "var"
    Settings(var_dir=var).with_secrets()
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for name in ("secret_key", "webhook_secret"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBHOOK_DEFAULT_PROVIDER": "apimart"}, "set APIMART_API_KEY"),
        ({"JOBHOOK_SIMULATOR": "off"}, "no provider is enabled"),
        ({"JOBHOOK_SIMULATOR": "off", "JOBHOOK_DEFAULT_PROVIDER": "simulator"}, "simulator is off"),
    ],
)
def test_the_default_provider_must_be_enabled(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, env_file=None)
    ok = Settings.from_env(
        env | {"APIMART_API_KEY": "sk-x", "JOBHOOK_DEFAULT_PROVIDER": "apimart"}, env_file=None
    )
    assert ok.default_provider == "apimart"


def test_with_client_keys_the_simulator_is_off_and_a_real_provider_is_the_default() -> None:
    s = Settings.from_env(
        {"JOBHOOK_API_KEYS": f"alice:{KEY_A}", "APIFRAME_API_KEY": "afk_x"}, env_file=None
    )
    assert not s.simulator and s.default_provider == "apiframe"
    with pytest.raises(ConfigError, match="no provider is enabled"):
        Settings.from_env({"JOBHOOK_API_KEYS": f"alice:{KEY_A}"}, env_file=None)
    on = Settings.from_env(
        {"JOBHOOK_API_KEYS": f"alice:{KEY_A}", "JOBHOOK_SIMULATOR": "on"}, env_file=None
    )
    assert on.simulator and on.default_provider == "simulator"


def test_the_worker_metrics_listen_beyond_loopback_only_with_a_token() -> None:
    values = {"JOBHOOK_METRICS_HOST": "192.0.2.10", "JOBHOOK_METRICS_TOKEN": "m" * 16}
    assert Settings.from_env(values, env_file=None).metrics_host == "192.0.2.10"


def test_provider_concurrency_and_the_owner_queue_bound() -> None:
    """Issue 13: JOBHOOK_<PROVIDER>_CONCURRENCY per provider (0: no cap), the owner's bound."""
    s = Settings.from_env(
        {
            "JOBHOOK_APIMART_CONCURRENCY": "5",
            "JOBHOOK_SIMULATOR_APIMART_CONCURRENCY": "3",
            "JOBHOOK_VTRIX_CONCURRENCY": "0",
            "JOBHOOK_QUEUE_PER_OWNER": "50",
        },
        env_file=None,
    )
    assert s.concurrency("apimart") == 5 and s.concurrency("simulator-apimart") == 3
    assert s.concurrency("vtrix") is None and s.concurrency("simulator") is None
    assert s.queue_per_owner == 50
    assert Settings.from_env({}, env_file=None).queue_per_owner == 1000
    with pytest.raises(ConfigError, match="JOBHOOK_APIFRAME_CONCURRENCY"):
        Settings.from_env({"JOBHOOK_APIFRAME_CONCURRENCY": "-1"}, env_file=None)
