"""Settings from the environment and .env: defaults, parsing, one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, Settings


def test_defaults_need_nothing() -> None:
    s = Settings.from_env({}, env_file=None)
    assert s.database_url == "sqlite:///./var/jobhook.sqlite3"
    assert s.dev_mode and s.default_provider == "simulator"
    assert s.max_body_bytes == 1_048_576 and s.sqlite_synchronous == "NORMAL"
    assert s.provider_urls["apiframe"] == "https://api.apiframe.ai"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "JOBHOOK_API_KEYS": "alice:alice-key-123,plainkey-4567",
            "JOBHOOK_OUTBOUND_ALLOW": "127.0.0.0/8, ::1/128",
            "JOBHOOK_SQLITE_SYNCHRONOUS": "full",
            "APIFRAME_API_KEY": "afk_x",
            "JOBHOOK_APIFRAME_BASE_URL": "http://127.0.0.1:9000/",
            "JOBHOOK_SECRET_KEYS": "new,old",
        },
        env_file=None,
    )
    assert s.api_keys["alice-key-123"] == "alice"
    assert s.api_keys["plainkey-4567"].startswith("key_")
    assert len(s.outbound_allow) == 2 and s.sqlite_synchronous == "FULL"
    assert s.provider_keys == {"apiframe": "afk_x"}
    assert s.provider_urls["apiframe"] == "http://127.0.0.1:9000"
    assert s.secret_keys == ("new", "old") and not s.dev_mode


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBHOOK_DATABASE_URL", "mysql://x"),
        ("JOBHOOK_MODAL_TIMEOUT", "soon"),
        ("JOBHOOK_RECONCILE_AFTER", "-5"),
        ("JOBHOOK_MAX_BODY_BYTES", "12.5k"),
        ("JOBHOOK_SQLITE_SYNCHRONOUS", "OFF"),
        ("JOBHOOK_OUTBOUND_ALLOW", "not-a-cidr"),
        ("JOBHOOK_WEBHOOK_SECRET", "plain"),
        ("JOBHOOK_PUBLIC_URL", "ftp://x"),
        ("JOBHOOK_DEFAULT_PROVIDER", "midjourney"),
        ("JOBHOOK_API_KEYS", "short"),
        ("JOBHOOK_APIFRAME_BASE_URL", "nope"),
        ("JOBHOOK_SIMULATOR", "maybe"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value}, env_file=None)
    assert str(info.value).startswith(f"{name}: ")
    assert "\n" not in str(info.value)


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
        {"JOBHOOK_API_KEYS": "alice:alice-key-123", "APIFRAME_API_KEY": "afk_x"}, env_file=None
    )
    assert not s.simulator and s.default_provider == "apiframe"
    with pytest.raises(ConfigError, match="no provider is enabled"):
        Settings.from_env({"JOBHOOK_API_KEYS": "alice:alice-key-123"}, env_file=None)
    on = Settings.from_env(
        {"JOBHOOK_API_KEYS": "alice:alice-key-123", "JOBHOOK_SIMULATOR": "on"}, env_file=None
    )
    assert on.simulator and on.default_provider == "simulator"
