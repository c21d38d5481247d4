"""One node's collect reply, decoded once into typed values.

:func:`decode_snapshot` is the one place a ``beamside_agent:collect/1`` reply
is read: the node manager calls it right after the reply arrives, and the
exporter, the alarm checks and the notifier read the :class:`NodeSnapshot`
it returns.  A section the node failed to compute or that has a shape we do
not understand is an entry of :attr:`NodeSnapshot.errors` (its value field
is None); the other sections of the same reply are unaffected.

The sections only the exporter reads (:data:`EXPORTER_SECTIONS`) are kept
as the node sent them: from agent version 12 packed in one binary
(:attr:`NodeSnapshot.packed`, a quarter of the memory of the decoded maps,
13 KB less a node for the recorded OTP 25 reply), decoded by
:meth:`NodeSnapshot.exporter_trees` when /metrics renders the snapshot;
earlier agents (and the recorded replies of the tests) sent them as maps
(:attr:`NodeSnapshot.trees`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sidecar.agents.terms import is_error, mapping, normalize, number, shown, text
from sidecar.erldist.errors import DecodeError
from sidecar.erldist.term import decode as decode_term

from .sections import (
    Alarms,
    Ejabberd,
    EnvValue,
    EventSection,
    Folsom,
    Lager,
    Limits,
    Malformed,
    Memory,
    NodeTime,
    OsMon,
    Poolboy,
    Processes,
    RabbitMQ,
    Ranch,
    SectionError,
    StartupFiles,
    Sysmon,
    System,
    Versions,
    Yaws,
    decode_alarms,
    decode_code_events,
    decode_config_events,
    decode_dist_nodes,
    decode_ejabberd,
    decode_env,
    decode_folsom,
    decode_lager,
    decode_limits,
    decode_memory,
    decode_modules,
    decode_os_mon,
    decode_poolboy,
    decode_processes,
    decode_rabbitmq,
    decode_ranch,
    decode_startup_files,
    decode_sysmon,
    decode_system,
    decode_time,
    decode_versions,
    decode_yaws,
)

__all__ = ["EXPORTER_SECTIONS", "NodeSnapshot", "decode_snapshot"]

#: sections only the exporter renders: kept as the maps the node sent, read with
#: the rules of :mod:`sidecar.agents.terms` when rendered (they are most of a reply,
#: and normalizing them at every tick added 40 % to the CPU of a node-tick)
EXPORTER_SECTIONS: Final = (
    "allocators",
    "allocated_areas",
    "run_queues",
    "statistics",
    "scheduler_utilization",
    "msacc",
    "ports",
    "ets",
    "kernel",
    "dist",
)

#: typed sections: reply key -> (snapshot field, decoder)
_TYPED: Final[Mapping[str, Callable[[object], Any]]] = {
    "system": decode_system,
    "limits": decode_limits,
    "memory": decode_memory,
    "processes": decode_processes,
    "alarms": decode_alarms,
    "sysmon": decode_sysmon,
    "time": decode_time,
    "versions": decode_versions,
    "startup_files": decode_startup_files,
    "env": decode_env,
    "modules": decode_modules,
    "dist_nodes": decode_dist_nodes,
    "code_events": decode_code_events,
    "config_events": decode_config_events,
}


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node's collect and where it came from.

    ``taken_at`` is when the collect was sent (unix seconds), ``duration``
    how long it took, round trip included (seconds); ``agent_duration_us``
    the agent's own time on the node.  A section is None when the reply did
    not have it (an opt-in section not asked for this tick) or when it is in
    :attr:`errors`.
    """

    node: str
    family: str
    cluster: str
    taken_at: float
    duration: float
    agent_version: float | None = None
    agent_duration_us: float | None = None
    uptime_ms: float | None = None
    system_time_us: float | None = None
    system: System | None = None
    limits: Limits | None = None
    memory: Memory | None = None
    processes: Processes | None = None
    alarms: Alarms | None = None
    sysmon: Sysmon | None = None
    time: NodeTime | None = None
    versions: Versions | None = None
    startup_files: StartupFiles | None = None
    #: ``{(app, key): value}`` of the env keys asked for (None: unset)
    env: Mapping[tuple[str, str], EnvValue | None] | None = None
    #: md5 of each loaded module (asked for every few ticks)
    modules: Mapping[str, str] | None = None
    #: nodes this node is connected to
    dist_nodes: tuple[str, ...] | None = None
    code_events: EventSection | None = None
    config_events: EventSection | None = None
    #: ``plugins.os_mon`` (cpu_sup, memsup, disksup)
    os_mon: OsMon | None = None
    #: ``plugins.poolboy`` (the registered pools)
    poolboy: Poolboy | None = None
    #: ``plugins.folsom`` (every folsom metric)
    folsom: Folsom | None = None
    #: ``plugins.ranch`` (ranch and cowboy listeners)
    ranch: Ranch | None = None
    #: ``plugins.rabbitmq`` (RabbitMQ's alarms, totals, cluster)
    rabbitmq: RabbitMQ | None = None
    #: ``plugins.ejabberd`` (sessions, users, s2s, queues)
    ejabberd: Ejabberd | None = None
    #: ``plugins.yaws`` (servers, connections, requests)
    yaws: Yaws | None = None
    #: ``plugins.lager`` (sync mode, event queue)
    lager: Lager | None = None
    #: other plugins (``mnesia``, application plugins): their maps as sent
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: plugin names in the order to render (sorted), errors included
    plugin_names: tuple[str, ...] = ()
    #: :data:`EXPORTER_SECTIONS`: their maps as sent (checked to be maps),
    #: agents before version 12
    trees: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: :data:`EXPORTER_SECTIONS` that are maps, as the node packed them
    #: (``term_to_binary``, agent version 12): see :meth:`exporter_trees`
    packed: bytes | None = None
    #: sections (``limits``, ``plugins.mnesia``) the node failed or sent misshapen
    errors: Mapping[str, SectionError] = field(default_factory=dict)

    def exporter_trees(self) -> tuple[Mapping[str, Mapping[str, Any]], Mapping[str, SectionError]]:
        """The :data:`EXPORTER_SECTIONS` of the snapshot as maps, with the
        sections of :attr:`packed` that are no maps (or ``packed`` if it does
        not decode into a map) as errors: decoded at every call (the
        exporter's render, once per snapshot), never kept."""
        if self.packed is None:
            return self.trees, {}
        try:
            term = decode_term(self.packed)
        except DecodeError as exc:
            return self.trees, {"packed": SectionError("packed", str(exc), malformed=True)}
        if type(term) is not dict:
            return self.trees, {"packed": SectionError("packed", "not a map", malformed=True)}
        trees = dict(self.trees)
        errors: dict[str, SectionError] = {}
        for key in EXPORTER_SECTIONS:
            tree = term.get(key)
            if type(tree) is dict:
                trees[key] = tree
            elif tree is not None:
                errors[key] = SectionError(key, f"{key} is not a map", malformed=True)
        return trees, errors


