"""Distribution metrics of a meshed node: reply size, series and node cost,
before (agent version 7: every peer listed) and after (version 8: an
aggregate by default, the per-peer list on request) -- issue 15.

    python bench/bench_dist_series.py              # a mesh of 10 OTP 25 nodes
    python bench/bench_dist_series.py --nodes 20

Starts a private EPMD and a full mesh of real OTP 25 nodes, then, on one of
them and in the same run: loads the version 7 ``beamside_vm`` (from git, the
commit before issue 15) and calls its ``dist`` section; then the current one
in its default (aggregate) and per-peer modes.  For each: the size of the
section in the external term format (what the collect reply carries for it),
the dist series the exporter renders for the node, and the node's time per
call (the least of 20 rounds of 200 calls).  A target of n meshed nodes
carries n times a node's series.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.model import decode_snapshot
from tests.support.nodes import Epmd, ErlangNode, random_cookie, start_nodes

ROOT = Path(__file__).resolve().parent.parent
#: the last commit with agent version 7 (before the aggregate)
BEFORE = "2d43210"


def _old_beam(module: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:sidecar/agents/ebin/{module}.beam"],
        check=True,
        capture_output=True,
    ).stdout


def _series(tree: Any, node: str) -> int:
    snap = decode_snapshot(
        {Atom("dist"): tree}, node=node, family="f", cluster="c", taken_at=0.0, duration=0.0
    )
    return sum(
        len(f.samples)
        for f in vm_metric_families([snap])
        if f.name.startswith(("erlang_vm_dist_", "beamside_dist_"))
    )


async def _measure(local: LocalNode, node: ErlangNode, opts: str) -> tuple[Any, int, float]:
    """The section, its size on the wire, and microseconds per call."""
    tree = await local.rpc(
        node.name, "beamside_vm", "section", [Atom("dist"), _opts(opts), {}], timeout=30
    )
    size = int(node.eval(f"byte_size(term_to_binary(beamside_vm:section(dist, {opts}, #{{}})))."))
    out = node.eval(
        f"T = fun() -> element(1, timer:tc(fun() -> [beamside_vm:section(dist, {opts}, #{{}}) "
        "|| _ <- lists:seq(1, 200)] end)) end, lists:min([T() || _ <- lists:seq(1, 20)]).",
        timeout=120,
    )
    return tree, size, int(out) / 200


def _opts(text: str) -> dict[Atom, Any]:
    return {Atom("dist_per_peer"): True, Atom("max_peers"): 1000} if "true" in text else {}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10, help="nodes in the mesh (10)")
    args = ap.parse_args()
    with Epmd() as epmd:
        cookie = random_cookie()
        nodes = start_nodes(
            [ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port) for _ in range(args.nodes)]
        )
        local = LocalNode("bench-dist@127.0.0.1", cookie, epmd_port=epmd.port)
        try:
            for node in nodes:
                names = ", ".join(f"'{o.name}'" for o in nodes if o is not node)
                node.eval(f"[net_kernel:connect_node(N) || N <- [{names}]], ok.")
            node = nodes[0]
            await local.rpc(node.name, "erlang", "node", [], timeout=10)  # connect
            peers = int(node.eval("length(erlang:system_info(dist_ctrl))."))
            for module in ("beamside_agent", "beamside_vm"):
                await local.rpc(
                    node.name,
                    "code",
                    "load_binary",
                    [Atom(module), Charlist(f"{module}.beam"), _old_beam(module)],
                    timeout=30,
                )
            rows = [("before: version 7, every peer", *(await _measure(local, node, "#{}")))]
            for module in ("beamside_agent", "beamside_vm"):
                await local.rpc(node.name, "code", "purge", [Atom(module)], timeout=10)
                await local.rpc(node.name, "code", "delete", [Atom(module)], timeout=10)
            await agents.ensure_loaded(local, node.name)
            rows.append(("after: aggregate (default)", *(await _measure(local, node, "#{}"))))
            per_peer = "#{dist_per_peer => true, max_peers => 1000}"
            rows.append(("after: dist_per_peer", *(await _measure(local, node, per_peer))))
            print(
                f"a mesh of {args.nodes} OTP 25 nodes; node {node.name} has {peers} "
                "connections (the other nodes of the mesh, and beamside)"
            )
            print(f"{'':32} {'bytes':>8} {'series':>7} {'target':>8} {'us/call':>8}")
            base_size, base_series = rows[0][2], _series(rows[0][1], node.name)
            for label, tree, size, us in rows:
                series = _series(tree, node.name)
                print(
                    f"{label:32} {size:8d} {series:7d} {series * args.nodes:8d} {us:8.1f}"
                    f"   ({size / base_size:.2f}x bytes, {series / base_series:.2f}x series)"
                )
        finally:
            await local.close()
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    asyncio.run(main())
