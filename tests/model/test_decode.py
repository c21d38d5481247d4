"""The typed node model read from the golden collect replies (pure: no nodes).

The replies in ``tests/vectors/replies`` were recorded from real OTP 25,
OTP 28 and Elixir nodes: each decodes with no section error and every typed
value as that runtime sent it.  Around them: sections the node failed
(``{error, _}``) or sent misshapen, the term rules (a boolean is not a number,
NaN is not a number, a flag is a boolean, text is bounded), and a seeded fuzz
of the replies that the decoder, the renderer, the alarm checks and the
notifier all survive.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import pytest
from prometheus_client.metrics_core import Metric

from sidecar.agents.terms import MAX_TEXT, is_error, shown
from sidecar.alarms.catalogue import GlobalParam
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.term import (
    Atom,
    BitBinary,
    Export,
    ImproperList,
    Map,
    Pid,
    Port,
    Reference,
    encode,
)
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.loki.model import LogEntry
from sidecar.model import (
    EXPORTER_SECTIONS,
    Alarms,
    CodeChange,
    ConfigChange,
    DiskView,
    EnvValue,
    EventSection,
    Limits,
    Memory,
    MemoryView,
    NodeSnapshot,
    NodeState,
    NodeStatus,
    NodeTime,
    OsMon,
    ProcessEntry,
    Processes,
    SectionError,
    StartupFiles,
    Sysmon,
    System,
    Versions,
    decode_snapshot,
)
from sidecar.model.sections import Disk, OsMonCpu, OsMonDisk, OsMonMemory
from sidecar.notify import Notifier
from tests.support.golden import RUNTIMES, exposition, golden_snapshot, reply, variant

#: the sections with a typed decoder (the reply key is the snapshot field)
TYPED: Final = (
    "system",
    "limits",
    "memory",
    "processes",
    "alarms",
    "sysmon",
    "time",
    "versions",
    "startup_files",
    "env",
    "modules",
    "dist_nodes",
    "code_events",
    "config_events",
)
#: top-level numbers: reply key -> snapshot field
SCALARS: Final = {
    "agent_version": "agent_version",
    "duration_us": "agent_duration_us",
    "uptime_ms": "uptime_ms",
    "system_time_us": "system_time_us",
}
#: keys of the reply the snapshot does not keep
IGNORED: Final = frozenset({"node", "timings"})
#: where agent version 12 sends the exporter sections (none in the recorded replies)
PACKED: Final = "packed"
#: sections whose term must be a map (the event sections may also be an atom)
MAP_SECTIONS: Final = (
    frozenset(TYPED) - {"dist_nodes", "code_events", "config_events"}
    | frozenset(EXPORTER_SECTIONS)
    | {"plugins"}
)
HEX32: Final = re.compile(r"[0-9a-f]{32}")
VERSION: Final = re.compile(r"\d+(\.\d+)*")
PID: Final = re.compile(r"<\d+\.\d+\.\d+>")


def typed_fields(value: object) -> dict[str, str] | None:
    """Field name -> annotation of a typed value (or class): a dataclass or a
    NamedTuple; None for anything else."""
    cls = value if isinstance(value, type) else type(value)
    if dataclasses.is_dataclass(cls):
        return {f.name: str(f.type) for f in dataclasses.fields(cls)}
    names = getattr(cls, "_fields", None)
    if issubclass(cls, tuple) and isinstance(names, tuple):
        hints: dict[str, object] = {}
        for klass in reversed(cls.__mro__):
            hints.update(getattr(klass, "__annotations__", {}))
        return {name: str(hints.get(name, "")) for name in names}
    return None


def fields_of(key: str) -> set[str]:
    """The snapshot fields a reply key decodes into."""
    if key in TYPED:
        return {key}
    if key in SCALARS:
        return {SCALARS[key]}
    if key == "plugins":
        return {"os_mon", "plugins", "plugin_names"}
    return set()


def decode(term: Mapping[str, object], node: str = "n@h", taken_at: float = 1.7e9) -> NodeSnapshot:
    return decode_snapshot(
        term, node=node, family="f", cluster="c", taken_at=taken_at, duration=0.01
    )


def with_value(
    term: dict[str, object], path: tuple[str | int, ...], value: object
) -> dict[str, Any]:
    """``term`` (a reply) with the value at ``path`` replaced, containers copied."""

    def put(node: object, rest: tuple[str | int, ...]) -> object:
        if not rest:
            return value
        head, tail = rest[0], rest[1:]
        if isinstance(node, dict):
            out = dict(node)
            out[head] = put(node[head], tail)
            return out
        assert isinstance(node, list) and isinstance(head, int), (node, head)
        items = list(node)
        items[head] = put(node[head], tail)
        return items

    out = put(term, path)
    assert isinstance(out, dict)
    return out


# --------------------------------------------------------------------------- golden replies


def test_the_tests_know_every_key_of_the_replies() -> None:
    for name in RUNTIMES:
        known = set(TYPED) | set(SCALARS) | set(EXPORTER_SECTIONS) | {"plugins", PACKED} | IGNORED
        assert set(reply(name)) <= known, name


@pytest.mark.parametrize("name", RUNTIMES)
def test_golden_reply_decodes_without_errors(name: str) -> None:
    snap = golden_snapshot(name)
    assert isinstance(snap, NodeSnapshot)
    assert snap.errors == {}
    assert (snap.node, snap.family, snap.cluster) == (f"{name}@127.0.0.1", "golden", "c")
    raw = reply(name)
    for key in TYPED:
        assert getattr(snap, key) is not None, key
    assert set(snap.trees) == set(EXPORTER_SECTIONS)
    for key, field in SCALARS.items():
        value = getattr(snap, field)
        assert type(value) is float and value == raw[key] and value > 0, key


#: (reply key, typed class) of the sections read field by field as numbers/flags/text
FLAT_SECTIONS: Final = (
    ("limits", Limits),
    ("system", System),
    ("processes", Processes),
    ("sysmon", Sysmon),
    ("time", NodeTime),
)


@pytest.mark.parametrize("name", RUNTIMES)
@pytest.mark.parametrize(("key", "cls"), FLAT_SECTIONS, ids=[k for k, _ in FLAT_SECTIONS])
def test_every_field_is_what_the_runtime_sent(name: str, key: str, cls: type) -> None:
    """A field the node sent is that value (numbers as float), one it did not
    send is None: OTP 28 sends system.cpu_quota, OTP 25 does not."""
    raw = reply(name)[key]
    assert isinstance(raw, dict)
    typed = getattr(golden_snapshot(name), key)
    assert isinstance(typed, cls)
    fields = typed_fields(cls)
    assert fields
    sent = scalars = 0
    for field, annotation in fields.items():
        scalars += annotation in ("float | None", "bool | None", "str")
        value, term = getattr(typed, field), raw.get(field)
        if annotation == "float | None":
            if type(term) is int or type(term) is float:
                assert type(value) is float and value == term, field
                sent += 1
            else:
                assert term is None and value is None, field
        elif annotation == "bool | None":
            assert value is (term if type(term) is bool else None), field
            sent += term is not None
        elif annotation == "str":
            assert value == (str(term) if term is not None else ""), field
            sent += term is not None
    # the optional ones missing (processes.memory_sum, system.cpu_quota before OTP 26)
    assert sent >= scalars - 1


@pytest.mark.parametrize("name", RUNTIMES)
def test_limits_and_system_are_plausible(name: str) -> None:
    snap = golden_snapshot(name)
    limits, system = snap.limits, snap.system
    assert limits is not None and system is not None
    for count, limit in (
        (limits.process_count, limits.process_limit),
        (limits.port_count, limits.port_limit),
        (limits.atom_count, limits.atom_limit),
        (limits.ets_count, limits.ets_limit),
        (limits.open_fds, limits.fd_limit),
    ):
        assert count is not None and limit is not None
        assert 0 < count < limit
    assert limits.modules_loaded is not None and limits.modules_loaded > 50
    assert limits.dist_links == (limits.dist_visible or 0) + (limits.dist_hidden or 0)
    assert system.schedulers is not None and system.schedulers_online is not None
    assert 1 <= system.schedulers_online <= system.schedulers
    assert system.wordsize == 8.0
    assert system.smp_support is True and system.threads is True
    assert system.multi_scheduling == "enabled"
    assert system.time_warp_mode in ("no_time_warp", "single_time_warp", "multi_time_warp")
    assert system.os_pid is not None and system.os_pid > 1
    assert system.start_time_ms is not None and system.system_time_ms is not None
    assert system.start_time_ms < system.system_time_ms
    assert (system.cpu_quota is None) == (name != "otp28")


@pytest.mark.parametrize("name", RUNTIMES)
def test_memory_by_kind(name: str) -> None:
    memory = golden_snapshot(name).memory
    assert isinstance(memory, Memory)
    kinds = {"total", "processes", "processes_used", "system", "atom", "atom_used", "binary"}
    assert kinds | {"code", "ets", "persistent_term"} <= set(memory.by_kind)
    assert all(type(v) is float and v > 0 for v in memory.by_kind.values())
    total, processes, system = memory.get("total"), memory.get("processes"), memory.get("system")
    assert total is not None and processes is not None and system is not None
    assert total == processes + system  # erlang:memory/0's own invariant
    assert memory.get("nope") is None


@pytest.mark.parametrize("name", RUNTIMES)
def test_processes_and_their_top_entries(name: str) -> None:
    procs = golden_snapshot(name).processes
    assert isinstance(procs, Processes)
    raw_top = reply(name)["processes"]["top_memory"]  # type: ignore[index]
    assert len(procs.top_memory) == len(raw_top) > 0
    assert procs.top_message_queue == ()  # the nodes were idle: an empty list
    assert procs.truncated is False
    for entry in procs.top_memory:
        assert isinstance(entry, ProcessEntry)
        assert PID.fullmatch(entry.pid), entry
        assert entry.label == (entry.name or entry.pid)
        assert entry.memory is not None and entry.memory > 0
        assert entry.message_queue_len == 0.0
        assert re.fullmatch(r"[\w.]+:\w+/\d+", entry.current_function), entry
        assert re.fullmatch(r"[\w.]+:\w+/\d+", entry.initial_call), entry
    assert "code_server" in {e.name for e in procs.top_memory}
    memories = [e.memory or 0.0 for e in procs.top_memory]
    assert memories == sorted(memories, reverse=True)
    assert procs.max_memory == memories[0]
    assert procs.walked is not None and procs.covered is not None and procs.walked >= 1
    summary = procs.top_memory[0].summary()
    assert summary["memory"] == int(memories[0]) and isinstance(summary["memory"], int)


def test_alarms_otp25_with_os_mon_sasl_and_mnesia() -> None:
    alarms = golden_snapshot("otp25").alarms
    assert isinstance(alarms, Alarms)
    assert alarms.sasl_count == 0.0 and alarms.sasl_alarms == ()
    assert alarms.mnesia == {
        "inconsistent_database": 0.0,
        "overload": 0.0,
        "last_inconsistent_database": "none",
        "last_overload": "none",
    }
    # memsup and disksup run: the node sends no view of its own
    assert alarms.memory_view is None and alarms.disk_view is None
    assert alarms.old_code_ages_ms == {} and alarms.shell_history_bytes is None


@pytest.mark.parametrize("name", ["otp28", "elixir"])
def test_alarms_without_os_mon_carry_the_nodes_own_views(name: str) -> None:
    alarms = golden_snapshot(name).alarms
    assert isinstance(alarms, Alarms)
    assert alarms.sasl_count is None and alarms.sasl_alarms is None  # SASL not running
    assert alarms.mnesia is None
    memory, disk = alarms.memory_view, alarms.disk_view
    assert isinstance(memory, MemoryView) and isinstance(disk, DiskView)
    assert memory.source == "meminfo"
    assert memory.total_bytes is not None and memory.used_bytes is not None
    assert memory.available_bytes is not None
    assert 0 < memory.used_bytes < memory.total_bytes
    assert 0 < memory.available_bytes <= memory.total_bytes
    assert isinstance(memory.cgroup, Mapping)
    assert memory.cgroup["limit"] is None  # the cgroup said "max"
    assert (memory.cgroup["usage"] or 0) > 0
    assert disk.mount == "/" and disk.source == "df" and disk.dir_source == "cwd"
    assert disk.path.startswith("/tmp/beamside-node-")
    assert disk.capacity is not None and 0 <= disk.capacity <= 100
    assert disk.total_bytes is not None and disk.available_bytes is not None
    assert 0 < disk.available_bytes < disk.total_bytes


@pytest.mark.parametrize("name", RUNTIMES)
def test_sysmon_time_and_versions(name: str) -> None:
    snap = golden_snapshot(name)
    assert isinstance(snap.sysmon, Sysmon)
    assert snap.sysmon.state == "owner" and snap.sysmon.sidecars == 1.0
    for counter in ("long_gc", "long_schedule", "large_heap", "busy_port", "busy_dist_port"):
        assert getattr(snap.sysmon, counter) == 0.0
    node_time = snap.time
    assert isinstance(node_time, NodeTime)
    assert node_time.utc_offset_s == 0.0
    assert node_time.system_time_us is not None and node_time.erlang_system_time_us is not None
    assert abs(node_time.system_time_us - node_time.erlang_system_time_us) < 1e6
    versions = snap.versions
    assert isinstance(versions, Versions)
    assert versions.otp_release.isdigit() and int(versions.otp_release) >= 25
    if name.startswith("otp"):
        assert versions.otp_release == name.removeprefix("otp")
    assert VERSION.fullmatch(versions.erts_version)
    assert re.fullmatch(r"\w+(-[\w.]+){2,}", versions.system_architecture)  # a target triple
    assert versions.emulator_flavor in ("jit", "emu")
    assert versions.applications is not None
    assert {"kernel", "stdlib"} <= set(versions.applications)
    assert all(VERSION.fullmatch(v) for v in versions.applications.values())
    expected = {"otp25": {"mnesia", "os_mon", "sasl"}, "otp28": set(), "elixir": {"elixir"}}
    assert expected[name] <= set(versions.applications)


@pytest.mark.parametrize("name", RUNTIMES)
def test_env_modules_peers_and_startup_files(name: str) -> None:
    snap = golden_snapshot(name)
    assert snap.env is not None
    ticktime = snap.env[("kernel", "net_ticktime")]
    assert isinstance(ticktime, EnvValue)
    assert ticktime.text == "60" and type(ticktime.hash) is int
    assert ("stdlib", "nope") in snap.env and snap.env[("stdlib", "nope")] is None
    modules = snap.modules
    assert modules is not None
    assert len(modules) == len(reply(name)["modules"]) > 100  # type: ignore[arg-type]
    assert {"gen_server", "lists", "erlang", "kernel"} <= set(modules)
    assert all(HEX32.fullmatch(md5) for md5 in modules.values())
    assert snap.dist_nodes == ()
    assert isinstance(snap.startup_files, StartupFiles)
    assert snap.startup_files.errors == ()
    assert snap.startup_files.checked is not None and snap.startup_files.checked > 0


@pytest.mark.parametrize("name", RUNTIMES)
def test_code_and_config_events(name: str) -> None:
    snap = golden_snapshot(name)
    code, config = snap.code_events, snap.config_events
    assert isinstance(code, EventSection) and isinstance(config, EventSection)
    assert code.baseline is False and code.truncated == 0
    raw_events = reply(name)["code_events"]["events"]  # type: ignore[index]
    assert len(code.events) == len(raw_events) > 0
    for change in code.events:
        assert isinstance(change, CodeChange)
        assert change.type == "module_loaded"
        assert change.md5 is not None and HEX32.fullmatch(change.md5)
    # the recording evaluated an expression (erl_eval loads eval_bits)
    assert "eval_bits" in {c.module for c in code.events}
    if name == "elixir":
        assert any(c.module.startswith("Elixir.") for c in code.events)
    assert config.baseline is False and config.truncated == 0
    assert config.events == (ConfigChange("kernel", "beamside_golden", None, "42"),)


def test_otp25_os_mon_and_plugins() -> None:
    snap = golden_snapshot("otp25")
    assert snap.plugin_names == ("mnesia", "os_mon")
    assert set(snap.plugins) == {"mnesia"}  # os_mon is typed, not a tree
    mnesia = snap.plugins["mnesia"]
    assert mnesia["is_running"] == "yes" and mnesia["db_nodes"] == 1
    assert "schema" in mnesia["tables"]
    os_mon = snap.os_mon
    assert isinstance(os_mon, OsMon)
    cpu, memory, disk = os_mon.cpu, os_mon.memory, os_mon.disk
    assert isinstance(cpu, OsMonCpu)
    assert isinstance(memory, OsMonMemory)
    assert isinstance(disk, OsMonDisk)
    for load in (cpu.load1, cpu.load5, cpu.load15):
        assert load is not None and load >= 0
    assert cpu.nprocs is not None and cpu.nprocs > 0
    assert cpu.util is not None and 0 <= cpu.util["busy"] <= 100
    assert sum(v for k, v in cpu.util.items() if k != "busy") == pytest.approx(100.0)
    assert memory.system is not None
    total, available = memory.system["total_memory"], memory.system["available_memory"]
    assert 0 < available <= total
    assert memory.allocated is not None and memory.allocated > 0
    assert memory.system_high_watermark == 80.0
    assert disk.almost_full_threshold == 80.0
    assert disk.disks is not None and all(isinstance(d, Disk) for d in disk.disks)
    assert "/" in {d.mount for d in disk.disks}
    assert all(d.capacity is not None and 0 <= d.capacity <= 100 for d in disk.disks)


@pytest.mark.parametrize("name", ["otp28", "elixir"])
def test_no_plugins_without_os_mon_or_mnesia(name: str) -> None:
    snap = golden_snapshot(name)
    assert snap.os_mon is None and snap.plugins == {} and snap.plugin_names == ()


# --------------------------------------------------------------------------- failed and misshapen


def unaffected(snap: NodeSnapshot, plain: NodeSnapshot, changed: set[str]) -> None:
    """Every field of ``snap`` no changed key decodes into equals ``plain``'s."""
    touched = set().union(*(fields_of(k) for k in changed)) | {"node", "errors", "trees"}
    for field in typed_fields(NodeSnapshot) or ():
        if field not in touched:
            assert getattr(snap, field) == getattr(plain, field), field
    assert dict(snap.trees) == {k: v for k, v in plain.trees.items() if k not in changed}


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_failed_section_is_an_error_and_the_others_are_unaffected(name: str) -> None:
    raw = reply(name)
    term = variant(raw, "errors")
    failed = {k for k, v in term.items() if is_error(v)}
    sections = failed & (set(TYPED) | set(EXPORTER_SECTIONS) | {"plugins"})
    assert sections and failed & set(SCALARS)
    snap = golden_snapshot(name, "errors")
    assert set(snap.errors) == sections
    for key in sections:
        error = snap.errors[key]
        assert error.section == key and error.malformed is False
        assert "badarg" in error.reason and str(error) == f"{key} failed: {error.reason}"
    for key in failed & set(TYPED):
        assert getattr(snap, key) is None, key
    for key in failed & set(SCALARS):
        assert getattr(snap, SCALARS[key]) is None, key
    unaffected(snap, golden_snapshot(name), failed)


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_misshapen_section_is_a_malformed_error_never_an_exception(name: str) -> None:
    raw = reply(name)
    term = variant(raw, "shapes")
    shaped = {k for k in term if term[k] is not raw[k]}
    maps = shaped & MAP_SECTIONS
    assert maps
    snap = golden_snapshot(name, "shapes")
    expected = set(maps)
    if "dist_nodes" in shaped and type(term["dist_nodes"]) is not list:
        expected.add("dist_nodes")
    assert set(snap.errors) == expected
    for key in expected:
        error = snap.errors[key]
        assert error.section == key and error.malformed is True
        assert "is not a" in error.reason and str(error).startswith(f"{key} malformed: ")
        for field in fields_of(key) - {"plugins", "plugin_names"}:
            assert getattr(snap, field) is None, field
        assert key not in snap.trees
    for key in shaped & set(SCALARS):
        assert getattr(snap, SCALARS[key]) == (12345.0 if term[key] == 12345 else None)
    # an event section that is not a map is "nothing to report" (as not_attached)
    for key in shaped & {"code_events", "config_events"} - expected:
        section = getattr(snap, key)
        assert isinstance(section, EventSection) and section.baseline and section.events == ()
    if "dist_nodes" in shaped - expected:
        assert snap.dist_nodes is not None and all(isinstance(p, str) for p in snap.dist_nodes)
    unaffected(snap, golden_snapshot(name), shaped)


