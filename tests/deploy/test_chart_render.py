"""The chart renders, for each value profile, objects that Kubernetes accepts and that follow
the chart's rules: probes, restrictive security, checksums, spread, budgets, scaling gates."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from deploy_support import (
    MINIMAL,
    NAMESPACE,
    PROFILES,
    RELEASE,
    Manifest,
    find,
    manifests,
    merge,
    render_chart,
    strip_template,
)
from helm_python import HelmError

from agentline.keys import DISPATCHER_GROUP, Keys

KUBE_VERSION = "1.30.0"
COMPONENTS = ("token-api", "dispatcher", "agent-worker")
PORTS = {"token-api": 8080, "dispatcher": 8081, "agent-worker": 8082}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}


def test_every_builtin_object_is_valid_for_kubernetes(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    builtin = [obj for obj in objects if obj["kind"] not in CRD_KINDS]
    assert builtin
    for obj in builtin:
        try:
            kubernetes_validate.validate(strip_template(obj), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['__template__']}: {obj['kind']}: {error.message} at {error.path}")


def test_only_known_kinds_are_rendered(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    known = {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
        "NetworkPolicy",
    } | CRD_KINDS
    assert {obj["kind"] for obj in objects} <= known


def test_names_are_unique_and_labelled(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "agentline"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "app.kubernetes.io/version" in labels


@pytest.mark.parametrize("component", COMPONENTS)
def test_deployment_is_hardened_and_probed(
    profile: tuple[str, list[Manifest]], component: str
) -> None:
    _, objects = profile
    (deployment,) = find(objects, "Deployment", component)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [
        {"name": "http", "containerPort": PORTS[component], "protocol": "TCP"}
    ]
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    annotations = pod["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64
    assert len(annotations["checksum/secrets"]) == 64
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spec["topologySpreadConstraints"]:
        assert (
            constraint["labelSelector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_service_has_a_disruption_budget_and_a_service(
    profile: tuple[str, list[Manifest]], component: str
) -> None:
    _, objects = profile
    (deployment,) = find(objects, "Deployment", component)
    selector = deployment["spec"]["selector"]["matchLabels"]
    (pdb,) = find(objects, "PodDisruptionBudget", component)
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    (service,) = find(objects, "Service", component)
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_config_checksum_changes_with_the_config() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"][
                "metadata"
            ]["annotations"]["checksum/config"]
            for d in find(manifests(values), "Deployment")
        }

    before = checksums(MINIMAL)
    after = checksums(merge(MINIMAL, {"dispatcher": {"maxAttempts": 5}}))
    assert before["dispatcher"] != after["dispatcher"]
    assert before["token-api"] == after["token-api"]


def test_secrets_never_land_in_configmaps(profile: tuple[str, list[Manifest]]) -> None:
    name, objects = profile
    values = PROFILES[name]
    secret_values = {
        str(v)
        for v in (
            *values.get("secrets", {}).values(),
            values.get("redis", {}).get("url", ""),
        )
        if v and not isinstance(v, list)
    } | {key for key in values.get("secrets", {}).get("tokenApiKeys", [])}
    secret_names = {"LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "TOKEN_API_API_KEYS", "OPENAI_API_KEY"}
    for config_map in find(objects, "ConfigMap"):
        if config_map["metadata"]["name"].startswith(f"{RELEASE}-agentline-dashboard-"):
            continue
        data = config_map.get("data", {})
        assert not secret_names & set(data), config_map["metadata"]["name"]
        assert "REDIS_URL" not in data
        for value in data.values():
            assert not any(secret in value for secret in secret_values if secret), value
    for deployment in find(objects, "Deployment"):
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] in secret_names | {"REDIS_URL"}:
                assert "secretKeyRef" in env["valueFrom"], env


def test_existing_secret_is_used_and_none_is_created() -> None:
    objects = manifests(PROFILES["existing-secret"])
    assert find(objects, "Secret") == []
    refs = {
        (
            env["name"],
            env["valueFrom"]["secretKeyRef"]["name"],
            env["valueFrom"]["secretKeyRef"]["key"],
        )
        for d in find(objects, "Deployment")
        for env in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in env and "secretKeyRef" in env["valueFrom"]
    }
    assert ("REDIS_URL", "redis-credentials", "url") in refs
    assert ("LIVEKIT_API_SECRET", "agentline-credentials", "LIVEKIT_API_SECRET") in refs
    assert ("TOKEN_API_API_KEYS", "agentline-credentials", "TOKEN_API_API_KEYS") in refs


def test_created_secret_holds_the_credentials() -> None:
    objects = manifests(MINIMAL)
    secrets = {s["metadata"]["name"]: s["stringData"] for s in find(objects, "Secret")}
    main = secrets[f"{RELEASE}-agentline-secrets"]
    assert main["LIVEKIT_API_SECRET"] == MINIMAL["secrets"]["livekitApiSecret"]
    assert main["TOKEN_API_API_KEYS"] == "frontend-key-1,frontend-key-2"
    assert secrets[f"{RELEASE}-agentline-redis"]["REDIS_URL"] == MINIMAL["redis"]["url"]


def test_worker_grace_period_covers_its_drain() -> None:
    for drain in (0, 60, 300):
        objects = manifests(merge(MINIMAL, {"agentWorker": {"drainTimeoutSeconds": drain}}))
        (worker,) = find(objects, "Deployment", "agent-worker")
        grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= drain + 15
    with pytest.raises(HelmError, match="terminationGracePeriodSeconds must be at least"):
        manifests(
            merge(
                MINIMAL,
                {"agentWorker": {"drainTimeoutSeconds": 120, "terminationGracePeriodSeconds": 60}},
            )
        )
    with pytest.raises(HelmError, match=r"dispatcher\.terminationGracePeriodSeconds"):
        manifests(merge(MINIMAL, {"dispatcher": {"drainSeconds": 40}}))


def test_scaling_defaults_hpa_for_api_and_dispatcher_workers_fixed() -> None:
    objects = manifests(MINIMAL)
    hpas = {
        h["metadata"]["labels"]["app.kubernetes.io/component"]: h
        for h in find(objects, "HorizontalPodAutoscaler")
    }
    assert set(hpas) == {"token-api", "dispatcher"}
    metric = hpas["token-api"]["spec"]["metrics"][0]
    assert metric["resource"]["name"] == "cpu"
    assert find(objects, "ScaledObject") == []
    (api,) = find(objects, "Deployment", "token-api")
    assert "replicas" not in api["spec"], "an HPA owns the replica count"
    (worker,) = find(objects, "Deployment", "agent-worker")
    assert worker["spec"]["replicas"] == 2


def test_keda_scales_dispatcher_on_the_stream_lag_and_workers_on_load() -> None:
    objects = manifests(PROFILES["everything-on"])
    scaled = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]: s
        for s in find(objects, "ScaledObject")
    }
    assert set(scaled) == {"dispatcher", "agent-worker"}
    assert not find(objects, "HorizontalPodAutoscaler", "dispatcher"), "KEDA replaces the HPA"
    (trigger,) = scaled["dispatcher"]["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == Keys("agentline").requests
    assert trigger["metadata"]["consumerGroup"] == DISPATCHER_GROUP
    assert trigger["metadata"]["lagCount"] == "20"
    (worker_trigger,) = scaled["agent-worker"]["spec"]["triggers"]
    assert worker_trigger["type"] == "prometheus"
    assert "agent_worker_active_jobs" in worker_trigger["metadata"]["query"]
    assert float(worker_trigger["metadata"]["threshold"]) == pytest.approx(0.6 * 4)


def test_keda_off_falls_back_to_hpas() -> None:
    objects = manifests(PROFILES["keda-off"])
    assert find(objects, "ScaledObject") == []
    (worker_hpa,) = find(objects, "HorizontalPodAutoscaler", "agent-worker")
    assert worker_hpa["spec"]["metrics"][0]["type"] == "Pods"
    assert worker_hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "agent_worker_load"
    assert find(objects, "HorizontalPodAutoscaler", "dispatcher")


def test_crds_have_their_required_fields() -> None:
    objects = manifests(PROFILES["everything-on"])
    monitors = find(objects, "ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == set(
        COMPONENTS
    )
    services = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]: s for s in find(objects, "Service")
    }
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= services[component]["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in services[component]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (rule,) = find(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert set(item) <= {"alert", "expr", "for", "labels", "annotations"}
            assert item["alert"] and item["expr"]
            assert item["labels"]["severity"] in {"critical", "warning"}
            assert item["labels"]["team"] == "voice"
            assert item["annotations"]["summary"] and item["annotations"]["description"]
    for scaled in find(objects, "ScaledObject"):
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        target = scaled["spec"]["scaleTargetRef"]
        deployments = {d["metadata"]["name"] for d in find(objects, "Deployment")}
        assert target["name"] in deployments
        assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] and trigger["metadata"]
            assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    objects = manifests(PROFILES["everything-on"])
    boards = [
        c for c in find(objects, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    assert len(boards) == 4
    for board in boards:
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert board["metadata"]["annotations"]["grafana_folder"] == "Voice"
        (text,) = board["data"].values()
        assert '"uid": "agentline-' in text


def test_ingresses_and_network_policies() -> None:
    objects = manifests(PROFILES["everything-on"])
    ingresses = {i["metadata"]["name"]: i for i in find(objects, "Ingress")}
    api = ingresses[f"{RELEASE}-agentline-token-api"]
    assert api["spec"]["ingressClassName"] == "nginx"
    assert api["spec"]["tls"] == [{"hosts": ["api.voice.example.com"], "secretName": "api-tls"}]
    hooks = ingresses[f"{RELEASE}-agentline-dispatcher-webhooks"]
    (path,) = hooks["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/webhooks/livekit"
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in find(objects, "NetworkPolicy")
    }
    assert set(policies) == set(COMPONENTS)
    api_rule = policies["token-api"]["spec"]["ingress"][0]
    assert api_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert len(api_rule["from"]) == 2  # the ingress controller and Prometheus
    assert "from" not in policies["dispatcher"]["spec"]["ingress"][0], "LiveKit must reach it"
    assert len(policies["agent-worker"]["spec"]["ingress"][0]["from"]) == 1


def test_components_can_be_disabled() -> None:
    objects = manifests(
        merge(MINIMAL, {"tokenApi": {"enabled": False}, "agentWorker": {"enabled": False}})
    )
    components = {o["metadata"]["labels"].get("app.kubernetes.io/component") for o in objects}
    assert components - {None} == {"dispatcher"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": MINIMAL["redis"], "secrets": MINIMAL["secrets"]}, "livekit.url is required"),
        (
            {"livekit": MINIMAL["livekit"], "secrets": MINIMAL["secrets"]},
            "redis.url or redis.existingSecret",
        ),
        ({"livekit": MINIMAL["livekit"], "redis": MINIMAL["redis"]}, "secrets.livekitApiKey"),
        (
            merge(MINIMAL, {"secrets": {"tokenApiKeys": []}}),
            "secrets.tokenApiKeys needs at least one key",
        ),
        (
            merge(MINIMAL, {"dispatcher": {"autoscaling": {"keda": {"enabled": True}}}}),
            "redisAddress",
        ),
    ],
)
def test_missing_required_values_fail_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError, match=message):
        manifests(values)


def test_notes_tell_where_webhooks_go_and_which_agent_name_to_use() -> None:
    notes = render_chart(PROFILES["everything-on"])["agentline/templates/NOTES.txt"]
    assert "https://hooks.agentline.example.com/webhooks/livekit" in notes
    assert "https://api.voice.example.com/" in notes
    assert 'agent_name "travel-assistant"' in notes
    plain = render_chart(MINIMAL)["agentline/templates/NOTES.txt"]
    assert f"http://{RELEASE}-agentline-dispatcher.{NAMESPACE}.svc:80/webhooks/livekit" in plain
    assert "metrics.serviceMonitor.enabled=true" in plain
