"""``beamside.v1.Nodes``: the managed nodes, targets added and removed at run time."""

from __future__ import annotations

from typing import Any

from sidecar.agents import AgentInfo
from sidecar.config import CookieSource, Target
from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import RpcFailure, invalid, not_found, text
from sidecar.control.gen.beamside.v1 import nodes_pb2 as pb
from sidecar.erldist.term import Atom
from sidecar.erldist.tls import TlsConfig
from sidecar.model import NodeSnapshot, NodeState, NodeStatus, Release

import grpc  # isort: skip

OPS: OpsModule = "beamside_ops_node"  # erl_agents/beamside_ops_node.erl
APPS: OpsModule = "beamside_ops_apps"  # erl_agents/beamside_ops_apps.erl
APP_TREE_MS = 5000  # the agent's bound on the whole walk

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _agreed_tls(targets: list[Target]) -> tuple[bool, TlsConfig | None]:
    """(True, their TLS settings) when ``targets`` all connect the same way
    (all plain TCP, or one identical ``tls:``); (False, None) when they differ."""
    settings = {t.tls for t in targets}
    if len(settings) > 1:
        return False, None
    return True, next(iter(settings), None)


def tls_for_added(targets: tuple[Target, ...], family: str | None) -> TlsConfig | None:
    """How a node added by name connects: as the configured targets of its
    ``family`` do, else as all configured targets do when they agree (plain
    TCP with none configured).  Raises INVALID_ARGUMENT when the targets
    disagree and no family settles it."""
    if family is not None:
        agreed, tls = _agreed_tls([t for t in targets if t.family == family])
        if not agreed:
            raise invalid(
                f"the configured targets of family {family!r} differ in their tls: "
                "settings; add the node to a family whose targets agree"
            )
        if any(t.family == family for t in targets):
            return tls
    agreed, tls = _agreed_tls(list(targets))
    if not agreed:
        about = f"no configured target has family {family!r} and " if family else ""
        raise invalid(
            f"{about}the configured targets differ in their tls: settings (plain TCP "
            "and TLS, or different certificates): give the family of the targets "
            "whose settings the node should use"
        )
    return tls


def summary(status: NodeStatus) -> pb.NodeSummary:
    return pb.NodeSummary(
        name=status.node,
        family=status.family,
        up=status.state is NodeState.UP,
        otp_release=status.otp_release,
        uptime_seconds=status.uptime_seconds,
        state=status.state.value,
        agent_version=status.agent_version,
        last_error=status.last_error,
        discovered_by=status.discovered_by or "",
    )