def test_plugin_and_os_mon_part_errors_stay_in_their_part() -> None:
    raw = reply("otp25")
    bad = (Atom("error"), (Atom("noproc"), b"gone"))
    term = with_value(raw, ("plugins", "mnesia"), bad)
    term = with_value(term, ("plugins", "os_mon", "cpu"), bad)
    term = with_value(term, ("plugins", "os_mon", "memory"), Atom("not_running"))
    term = with_value(term, ("plugins", "os_mon", "disk"), 7)
    snap = decode(term)
    assert set(snap.errors) == {"plugins.mnesia"}
    assert not snap.errors["plugins.mnesia"].malformed
    assert "noproc" in snap.errors["plugins.mnesia"].reason
    assert snap.plugin_names == ("mnesia", "os_mon") and snap.plugins == {}
    assert snap.os_mon is not None
    assert isinstance(snap.os_mon.cpu, SectionError) and not snap.os_mon.cpu.malformed
    assert snap.os_mon.memory is None  # not running: absent, not an error
    assert isinstance(snap.os_mon.disk, SectionError) and snap.os_mon.disk.malformed
    assert b"section_error" in exposition([snap])


# --------------------------------------------------------------------------- term rules

#: (path in the reply, read the typed value back)
NUMBER_FIELDS: Final[tuple[tuple[tuple[str, ...], Callable[[NodeSnapshot], object]], ...]] = (
    (("limits", "process_count"), lambda s: s.limits and s.limits.process_count),
    (("system", "schedulers"), lambda s: s.system and s.system.schedulers),
    (("processes", "mq_max"), lambda s: s.processes and s.processes.mq_max),
    (("sysmon", "long_gc"), lambda s: s.sysmon and s.sysmon.long_gc),
    (("time", "utc_offset_s"), lambda s: s.time and s.time.utc_offset_s),
    (("memory", "total"), lambda s: s.memory and s.memory.by_kind.get("total", "absent")),
    (("agent_version",), lambda s: s.agent_version),
    (("uptime_ms",), lambda s: s.uptime_ms),
)
NUMBER_IDS: Final = [".".join(p) for p, _ in NUMBER_FIELDS]


