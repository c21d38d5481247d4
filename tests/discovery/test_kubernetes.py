"""Kubernetes discovery against a local double of the API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from sidecar.discovery import FollowStatus, follow
from sidecar.discovery.kubernetes import (
    PAGE_SIZE,
    KubernetesApiError,
    KubernetesConfigError,
    KubernetesDiscoverer,
    KubernetesDiscoveryConfig,
    KubernetesForbidden,
    KubernetesUnauthorized,
    KubernetesUnavailable,
)
from tests.discovery.conftest import TOKEN
from tests.discovery.k8s_api import KubeApiDouble, make_pod, self_signed_cert


def config_for(
    api: KubeApiDouble, token_file: Path | None, **overrides: object
) -> KubernetesDiscoveryConfig:
    settings: dict[str, object] = {
        "label_selector": "app=shop",
        "namespace": "shop",
        "api_url": api.url,
        "token_file": str(token_file) if token_file else None,
        "timeout": 2.0,
    }
    settings.update(overrides)
    return KubernetesDiscoveryConfig(**settings)  # type: ignore[arg-type]


async def discoverer(
    api: KubeApiDouble, token_file: Path | None, **overrides: object
) -> KubernetesDiscoverer:
    return KubernetesDiscoverer(config_for(api, token_file, **overrides), httpx.AsyncClient())


async def test_pods_appearing_and_disappearing(kube_api: KubeApiDouble, token_file: Path) -> None:
    kube_api.set_pods(make_pod("shop-a", "10.1.0.1"), make_pod("shop-b", "10.1.0.2"))
    d = await discoverer(kube_api, token_file)
    try:
        assert await d.discover() == {"app@10.1.0.1", "app@10.1.0.2"}
        kube_api.add_pod(make_pod("shop-c", "10.1.0.3"))
        assert await d.discover() == {"app@10.1.0.1", "app@10.1.0.2", "app@10.1.0.3"}
        kube_api.remove_pod("shop", "shop-a")
        assert await d.discover() == {"app@10.1.0.2", "app@10.1.0.3"}
        kube_api.set_pods()
        assert await d.discover() == frozenset()  # scaled to zero: an answer, not an error
    finally:
        await d.aclose()
    request = kube_api.requests[0]
    assert request.path == "/api/v1/namespaces/shop/pods"
    assert request.query["labelSelector"] == "app=shop"
    assert request.authorization == f"Bearer {TOKEN}"


async def test_only_running_ready_pods_with_an_ip(
    kube_api: KubeApiDouble, token_file: Path
) -> None:
    kube_api.set_pods(
        make_pod("ok", "10.1.0.1"),
        make_pod("not-ready", "10.1.0.2", ready=False),
        make_pod("pending", None, phase="Pending", ready=False),
        make_pod("no-ip", None),
        make_pod("succeeded", "10.1.0.4", phase="Succeeded"),
        make_pod("terminating", "10.1.0.5", deleting=True),
        make_pod("other-app", "10.1.0.6", labels={"app": "billing"}),
        make_pod("other-ns", "10.1.0.7", namespace="billing"),
    )
    d = await discoverer(kube_api, token_file)
    try:
        assert await d.discover() == {"app@10.1.0.1"}
        assert d.pods_seen == 6  # the selector and namespace are the API's job
        # A pod that becomes ready is picked up on the next look.
        kube_api.add_pod(make_pod("not-ready", "10.1.0.2"))
        assert await d.discover() == {"app@10.1.0.1", "app@10.1.0.2"}
    finally:
        await d.aclose()


async def test_selector_with_several_terms_is_sent_intact(
    kube_api: KubeApiDouble, token_file: Path
) -> None:
    kube_api.set_pods(
        make_pod("web", "10.1.0.1", labels={"app": "shop", "tier": "web"}),
        make_pod("canary", "10.1.0.2", labels={"app": "shop", "tier": "canary"}),
    )
    d = await discoverer(kube_api, token_file, label_selector="app=shop,tier!=canary")
    try:
        assert await d.discover() == {"app@10.1.0.1"}
    finally:
        await d.aclose()
    assert kube_api.requests[-1].query["labelSelector"] == "app=shop,tier!=canary"


async def test_template_fields(kube_api: KubeApiDouble, token_file: Path) -> None:
    kube_api.set_pods(
        make_pod("shop-0", "10.1.0.1", hostname="shop-0", subdomain="shop-headless"),
        make_pod("shop-1", "10.1.0.2", subdomain="shop-headless"),  # hostname: the pod name
        make_pod("loose", "10.1.0.3"),  # no subdomain: cannot be named this way
    )
    template = "shop@{hostname}.{subdomain}.{namespace}.svc.cluster.local"
    d = await discoverer(kube_api, token_file, node_name_template=template)
    try:
        assert await d.discover() == {
            "shop@shop-0.shop-headless.shop.svc.cluster.local",
            "shop@shop-1.shop-headless.shop.svc.cluster.local",
        }
        assert d.skipped == ("loose",)
    finally:
        await d.aclose()
    d = await discoverer(kube_api, token_file, node_name_template="{pod_name}@{pod_ip}")
    try:
        assert await d.discover() == {"shop-0@10.1.0.1", "shop-1@10.1.0.2", "loose@10.1.0.3"}
    finally:
        await d.aclose()


async def test_pagination_follows_continue_tokens(
    kube_api: KubeApiDouble, token_file: Path
) -> None:
    count = PAGE_SIZE * 2 + 37
    kube_api.set_pods(*(make_pod(f"p{i}", f"10.2.{i // 250}.{i % 250 + 1}") for i in range(count)))
    d = await discoverer(kube_api, token_file)
    try:
        assert len(await d.discover()) == count
    finally:
        await d.aclose()
    pages = kube_api.requests
    assert len(pages) == 3
    assert pages[0].query["resourceVersion"] == "0" and "continue" not in pages[0].query
    # The API server refuses a resourceVersion together with a continue token.
    assert all("resourceVersion" not in p.query and p.query["continue"] for p in pages[1:])


async def test_forbidden_is_a_clear_error(kube_api: KubeApiDouble, token_file: Path) -> None:
    kube_api.state.forbidden = True
    d = await discoverer(kube_api, token_file)
    try:
        with pytest.raises(KubernetesForbidden) as caught:
            await d.discover()
    finally:
        await d.aclose()
    message = str(caught.value)
    assert "403" in message and "list pods in namespace shop" in message
    assert 'cannot list resource "pods"' in message  # the API server's own words
    assert "Helm chart" in message  # and what to do


async def test_bad_token_and_rotation(kube_api: KubeApiDouble, token_file: Path) -> None:
    kube_api.set_pods(make_pod("shop-a", "10.1.0.1"))
    d = await discoverer(kube_api, token_file)
    try:
        assert await d.discover() == {"app@10.1.0.1"}
        kube_api.state.token = "token-two"  # the API server moved on; the file did not
        with pytest.raises(KubernetesUnauthorized, match="401"):
            await d.discover()
        token_file.write_text("token-two")  # the kubelet rotates the projected token
        assert await d.discover() == {"app@10.1.0.1"}
        assert kube_api.requests[-1].authorization == "Bearer token-two"
        token_file.unlink()
        with pytest.raises(KubernetesUnauthorized, match="cannot read the service account token"):
            await d.discover()
    finally:
        await d.aclose()


async def test_server_errors_and_bad_selector(kube_api: KubeApiDouble, token_file: Path) -> None:
    d = await discoverer(kube_api, token_file)
    try:
        kube_api.state.fail_status = 503
        with pytest.raises(KubernetesUnavailable, match="503"):
            await d.discover()
        kube_api.state.fail_status = None
    finally:
        await d.aclose()
    d = await discoverer(kube_api, token_file, label_selector="app in (shop, web)")
    try:
        with pytest.raises(KubernetesApiError, match="check label_selector") as caught:
            await d.discover()
        assert caught.value.status_code == 400
    finally:
        await d.aclose()
    d = await discoverer(kube_api, token_file, api_url=kube_api.url + "/not-an-api")
    try:
        with pytest.raises(KubernetesApiError, match="404"):
            await d.discover()
    finally:
        await d.aclose()


async def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_follow_keeps_the_last_set_through_errors_and_outages(
    kube_api: KubeApiDouble, token_file: Path
) -> None:
    kube_api.set_pods(make_pod("shop-a", "10.1.0.1"), make_pod("shop-b", "10.1.0.2"))
    applied: list[frozenset[str]] = []

    async def apply(nodes: frozenset[str]) -> None:
        applied.append(nodes)

    status = FollowStatus()
    d = await discoverer(kube_api, token_file, timeout=0.5)
    task = asyncio.create_task(follow(d, apply, 0.05, status=status))
    try:
        await _wait_for(lambda: applied == [{"app@10.1.0.1", "app@10.1.0.2"}])
        # RBAC taken away: errors, the set stays, nothing is applied.
        kube_api.state.forbidden = True
        await _wait_for(lambda: status.consecutive_failures >= 3)
        assert isinstance(status.last_error, KubernetesForbidden)
        assert status.nodes == {"app@10.1.0.1", "app@10.1.0.2"}
        assert len(applied) == 1
        # The API server goes away entirely.
        kube_api.stop()
        failures = status.failures
        await _wait_for(lambda: status.failures >= failures + 3)
        assert isinstance(status.last_error, KubernetesUnavailable)
        assert len(applied) == 1
        # It comes back, with RBAC fixed and one pod replaced.
        kube_api.state.forbidden = False
        kube_api.set_pods(make_pod("shop-b", "10.1.0.2"), make_pod("shop-c", "10.1.0.3"))
        kube_api.start()
        await _wait_for(lambda: len(applied) == 2)
        assert applied[-1] == {"app@10.1.0.2", "app@10.1.0.3"}
        assert status.last_error is None and status.consecutive_failures == 0
        assert status.changes == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await d.aclose()


def test_namespace_and_api_url_from_the_service_account(tmp_path: Path) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("payments\n")
    config = KubernetesDiscoveryConfig("app=pay", namespace_file=str(namespace_file))
    assert config.resolved_namespace() == "payments"
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert config.resolved_api_url(env) == "https://10.96.0.1:443"
    assert (
        config.resolved_api_url({"KUBERNETES_SERVICE_HOST": "fd00::1"}) == "https://[fd00::1]:443"
    )
    with pytest.raises(KubernetesConfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        config.resolved_api_url({})
    missing = KubernetesDiscoveryConfig("app=pay", namespace_file=str(tmp_path / "nope"))
    with pytest.raises(KubernetesConfigError, match=r"set kubernetes\.namespace"):
        missing.resolved_namespace()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"label_selector": " "}, "label_selector is required"),
        ({"node_name_template": "app@{ip}"}, "unknown field {ip}"),
        ({"node_name_template": "app@{pod_ip!r}"}, "unknown field"),
        ({"node_name_template": "app@static"}, "uses no field"),
        ({"node_name_template": "a b@{pod_ip}"}, "does not make a node name"),
        ({"node_name_template": "{pod_ip}"}, "does not make a node name"),
        ({"namespace": "Bad_NS"}, "not a valid namespace"),
        ({"interval": 0.1}, "at least 1s"),
        ({"api_url": "10.0.0.1:443"}, "http"),
    ],
)
def test_config_errors(settings: dict[str, object], message: str) -> None:
    full: dict[str, object] = {"label_selector": "app=shop", **settings}
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        KubernetesDiscoveryConfig(**full)  # type: ignore[arg-type]


async def test_in_cluster_tls_with_the_service_account_ca(tmp_path: Path, token_file: Path) -> None:
    """No injected client: the API address from the environment, the CA file
    trusted, the token sent; a wrong CA fails with a clear error."""
    cert, key = self_signed_cert(tmp_path)
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("shop")
    with KubeApiDouble(tls=(cert, key)) as api:
        api.state.token = TOKEN
        api.set_pods(make_pod("shop-a", "10.1.0.1"))
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
        config = KubernetesDiscoveryConfig(
            "app=shop",
            token_file=str(token_file),
            ca_file=str(cert),
            namespace_file=str(namespace_file),
            timeout=2.0,
        )
        d = KubernetesDiscoverer(config, environ=env)
        try:
            assert d.api_url == f"https://127.0.0.1:{api.port}"
            assert await d.discover() == {"app@10.1.0.1"}
        finally:
            await d.aclose()
        (tmp_path / "other").mkdir()
        other_cert, _ = self_signed_cert(tmp_path / "other")  # a different CA
        wrong = KubernetesDiscoverer(
            KubernetesDiscoveryConfig(
                "app=shop",
                namespace="shop",
                token_file=str(token_file),
                ca_file=str(other_cert),
                timeout=2.0,
            ),
            environ=env,
        )
        try:
            with pytest.raises(KubernetesUnavailable, match="cannot reach the API server"):
                await wrong.discover()
        finally:
            await wrong.aclose()
    with pytest.raises(KubernetesConfigError, match="cannot load the API server CA"):
        KubernetesDiscoverer(
            KubernetesDiscoveryConfig(
                "app=shop", namespace="shop", ca_file=str(tmp_path / "missing.crt")
            ),
            environ=env,
        )
