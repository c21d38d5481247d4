"""What a node looks like, seen through a plain probe (never through beamside),
and what changed between two looks: the residue check of the detach tests.

The snapshot runs on the node in ``erl_eval`` (sent by :class:`Probe`) and
reports one line per item, ``kind<TAB>key<TAB>info``, keys and infos printed
with ``~0tp``. Kinds:

``module``           every loaded module; info: its file and whether that file exists
``process``          every process; info: name, initial call, current function, proc_lib's
                     ``$initial_call`` and ``$ancestors``
``pflags``           every process's trap_exit, priority and message_queue_data
``registered``       registered names
``ets``              ETS tables; info: name and owner
``logger_handler``   logger handler ids; info: module
``logger_filter``    primary and handler filter ids
``logger_level``     module log levels
``gen_event``        handlers of alarm_handler, erl_signal_server (and lager_event,
                     error_logger when they are event managers)
``vm``               erlang:system_monitor(), erlang:system_profile(),
                     scheduler_wall_time and microstate accounting on/off (counters moving), the
                     trace flags of new processes and ports
``trace``            processes or ports with trace flags
``pterm``            persistent_term keys, info ``set`` or ``undefined`` (beamside's set
                     keys are residue; applications add theirs lazily, e.g. Elixir's
                     Logger per module; OTP's logger leaves a removed handler's key
                     set to ``undefined``)
``node``             connected hidden nodes
``app``              running applications
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tests.realapps.apps import Probe

SNAPSHOT = r"""
Fmt = fun(T) -> io_lib:format("~0tp", [T]) end,
L = fun(Kind, Key, Info) -> [Kind, 9, Fmt(Key), 9, Fmt(Info), 10] end,
Mods = [L("module", M, case F of
                          _ when is_list(F) -> {F, filelib:is_regular(F)};
                          _ -> F
                        end) || {M, F} <- code:all_loaded()],
PInfo = fun(P) ->
  case erlang:process_info(P, [registered_name, initial_call, current_function, dictionary]) of
    undefined -> gone;
    [{registered_name, N}, {initial_call, IC}, {current_function, CF}, {dictionary, D}] ->
      {N, IC, CF, proplists:get_value('$initial_call', D),
       proplists:get_value('$ancestors', D)}
  end
end,
Procs = [L("process", P, PInfo(P)) || P <- erlang:processes()],
PFlags = [L("pflags", P, Fl) || P <- erlang:processes(),
                                Fl <- [erlang:process_info(P, [trap_exit, priority,
                                                               message_queue_data])],
                                Fl =/= undefined],
Regs = [L("registered", N, x) || N <- erlang:registered()],
Ets = [L("ets", T, {catch ets:info(T, name), catch ets:info(T, owner)}) || T <- ets:all()],
Handlers = try logger:get_handler_config() catch _:_ -> [] end,
LH = [L("logger_handler", maps:get(id, H), maps:get(module, H)) || H <- Handlers],
LF = [L("logger_filter", {primary, Id}, x)
      || {Id, _} <- maps:get(filters, logger:get_primary_config(), [])]
  ++ [L("logger_filter", {maps:get(id, H), Id}, x) || H <- Handlers,
                                                      {Id, _} <- maps:get(filters, H, [])],
LL = [L("logger_level", M, Lv) || {M, Lv} <- logger:get_module_level()],
Which = fun(Mgr) ->
  case whereis(Mgr) of
    undefined -> [];
    _ ->
      case catch gen:call(Mgr, self(), which_handlers, 5000) of
        {ok, Hs} when is_list(Hs) -> [L("gen_event", {Mgr, H}, x) || H <- Hs];
        Other -> [L("gen_event", {Mgr, unreadable}, Other)]
      end
  end
end,
GE = lists:append([Which(M) || M <- [alarm_handler, erl_signal_server, lager_event]])
  ++ case whereis(error_logger) of
       undefined -> [];
       ELP -> case erlang:process_info(ELP, initial_call) of
                {initial_call, {proc_lib, init_p, 5}} -> Which(error_logger);
                _ -> []
              end
     end,
OnOff = fun(undefined) -> off; (_) -> on end,
MsaccA = lists:sort(erlang:statistics(microstate_accounting)),
timer:sleep(100),
MsaccB = lists:sort(erlang:statistics(microstate_accounting)),
VM = [L("vm", system_monitor, erlang:system_monitor()),
      L("vm", system_profile, erlang:system_profile()),
      L("vm", scheduler_wall_time, OnOff(erlang:statistics(scheduler_wall_time))),
      L("vm", msacc, case MsaccA =:= MsaccB of true -> off; false -> on end),
      L("vm", trace_new_processes, erlang:trace_info(new_processes, flags)),
      L("vm", trace_new_ports, erlang:trace_info(new_ports, flags))],