@pytest.mark.parametrize(("path", "read"), NUMBER_FIELDS, ids=NUMBER_IDS)
@pytest.mark.parametrize("value", [True, False], ids=["true", "false"])
def test_a_boolean_is_not_a_number(
    path: tuple[str, ...], read: Callable[[NodeSnapshot], object], value: bool
) -> None:
    plain = read(golden_snapshot("otp25"))
    assert type(plain) is float  # the test reads a number that is there
    snap = decode(with_value(reply("otp25"), path, value))
    assert snap.errors == {}
    assert read(snap) in (None, "absent")


@pytest.mark.parametrize(("path", "read"), NUMBER_FIELDS, ids=NUMBER_IDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_float_that_is_not_finite_is_not_a_number(
    path: tuple[str, ...], read: Callable[[NodeSnapshot], object], value: float
) -> None:
    snap = decode(with_value(reply("otp25"), path, value))
    assert snap.errors == {}
    assert read(snap) in (None, "absent")


@pytest.mark.parametrize(("path", "read"), NUMBER_FIELDS, ids=NUMBER_IDS)
def test_integers_and_finite_floats_are_numbers(
    path: tuple[str, ...], read: Callable[[NodeSnapshot], object]
) -> None:
    for value, expected in ((3, 3.0), (2.5, 2.5), (-0.0, 0.0), (2**64, float(2**64))):
        read_back = read(decode(with_value(reply("otp25"), path, value)))
        assert type(read_back) is float and read_back == expected, value
    # a bignum beyond a float's range is not a number either
    for big in (10**400, 10**5000):
        assert read(decode(with_value(reply("otp25"), path, big))) in (None, "absent")


def test_a_boolean_count_renders_no_sample() -> None:
    node = b'node="n@h"'
    plain = exposition([decode(reply("otp25"))])
    assert any(line.startswith(b"erlang_vm_processes{") for line in plain.splitlines())
    snap = decode(with_value(reply("otp25"), ("limits", "process_count"), True))
    rendered = exposition([snap])
    lines = [line for line in rendered.splitlines() if node in line]
    assert not any(line.startswith(b"erlang_vm_processes{") for line in lines)
    assert any(line.startswith(b"erlang_vm_process_limit{") for line in lines)


FLAG_FIELDS: Final[tuple[tuple[tuple[str, ...], Callable[[NodeSnapshot], object]], ...]] = (
    (("system", "smp_support"), lambda s: s.system and s.system.smp_support),
    (("system", "kernel_poll"), lambda s: s.system and s.system.kernel_poll),
    (("processes", "truncated"), lambda s: s.processes and s.processes.truncated),
)


@pytest.mark.parametrize(("path", "read"), FLAG_FIELDS, ids=[".".join(p) for p, _ in FLAG_FIELDS])
def test_a_flag_is_only_a_boolean(
    path: tuple[str, ...], read: Callable[[NodeSnapshot], object]
) -> None:
    for value in (True, False):
        assert read(decode(with_value(reply("otp25"), path, value))) is value
    for other in (1, 0, 1.0, Atom("yes"), Atom("enabled"), b"true", [116, 114, 117, 101]):
        snap = decode(with_value(reply("otp25"), path, other))
        assert snap.errors == {} and read(snap) is None, other


MEGABYTE: Final = 1 << 20

TextCase = tuple[tuple[str | int, ...], object, Callable[[NodeSnapshot], Any]]

#: name -> (path in the reply, a value of a megabyte or more, read the text back)
TEXT_FIELDS: Final[dict[str, TextCase]] = {
    "otp_release": (("versions", "otp_release"), b"7" * MEGABYTE, lambda s: s.versions.otp_release),
    "bad_utf8": (
        ("versions", "erts_version"),
        b"\xff\xfe" * MEGABYTE,
        lambda s: s.versions.erts_version,
    ),
    "charlist": (
        ("versions", "system_architecture"),
        [0x263A] * MEGABYTE,
        lambda s: s.versions.system_architecture,
    ),
    "app_version": (
        ("versions", "applications", "kernel"),
        b"8" * MEGABYTE,
        lambda s: s.versions.applications["kernel"],
    ),
    "process_name": (
        ("processes", "top_memory", 0, "name"),
        b"p" * MEGABYTE,
        lambda s: s.processes.top_memory[0].name,
    ),
    "time_warp_mode": (
        ("system", "time_warp_mode"),
        b"w" * MEGABYTE,
        lambda s: s.system.time_warp_mode,
    ),
    "module_md5": (("modules", "lists"), b"f" * MEGABYTE, lambda s: s.modules["lists"]),
    "code_event_md5": (
        ("code_events", "events", 0, "md5"),
        b"a" * MEGABYTE,
        lambda s: s.code_events.events[0].md5,
    ),
    "config_new": (
        ("config_events", "events", 0, "new"),
        b"n" * MEGABYTE,
        lambda s: s.config_events.events[0].new,
    ),
    "section_reason": (
        ("limits",),
        (Atom("error"), b"r" * MEGABYTE),
        lambda s: s.errors["limits"].reason,
    ),
    "sysmon_state": (("sysmon", "state"), b"s" * MEGABYTE, lambda s: s.sysmon.state),
    "disk_mount": (
        ("plugins", "os_mon", "disk", "disks", 0, "mount"),
        b"/" * MEGABYTE,
        lambda s: s.os_mon.disk.disks[0].mount,
    ),
}


@pytest.mark.parametrize(("path", "value", "read"), TEXT_FIELDS.values(), ids=TEXT_FIELDS.keys())
def test_text_is_bounded(
    path: tuple[str | int, ...], value: object, read: Callable[[NodeSnapshot], Any]
) -> None:
    snap = decode(with_value(reply("otp25"), path, value))
    got = read(snap)
    assert isinstance(got, str) and 0 < len(got) <= MAX_TEXT


# --------------------------------------------------------------------------- regressions


def test_bignums_and_odd_keys_never_raise() -> None:
    """Each of these raised before the fuzz below found it."""
    big = 10**5000  # more digits than Python prints
    raw = reply("otp25")
    # a section error whose reason is a bignum
    snap = decode(with_value(raw, ("limits",), (Atom("error"), big)))
    assert snap.limits is None and 0 < len(snap.errors["limits"].reason) <= 200
    # a bignum key in a numeric map, a map of plugins with atom and other keys
    memory = {**raw["memory"], big: 1}  # type: ignore[dict-item]
    plugins = {**raw["plugins"], 7: {}, (1, 2): {}, b"bin": {}}  # type: ignore[dict-item]
    snap = decode({**raw, "memory": memory, "plugins": plugins})
    assert snap.memory is not None and snap.memory.get("total") is not None
    assert {"mnesia", "os_mon", "bin"} <= set(snap.plugin_names)
    # a code event whose type is a map (unhashable)
    snap = decode(with_value(raw, ("code_events", "events", 0, "type"), {Atom("a"): 1}))
    assert snap.code_events is None and snap.errors["code_events"].malformed
    # a bignum count of changes left out, a bignum in a tree the exporter renders
    term = with_value(raw, ("config_events", "truncated"), big)
    term = with_value(term, ("allocated_areas", "atom_space"), big)
    snap = decode(term)
    assert snap.config_events is not None and snap.config_events.truncated > 0
    sent: list[LogEntry] = []
    Notifier("c", lambda n: "f", sent.append).on_snapshot(snap)
    assert any("config_events_truncated" in e.line for e in sent)
    areas = [
        line
        for line in exposition([snap]).splitlines()
        if line.startswith(b"erlang_vm_allocated_area_")
    ]
    assert len(areas) > 10 and not any(b'area="atom_space"' in line for line in areas)


# --------------------------------------------------------------------------- fuzz

BIG: Final = 10**5000
DEPTH: Final = 399  # the decoder accepts nesting up to 400


def _deep(wrap: Callable[[object], object]) -> object:
    term: object = Atom("x")
    for _ in range(DEPTH):
        term = wrap(term)
    return term


DEEP: Final = (
    _deep(lambda t: [t]),
    _deep(lambda t: {Atom("a"): t}),
    _deep(lambda t: (Atom("error"), t)),
    _deep(lambda t: ImproperList((1,), t)),
)
NODE: Final = Atom("n@h")
ODD_KEYS: Final = (1, BIG, 2.5, math.nan, True, b"bin", b"\xff", (Atom("kernel"), Atom("x")))


def _keys() -> list[str]:
    """Every atom key of the golden replies: random maps look like sections."""
    found: set[str] = set()

    def walk(term: object) -> None:
        if type(term) is dict:
            found.update(str(k) for k in term if isinstance(k, str))
            for v in term.values():
                walk(v)
        elif isinstance(term, list | tuple):
            for v in term:
                walk(v)

    for name in RUNTIMES:
        walk(reply(name))
    return sorted(found)


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = _keys()

    def key(self) -> object:
        rng = self.rng
        return Atom(rng.choice(self.keys)) if rng.random() < 0.6 else rng.choice(ODD_KEYS)

    def term(self, depth: int = 0) -> object:
        rng = self.rng
        kind = rng.randrange(17 if depth < 3 else 11)
        if kind == 0:
            return rng.choice((0, 1, -1, 42, 2**31, 2**63, 2**64 + 1, -(2**70), 10**400, BIG))
        if kind == 1:
            return rng.choice(
                (0.0, -0.0, 0.5, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf)
            )
        if kind == 2:
            return rng.random() < 0.5
        if kind == 3:
            specials = ("undefined", "error", "not_running", "not_attached", "max", "", "été")
            return Atom(rng.choice((*self.keys, *specials)))
        if kind == 4:
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            return rng.choice((b"", b"abc", b"\xff\xfe\x80", noise, b"x" * (MAX_TEXT + 100)))
        if kind == 5:
            return rng.choice(
                (
                    Pid(NODE, rng.randrange(1000), 0, 1),
                    Port(NODE, 3, 1),
                    Reference(NODE, 1, (1, 2, 3)),
                    Export(Atom("m"), Atom("f"), 1),
                    BitBinary(b"\x01", 3),
                )
            )
        if kind == 6:  # charlists, some with code points that are not
            return [rng.choice((104, 105, 0x10FFFF, 0x110000, -1)) for _ in range(rng.randrange(5))]
        if kind == 7:
            return (Atom("error"), self.term(depth + 1))
        if kind == 8:
            return ImproperList(
                tuple(self.term(depth + 1) for _ in range(rng.randrange(1, 3))),
                self.term(depth + 1),
            )
        if kind == 9:
            return Map(((self.term(depth + 1), self.term(depth + 1)),))
        if kind == 10:
            return rng.choice((Atom("ok"), [], (), {}, *DEEP))
        if kind in (11, 12):
            return [self.term(depth + 1) for _ in range(rng.randrange(4))]
        if kind == 13:
            return tuple(self.term(depth + 1) for _ in range(rng.randrange(4)))
        return {self.key(): self.term(depth + 1) for _ in range(rng.randrange(5))}

    def mutate(self, term: object, depth: int = 0) -> tuple[object, str]:
        """``term`` with one random nested value replaced, added or removed
        (containers on the way copied); and where, for a failure message."""
        rng = self.rng
        if isinstance(term, dict) and term:
            keys = list(term)
        elif isinstance(term, list | tuple) and term:
            keys = list(range(len(term)))
        else:
            return self.term(), ""
        if depth > 0 and rng.random() < 0.25:
            return self.term(), ""
        k = rng.choice(keys)
        if isinstance(term, dict):
            out = dict(term)
            roll = rng.random()
            if roll < 0.08:
                del out[k]
                return out, f"-{shown(k, 40)}"
            if roll < 0.14:
                new = self.key()
                out[new] = self.term()
                return out, f"+{shown(new, 40)}"
            out[k], where = self.mutate(term[k], depth + 1)
            return out, f"{shown(k, 40)}/{where}"
        items = list(term)  # type: ignore[call-overload]
        items[k], where = self.mutate(items[k], depth + 1)
        return (items if isinstance(term, list) else tuple(items)), f"{k}/{where}"


def typed_violations(value: object, path: str = "snap") -> Iterator[str]:
    """Where a typed value breaks the term rules: numbers finite floats,
    flags booleans, text bounded (the normalized trees excepted)."""
    if isinstance(value, SectionError):
        if type(value.reason) is not str:
            yield f"{path}.reason"
        return
    fields = None if isinstance(value, type) else typed_fields(value)
    if fields is not None:
        for field, annotation in fields.items():
            if isinstance(value, NodeSnapshot) and field in ("trees", "plugins", "errors"):
                continue
            v, p = getattr(value, field), f"{path}.{field}"
            if annotation == "float | None" and v is not None and type(v) is not float:
                yield f"{p}: {shown(v, 40)} is not a float"
            if annotation == "bool | None" and v is not None and type(v) is not bool:
                yield f"{p}: {shown(v, 40)} is not a boolean"
            if annotation == "str" and not isinstance(v, str):
                yield f"{p}: {shown(v, 40)} is not text"
            yield from typed_violations(v, p)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str | tuple) or (isinstance(k, str) and len(k) > MAX_TEXT):
                yield f"{path}: key {shown(k, 40)}"
            yield from typed_violations(v, f"{path}[{shown(k, 20)}]")
    elif isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from typed_violations(v, f"{path}[{i}]")
    elif type(value) is float and not math.isfinite(value):
        yield f"{path}: {value} is not finite"
    elif isinstance(value, str) and len(value) > MAX_TEXT:
        yield f"{path}: text of {len(value)} characters"
    elif not (value is None or isinstance(value, int | float | str)):
        yield f"{path}: a {type(value).__name__}"


