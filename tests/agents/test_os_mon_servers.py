"""os_mon with some of its servers switched off (as RabbitMQ and ejabberd run
it): a server that does not run is not asked, is not an error, and its
metrics are simply absent."""

from __future__ import annotations

from sidecar import agents
from sidecar.erldist.node import LocalNode
from tests.agents.conftest import collect_reply, family_names, section_errors, snapshot
from tests.conftest import NodeFactory
from tests.support.golden import exposition


def _os_mon_flags(cpu: bool, mem: bool, disk: bool) -> list[str]:
    flags: list[str] = []
    for server, on in (("start_cpu_sup", cpu), ("start_memsup", mem), ("start_disksup", disk)):
        flags += ["-os_mon", server, "true" if on else "false"]
    return flags


async def test_os_mon_servers_off_are_not_errors(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    node = node_factory("otp25", extra_args=_os_mon_flags(False, False, False))
    await node.aeval("{ok, _} = application:ensure_all_started(os_mon), ok.", timeout=30)
    assert await node.aeval("[whereis(S) || S <- [cpu_sup, memsup, disksup]].") == (
        "[undefined,undefined,undefined]"
    )
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["os_mon"] is True
    await agents.attach(local, node.name)
    for _ in range(2):  # the second collect is the one cpu_sup's util would use
        snap, data = await collect_reply(local, node)
    os_mon = data["plugins"]["os_mon"]
    assert section_errors(os_mon) == {}, os_mon
    assert os_mon == {"cpu": "not_running", "memory": "not_running", "disk": "not_running"}
    text = exposition([snap])
    assert b"beamside_agent_section_error" not in text, text
    assert not {n for n in family_names([snap]) if n.startswith("erlang_os_mon_")}
    # Nothing crashed or complained on the node.
    await agents.detach(local, node.name)
    log = node.log_text()
    assert "CRASH REPORT" not in log and "error" not in log.lower(), node.log_tail()


async def test_os_mon_only_cpu_sup_on(node_factory: NodeFactory, local: LocalNode) -> None:
    node = node_factory("otp25", extra_args=_os_mon_flags(True, False, False))
    await node.aeval("{ok, _} = application:ensure_all_started(os_mon), ok.", timeout=30)
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    await snapshot(local, node)
    snap, data = await collect_reply(local, node)
    os_mon = data["plugins"]["os_mon"]
    assert section_errors(os_mon) == {}, os_mon
    assert os_mon["cpu"]["load1"] >= 0 and "busy" in os_mon["cpu"]["util"]
    assert os_mon["memory"] == "not_running" and os_mon["disk"] == "not_running"
    names = family_names([snap])
    assert "erlang_os_mon_cpu_load1" in names and "erlang_os_mon_cpu_busy_ratio" in names
    assert "erlang_os_mon_memory_total_bytes" not in names
    assert "erlang_os_mon_disk_used_ratio" not in names
    assert "beamside_agent_section_error" not in names
    await agents.detach(local, node.name)
