"""The node's own view of memory and disk (alarms.memory_view, alarms.disk_view),
read by the agent without os_mon, against real nodes: compared with what the
test reads itself (/proc/meminfo, df, the cgroup files)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR, snapshot
from tests.conftest import NodeFactory
from tests.support.golden import exposition
from tests.support.node_view import (
    MemoryCgroup,
    MiB,
    NamespacedNode,
    df,
    fake_cgroup_v2_setup,
    meminfo,
    memory_cgroup,
    mnesia_on_tmpfs_node,
    pid_of,
)
from tests.support.nodes import ErlangNode, Runtime
from tests.support.prometheus import promtool_check_metrics

# 200 MiB held by a registered process (returns once allocated).
HOG = (
    "Self = self(), "
    "register(hog, spawn(fun() -> B = binary:copy(<<1>>, 200 * 1024 * 1024), "
    "Self ! allocated, receive stop -> byte_size(B) end end)), "
    "receive allocated -> ok after 10000 -> timeout end."
)

# The host moves while we look (other tests run): what may differ between the
# agent's reading and ours, taken a moment apart.
MEM_SLACK = 256 * MiB


async def _alarms(local: LocalNode, node: ErlangNode, **opts: Any) -> dict[str, Any]:
    await agents.ensure_loaded(local, node.name)
    data = await agents.collect(local, node.name, {"sections": ["alarms"], **opts}, timeout=30)
    alarms: dict[str, Any] = data["alarms"]
    return alarms


def _check_meminfo_view(view: dict[str, Any]) -> None:
    mine = meminfo()
    assert view["total_bytes"] == mine["MemTotal"]
    assert abs(view["available_bytes"] - mine["MemAvailable"]) < MEM_SLACK
    assert view["swap_total_bytes"] == mine["SwapTotal"]
    assert 0 < view["free_bytes"] <= view["total_bytes"]


def _check_df_view(view: dict[str, Any], path: Path, pid: int | None = None) -> None:
    mine = df(path, pid)
    assert view["source"] == "df"
    assert view["path"] == str(path).encode()
    assert view["mount"] == mine.mount.encode()
    assert view["total_bytes"] == mine.total
    slack = max(mine.total // 100, 4096)  # other writers on a shared disk
    assert abs(view["available_bytes"] - mine.available) <= slack
    assert abs(view["used_bytes"] - mine.used) <= slack
    assert abs(view["capacity"] - mine.capacity) < 1.0


@pytest.mark.parametrize("runtime", ["otp25", "otp28"])
async def test_view_on_a_plain_node(
    runtime: Runtime, node_factory: NodeFactory, local: LocalNode
) -> None:
    """No os_mon (OTP 28's runtime has none at all): the view is there, sane."""
    node = node_factory(runtime)
    assert node.eval("whereis(memsup).") == "undefined"
    alarms = await _alarms(local, node)
    view = alarms["memory_view"]
    assert isinstance(view, dict), view
    _check_meminfo_view(view)
    cgroup = view["cgroup"]
    # This host's cgroup: the node's own (v1: the memory controller's line).
    lines = Path(f"/proc/{pid_of(node)}/cgroup").read_text().splitlines()
    v1 = [ln.split(":", 2)[2] for ln in lines if "memory" in ln.split(":", 2)[1].split(",")]
    assert cgroup["version"] == (1 if v1 else 2)
    own = v1[0] if v1 else next(ln[3:] for ln in lines if ln.startswith("0::"))
    assert cgroup["path"].decode().endswith(own.rstrip("/"))
    limited = isinstance(cgroup["limit_bytes"], int) and cgroup["limit_bytes"] < view["total_bytes"]
    if limited:
        assert view["source"] == f"cgroup_v{cgroup['version']}"
        assert view["limit_bytes"] == cgroup["limit_bytes"]
        assert view["used_bytes"] == cgroup["usage_bytes"] - cgroup["inactive_file_bytes"]
    else:
        assert view["source"] == "meminfo"
        assert view["limit_bytes"] == view["total_bytes"]
        mine = meminfo()
        assert abs(view["used_bytes"] - (mine["MemTotal"] - mine["MemAvailable"])) < MEM_SLACK
    assert cgroup["usage_bytes"] > 0

    # Disk: the node's working directory (no mnesia), as df says.
    disk = alarms["disk_view"]
    assert isinstance(disk, dict), disk
    assert disk["dir_source"] == "cwd" and disk["age_ms"] == 0
    _check_df_view(disk, node.log_dir)

    text = exposition([await snapshot(local, node)])
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    source = view["source"].encode()
    assert b"erlang_vm_memory_view_limit_bytes{" in text
    assert b'source="' + source + b'"' in text
    assert b"erlang_vm_system_memory_bytes{" in text and b'kind="available"' in text
    assert b"erlang_vm_cgroup_memory_bytes{" in text and b'kind="usage"' in text
    assert b"erlang_vm_data_dir_disk_used_ratio{" in text
    assert b"beamside_agent_section_error" not in text


async def test_df_is_cached_while_attached(otp25_node: ErlangNode, local: LocalNode) -> None:
    """Attached, df runs at most every disk_view_interval_ms; every result is
    from a bounded helper, which leaves nothing behind."""
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    first = (await _alarms(local, node))["disk_view"]
    assert first["age_ms"] == 0
    await asyncio.sleep(0.3)
    again = (await _alarms(local, node))["disk_view"]
    assert again["age_ms"] >= 250 and again["available_bytes"] == first["available_bytes"]
    # A short interval (the alarm's window): kept until it is over, then a fresh df.
    kept = (await _alarms(local, node, disk_view_interval_ms=1000))["disk_view"]
    assert kept["age_ms"] >= again["age_ms"]
    await asyncio.sleep(1.1)
    fresh = (await _alarms(local, node, disk_view_interval_ms=1000))["disk_view"]
    assert fresh["age_ms"] == 0
    # The df port is closed by the time the collect returns.
    df_ports = (
        "[N || P <- erlang:ports(), {name, N} <- [erlang:port_info(P, name)], "
        'lists:suffix("/df", N)].'
    )
    assert node.eval(df_ports) == "[]"
    await agents.detach(local, node.name)
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE
    _nothing_logged(node, 0)


def _nothing_logged(node: ErlangNode, offset: int) -> None:
    log = node.log_text()[offset:]
    assert "CRASH REPORT" not in log and "error" not in log.lower(), node.log_tail()


async def test_mnesia_dir_is_the_data_dir(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    """With mnesia running the disk view is that of mnesia's directory (RabbitMQ's
    RABBITMQ_MNESIA_DIR): here a 8 MiB tmpfs of the node's own, filled by it."""
    node = mnesia_on_tmpfs_node(node_factory, tmp_path, 8 * MiB)
    data = tmp_path / "data"  # the tmpfs
    db = data / "db"  # mnesia's directory
    pid = pid_of(node)
    view = (await _alarms(local, node))["disk_view"]
    assert view["dir_source"] == "mnesia"
    _check_df_view(view, db, pid)
    assert view["mount"] == str(data).encode() and view["total_bytes"] == 8 * MiB
    assert view["capacity"] < 1

    node.eval(f'file:write_file("{db}/fill", binary:copy(<<0>>, {6 * MiB})).')
    view = (await _alarms(local, node))["disk_view"]
    _check_df_view(view, db, pid)
    assert 74 < view["capacity"] < 76

    # A mnesia directory not made yet: the file system it will be on.
    node.eval('application:stop(mnesia), application:set_env(mnesia, dir, "' + f'{db}/new/x").')
    node.eval("application:start(mnesia).")
    view = (await _alarms(local, node))["disk_view"]
    assert view["dir_source"] == "mnesia" and view["path"] == str(db).encode()


async def test_os_mon_without_memsup_and_disksup(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    """os_mon running with memsup and disksup off (RabbitMQ, ejabberd): the view
    serves; with them on, the view says os_mon and reads nothing."""
    off = node_factory(
        "otp25",
        extra_args=["-os_mon", "start_memsup", "false", "-os_mon", "start_disksup", "false"],
    )
    on = node_factory("otp25")
    for node in (off, on):
        assert node.eval("application:ensure_all_started(os_mon).").startswith("{ok,")
    assert off.eval("{whereis(memsup), whereis(disksup)}.") == "{undefined,undefined}"
    alarms = await _alarms(local, off)
    assert alarms["memory_view"]["source"] in ("meminfo", "cgroup_v1", "cgroup_v2")
    _check_meminfo_view(alarms["memory_view"])
    _check_df_view(alarms["disk_view"], off.log_dir)

    alarms = await _alarms(local, on)
    assert (alarms["memory_view"], alarms["disk_view"]) == ("os_mon", "os_mon")


async def test_view_in_a_limited_memory_cgroup(node_factory: NodeFactory, local: LocalNode) -> None:
    """A real memory cgroup with a 1 GiB limit (below the host's memory): the
    cgroup is the source, its usage less inactive file cache the use."""
    with memory_cgroup(1024 * MiB) as group:
        node = node_factory("otp25")
        try:
            group.add(pid_of(node))
            await _limited(local, node, group)
        finally:
            node.kill()  # before the cgroup goes


async def _limited(local: LocalNode, node: ErlangNode, group: MemoryCgroup) -> None:
    view = (await _alarms(local, node))["memory_view"]
    usage, inactive = group.usage_and_inactive_file()
    assert view["source"] == f"cgroup_v{group.version}"
    assert view["limit_bytes"] == 1024 * MiB == view["cgroup"]["limit_bytes"]
    assert view["cgroup"]["path"] == str(group.path).encode()
    assert abs(view["used_bytes"] - (usage - inactive)) < 16 * MiB
    _check_meminfo_view(view)  # the host's figures are still there

    # 200 MiB more in the node: charged to the cgroup.
    node.eval(HOG)
    grown = (await _alarms(local, node))["memory_view"]
    assert grown["used_bytes"] - view["used_bytes"] > 190 * MiB
    usage, inactive = group.usage_and_inactive_file()
    assert abs(grown["used_bytes"] - (usage - inactive)) < 16 * MiB
    # The limit is read at every collect.
    group.set_limit(2048 * MiB)
    assert (await _alarms(local, node))["memory_view"]["limit_bytes"] == 2048 * MiB


async def test_cgroup_v2_view(node_factory: NodeFactory, local: LocalNode, tmp_path: Path) -> None:
    """cgroup v2 as a container sees it (namespace root /kubepods/pod1, the limit
    on the pod's cgroup, not the container's): a constructed tree, mounted over
    the node's /proc/self files in its own mount namespace (this host is v1)."""
    tree = {
        "memory.max": f"{512 * MiB}\n",
        "ctr/memory.max": "max\n",
        "ctr/memory.current": f"{300 * MiB}\n",
        "ctr/memory.stat": f"anon {200 * MiB}\nfile {100 * MiB}\ninactive_file {50 * MiB}\n",
    }
    setup = fake_cgroup_v2_setup(
        tmp_path / "v2", tree, self_path="/kubepods/pod1/ctr", mount_root="/kubepods/pod1"
    )
    node = NamespacedNode(
        "otp28",
        cookie=node_factory.cookie,
        epmd_port=node_factory.epmd_port,
        log_dir=node_factory.log_dir,
        setup=setup,
    )
    node_factory.nodes.append(node)
    node.start()
    view = (await _alarms(local, node))["memory_view"]
    assert view["source"] == "cgroup_v2"
    assert view["cgroup"] == {
        "version": 2,
        "path": str(tmp_path / "v2" / "tree" / "ctr").encode(),
        "limit_bytes": 512 * MiB,
        "usage_bytes": 300 * MiB,
        "inactive_file_bytes": 50 * MiB,
    }
    assert (view["limit_bytes"], view["used_bytes"]) == (512 * MiB, 250 * MiB)
    _check_meminfo_view(view)


async def test_failure_is_an_error_value(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    """The node's working directory removed under it: the disk view is
    {error, _}, the rest of the section is there, nothing logged."""
    node = otp25_node
    offset = len(node.log_text())
    gone = tmp_path / "gone"
    gone.mkdir()
    node.eval(f'ok = file:set_cwd("{gone}").')
    gone.rmdir()
    alarms = await _alarms(local, node)
    assert agents.is_error(alarms["disk_view"]), alarms["disk_view"]
    assert isinstance(alarms["memory_view"], dict)
    text = exposition([await snapshot(local, node)])
    assert b"beamside_agent_section_error{" in text and b'section="alarms.disk_view"' in text
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    _nothing_logged(node, offset)


async def test_cgroup_v2_outside_the_namespace_root(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    """A cgroup path outside the namespace's root ("/../x", as /proc/self/cgroup
    shows a process moved out of it) never leads out of the mount: the mount
    point's own files are read."""
    tree = {
        "memory.max": f"{768 * MiB}\n",
        "memory.current": f"{100 * MiB}\n",
        "memory.stat": f"inactive_file {10 * MiB}\n",
    }
    setup = fake_cgroup_v2_setup(tmp_path / "v2", tree, self_path="/../x", mount_root="/")
    # What "/../x" would name if followed: next to the mount, not under it.
    outside = tmp_path / "v2" / "x"
    outside.mkdir()
    for name, value in (("memory.max", 1), ("memory.current", 1), ("memory.stat", "")):
        (outside / name).write_text(f"{value}\n")
    node = NamespacedNode(
        "otp25",
        cookie=node_factory.cookie,
        epmd_port=node_factory.epmd_port,
        log_dir=node_factory.log_dir,
        setup=setup,
    )
    node_factory.nodes.append(node)
    node.start()
    view = (await _alarms(local, node))["memory_view"]
    assert view["cgroup"]["path"] == str(tmp_path / "v2" / "tree").encode()
    assert (view["source"], view["limit_bytes"], view["used_bytes"]) == (
        "cgroup_v2",
        768 * MiB,
        90 * MiB,
    )
