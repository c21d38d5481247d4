"""A beamside sidecar in a child process, for the tests that kill it.

``python -m tests.agents.sidecar_child NODE COOKIE LOCAL_NAME EPMD_PORT MODE``
loads the agents into NODE, attaches with every event option (logger
handler, shell and system monitor events, scheduler_wall_time, msacc),
prints ``ATTACHED`` and then, by MODE:

* ``collect``: collects (code_events included) in a loop until killed;
* ``detach_race``: sends the detach request and kills itself at once, so
  the node sees the stop request and the connection drop together;
* ``idle``: does nothing until killed;
* ``loaded``: like ``idle``, but never attaches (it prints ``ATTACHED``
  once the agents are loaded).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from sidecar import agents
from sidecar.agents import EVENTS_MAILBOX, EventOptions
from sidecar.erldist.node import LocalNode


async def main(node: str, cookie: str, name: str, epmd_port: int, mode: str) -> None:
    local = LocalNode(name, cookie, epmd_port=epmd_port)
    local.mailbox(EVENTS_MAILBOX)
    await agents.ensure_loaded(local, node)
    if mode == "loaded":
        print("ATTACHED", flush=True)
        await asyncio.sleep(3600)
    opts = EventOptions(log_level="info", sysmon_events=True).to_attach_opts()
    opts.update({"scheduler_wall_time": True, "msacc": True, "long_gc": 1})
    # A 1 s grace after a crash (default 120 s), so that the lifecycle tests'
    # no-residue bound stays what it was plus that second.
    opts["events"] = {**opts["events"], "grace_s": 1}
    await agents.attach(local, node, opts)
    print("ATTACHED", flush=True)
    if mode == "detach_race":
        request = asyncio.ensure_future(local.rpc(node, "beamside_agent", "detach", []))
        await asyncio.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)
        await request
    while True:
        if mode == "collect":
            await agents.collect(local, node, {"code_events": True}, timeout=10)
            # a log line on the node, for the forwarder to carry
            await local.rpc(node, "logger", "info", [b"child tick", []])
            await asyncio.sleep(0.05)
        else:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    node_, cookie_, name_, port_, mode_ = sys.argv[1:6]
    asyncio.run(main(node_, cookie_, name_, int(port_), mode_))
