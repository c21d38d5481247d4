"""``beamside probe``: connect to one node as a hidden node and summarise it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .agents.terms import text
from .erldist.limits import DEFAULT_DIST_LIMITS, DistLimits
from .erldist.names import default_local_name, parse_node_name
from .erldist.node import LocalNode
from .erldist.term import Atom
from .erldist.tls import TlsConfig


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    description: str
    version: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    node: str
    otp_release: str
    erts_version: str
    uptime_seconds: float
    process_count: int
    applications: tuple[Application, ...]

    def render(self) -> str:
        apps = ", ".join(f"{a.name} {a.version}" for a in self.applications) or "(none)"
        return "\n".join(
            [
                f"node:          {self.node}",
                f"otp release:   {self.otp_release}",
                f"erts version:  {self.erts_version}",
                f"uptime:        {format_duration(self.uptime_seconds)}",
                f"processes:     {self.process_count}",
                f"applications:  {apps}",
            ]
        )


def format_duration(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _applications(value: Any) -> tuple[Application, ...]:
    apps = []
    for item in value if isinstance(value, list) else []:
        if type(item) is tuple and len(item) == 3:
            name, desc, vsn = item
            apps.append(Application(str(name), text(desc), text(vsn)))
    return tuple(apps)


async def read_summary(local: LocalNode, node: str, *, timeout: float = 10.0) -> ProbeResult:
    """Read ``node``'s summary over ``local`` (connecting if needed)."""

    async def call(module: str, function: str, *args: Any) -> Any:
        return await local.rpc(node, module, function, list(args), timeout=timeout)

    release, version, wall_clock, procs, apps = await asyncio.gather(
        call("erlang", "system_info", Atom("otp_release")),
        call("erlang", "system_info", Atom("version")),
        call("erlang", "statistics", Atom("wall_clock")),
        call("erlang", "system_info", Atom("process_count")),
        call("application", "which_applications"),
    )
    return ProbeResult(
        node=node,
        otp_release=text(release),
        erts_version=text(version),
        uptime_seconds=wall_clock[0] / 1000 if type(wall_clock) is tuple else 0.0,
        process_count=procs if type(procs) is int else -1,
        applications=_applications(apps),
    )


async def probe(
    node: str,
    cookie: str,
    *,
    timeout: float = 10.0,
    tls: TlsConfig | None = None,
    limits: DistLimits = DEFAULT_DIST_LIMITS,
) -> ProbeResult:
    """Connect to ``node`` as a throwaway hidden node (over TLS when ``tls``
    is given) and read its summary, all within ``timeout`` seconds; the
    connection holds to ``limits`` (the config's ``distribution:``)."""
    peer = parse_node_name(node)
    local = LocalNode(default_local_name(peer, "beamside-probe"), cookie, tls=tls, limits=limits)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await local.connect(node, timeout=timeout)
        # One deadline for the whole probe: the calls get what is left.
        return await read_summary(local, node, timeout=max(deadline - loop.time(), 0.001))
    finally:
        await local.close()