def _supervision(node: dict[Any, Any]) -> pb.SupervisionNode:
    """One supervisor or worker of app_tree's reply (nested at most max_depth)."""
    return pb.SupervisionNode(
        id=text(node.get("id")),
        pid=text(node.get("pid")),
        registered_name=text(node.get("name")),
        type=text(node.get("type")),
        modules=[text(m) for m in node.get("modules", []) if m],
        strategy=text(node.get("strategy")),
        child_count=_count(node.get("child_count")),
        active=_count(node.get("active")),
        children=[_supervision(c) for c in node.get("children", []) if isinstance(c, dict)],
        truncated=node.get("truncated") is True,
        error=text(node.get("error")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value < 2**32 else 0


def _releases(snap: NodeSnapshot | None) -> tuple[Release, ...]:
    versions = snap.versions if snap is not None else None
    return versions.releases or () if versions is not None else ()


class NodesService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.calls = NodeCalls(deps.manager)

    async def ListNodes(
        self, request: pb.ListNodesRequest, context: Context
    ) -> pb.ListNodesResponse:
        statuses = sorted(self.deps.manager.statuses(), key=lambda s: s.node)
        if request.family:
            statuses = [s for s in statuses if s.family == request.family]
        return pb.ListNodesResponse(nodes=[summary(s) for s in statuses])

    async def GetNode(self, request: pb.GetNodeRequest, context: Context) -> pb.GetNodeResponse:
        status = self.calls.up(request.node)
        info: Any = await self.calls.ops(status.node, OPS, "node_info", [{}], timeout=5.0)
        agent = AgentInfo.from_term(
            await self.calls.rpc(status.node, "beamside_agent", "info", [], timeout=5.0)
        )
        system = info.get("system", {})
        apps = info.get("applications", [])
        return pb.GetNodeResponse(
            node=summary(self.deps.manager.status(status.node) or status),
            system_info={str(k): text(v) for k, v in system.items()},
            applications=[
                pb.Application(
                    name=text(a.get("name")),
                    version=text(a.get("version")),
                    description=text(a.get("description")),
                )
                for a in apps
            ],
            release_name=agent.family_hint,
            release_version=agent.release_version or "",
            release_source=agent.family_source,
            erts_version=agent.erts_version,
            releases=[
                pb.Release(name=r.name, version=r.version, status=r.status)
                for r in _releases(self.deps.manager.snapshots.get(status.node))
            ],
        )

    async def AddNode(self, request: pb.AddNodeRequest, context: Context) -> pb.AddNodeResponse:
        node = validate.node(request.node)
        which = request.WhichOneof("cookie")
        if which is None:
            raise invalid(
                "a cookie source is required: cookie_file (a file on the sidecar host) or "
                "cookie_env (an environment variable of the sidecar)"
            )
        reference = getattr(request, which)
        if not reference:
            raise invalid(f"{which} is empty")
        cookie = CookieSource("file" if which == "cookie_file" else "env", reference)
        try:
            cookie.read()  # fail now, not in the background
        except ValueError as exc:
            raise invalid(f"{which}: {exc}") from None
        family = request.family or None
        if family is not None and (len(family) > 128 or not set(family) <= _LABEL_CHARS):
            raise invalid("family must be 1-128 letters, digits, '_', '.' or '-'")
        tls = tls_for_added(self.deps.manager.config.targets, family)
        if not self.deps.manager.add_target(node, cookie=cookie, family=family, tls=tls):
            raise RpcFailure(grpc.StatusCode.ALREADY_EXISTS, f"{node} is already managed")
        status = self.deps.manager.status(node)
        if status is None:  # the manager is stopping
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "beamside is shutting down")
        return pb.AddNodeResponse(node=summary(status), tls=tls is not None)

    async def RemoveNode(
        self, request: pb.RemoveNodeRequest, context: Context
    ) -> pb.RemoveNodeResponse:
        node = validate.node(request.node)
        if not await self.deps.manager.remove_target(node):
            raise not_found(f"{node} is not a managed node")
        return pb.RemoveNodeResponse(removed=True)

    async def ApplicationTree(
        self, request: pb.ApplicationTreeRequest, context: Context
    ) -> pb.ApplicationTreeResponse:
        app = validate.atom(request.application, "application") if request.application else ""
        opts = {
            Atom("max_depth"): validate.limit(request.max_depth, "max_depth", 6, 20),
            Atom("max_children"): validate.limit(request.max_children, "max_children", 100, 1000),
            Atom("timeout_ms"): APP_TREE_MS,
        }
        reply = await self.calls.ops(
            request.node,
            APPS,
            "app_tree",
            [app.encode() if app else Atom("all"), opts],
            APP_TREE_MS / 1000 + 1,
        )
        return pb.ApplicationTreeResponse(
            applications=[
                pb.ApplicationInfo(
                    name=text(a.get("name")),
                    version=text(a.get("version")),
                    description=text(a.get("description")),
                    master=text(a.get("master")),
                    tree=_supervision(a["tree"]) if isinstance(a.get("tree"), dict) else None,
                    error=text(a.get("error")),
                )
                for a in reply.get("applications", [])
                if isinstance(a, dict)
            ],
            truncated=reply.get("truncated") is True,
        )