Traced = [L("trace", X, Fl) || X <- erlang:processes() ++ erlang:ports(),
                               {flags, Fl} <- [erlang:trace_info(X, flags)], Fl =/= []],
PT = [L("pterm", K, case V of undefined -> undefined; _ -> set end)
      || {K, V} <- persistent_term:get()],
Nodes = [L("node", N, hidden) || N <- nodes(hidden)],
Apps = [L("app", A, V) || {A, _, V} <- application:which_applications()],
[Mods, Procs, PFlags, Regs, Ets, LH, LF, LL, GE, VM, Traced, PT, Nodes, Apps]
"""

KINDS = (
    "module",
    "process",
    "pflags",
    "registered",
    "ets",
    "logger_handler",
    "logger_filter",
    "logger_level",
    "gen_event",
    "vm",
    "trace",
    "pterm",
    "node",
    "app",
)


@dataclass
class Snapshot:
    items: dict[str, dict[str, str]]

    def keys(self, kind: str) -> set[str]:
        return set(self.items.get(kind, {}))

    def info(self, kind: str, key: str) -> str:
        return self.items.get(kind, {}).get(key, "")


def take(probe: Probe) -> Snapshot:
    text = probe.text(SNAPSHOT, timeout=60)
    items: dict[str, dict[str, str]] = defaultdict(dict)
    for line in text.splitlines():
        kind, key, info = line.split("\t", 2)
        items[kind][key] = info
    return Snapshot(dict(items))


def _beamside(text: str) -> bool:
    return "beamside" in text.lower()


def beamside_traces(snap: Snapshot) -> list[str]:
    """What of beamside is on the node, by name alone (modules, registered names)."""
    return [
        f"{kind} {key}"
        for kind in ("module", "registered")
        for key in sorted(snap.keys(kind))
        if _beamside(key)
    ]


def residue(before: Snapshot, after: Snapshot, probe_node: str) -> list[str]:
    """Everything beamside may have left behind: one readable line per finding
    (empty when the node is as it was)."""
    found: list[str] = []
    # Loaded modules: beamside's own, or anything loaded from a binary (no file).
    new_modules = after.keys("module") - before.keys("module")
    for m in sorted(new_modules):
        info = after.info("module", m)
        if _beamside(m) or info.endswith(",false}") or not info.startswith("{"):
            found.append(f"module {m} loaded ({info})")
    for m in sorted(after.keys("module") - new_modules):
        if _beamside(m):
            found.append(f"module {m} still loaded")
    # Processes: any new one that runs or ran beamside code.
    for p in sorted(after.keys("process") - before.keys("process")):
        info = after.info("process", p)
        if _beamside(info):
            found.append(f"process {p} {info}")
    # Process flags of the processes that were there before.
    for p in sorted(before.keys("pflags") & after.keys("pflags")):
        if before.info("pflags", p) != after.info("pflags", p):
            found.append(
                f"process flags of {p}: {before.info('pflags', p)} -> {after.info('pflags', p)}"
            )
    # Exact sets.
    for kind in ("registered", "logger_handler", "logger_filter", "logger_level", "gen_event"):
        for key in sorted(after.keys(kind) - before.keys(kind)):
            found.append(f"{kind} added: {key} {after.info(kind, key)}")
        for key in sorted(before.keys(kind) - after.keys(kind)):
            if not _beamside(key):  # beamside's own, left by an earlier run, going is fine
                found.append(f"{kind} removed: {key} {before.info(kind, key)}")
    # ETS tables: every new one (with its name and owner).
    for t in sorted(after.keys("ets") - before.keys("ets")):
        found.append(f"ets table {t} {after.info('ets', t)}")
    for key in sorted(before.keys("vm") | after.keys("vm")):
        if before.info("vm", key) != after.info("vm", key):
            found.append(f"{key}: {before.info('vm', key)} -> {after.info('vm', key)}")
    for key in sorted(after.keys("trace")):
        if after.info("trace", key) != before.info("trace", key):
            found.append(f"trace flags on {key}: {after.info('trace', key)}")
    for key in sorted(after.keys("pterm")):
        # OTP's logger keeps a removed handler's key, set to `undefined`.
        if _beamside(key) and after.info("pterm", key) != "undefined":
            found.append(f"persistent_term {key}")
    for n in sorted(after.keys("node") - before.keys("node")):
        if n.strip("'") != probe_node:
            found.append(f"hidden node still connected: {n}")
    for a in sorted(after.keys("app") ^ before.keys("app")):
        found.append(f"application {a} {'started' if a in after.keys('app') else 'stopped'}")
    return found
