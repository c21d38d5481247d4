"""Log forwarding (agent beamside_logger / beamside_events) against real nodes.

error_logger and logger calls, crash and supervisor reports, Elixir Logger,
level filtering and level changes on a running attach, handler removal when
the sidecar goes, and the lager backend in real lager 3.9.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from sidecar import agents
from sidecar.agents import EventOptions
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist
from sidecar.exporter.exposition import TEXT, ExpositionCache
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR, snapshot
from tests.agents.events_helpers import HANDLERS, Collected, attach_events, has_text, wait_value
from tests.support.nodes import ErlangNode


async def test_logger_and_error_logger_forwarded(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    box = await attach_events(local, node)
    got = Collected(box)
    assert "beamside" in node.eval(HANDLERS)
    node.eval('error_logger:error_msg("el-error ~p~n", [42]).')
    node.eval(
        'logger:error("lg-error ~s", ["x"], #{domain => [test], mfa => {m, f, 1}, '
        'file => "m.erl", line => 3, request_id => <<"r-1">>, user => {u, 1}}).'
    )
    node.eval("logger:warning(#{what => lg_report, n => 7}).")
    node.eval('logger:notice("lg-notice-below").')
    el = (await got.until(has_text("el-error 42")))[0]
    assert el.kind == "log" and el.type == "log" and el.level == "error"
    assert el.fields["report"] == "error_msg" and el.fields["source"] == "logger"
    assert el.node == node.name
    assert isinstance(el.fields["pid"], str) and el.fields["pid"].startswith("<0.")
    lg = (await got.until(has_text("lg-error x")))[0]
    assert lg.fields["domain"] == ["test"]
    assert (lg.fields["mfa"], lg.fields["file"], lg.fields["line"]) == ("m:f/1", "m.erl", 3)
    assert lg.fields["metadata"] == {"request_id": "r-1", "user": "{u,1}"}
    report = (await got.until(has_text("lg_report")))[0]
    assert report.level == "warning" and "7" in report.message
    # time: nanoseconds since the epoch, close to now
    assert abs(el.time_ns - time.time_ns()) < 60e9
    await got.drain(0.6)
    assert not [e for e in got.events if "lg-notice-below" in e.message]
    assert got.dropped() == {}


async def test_level_change_on_running_attach(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    box = await attach_events(local, node, EventOptions(log_level="error"))
    got = Collected(box)
    node.eval('logger:warning("warn-1").')
    node.eval('logger:error("err-1").')
    await got.until(has_text("err-1"))
    assert not [e for e in got.events if "warn-1" in e.message]
    assert node.eval("element(2, logger:get_handler_config(beamside)).")
    level = node.eval("maps:get(level, element(2, logger:get_handler_config(beamside))).")
    assert level == "error"
    # A second attach with another level updates the handler in place.
    await agents.attach(local, node.name, EventOptions(log_level="notice").to_attach_opts())
    assert (
        node.eval("maps:get(level, element(2, logger:get_handler_config(beamside))).") == "notice"
    )
    node.eval('logger:notice("notice-2").')
    await got.until(has_text("notice-2"))
    # log_level None: no more logs, the handler goes away.
    await agents.attach(local, node.name, EventOptions(log_level=None).to_attach_opts())
    assert "beamside" not in node.eval(HANDLERS)
    box.close()


CRASHER = """
-module(beamside_test_crasher).
-behaviour(gen_server).
-export([start_sup/0, start_link/0, init/1, handle_call/3, handle_cast/2]).
start_sup() -> supervisor:start_link({local, beamside_test_sup}, ?MODULE, sup).
start_link() -> gen_server:start_link({local, beamside_test_worker}, ?MODULE, worker, []).
init(sup) ->
    {ok, {#{strategy => one_for_one, intensity => 10, period => 1},
          [#{id => worker, start => {?MODULE, start_link, []}}]}};
init(worker) -> {ok, #{}}.
handle_call(crash, _From, _S) -> erlang:error({beamside_test_crash, 42}).
handle_cast(_, S) -> {noreply, S}.
"""


def compile_crasher(tmp_path: Path) -> bytes:
    src = tmp_path / "beamside_test_crasher.erl"
    src.write_text(CRASHER)
    subprocess.run(["erlc", "-o", str(tmp_path), str(src)], check=True)
    return (tmp_path / "beamside_test_crasher.beam").read_bytes()


async def test_crash_and_supervisor_reports(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    node = otp25_node
    box = await attach_events(local, node)
    got = Collected(box)
    beam = compile_crasher(tmp_path)
    mod = Atom("beamside_test_crasher")
    reply = await local.rpc(node.name, "code", "load_binary", [mod, Charlist("c.erl"), beam])
    assert reply == (Atom("module"), mod)
    node.eval("{ok, S} = beamside_test_crasher:start_sup(), unlink(S), ok.")
    node.eval("catch gen_server:call(beamside_test_worker, crash), ok.")
    terminate = (await got.until(lambda e: e.fields.get("report") == "gen_server_terminate"))[0]
    assert "beamside_test_crash" in terminate.message and terminate.level == "error"
    assert terminate.fields["registered_name"] == "beamside_test_worker"
    crash = (await got.until(lambda e: e.fields.get("report") == "crash_report"))[0]
    assert "beamside_test_crash" in crash.message and crash.fields.get("sasl") is True
    assert crash.fields["domain"] == ["otp", "sasl"]
    sup = (await got.until(lambda e: e.fields.get("report") == "supervisor_report"))[0]
    assert "beamside_test_sup" in sup.message and "child_terminated" in sup.message
    assert sup.fields["sasl"] is True
    # A plain proc_lib process crashing: a crash report of its own.
    node.eval("proc_lib:spawn(fun() -> erlang:error({beamside_test_plain, 1}) end), ok.")
    await got.until(
        lambda e: e.fields.get("report") == "crash_report" and "beamside_test_plain" in e.message
    )
    node.eval("exit(whereis(beamside_test_sup), shutdown), ok.")
    box.close()


async def test_handler_removed_when_sidecar_goes(otp25_node: ErlangNode, local: LocalNode) -> None:
    """Once the grace period after the sidecar went (grace_s, 1 s here) is over."""
    node = otp25_node
    options = EventOptions().to_attach_opts()
    await attach_events(local, node, events={**options["events"], "grace_s": 1})
    assert "beamside" in node.eval(HANDLERS)
    await local.disconnect(node.name)
    value = await wait_value(node, HANDLERS, lambda v: "beamside" not in v)
    assert "beamside" not in value
    assert await wait_value(node, "whereis(beamside_events).", lambda v: v == "undefined") == (
        "undefined"
    )
    # The modules stay until a detach: reconnect and detach, then nothing is left.
    await agents.detach(local, node.name)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE


async def test_detach_removes_handler(otp28_node: ErlangNode, local: LocalNode) -> None:
    node = otp28_node
    box = await attach_events(local, node)
    got = Collected(box)
    node.eval('logger:error("otp28 error ~p", [1]).')
    ev = (await got.until(has_text("otp28 error 1")))[0]
    assert ev.level == "error"
    await agents.detach(local, node.name)
    assert "beamside" not in node.eval(HANDLERS)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE
    await asyncio.sleep(0)


async def test_elixir_logger(elixir_node: ErlangNode, local: LocalNode) -> None:
    node = elixir_node
    box = await attach_events(local, node)
    got = Collected(box)
    # Logger.error/2 is a macro; bare_log/3 is what it expands to at run time.
    node.eval(
        "'Elixir.Logger':bare_log(error, <<\"elixir-error 1\">>, "
        '[{request_id, <<"req-9">>}, {application, shop}]), ok.'
    )
    ev = (await got.until(has_text("elixir-error 1")))[0]
    assert ev.level == "error" and ev.fields["source"] == "logger"
    meta = ev.fields["metadata"]
    assert isinstance(meta, Mapping)
    assert meta["request_id"] == "req-9" and meta["application"] == "shop"
    assert ev.fields["domain"] == ["elixir"]
    node.eval("'Elixir.Logger':bare_log(info, <<\"elixir-info below\">>, []), ok.")
    await got.drain(0.6)
    assert not [e for e in got.events if "elixir-info below" in e.message]


# Real lager 3.9 (Debian's erlang-lager, with goldrush) on the node's code
# path: its own backends off (no files under the node's cwd), error_logger
# redirected into lager as lager does by default.
START_LAGER = (
    "ok = application:load(lager), ok = application:set_env(lager, handlers, []),"
    " ok = application:set_env(lager, crash_log, false),"
    " ok = application:set_env(lager, error_logger_redirect, true),"
    " {ok, _} = application:ensure_all_started(lager), ok."
)
META = "[{module, shop}, {function, buy}, {line, 12}, {application, shop}, {pid, self()}]"


async def test_lager_backend(otp25_node: ErlangNode, local: LocalNode) -> None:
    """beamside_lager in real lager 3.9's sink: levels, metadata, a level
    change, lager's error_logger redirection, and nothing left at detach."""
    node = otp25_node
    node.eval(START_LAGER)
    box = await attach_events(local, node)
    got = Collected(box)
    handlers = "gen_event:which_handlers(lager_event)."
    assert "beamside_lager" in await wait_value(node, handlers, lambda v: "beamside_lager" in v)
    mask = "gen_event:call(lager_event, beamside_lager, get_loglevel)."
    assert node.eval(mask) == "{mask,31}"  # warning and up, in lager's bits
    node.eval(f'lager:log(error, {META}, "lager error ~p", [42]).')
    node.eval(f'lager:log(info, {META}, "lager info text").')
    ev = (await got.until(has_text("lager error 42")))[0]
    assert ev.level == "error" and ev.fields["source"] == "lager"
    assert ev.fields["mfa"] == "shop:buy" and ev.fields["line"] == 12
    assert ev.fields["metadata"] == {"application": "shop"}
    # A level change reaches lager's mask too (lager skips what no backend wants).
    await agents.attach(local, node.name, EventOptions(log_level="info").to_attach_opts())
    assert node.eval(mask) == "{mask,127}"
    node.eval(f'lager:log(info, {META}, "lager info 2").')
    await got.until(has_text("lager info 2"))
    assert not [e for e in got.events if "lager info text" in e.message]
    # A crash report: lager's error_logger handler turns it into a lager
    # message too; the operator gets it once, not once per path.
    node.eval("proc_lib:spawn(fun() -> exit(bs_lager_crash) end), ok.")
    await got.until(has_text("bs_lager_crash"))
    await got.drain(1.5)
    crashes = [e for e in got.events if "bs_lager_crash" in e.message]
    assert len(crashes) == 1, [(e.fields.get("source"), e.message[:80]) for e in crashes]
    # lager's overload state: its throttle switching the sink to synchronous
    # logging is what plugins.lager reports (set here as the throttle sets it)
    snap = await snapshot(local, node)
    assert snap.lager is not None and snap.lager.sync_mode is False
    assert snap.lager.version == "3.9.2" and snap.lager.event_queue is not None
    node.eval("lager_config:set({lager_event, async}, false).")
    snap = await snapshot(local, node)
    assert snap.lager is not None and snap.lager.sync_mode is True
    body = ExpositionCache().exposition([snap], TEXT).decode()
    (line,) = [x for x in body.splitlines() if x.startswith("erlang_lager_sync_mode{")]
    assert line.endswith(" 1.0")
    node.eval("lager_config:set({lager_event, async}, true).")
    await agents.detach(local, node.name)
    assert "beamside" not in node.eval(handlers)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE


async def test_forwarder_restarted_after_a_kill(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    box = await attach_events(local, node)
    got = Collected(box)
    before = node.eval("whereis(beamside_events).")
    node.eval("exit(whereis(beamside_events), kill).")
    after = await wait_value(
        node, "whereis(beamside_events).", lambda v: v not in ("undefined", before)
    )
    assert after.startswith("<")
    assert "beamside" in node.eval(HANDLERS)
    node.eval('logger:error("after restart").')
    await got.until(has_text("after restart"))
    await agents.detach(local, node.name)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE
