"""Record golden ``beamside_agent:collect/1`` replies from real nodes.

Run from the repository root (it starts its own EPMD and nodes on 127.0.0.1,
and stops them)::

    python3 -m tests.vectors.record_replies

For each runtime (OTP 25 with os_mon, mnesia and SASL; OTP 28; Elixir) it
attaches the agents with every measurement on, collects three ticks with
every opt-in section asked for (the third after a module reload and an env
change, so the event sections are not empty) and writes the last reply as
``replies/<runtime>.etf`` (the external term format, as it came off the
wire, re-encoded by our encoder).  The model's decoder tests read them.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, encode
from tests.support.nodes import Epmd, ErlangNode, random_cookie, start_nodes, stop_nodes

HERE = Path(__file__).parent / "replies"

ATTACH = {
    "system_monitor": True,
    "scheduler_wall_time": True,
    "msacc": True,
}


def collect_options(first: bool) -> dict[str, Any]:
    return {
        "startup_files": True,
        "modules_md5": True,
        "env_keys": [(Atom("kernel"), Atom("net_ticktime")), (Atom("stdlib"), Atom("nope"))],
        "code_events": True,
        "config_events": True,
    }


NODES: dict[str, tuple[str, list[str]]] = {
    "otp25": (
        "otp25",
        ["-eval", "application:ensure_all_started(os_mon), application:ensure_all_started(mnesia)"],
    ),
    "otp28": ("otp28", []),
    "elixir": ("elixir", []),
}


async def record(name: str, node: ErlangNode, cookie: str, epmd_port: int) -> None:
    local = LocalNode(f"beamside-rec-{name}@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name, ATTACH)
        await agents.collect(local, node.name, collect_options(True), timeout=30)
        await asyncio.sleep(1.0)
        await node.aeval("application:set_env(kernel, beamside_golden, 42)")
        await node.aeval("code:purge(lists), code:load_file(lists)")
        await asyncio.sleep(1.0)
        reply = await agents.collect(local, node.name, collect_options(False), timeout=30)
        (HERE / f"{name}.etf").write_bytes(encode(reply))
        print(f"{name}: {len(reply)} sections", file=sys.stderr)
        await agents.detach(local, node.name)
    finally:
        await local.close()


async def main() -> None:
    HERE.mkdir(exist_ok=True)
    with Epmd() as epmd:
        for name, (runtime, args) in NODES.items():
            cookie = random_cookie()
            node = ErlangNode(runtime, cookie=cookie, epmd_port=epmd.port, extra_args=args)  # type: ignore[arg-type]
            start_nodes([node])
            try:
                await record(name, node, cookie, epmd.port)
            finally:
                stop_nodes([node])


if __name__ == "__main__":
    asyncio.run(main())
