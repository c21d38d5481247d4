"""The Helm chart (helm/beamside) and the Dockerfile.

The chart is linted (strict) and rendered offline with the Helm v4 SDK
(``helm-python-sdk``); every rendered core object is validated against the
Kubernetes OpenAPI schemas (``kubernetes-validate``, strict) for the oldest
version the chart supports and the newest the validator knows.  The
assertions check what an operator relies on: the cookie only ever comes from
a Secret, the pod cannot write its root filesystem or gain privileges, the
probes hit the real endpoints on the real port, the ports agree between the
rendered config, the container and the Service, the PrometheusRule is exactly
alert_rules/beamside.rules.yml (and passes promtool), RBAC exists only with
Kubernetes discovery, and sharding makes a StatefulSet.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from sidecar.config import parse_config, parse_listen
from sidecar.pki import make_ca, make_cert
from tests.support.prometheus import binary

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "beamside"
RELEASE, NAMESPACE = "shop", "apps"
FULLNAME = "shop-beamside"
KUBE_VERSIONS = ["1.25", kubernetes_validate.utils.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

MINIMAL: dict[str, Any] = {
    "config": {
        "cluster": "shop",
        "targets": [{"nodes": ["shop@10.1.2.3"], "discover": "connected"}],
    },
    "cookie": {"existingSecret": "shop-erlang-cookie"},
}
KUBERNETES_DISCOVERY: dict[str, Any] = {
    "config": {
        "cluster": "shop",
        "targets": [
            {
                "discover": "kubernetes",
                "kubernetes": {
                    "label_selector": "app.kubernetes.io/name=shop",
                    "node_name_template": "shop@{pod_ip}",
                },
            },
            {
                "discover": "kubernetes",
                "family": "billing",
                "kubernetes": {"namespace": "billing", "label_selector": "app=billing"},
            },
        ],
    },
    "cookie": {"existingSecret": "shop-erlang-cookie", "key": "erlang-cookie"},
}
FULL: dict[str, Any] = {
    "config": {
        "cluster": "shop",
        "targets": [
            {
                "discover": "kubernetes",
                "kubernetes": {"label_selector": "app=shop", "interval": "10s"},
            },
            {"discover": "dns", "dns": {"name": "shop-headless.apps.svc.cluster.local"}},
            {"nodes": ["legacy@10.9.0.1"], "discover": "connected"},
        ],
        "intervals": {"metrics": "15s", "live": "1s"},
        "alertmanager": {"urls": ["http://alertmanager-operated.monitoring:9093"]},
        "loki": {"url": "http://loki-gateway.monitoring", "tenant": "shop"},
        "otlp": {"endpoint": "https://otel-collector.monitoring:4318"},
        "alarms": {"process_limit": {"minor": 0.7, "major": 0.85}},
        "logs": {"level": "warning", "crash_grace": "60s"},
        "distribution": {"max_frame": "4MiB", "max_inflation_ratio": 50, "net_ticktime": "30s"},
        "metrics": {"dist_per_peer": True, "dist_max_peers": 50, "series_budget": 2000},
        "plugins": {"disabled": ["poolboy"], "nodes": {"legacy@10.9.0.1": {"disabled": []}}},
    },
    "cookie": {"existingSecret": "shop-erlang-cookie"},
    "distributionTls": {"existingSecret": "shop-dist-tls", "serverNameIndication": "shop.internal"},
    "sharding": {"count": 3},
    "grpc": {
        "expose": True,
        "auth": {"tokens": "tokens:\n  - name: ops\n    role: operator\n"},
        "tls": {"existingSecret": "shop-beamside-grpc-tls"},
        "evalEnabled": True,
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"enabled": True, "folder": "BEAM"},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "grpcFrom": [{"podSelector": {"matchLabels": {"role": "ops"}}}],
        "distPorts": {"from": 9100, "to": 9155},
    },
    "podAnnotations": {"team": "shop"},
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
}
# The README's example for an Elixir release.
ELIXIR_EXAMPLE: dict[str, Any] = yaml.safe_load(
    (CHART / "examples" / "elixir-values.yaml").read_text()
)
VALUE_SETS = {
    "minimal": MINIMAL,
    "kubernetes": KUBERNETES_DISCOVERY,
    "full": FULL,
    "elixir-example": ELIXIR_EXAMPLE,
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values``."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def merged(*overrides: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = copy.deepcopy(MINIMAL)
    for override in overrides:
        _deep_merge(result, copy.deepcopy(override))
    return result


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = of_kind(objects, "Deployment") + of_kind(objects, "StatefulSet")
    assert len(found) == 1
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def rendered_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        one(objects, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    )
    return data


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a nested structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


# ---------------------------------------------------------------- lint, schemas


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict(name: str) -> None:
    report = helm.lint(CHART, values=VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_lint_with_the_chart_defaults_alone() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_validates(name: str, version: str) -> None:
    objects = render(VALUE_SETS[name])
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["kind"] in CRD_KINDS:
            continue  # checked by their own tests below
        kubernetes_validate.validate(obj, version, strict=True)
        assert obj["metadata"].get("namespace") in (NAMESPACE, "billing")
    assert {"ConfigMap", "Service", "ServiceAccount"} <= kinds


def test_full_render_has_every_optional_part() -> None:
    kinds = {o["kind"] for o in render(FULL)}
    assert kinds == {
        "ConfigMap",
        "NetworkPolicy",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
        "StatefulSet",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cookie": {"value": "SECRETCOOKIE"}}, "'value' not allowed"),
        ({"config": {"targets": [{"nodes": ["a@h"], "cookie": "SECRETCOOKIE"}]}}, "'cookie' not"),
        ({"config": {"targets": [{"nodes": ["a@h"], "cookie_file": "/c"}]}}, "'cookie_file' not"),
        ({"config": {"node_name": "x@y"}}, "'node_name' not allowed"),
        ({"config": {"http": {"listen": "0.0.0.0:1"}}}, "'http' not allowed"),
        ({"config": {"targets": [{"discover": "kubernetes"}]}}, "missing property 'kubernetes'"),
        ({"config": {"targets": [{"discover": "none"}]}}, "missing property 'nodes'"),
        ({"config": {"intervals": {"metrics": 15}}}, "at '/config/intervals/metrics'"),
        ({"config": {"metrics": {"dist_max_peers": 1001}}}, "at '/config/metrics/dist_max"),
        ({"config": {"metrics": {"per_peer": True}}}, "'per_peer' not allowed"),
        ({"config": {"plugins": {"disabled": ["rabbit"]}}}, "at '/config/plugins/disabled/0'"),
        ({"sharding": {"count": 0}}, "at '/sharding/count'"),
        ({"runAsUser": 0}, "at '/runAsUser'"),
        ({"replicas": 2}, "'replicas' not allowed"),
        ({"distributionTls": {"verify": "maybe"}}, "at '/distributionTls/verify'"),
        ({"distributionTls": {"cert": "PEM"}}, "'cert' not allowed"),
        (
            {"config": {"targets": [{"nodes": ["a@h"], "tls": {"verify": "verify_none"}}]}},
            "'tls' not",
        ),
    ],
)
def test_schema_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(merged(values))
    assert message in str(caught.value)
    assert "SECRETCOOKIE" not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cookie": {"existingSecret": ""}}, "cookie.existingSecret is required"),
        ({"config": {"cluster": ""}}, "config.cluster is required"),
        ({"config": {"targets": []}}, "config.targets is required"),
        ({"grpc": {"expose": True}}, "grpc.expose needs grpc.auth"),
        ({"ports": {"metrics": 9000, "grpc": 9000}}, "must differ"),
    ],
)
def test_rendering_stops_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(merged(values))


# ---------------------------------------------------------------- the cookie


@pytest.mark.parametrize("name", VALUE_SETS)
def test_cookie_only_from_the_existing_secret(name: str) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    secret_name = values["cookie"]["existingSecret"]
    key = values["cookie"].get("key", "cookie")
    # No Secret of the chart's holds it, and no config carries a cookie value.
    for secret in of_kind(objects, "Secret"):
        assert key not in secret.get("data", {}) and "cookie" not in json.dumps(secret)
    config = rendered_config(objects)
    assert not {k for k, _ in walk(config)} & {"cookie", "cookie_env"}
    mount_dir = next(
        m["mountPath"] for m in container(objects)["volumeMounts"] if m["name"] == "cookie"
    )
    assert all(t["cookie_file"] == f"{mount_dir}/{key}" for t in config["targets"])
    pod = workload(objects)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["cookie-secret"]["secret"]
    assert secret["secretName"] == secret_name
    assert secret["items"] == [{"key": key, "path": key}]
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable
    # Under fsGroup a Secret's files are group-readable, and beamside refuses
    # such a cookie as erl does: an init container copies it, owner-only,
    # into memory, where beamside reads it.
    assert volumes["cookie"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    (init,) = pod["initContainers"]
    secret_dir = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "cookie-secret")
    assert init["command"] == ["install", "-m", "0400", f"{secret_dir}/{key}", f"{mount_dir}/{key}"]
    assert init["image"] == container(objects)["image"]
    assert init["securityContext"] == container(objects)["securityContext"]
    # Nor does the environment get it.
    assert "cookie" not in json.dumps(container(objects).get("env", [])).lower()


# ---------------------------------------------------------------- the pod


@pytest.mark.parametrize("name", VALUE_SETS)
def test_non_root_read_only_no_privileges(name: str) -> None:
    objects = render(VALUE_SETS[name])
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(objects)
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # Writable mounts are emptyDirs only: the Loki spool and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
    assert {m["name"] for m in writable} == {"spool", "tmp"}
    assert all("emptyDir" in volumes[m["name"]] for m in writable)
    assert volumes["spool"]["emptyDir"]["sizeLimit"] == "512Mi"
    assert c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_probes_and_ports_agree_with_the_config(name: str) -> None:
    objects = render(VALUE_SETS[name])
    config = rendered_config(objects)
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    http_host, http_port = parse_listen(config["http"]["listen"])
    assert http_host == "0.0.0.0" and ports["metrics"] == http_port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == http_port
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    grpc_host, grpc_port = parse_listen(config["grpc"]["listen"])
    service = one(objects, "Service", FULLNAME)
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["metrics"]["port"] == http_port
    assert ports[service_ports["metrics"]["targetPort"]] == http_port
    if VALUE_SETS[name].get("grpc", {}).get("expose"):
        assert grpc_host == "0.0.0.0" and ports["grpc"] == grpc_port
        assert ports[service_ports["grpc"]["targetPort"]] == grpc_port
    else:  # loopback only: kubectl port-forward reaches it, the network does not
        assert grpc_host == "127.0.0.1"
        assert "grpc" not in ports and "grpc" not in service_ports
    assert c["args"] == ["run", "--config", "/etc/beamside/config.yaml"]
    assert next(m for m in c["volumeMounts"] if m["name"] == "config")["mountPath"] == (
        "/etc/beamside/config.yaml"
    )


def test_changed_ports_follow_everywhere() -> None:
    values = merged(
        {"ports": {"metrics": 9100, "grpc": 9200}, "grpc": {"expose": True}},
        {"grpc": {"auth": {"existingSecret": "tokens"}}},
    )
    objects = render(values)
    config = rendered_config(objects)
    assert config["http"]["listen"] == "0.0.0.0:9100" and config["grpc"]["listen"] == "0.0.0.0:9200"
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"metrics": 9100, "grpc": 9200}
    v6 = rendered_config(render(merged({"listenAddress": "::"})))
    assert v6["http"]["listen"] == "[::]:9568"


def test_config_changes_restart_the_pod() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = workload(render(values))["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum(MINIMAL) == checksum(copy.deepcopy(MINIMAL))
    assert checksum(MINIMAL) != checksum(merged({"config": {"intervals": {"metrics": "30s"}}}))


# Everything the daemon's config parser knows today (gRPC auth/TLS not yet).
DAEMON_KEYS: dict[str, Any] = {
    "config": {
        "cluster": "shop",
        "targets": [
            {
                "discover": "kubernetes",
                "kubernetes": {"label_selector": "app=shop", "interval": "10s"},
            },
            {"discover": "dns", "dns": {"name": "shop-headless.apps.svc.cluster.local"}},
            {"nodes": ["legacy@10.9.0.1"], "discover": "connected", "family": "legacy"},
        ],
        "alertmanager": {"urls": ["http://alertmanager-operated.monitoring:9093"]},
        "loki": {
            "url": "http://loki-gateway.monitoring",
            "tenant": "shop",
            "spool_bytes": "256MiB",
        },
        "otlp": {"endpoint": "https://otel-collector.monitoring:4318"},
        "logs": {"level": "warning", "rate_limit": 500},
        "notifications": {"shell": True, "system_monitor": True, "system_monitor_rate": 5},
        "alarms": {"process_limit": {"minor": 0.7, "major": 0.85}},
    },
    "cookie": {"existingSecret": "shop-erlang-cookie"},
    "sharding": {"count": 3},
}


@pytest.mark.parametrize(
    "values",
    [MINIMAL, KUBERNETES_DISCOVERY, DAEMON_KEYS, FULL, ELIXIR_EXAMPLE],
    ids=["minimal", "kubernetes", "daemon-keys", "full", "elixir-example"],
)
def test_rendered_config_passes_beamside_validation(
    values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered file, with the environment the pod has (POD_IP from the
    downward API) and its mounted files, is a valid config for the daemon's
    own parser."""
    monkeypatch.setenv("POD_IP", "10.244.0.7")
    config = rendered_config(render(values))
    grpc = config.get("grpc", {})
    if "auth" in grpc:  # the tokens Secret, mounted: the parser reads it
        tokens = tmp_path / "tokens.yaml"
        tokens.write_text("s3cret-operator-token: operator\n")
        grpc["auth"]["tokens_file"] = str(tokens)
    for key in grpc.get("tls", {}):
        pem = tmp_path / f"{key}.pem"
        pem.write_text("mounted from a Secret")
        grpc["tls"][key] = str(pem)
    if any("tls" in t for t in config["targets"]):  # the distribution TLS Secret, mounted
        ca = make_ca(tmp_path, "shop CA")
        client = make_cert(ca, tmp_path, "beamside")
        mounted = {"ca.crt": ca.certfile, "tls.crt": client.certfile, "tls.key": client.keyfile}
        for target in config["targets"]:
            for key, path in target["tls"].items():
                if key.endswith("file"):
                    target["tls"][key] = str(mounted[Path(path).name])
    parsed = parse_config(config, "rendered ConfigMap")
    assert parsed.node_name == "beamside@10.244.0.7" or not config.get("node_name")
    assert parsed.http_listen[1] == 9568
    assert all(t.cookie.kind == "file" for t in parsed.targets)
    assert all((t.tls is not None) == ("distributionTls" in values) for t in parsed.targets)
    assert len(parsed.targets) == len(values["config"]["targets"])


