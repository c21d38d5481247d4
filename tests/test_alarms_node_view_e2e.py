"""system_memory_high_watermark and disk_almost_full end to end when os_mon's
memsup/disksup do not run (RabbitMQ, ejabberd, OTP without os_mon): the node's
own view (its cgroup, /proc/meminfo, df of its data directory) raises them in a
real Alertmanager, and resolves them when the condition goes; with memsup and
disksup running, their own alarms are what arrives."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import NodeFactory
from tests.support.alertmanager import Alertmanager
from tests.support.daemon_proc import BeamsideProcess
from tests.support.node_view import (
    MemoryCgroup,
    MiB,
    memory_cgroup,
    mnesia_on_tmpfs_node,
    pid_of,
)
from tests.test_alarms_e2e import (  # noqa: F401  (alertmanager: the fixture)
    alertmanager,
    assert_raised,
    assert_resolved,
    firing,
    run_beamside,
    wait,
)

OS_MON_OFF = ["-os_mon", "start_memsup", "false", "-os_mon", "start_disksup", "false"]
HOG = (
    "Self = self(), "
    "register(hog, spawn(fun() -> B = binary:copy(<<1>>, 300 * 1024 * 1024), "
    "Self ! allocated, receive stop -> byte_size(B) end end)), "
    "receive allocated -> ok after 10000 -> timeout end."
)


def used(group: MemoryCgroup) -> int:
    """What the node's memory view calls used: usage less inactive file cache."""
    usage, inactive = group.usage_and_inactive_file()
    return usage - inactive


def info(alert: dict[str, object]) -> dict[str, object]:
    annotations = alert["annotations"]
    assert isinstance(annotations, dict)
    parsed = json.loads(annotations["additional_info"])
    assert isinstance(parsed, dict)
    return parsed


def test_memory_alarm_from_the_nodes_cgroup(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,  # noqa: F811
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    """A node in a 1 GiB memory cgroup (a container's limit, below the host's
    memory) takes 300 MiB: raised from the cgroup; freed: resolved."""
    with memory_cgroup(1024 * MiB) as group:
        # +MMmcs 0: no segment cache, so the VM unmaps the freed 300 MiB at
        # once.  With the cache (emptied slowly, one segment per check) the
        # cgroup kept counting the freed hog for over 30 s in one run in four
        # under load: the memory really was still charged, so the alarm that
        # stayed raised was right and the test's "freed" was not.
        node = node_factory("otp25", extra_args=["+MMmcs", "0"])
        try:
            group.add(pid_of(node))  # before beamside attaches
            run_beamside(
                beamside_procs,
                tmp_path,
                [node],
                alertmanager,
                alarms={"system_memory_high_watermark": {"minor": 0.2, "major": 0.6}},
            )
            assert not firing(alertmanager, alertname="system_memory_high_watermark")
            assert node.eval(HOG) == "ok"
            alert = assert_raised(
                alertmanager, alertname="system_memory_high_watermark", node=node.name
            )
            assert alert["labels"]["severity"] == "minor"
            details = info(alert)
            assert details["source"] == f"cgroup_v{group.version}"
            assert details["limit_bytes"] == 1024 * MiB
            assert "cgroup" in alert["annotations"]["cause"]
            node.eval("hog ! stop, ok.")
            # The condition ends when the kernel stops counting the 300 MiB;
            # the alarm's latency is measured from there.
            freed_below = 0.2 * 0.9 * 1024 * MiB
            wait(lambda: used(group) < freed_below, 10.0, "the node's cgroup freeing the hog")
            assert_resolved(alertmanager, alertname="system_memory_high_watermark", node=node.name)
        finally:
            node.kill()


def test_memory_and_disk_alarms_from_meminfo_and_df(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,  # noqa: F811
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    """OTP 28 (no os_mon at all) and OTP 25 running os_mon with memsup and
    disksup off: thresholds set low (1 % of memory, 1 % of disk) raise both
    alarms from the host's /proc/meminfo and df."""
    plain = node_factory("otp28")
    off = node_factory("otp25", extra_args=OS_MON_OFF)
    assert off.eval("application:ensure_all_started(os_mon).").startswith("{ok,")
    run_beamside(
        beamside_procs,
        tmp_path,
        [plain, off],
        alertmanager,
        alarms={
            "system_memory_high_watermark": {"minor": 0.01, "major": 0.99},
            "disk_almost_full": {"minor": 1, "major": 99.9},
        },
    )
    for node in (plain, off):
        alert = assert_raised(
            alertmanager, alertname="system_memory_high_watermark", node=node.name
        )
        assert info(alert)["source"] in ("meminfo", "cgroup_v1", "cgroup_v2")
        assert "set on the node" not in alert["annotations"]["cause"]
        alert = assert_raised(alertmanager, alertname="disk_almost_full", node=node.name)
        details = info(alert)
        assert details["source"] == "df" and details["dir"] == "cwd"
        assert details["path"] == str(node.log_dir)


def test_disk_alarm_on_the_mnesia_directory(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,  # noqa: F811
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    """mnesia's directory on a small file system of its own that the node fills
    (default thresholds 85 % / 95 %, df every second): raised, then resolved
    when the file goes."""
    node = mnesia_on_tmpfs_node(node_factory, tmp_path, 8 * MiB)
    data = tmp_path / "data"  # the tmpfs
    db = data / "db"  # mnesia's directory
    run_beamside(
        beamside_procs,
        tmp_path,
        [node],
        alertmanager,
        alarms={"disk_almost_full": {"window": "1s"}},
    )
    node.eval(f'file:write_file("{db}/fill", binary:copy(<<0>>, {7 * MiB})).')
    alert = assert_raised(alertmanager, alertname="disk_almost_full", node=node.name)
    assert alert["labels"]["severity"] == "minor"
    details = info(alert)
    assert (details["source"], details["dir"]) == ("df", "mnesia")
    assert (details["mount"], details["path"]) == (str(data), str(db))
    assert str(data) in alert["annotations"]["cause"]
    node.eval(f'file:delete("{db}/fill").')
    assert_resolved(alertmanager, alertname="disk_almost_full", node=node.name)


def test_os_mon_alarms_still_used_when_memsup_and_disksup_run(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,  # noqa: F811
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    """memsup and disksup with thresholds of 1 %: their own alarms arrive (through
    SASL's alarm_handler); the node's view is not read, so beamside's much higher
    thresholds raise nothing of their own."""
    node = node_factory(
        "otp25",
        extra_args=[
            "-os_mon",
            "system_memory_high_watermark",
            "0.01",
            "-os_mon",
            "disk_almost_full_threshold",
            "0.01",
        ],
    )
    assert node.eval("application:ensure_all_started(os_mon).").startswith("{ok,")
    run_beamside(
        beamside_procs,
        tmp_path,
        [node],
        alertmanager,
        alarms={
            "system_memory_high_watermark": {"minor": 0.99, "major": 1.0},
            "disk_almost_full": {"minor": 99.9, "major": 100},
        },
    )
    for name in ("system_memory_high_watermark", "disk_almost_full"):
        alert = assert_raised(alertmanager, alertname=name, node=node.name)
        assert alert["annotations"]["cause"].startswith("set on the node"), alert
        assert "alarms" in info(alert) and "source" not in info(alert)
