"""Every environment variable the chart sets is a setting its service reads, and the
environment a pod gets is accepted by the service's settings in production."""

from __future__ import annotations

import os
from typing import Any

import pytest
from deploy_support import MINIMAL, PROFILES, Manifest, find, manifests
from pydantic import AliasChoices

from agentline.settings import (
    AgentWorkerSettings,
    CommonSettings,
    DispatcherSettings,
    Environment,
    TokenApiSettings,
    env_name,
)

SETTINGS: dict[str, type[CommonSettings]] = {
    "token-api": TokenApiSettings,
    "dispatcher": DispatcherSettings,
    "agent-worker": AgentWorkerSettings,
}
# What an existingSecret holds in the tests: the operator's own Secret.
EXTERNAL_SECRETS = {
    ("agentline-credentials", "LIVEKIT_API_KEY"): "APIexternal",
    ("agentline-credentials", "LIVEKIT_API_SECRET"): "external-secret-0123456789",
    ("agentline-credentials", "TOKEN_API_API_KEYS"): "external-frontend-key",
    ("redis-credentials", "url"): "redis://redis.example.com:6379/1",
}


def variables_read_by(settings_cls: type[CommonSettings]) -> set[str]:
    """Every environment variable name the settings class accepts."""
    names: set[str] = set()
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    for field, info in settings_cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field}".upper())
        names.add(env_name(settings_cls, field))
    return names


def pod_environment(objects: list[Manifest], component: str) -> dict[str, str | None]:
    """The environment a pod of the component starts with (None: an optional key is absent)."""
    (deployment,) = find(objects, "Deployment", component)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in find(objects, "ConfigMap")}
    secrets = {
        (s["metadata"]["name"], key): value
        for s in find(objects, "Secret")
        for key, value in s.get("stringData", {}).items()
    } | EXTERNAL_SECRETS
    environment: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]])
    for env in container.get("env", []):
        if "value" in env:
            environment[env["name"]] = env["value"]
            continue
        source = env["valueFrom"]
        if "fieldRef" in source:
            environment[env["name"]] = f"{deployment['metadata']['name']}-pod-0"
            continue
        ref = source["secretKeyRef"]
        value = secrets.get((ref["name"], ref["key"]))
        assert value is not None or ref.get("optional"), f"{env['name']}: {ref} does not exist"
        environment[env["name"]] = value
    return environment


@pytest.mark.parametrize("component", sorted(SETTINGS))
def test_every_variable_the_chart_sets_is_read(
    profile: tuple[str, list[Manifest]], component: str
) -> None:
    _, objects = profile
    environment = pod_environment(objects, component)
    unknown = set(environment) - variables_read_by(SETTINGS[component])
    assert unknown == set(), f"{component} does not read {sorted(unknown)}"


@pytest.mark.parametrize("component", sorted(SETTINGS))
def test_pod_environment_is_a_valid_production_configuration(
    profile: tuple[str, list[Manifest]], component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = profile
    environment = pod_environment(objects, component)
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in environment.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings_cls = SETTINGS[component]
    settings = settings_cls()  # raises when a required production setting is missing
    assert settings.environment is Environment.PRODUCTION
    # every setting production insists on was set by the chart, not defaulted
    for field in settings_cls.dev_only_defaults:
        assert field in settings.model_fields_set, f"{component}: {field} not set"
    (deployment,) = find(objects, "Deployment", component)
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert settings.port == port  # type: ignore[attr-defined]


def test_settings_follow_the_values() -> None:
    objects = manifests(MINIMAL)
    env = {component: pod_environment(objects, component) for component in SETTINGS}
    assert env["agent-worker"]["AGENT_WORKER_AGENT_NAME"] == "travel-assistant"
    assert env["agent-worker"]["OPENAI_API_KEY"] == MINIMAL["secrets"]["openaiApiKey"]
    assert env["dispatcher"]["DISPATCHER_CONSUMER_NAME"].endswith("-pod-0")  # type: ignore[union-attr]
    assert env["token-api"]["TOKEN_API_API_KEYS"] == "frontend-key-1,frontend-key-2"
    for component in SETTINGS:
        assert env[component]["AGENTLINE_ENV"] == "production"
        assert env[component]["REDIS_URL"] == MINIMAL["redis"]["url"]


def test_the_production_check_catches_a_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: without LIVEKIT_API_SECRET production settings are refused."""
    environment: dict[str, Any] = pod_environment(manifests(MINIMAL), "dispatcher")
    environment.pop("LIVEKIT_API_SECRET")
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in environment.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="LIVEKIT_API_SECRET must be set in production"):
        DispatcherSettings()


def test_profiles_cover_every_component() -> None:
    for values in PROFILES.values():
        objects = manifests(values)
        assert {
            d["metadata"]["labels"]["app.kubernetes.io/component"]
            for d in find(objects, "Deployment")
        } == set(SETTINGS)