def test_distribution_tls_from_an_existing_secret() -> None:
    """Every target gets tls: with the files of the Secret, mounted read-only;
    the chart never takes a certificate or key itself."""
    assert all("tls" not in t for t in rendered_config(render(MINIMAL))["targets"])
    assert "dist-tls" not in json.dumps(workload(render(MINIMAL)))
    values = merged(
        {
            "config": {"targets": [{"nodes": ["shop@a.shop"]}, {"nodes": ["shop@b.shop"]}]},
            "distributionTls": {"existingSecret": "shop-dist-tls", "caKey": "root.pem"},
        }
    )
    objects = render(values)
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "dist-tls")
    assert mount["readOnly"] is True
    d = mount["mountPath"]
    for target in rendered_config(objects)["targets"]:
        assert target["tls"] == {
            "cacertfile": f"{d}/root.pem",
            "certfile": f"{d}/tls.crt",
            "keyfile": f"{d}/tls.key",
            "verify": "verify_peer",
        }
    volume = next(
        v
        for v in workload(objects)["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "dist-tls"
    )
    assert volume["secret"]["secretName"] == "shop-dist-tls"
    assert [i["key"] for i in volume["secret"]["items"]] == ["root.pem", "tls.crt", "tls.key"]
    assert volume["secret"]["defaultMode"] & 0o007 == 0
    assert not of_kind(objects, "Secret")  # nothing of the certificates in the chart's output
    sni = render(merged(values, {"distributionTls": {"serverNameIndication": "disable"}}))
    assert {t["tls"]["server_name_indication"] for t in rendered_config(sni)["targets"]} == {
        "disable"
    }


def test_downward_api_environment() -> None:
    env = {e["name"]: e for e in container(render(FULL))["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["TZ"] == {"name": "TZ", "value": "UTC"}


# ---------------------------------------------------------------- sharding


def test_single_replica_is_a_deployment_never_doubled() -> None:
    objects = render(MINIMAL)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "sharding" not in rendered_config(objects)
    assert not of_kind(objects, "StatefulSet")


@pytest.mark.parametrize("count", [2, 5])
def test_sharded_is_a_statefulset(count: int) -> None:
    objects = render(merged({"sharding": {"count": count}}))
    assert not of_kind(objects, "Deployment")
    sts = one(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == count
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    headless = one(objects, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert rendered_config(objects)["sharding"] == {"count": count}
    env = {e["name"]: e for e in container(objects)["env"]}
    # The shard index comes from the pod name's ordinal (beamside-<i>).
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


# ---------------------------------------------------------------- RBAC


def test_no_rbac_without_kubernetes_discovery() -> None:
    for values in (
        MINIMAL,
        merged({"config": {"targets": [{"discover": "dns", "dns": {"name": "a.b"}}]}}),
    ):
        objects = render(values)
        assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
        assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
        assert (
            workload(objects)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        )
        assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_rbac_lists_pods_only_where_discovery_looks() -> None:
    objects = render(KUBERNETES_DISCOVERY)
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["apps", "billing"]
    for role in roles:
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
        ]
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account and pod["automountServiceAccountToken"] is True
    # No RBAC at all when asked not to create it.
    assert not of_kind(render(merged(KUBERNETES_DISCOVERY, {"rbac": {"create": False}})), "Role")


# ---------------------------------------------------------------- gRPC secrets


def test_tokens_secret_created_or_referenced() -> None:
    objects = render(FULL)
    secret = one(objects, "Secret")
    assert list(secret["data"]) == ["tokens.yaml"]
    config = rendered_config(objects)
    assert config["grpc"]["auth"] == {"tokens_file": "/etc/beamside/tokens/tokens.yaml"}
    assert config["grpc"]["tls"] == {
        "cert_file": "/etc/beamside/tls/tls.crt",
        "key_file": "/etc/beamside/tls/tls.key",
    }
    assert config["grpc"]["eval_enabled"] is True
    volumes = {v["name"]: v for v in workload(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes["grpc-tls"]["secret"]["secretName"] == "shop-beamside-grpc-tls"
    existing = render(merged({"grpc": {"expose": True, "auth": {"existingSecret": "ops-tokens"}}}))
    assert not of_kind(existing, "Secret")
    volumes = {v["name"]: v for v in workload(existing)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "ops-tokens"


# ---------------------------------------------------------------- monitoring


def test_prometheus_rule_is_exactly_the_alert_rules(tmp_path: Path) -> None:
    rule = one(render(FULL), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((ROOT / "alert_rules" / "beamside.rules.yml").read_text())
    assert rule["spec"] == {"groups": source["groups"]}
    rules_file = tmp_path / "rendered.rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run(
        [binary("promtool"), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_service_monitor_scrapes_the_main_service_as_job_beamside() -> None:
    objects = render(FULL)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in of_kind(objects, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == [FULLNAME]  # not the headless one too
    assert services[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "beamside"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    assert {"action": "replace", "targetLabel": "cluster", "replacement": "shop"} in endpoint[
        "relabelings"
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    sources = sorted((ROOT / "grafana_dashboards").glob("*.json"))
    assert sources, "grafana_dashboards/ has no dashboard"
    maps = [
        m
        for m in of_kind(render(FULL), "ConfigMap")
        if m["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert len(maps) == len(sources)
    by_file = {next(iter(m["data"])): m for m in maps}
    for source in sources:
        cm = by_file[source.name]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "BEAM"
        assert json.loads(cm["data"][source.name]) == json.loads(source.read_text())
        assert len(cm["metadata"]["name"]) <= 63
    elsewhere = render(merged({"dashboards": {"enabled": True, "namespace": "grafana"}}))
    assert {
        m["metadata"]["namespace"]
        for m in of_kind(elsewhere, "ConfigMap")
        if m["metadata"]["name"] != FULLNAME
    } == {"grafana"}


def test_chart_copies_are_in_sync() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_helm_files.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_sync_check_notices_drift(tmp_path: Path) -> None:
    """--check fails on a changed, missing or orphaned copy (in a scratch tree)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_helm_files
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    (tmp_path / "alert_rules").mkdir()
    (tmp_path / "grafana_dashboards").mkdir()
    (tmp_path / "alert_rules" / "beamside.rules.yml").write_text("groups: []\n")
    (tmp_path / "grafana_dashboards" / "a.json").write_text("{}")
    assert len(sync_helm_files.differences(tmp_path)) == 2
    sync_helm_files.sync(tmp_path)
    assert sync_helm_files.differences(tmp_path) == []
    (tmp_path / "alert_rules" / "beamside.rules.yml").write_text("groups: [{name: x, rules: []}]\n")
    (tmp_path / "helm" / "beamside" / "files" / "dashboards" / "old.json").write_text("{}")
    problems = sync_helm_files.differences(tmp_path)
    assert any(p.startswith("differs:") for p in problems)
    assert any(p.startswith("no source any more:") for p in problems)


# ---------------------------------------------------------------- network policy


def test_network_policy() -> None:
    policy = one(render(FULL), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    ingress = {r["ports"][0]["port"]: r for r in spec["ingress"]}
    assert ingress["metrics"]["from"] == FULL["networkPolicy"]["metricsFrom"]
    assert ingress["grpc"]["from"] == FULL["networkPolicy"]["grpcFrom"]
    egress_ports = {(p["port"], p.get("endPort")) for r in spec["egress"] for p in r["ports"]}
    assert {(53, None), (4369, None), (9100, 9155)} <= egress_ports
    assert {(443, None), (6443, None)} <= egress_ports  # kubernetes discovery
    assert {(80, None), (9093, None), (4318, None)} <= egress_ports  # loki, alertmanager, otlp
    minimal = one(render(merged({"networkPolicy": {"enabled": True}})), "NetworkPolicy")
    ports = {p["port"] for r in minimal["spec"]["egress"] for p in r["ports"]}
    assert 443 not in ports and 9093 not in ports  # nothing beyond what it needs
    assert [r["ports"][0]["port"] for r in minimal["spec"]["ingress"]] == ["metrics"]
    assert not of_kind(render(MINIMAL), "NetworkPolicy")


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_hadolint_clean() -> None:
    result = subprocess.run(
        ["hadolint", "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure() -> None:
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    froms = [c.value[0] for c in commands if c.cmd == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    final_stage = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM") :]
    users = [c.value[0] for c in final_stage if c.cmd == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0  # numeric, so runAsNonRoot can verify it
    entrypoint = next(c for c in final_stage if c.cmd == "ENTRYPOINT")
    assert entrypoint.json and entrypoint.value == ("beamside",)
    cmd = next(c for c in final_stage if c.cmd == "CMD")
    assert cmd.value == ("run", "--config", "/etc/beamside/config.yaml")
    text = (ROOT / "Dockerfile").read_text().lower()
    assert not re.search(r"(cookie|token|password|secret)\s*=", text)  # no secrets baked in
    assert "erlang" not in " ".join(c.original.lower() for c in commands if c.cmd == "RUN")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:1] == ["*"]  # an allow-list: nothing else leaks in
    assert "!sidecar" in ignored  # the one package (the exporter lives in it)
    copied = {c.value[0] for c in commands if c.cmd == "COPY"}
    assert "sidecar" in copied
    # the build stage compiles what setup.py compiles: it has setup.py and a C compiler
    assert "!setup.py" in ignored and "**/*.so" in ignored  # never a local build's .so
    build_stage = commands[: max(i for i, c in enumerate(commands) if c.cmd == "FROM")]
    assert any("setup.py" in c.value for c in build_stage if c.cmd == "COPY")
    assert any(" gcc " in f" {c.value[0]} " for c in build_stage if c.cmd == "RUN")


def test_user_plugins_from_a_config_map() -> None:
    """``userPlugins.configMap``: mounted read-only where the config says, the
    config's own plugins settings kept."""
    assert "directory" not in rendered_config(render(MINIMAL)).get("plugins", {})
    objects = render(
        merged(
            MINIMAL,
            {
                "userPlugins": {"configMap": "my-plugins"},
                "config": {"plugins": {"disabled": ["poolboy"]}},
            },
        )
    )
    config = rendered_config(objects)
    assert config["plugins"] == {"disabled": ["poolboy"], "directory": "/etc/beamside/plugins"}
    pod = workload(objects)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "user-plugins"]
    assert volume["configMap"]["name"] == "my-plugins"
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == "user-plugins"]
    assert mount == {"name": "user-plugins", "mountPath": "/etc/beamside/plugins", "readOnly": True}
