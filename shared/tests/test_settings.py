import subprocess
import sys

import pytest

from agentline.settings import (
    AgentWorkerSettings,
    DispatcherSettings,
    TokenApiSettings,
    load_settings,
)


def test_common_names_are_shared_and_prefixed_names_per_service(monkeypatch):
    monkeypatch.setenv("LIVEKIT_URL", "wss://lk.example.test")
    monkeypatch.setenv("TOKEN_API_PORT", "9000")
    monkeypatch.setenv("TOKEN_API_API_KEYS", "k1, k2")
    monkeypatch.setenv("TOKEN_API_ALLOWED_AGENT_NAMES", "a,b")
    monkeypatch.setenv("DISPATCHER_JOIN_TIMEOUT_SECONDS", "7.5")
    token = TokenApiSettings()
    assert token.livekit_url == "wss://lk.example.test" and token.port == 9000
    assert [k.get_secret_value() for k in token.api_keys] == ["k1", "k2"]
    assert token.allowed_agent_names == ["a", "b"]
    assert token.livekit_http_url == "https://lk.example.test"
    assert DispatcherSettings().join_timeout_seconds == 7.5
    assert AgentWorkerSettings().agent_name == "travel-assistant"


def test_bad_setting_exits_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("DISPATCHER_PORT", "not-a-port")
    monkeypatch.setenv("LIVEKIT_URL", "ftp://nowhere")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(DispatcherSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "DISPATCHER_PORT" in err and "LIVEKIT_URL" in err
    assert "ws://" in err


def test_production_refuses_default_secrets(monkeypatch, capsys):
    monkeypatch.setenv("AGENTLINE_ENV", "production")
    monkeypatch.setenv("LIVEKIT_URL", "wss://lk.example.test")
    monkeypatch.setenv("LIVEKIT_API_KEY", "prodkey")
    with pytest.raises(SystemExit):
        load_settings(TokenApiSettings)
    assert "LIVEKIT_API_SECRET must be set in production" in capsys.readouterr().err
    monkeypatch.setenv("LIVEKIT_API_SECRET", "x" * 40)
    with pytest.raises(SystemExit):
        load_settings(TokenApiSettings)
    assert "TOKEN_API_API_KEYS" in capsys.readouterr().err
    monkeypatch.setenv("TOKEN_API_API_KEYS", "real-key")
    assert load_settings(TokenApiSettings).is_production


def test_worker_settings_read_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("AGENT_WORKER_MAX_JOBS", "0")
    with pytest.raises(SystemExit):
        load_settings(AgentWorkerSettings)
    monkeypatch.setenv("AGENT_WORKER_MAX_JOBS", "3")
    settings = load_settings(AgentWorkerSettings)
    assert settings.openai_api_key and settings.openai_api_key.get_secret_value() == "sk-test"


def test_startup_error_is_one_line_per_problem():
    code = "from agentline.settings import *; load_settings(TokenApiSettings)"
    env = {"TOKEN_API_PORT": "70000", "PATH": "/usr/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "token-api: invalid setting: TOKEN_API_PORT: Input should be less than or equal to 65535"
    ]
