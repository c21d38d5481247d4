"""The residue check itself, on each real application: every kind of trace a
sidecar could leave (done here by hand through the probe) is reported, and
nothing is once it is undone. So a clean detach test means a clean node."""

from __future__ import annotations

from tests.realapps import residue
from tests.realapps.conftest import RunningApp

# A gen_event handler module compiled and loaded from a binary on the node.
LOAD_HANDLER = r"""
Src = "-module(realapps_fake_handler).\n"
      "-export([init/1, handle_event/2, handle_call/2]).\n"
      "init(_) -> {ok, []}.\n"
      "handle_event(_, S) -> {ok, S}.\n"
      "handle_call(_, S) -> {ok, ok, S}.\n",
{ok, Toks, _} = erl_scan:string(Src),
Split = fun Split([], _, Out) -> lists:reverse(Out);
            Split([{dot, _} = D | T], Acc, Out) -> Split(T, [], [lists:reverse([D | Acc]) | Out]);
            Split([X | T], Acc, Out) -> Split(T, [X | Acc], Out)
        end,
Forms = [element(2, erl_parse:parse_form(F)) || F <- Split(Toks, [], [])],
{ok, M, Bin} = compile:forms(Forms, []),
{module, M} = code:load_binary(M, "realapps_fake_handler.beam", Bin),
ok
"""

# A registered process owning an ETS table, tracing another process, with
# scheduler_wall_time on; a logger handler; an erl_signal_server handler; the
# system monitor taken; microstate accounting on; a persistent term.
LEAVE = r"""
Parent = self(),
P = spawn(fun() ->
  register(realapps_residue_probe, self()),
  ets:new(realapps_residue_tab, [named_table, public]),
  T = spawn(fun() -> receive stop -> ok end end),
  erlang:trace(T, true, [garbage_collection]),
  erlang:system_flag(scheduler_wall_time, true),
  Parent ! ready,
  receive {old_monitor, Old} -> ok end,
  receive {stop, From} -> T ! stop, From ! {old_monitor, Old} end
end),
receive ready -> ok after 5000 -> exit(not_ready) end,
ok = logger:add_handler(realapps_residue_h, logger_std_h, #{level => none}),
ok = gen_event:add_handler(erl_signal_server, realapps_fake_handler, []),
P ! {old_monitor, erlang:system_monitor()},
erlang:system_monitor(P, [busy_port]),
erlang:system_flag(microstate_accounting, true),
persistent_term:put({beamside_residue_check, key}, 1),
ok
"""

# Each step undone even when an earlier one failed; the system monitor given back.
UNDO = r"""
catch erlang:system_flag(microstate_accounting, false),
catch persistent_term:erase({beamside_residue_check, key}),
catch gen_event:delete_handler(erl_signal_server, realapps_fake_handler, []),
catch logger:remove_handler(realapps_residue_h),
case whereis(realapps_residue_probe) of
  undefined -> ok;
  P ->
    Ref = erlang:monitor(process, P),
    P ! {stop, self()},
    receive
      {old_monitor, undefined} -> erlang:system_monitor(undefined);
      {old_monitor, {Pid, Opts}} -> erlang:system_monitor(Pid, Opts)
    after 5000 -> ok
    end,
    receive {'DOWN', Ref, process, P, _} -> ok after 5000 -> ok end
end,
catch code:purge(realapps_fake_handler),
catch code:delete(realapps_fake_handler),
catch code:purge(realapps_fake_handler),
ok
"""


EXPECTED = (
    "module realapps_fake_handler loaded",
    "registered added: realapps_residue_probe",
    "ets table realapps_residue_tab",
    "logger_handler added: realapps_residue_h",
    "gen_event added: {erl_signal_server,realapps_fake_handler}",
    "system_monitor:",
    "scheduler_wall_time: off -> on",
    "msacc: off -> on",
    "trace flags on <",
    "persistent_term {beamside_residue_check,key}",
)


def test_residue_check_sees_each_trace(app: RunningApp) -> None:
    probe = app.probe
    before = residue.take(probe)
    try:
        probe.eval(LOAD_HANDLER)
        probe.eval(LEAVE)
        found = residue.residue(before, residue.take(probe), probe.node.name)
        text = "\n".join(found)
        missed = [e for e in EXPECTED if e not in text]
        assert not missed, f"the residue check missed {missed}; it found:\n{text}"
    finally:
        probe.eval(UNDO)
    found = residue.residue(before, residue.take(probe), probe.node.name)
    assert not found, "\n".join(found)
