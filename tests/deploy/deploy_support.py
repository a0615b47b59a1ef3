"""Helpers of the deployment tests: the chart rendered by a real Helm (helm-python-sdk bundles
Helm's Go SDK as a shared library and renders offline) and the value profiles."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "agentline"
RELEASE = "voice"
NAMESPACE = "agents"

Manifest = dict[str, Any]

# The smallest values a real install needs: a LiveKit server, a Redis, credentials.
MINIMAL: dict[str, Any] = {
    "livekit": {"url": "wss://livekit.example.com"},
    "redis": {"url": "rediss://:hunter2@redis.example.com:6380/0"},
    "secrets": {
        "livekitApiKey": "APIkey123",
        "livekitApiSecret": "lk-secret-value-0123456789",
        "tokenApiKeys": ["frontend-key-1", "frontend-key-2"],
        "openaiApiKey": "sk-openai-test-key",
    },
}

EVERYTHING_ON: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "voice"}},
        "dashboards": {"enabled": True, "folder": "Voice"},
    },
    "networkPolicy": {
        "enabled": True,
        "tokenApiFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "tokenApi": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "api.voice.example.com",
            "tlsSecretName": "api-tls",
        },
        "corsAllowOrigins": ["https://app.example.com"],
    },
    "livekit": {"publicUrl": "wss://rtc.example.com"},
    "secrets": {"webhookApiKey": "hookkey", "webhookApiSecret": "hook-secret-value"},
    "dispatcher": {
        "webhookIngress": {"enabled": True, "className": "nginx", "tlsSecretName": "hooks-tls"},
        "autoscaling": {
            "keda": {"enabled": True, "redisAddress": "redis.example.com:6380", "enableTLS": True}
        },
    },
    "agentWorker": {
        "autoscaling": {"enabled": True, "mode": "keda"},
        "openaiBaseUrl": "https://openai-proxy.example.com/v1",
    },
}

EXISTING_SECRET: dict[str, Any] = {
    "livekit": {"url": "wss://livekit.example.com"},
    "redis": {"existingSecret": "redis-credentials", "existingSecretKey": "url"},
    "secrets": {"existingSecret": "agentline-credentials"},
}

KEDA_OFF: dict[str, Any] = {
    "dispatcher": {"autoscaling": {"enabled": True, "keda": {"enabled": False}}},
    "agentWorker": {"autoscaling": {"enabled": True, "mode": "hpa"}},
}


def merge(base: dict[str, Any], *overlays: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overlays onto a copy of base (lists are replaced, like Helm does)."""
    result = copy.deepcopy(base)
    for overlay in overlays:
        for key, value in overlay.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = copy.deepcopy(value)
    return result


PROFILES: dict[str, dict[str, Any]] = {
    "defaults": MINIMAL,
    "everything-on": merge(MINIMAL, EVERYTHING_ON),
    "existing-secret": EXISTING_SECRET,
    "keda-off": merge(MINIMAL, KEDA_OFF),
}


def _helm() -> Any:
    import helm_python

    return helm_python


def render_chart(values: dict[str, Any]) -> dict[str, str]:
    """Template path → rendered text, as `helm template` produces it (offline)."""
    chart = _helm().Chart.load(str(CHART))
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any]) -> list[Manifest]:
    """Every Kubernetes object the chart renders for these values."""
    objects: list[Manifest] = []
    for path, text in sorted(render_chart(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {}).setdefault("annotations", {})
                document["__template__"] = path
                objects.append(document)
    return objects


def strip_template(obj: Manifest) -> Manifest:
    clean = {key: value for key, value in obj.items() if key != "__template__"}
    if not clean["metadata"].get("annotations"):
        clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k != "annotations"}
    return clean


def find(objects: list[Manifest], kind: str, component: str | None = None) -> list[Manifest]:
    found = [obj for obj in objects if obj["kind"] == kind]
    if component is not None:
        found = [
            obj
            for obj in found
            if obj["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
    return found
