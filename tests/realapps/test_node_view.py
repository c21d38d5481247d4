"""system_memory_high_watermark and disk_almost_full on the real applications
(issue 11, item 7: RabbitMQ runs os_mon with memsup and disksup off, so these
alarms never came): the node's own view serves whenever memsup/disksup do not
run, on the file system of mnesia's directory (RABBITMQ_MNESIA_DIR) when
mnesia runs, and the alarms raise with thresholds set low."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import RunningApp

LOW = {
    "system_memory_high_watermark": {"minor": 0.01, "major": 0.99},
    "disk_almost_full": {"minor": 1, "major": 99.9},
}


def _series(families: dict[str, Any], name: str, node: str) -> list[dict[str, str]]:
    return [labels for labels, _ in families.get(name, []) if labels.get("node") == node]


def _df_mount(path: str) -> str:
    out = subprocess.run(
        ["df", "-P", "-k", path], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return " ".join(out.splitlines()[-1].split()[5:])


def test_memory_and_disk_view(app: RunningApp) -> None:
    node = app.node.name
    memsup = app.probe.eval("whereis(memsup) =/= undefined") == "true"
    disksup = app.probe.eval("whereis(disksup) =/= undefined") == "true"
    mnesia_dir = app.probe.eval(
        "case whereis(mnesia_monitor) of undefined -> none;"
        " _ -> unicode:characters_to_binary(mnesia:system_info(directory)) end"
    )
    cwd = app.probe.eval("{ok, D} = file:get_cwd(), unicode:characters_to_binary(D)")
    if app.kind == "rabbitmq":
        assert not memsup and not disksup  # what issue 11 saw
        assert mnesia_dir.startswith('<<"') and str(app.node.workdir) in mnesia_dir

    proc = Beamside(app.node, app.workdir / "beamside", name="view")
    config = yaml.safe_load(proc.config.read_text())
    config["alarms"] = LOW
    proc.config.write_text(yaml.safe_dump(config))
    app.beamsides.append(proc)
    proc.start()
    proc.wait_attached(collects=2)
    families = proc.families()
    reply = proc.grpcurl("beamside.v1.Alarms/ListAlarms", {"node": node})
    assert reply.status == "OK", reply.stderr
    alarms = {a.get("alarm"): a for a in reply.json.get("alarms", []) if a.get("active", True)}

    if not memsup:
        limits = _series(families, "erlang_vm_memory_view_limit_bytes", node)
        assert limits and limits[0]["source"] in ("meminfo", "cgroup_v1", "cgroup_v2"), families
        alarm = alarms["system_memory_high_watermark"]
        assert json.loads(alarm["infoJson"])["source"] == limits[0]["source"]
    if not disksup:
        disk = _series(families, "erlang_vm_data_dir_disk_used_ratio", node)
        assert len(disk) == 1, disk
        want = mnesia_dir if mnesia_dir != "none" else cwd
        path = want.removeprefix('<<"').removesuffix('">>')
        if Path(path).is_dir():
            assert disk[0]["path"] == path, (disk, want)
        else:  # not made yet: the nearest existing parent
            assert path.startswith(disk[0]["path"] + "/"), (disk, want)
        assert disk[0]["mount"] == _df_mount(disk[0]["path"])
        info = json.loads(alarms["disk_almost_full"]["infoJson"])
        assert info["source"] == "df"
        assert info["dir"] == ("cwd" if mnesia_dir == "none" else "mnesia")
        memory = alarms.get("system_memory_high_watermark", {}).get("cause")
        print(f"\n{app.kind}: memory {memory}; disk {alarms['disk_almost_full']['cause']}")
    assert not _series(families, "beamside_agent_section_error", node), families.get(
        "beamside_agent_section_error"
    )