#: plugins decoded into their own snapshot field (os_mon has parts of its own)
_TYPED_PLUGINS: Final[Mapping[str, Callable[[object], Any]]] = {
    "poolboy": decode_poolboy,
    "folsom": decode_folsom,
    "ranch": decode_ranch,
    "rabbitmq": decode_rabbitmq,
    "ejabberd": decode_ejabberd,
    "yaws": decode_yaws,
    "lager": decode_lager,
}


def _error(term: object, section: str) -> SectionError:
    reason = term[1] if is_error(term) else term  # type: ignore[index]
    return SectionError(section, text(reason) or shown(normalize(reason), 200))


def decode_snapshot(
    reply: Mapping[str, object],
    *,
    node: str,
    family: str,
    cluster: str,
    taken_at: float,
    duration: float,
) -> NodeSnapshot:
    """The typed snapshot of a collect reply (the map ``collect/1`` answered
    ``{ok, Map}`` with).  Never raises for a bad section."""
    errors: dict[str, SectionError] = {}
    typed: dict[str, Any] = {}
    get = reply.get
    for key, decode in _TYPED.items():
        term = get(key)
        if term is None:
            continue
        if type(term) is tuple and is_error(term):
            errors[key] = _error(term, key)
            continue
        try:
            typed[key] = decode(term)
        except Malformed as exc:
            errors[key] = SectionError(key, str(exc), malformed=True)
    trees: dict[str, Mapping[str, Any]] = {}
    for key in EXPORTER_SECTIONS:
        term = get(key)
        if type(term) is dict:
            trees[key] = term
        elif term is None:
            continue
        elif is_error(term):
            errors[key] = _error(term, key)
        else:
            errors[key] = SectionError(key, f"{key} is not a map", malformed=True)
    packed = get("packed")
    if packed is not None and type(packed) is not bytes:
        errors["packed"] = SectionError("packed", "packed is not a binary", malformed=True)
        packed = None
    os_mon: OsMon | None = None
    typed_plugins: dict[str, Any] = {}
    plugins: dict[str, Mapping[str, Any]] = {}
    names: list[str] = []
    raw_plugins = reply.get("plugins")
    if raw_plugins is not None:
        found = mapping(raw_plugins)
        if is_error(raw_plugins):
            errors["plugins"] = _error(raw_plugins, "plugins")
        elif found is None:
            errors["plugins"] = SectionError("plugins", "plugins is not a map", malformed=True)
        else:
            # keys are atoms; any other key sorts by its text, never fails
            for name, term in sorted(found.items(), key=lambda item: text(item[0])):
                path = f"plugins.{text(name)}"
                names.append(text(name))
                if is_error(term):
                    errors[path] = _error(term, path)
                elif mapping(term) is None:
                    errors[path] = SectionError(path, f"{path} is not a map", malformed=True)
                elif name == "os_mon":
                    os_mon = decode_os_mon(term)
                elif (decode_plugin := _TYPED_PLUGINS.get(name)) is not None:
                    try:
                        typed_plugins[name] = decode_plugin(term)
                    except Malformed as exc:
                        errors[path] = SectionError(path, str(exc), malformed=True)
                else:
                    plugins[text(name)] = term  # type: ignore[assignment]
    return NodeSnapshot(
        node=node,
        family=family,
        cluster=cluster,
        taken_at=taken_at,
        duration=duration,
        agent_version=number(reply.get("agent_version")),
        agent_duration_us=number(reply.get("duration_us")),
        uptime_ms=number(reply.get("uptime_ms")),
        system_time_us=number(reply.get("system_time_us")),
        os_mon=os_mon,
        poolboy=typed_plugins.get("poolboy"),
        folsom=typed_plugins.get("folsom"),
        ranch=typed_plugins.get("ranch"),
        rabbitmq=typed_plugins.get("rabbitmq"),
        ejabberd=typed_plugins.get("ejabberd"),
        yaws=typed_plugins.get("yaws"),
        lager=typed_plugins.get("lager"),
        plugins=plugins,
        plugin_names=tuple(names),
        trees=trees,
        packed=packed,
        errors=errors,
        **typed,
    )