def malformed_samples(families: list[Metric]) -> list[str]:
    """Samples the exposition could not print: values not floats, labels not text."""
    return [
        f"{s.name}{s.labels}={s.value!r}"
        for family in families
        for s in family.samples
        if type(s.value) is not float or not all(isinstance(v, str) for v in s.labels.values())
    ]


MUTATIONS: Final = 150


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_replies_never_raise(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    """Random terms anywhere in the golden replies: decoding never raises and
    gives a well-typed snapshot; rendering, the alarm checks (node and family)
    and the notifier never raise, and no renderer fails on the snapshot."""
    caplog.set_level(logging.WARNING, logger="sidecar.exporter")
    fuzzer = Fuzzer(seed)
    replies = {name: reply(name) for name in RUNTIMES}
    others = {name: decode(replies[name], node=f"other-{name}@h") for name in RUNTIMES}
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, global_params=[GlobalParam("kernel", "net_ticktime")])
    sent: list[LogEntry] = []
    notifier = Notifier("c", lambda node: "f", sent.append)
    silent = Notifier("c", lambda node: "f", None)
    engine.subscribe(notifier.alarm_event)
    for i in range(MUTATIONS):
        name = fuzzer.rng.choice(RUNTIMES)
        term: object = replies[name]
        where = []
        for _ in range(fuzzer.rng.randrange(1, 4)):
            term, at = fuzzer.mutate(term)
            where.append(at)
        assert isinstance(term, dict)
        context = f"seed {seed}, mutation {i} of {name}: {where}"
        snap = decode(term, node=f"{name}@h", taken_at=1.7e9 + 15 * i)
        assert isinstance(snap, NodeSnapshot), context
        assert list(typed_violations(snap)) == [], context
        families = vm_metric_families([snap])
        assert malformed_samples(families) == [], context
        if i % 5 == 0:
            exposition([snap])
        checker.on_snapshot(snap)
        notifier.on_snapshot(snap)
        silent.on_snapshot(snap)
        other = others[fuzzer.rng.choice(RUNTIMES)]
        checker.on_family(
            {snap.node: snap, other.node: other},
            [NodeStatus(snap.node, "f", NodeState.UP), NodeStatus(other.node, "f", NodeState.UP)],
        )
        failed = [
            f"{r.getMessage()}: {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in caplog.records
            if r.name.startswith("sidecar.exporter")
        ]
        assert failed == [], context
    assert sent  # the notifier published (events and alarms), it did not just return


@pytest.mark.parametrize("name", RUNTIMES)
def test_packed_sections_decode_to_the_same_maps(name: str) -> None:
    """Agent version 12 packs the exporter sections: the snapshot keeps the
    bytes, and :meth:`exporter_trees` gives back the maps of the unpacked
    reply, no error."""
    plain = golden_snapshot(name)
    snap = golden_snapshot(name, pack=True)
    assert snap.trees == {} and isinstance(snap.packed, bytes)
    assert snap.exporter_trees() == (plain.trees, {})
    assert plain.exporter_trees() == (plain.trees, {})
    assert dataclasses.replace(plain, trees={}) == dataclasses.replace(
        snap, packed=None
    )  # the rest decodes alike
    # a packed section that is no map is that section's error, the others stay
    inner = {k: v for k, v in plain.trees.items() if k != "ets"}
    odd = dataclasses.replace(
        snap, packed=encode({Atom(k): v for k, v in {**inner, "ets": 7}.items()})
    )
    trees, errors = odd.exporter_trees()
    assert trees == inner and set(errors) == {"ets"} and errors["ets"].malformed
