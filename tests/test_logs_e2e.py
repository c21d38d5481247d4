"""Logs and notifications end to end: `beamside run` attached to real nodes,
shipping to the strict Loki double, queried with LogQL selectors as users do.

Each kind of event arrives with the right labels and fields; Loki down for
60 s during a burst of 50,000 events loses nothing, duplicates nothing and
keeps each stream in order; a beamside killed with SIGKILL delivers its
spool when restarted."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import NodeFactory
from tests.support.daemon_proc import BeamsideProcess
from tests.support.loki_double import LokiDouble, StoredEntry
from tests.support.nodes import free_port, shell_node
from tests.support.waiting import wait_for


def run_beamside(
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
    nodes: list[str],
    cookie: str,
    loki: LokiDouble,
    *,
    loki_extra: dict[str, Any] | None = None,
    logs: dict[str, Any] | None = None,
    name: str = "beamside-logs",
    wait_up: bool = True,
) -> BeamsideProcess:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o600)  # erl refuses a cookie others can read
    port = free_port()
    config: dict[str, Any] = {
        "cluster": "e2e",
        "node_name": f"{name}@127.0.0.1",
        "targets": [{"nodes": nodes, "cookie_file": str(cookie_file), "family": "app"}],
        "intervals": {"metrics": "1s"},
        "http": {"listen": f"127.0.0.1:{port}"},
        "grpc": {"listen": f"127.0.0.1:{free_port()}"},
        "loki": {"url": loki.url, "batch_wait": "200ms", **(loki_extra or {})},
        "logs": logs or {"level": "warning"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = BeamsideProcess(path, port, tmp_path)
    beamside_procs.append(proc)
    proc.start()
    if wait_up:
        proc.wait_until(proc.ready, 30, "ready")
        proc.wait_until(
            lambda: all(proc.value("beamside_node_up", node=n) == 1 for n in nodes), 30, "up"
        )
    return proc


def find(loki: LokiDouble, selector: str, pred: Callable[[dict[str, Any]], bool]) -> Any:
    """Entries of ``selector`` whose JSON line satisfies ``pred``: (labels, line) pairs."""
    found = []
    for entry in loki.entries(selector):
        line = json.loads(entry.line)
        if pred(line):
            found.append((entry.label_dict, line))
    return found


def one(loki: LokiDouble, selector: str, pred: Callable[[dict[str, Any]], bool], what: str) -> Any:
    found = wait_for(lambda: find(loki, selector, pred), 15, what)
    return found[0]


def test_each_kind_arrives_with_labels_and_fields(
    node_factory: NodeFactory,
    cookie: str,
    epmd_port: int,
    tmp_path: Path,
    loki: LokiDouble,
    beamside_procs: list[BeamsideProcess],
) -> None:
    erl = node_factory("otp25")
    ex = node_factory("elixir")
    proc = run_beamside(beamside_procs, tmp_path, [erl.name, ex.name], cookie, loki)
    labels_of = {"job": "beamside", "cluster": "e2e", "family": "app"}

    erl.eval('error_logger:error_msg("legacy ~p~n", [error_logger_e2e]).')
    # What ?LOG_ERROR puts in the metadata (erl_eval has no macros).
    erl.eval(
        'logger:error("modern ~p", [logger_e2e], '
        '#{mfa => {e2e_m, e2e_f, 2}, file => "e2e_m.erl", line => 42}).'
    )
    labels, line = one(
        loki,
        f'{{node="{erl.name}",kind="log"}}',
        lambda d: "error_logger_e2e" in d.get("message", ""),
        "error_logger:error_msg",
    )
    assert labels == {**labels_of, "node": erl.name, "kind": "log", "level": "error"}
    assert line["pid"].startswith("<0.") and line["type"] == "log"
    labels, line = one(
        loki,
        f'{{node="{erl.name}",level="error"}}',
        lambda d: (
            "logger_e2e" in d.get("message", "") and "error_logger" not in d.get("message", "")
        ),
        "logger:error",
    )
    assert labels["kind"] == "log"
    assert "e2e_m:e2e_f/2" in json.dumps(line) and "e2e_m.erl" in json.dumps(line), line

    # A process that crashes: its crash report.
    erl.eval("proc_lib:spawn(fun() -> erlang:error(e2e_boom) end), ok.")
    labels, line = one(
        loki,
        f'{{node="{erl.name}",kind="log"}}',
        lambda d: "e2e_boom" in d.get("message", ""),
        "crash report",
    )
    assert labels["level"] == "error"
    assert line.get("report") == "crash_report", line

    # Elixir's Logger sits on logger.
    ex.eval(
        "'Elixir.Code':eval_string("
        '<<"require Logger; Logger.error(\\"elixir says e2e_hello\\")">>), ok.'
    )
    labels, line = one(
        loki,
        f'{{node="{ex.name}"}}',
        lambda d: "elixir says e2e_hello" in d.get("message", ""),
        "Elixir Logger.error",
    )
    assert labels == {**labels_of, "node": ex.name, "kind": "log", "level": "error"}

    # Below the level: not forwarded.
    erl.eval('logger:info("e2e_quiet_info").')
    erl.eval('logger:warning("e2e_after_info").')
    one(
        loki,
        f'{{node="{erl.name}"}}',
        lambda d: "e2e_after_info" in d.get("message", ""),
        "warning",
    )
    assert not [e for e in loki.entries(f'{{node="{erl.name}"}}') if "e2e_quiet_info" in e.line]

    # A module loaded twice with c:l/1: loaded, then reloaded.
    src = tmp_path / "e2e_mod.erl"
    src.write_text("-module(e2e_mod).\n-export([f/0]).\nf() -> 1.\n")
    erl.eval(f'{{ok, e2e_mod}} = compile:file("{src}", [{{outdir, "{tmp_path}"}}]), ok.')
    erl.eval(f'code:add_patha("{tmp_path}").')
    erl.eval("c:l(e2e_mod).")
    one(
        loki,
        f'{{node="{erl.name}",kind="notification"}}',
        lambda d: d.get("type") == "module_loaded" and d.get("module") == "e2e_mod",
        "module loaded",
    )
    time.sleep(1.5)  # one collect tick apart
    erl.eval("c:l(e2e_mod).")
    labels, line = one(
        loki,
        f'{{node="{erl.name}",kind="notification"}}',
        lambda d: d.get("type") == "module_reloaded" and d.get("module") == "e2e_mod",
        "module reloaded",
    )
    assert labels["family"] == "app" and line["message"] == "module e2e_mod reloaded"

    # Configuration changed on the node: what it was, what it is; secrets hidden.
    erl.eval("application:set_env(kernel, e2e_knob, 1).")
    time.sleep(1.5)  # one collect tick apart
    erl.eval(
        "application:set_env(kernel, e2e_knob, 2), application:set_env(kernel, db_password, x)."
    )
    labels, line = one(
        loki,
        f'{{node="{erl.name}",kind="notification"}}',
        lambda d: d.get("type") == "config_changed" and d.get("old") == "1",
        "config changed",
    )
    assert line["key"] == "e2e_knob" and line["new"] == "2" and line["app"] == "kernel"
    assert line["message"] == "kernel.e2e_knob changed"
    _, secret = one(
        loki,
        f'{{node="{erl.name}",kind="notification"}}',
        lambda d: d.get("type") == "config_changed" and d.get("key") == "db_password",
        "secret set",
    )
    # the marker carries a digest of the value (a change stays visible), never the value
    assert re.fullmatch(r"<redacted (sha256|phash2):[0-9a-f]{6}>", secret["new"]), secret

    # beamside's own notifications: it attached to each node.
    one(
        loki,
        f'{{node="{ex.name}",kind="notification"}}',
        lambda d: d.get("event") == "attached",
        "attached notification",
    )
    assert proc.value("beamside_node_events_received_total", node=erl.name, kind="log")


def test_shell_expression_typed_into_erl(
    cookie: str,
    epmd_port: int,
    tmp_path: Path,
    loki: LokiDouble,
    beamside_procs: list[BeamsideProcess],
) -> None:
    with shell_node("otp25", cookie, epmd_port, tmp_path) as sh:
        run_beamside(beamside_procs, tmp_path, [sh.name], cookie, loki)
        sh.type("E2eTyped = lists:seq(1, 3).")
        labels, line = one(
            loki,
            f'{{node="{sh.name}",kind="notification"}}',
            lambda d: d.get("type") == "shell_command",
            "shell command",
        )
        assert line["message"] == "E2eTyped = lists:seq(1, 3)"
        assert labels["level"] == "notice" and labels["family"] == "app"
        assert line["shell_node"] == sh.name and line["remote"] is False


BURST = 50_000


def burst_expr(first: int, count: int, per_ms: int = 50) -> str:
    """Log ``count`` numbered errors from one process, ``per_ms`` per millisecond
    at most (a fast but sustainable rate: the node-side handler drops rather
    than block when its forwarder falls behind, which is not what we test)."""
    return (
        "spawn(fun() -> lists:foreach(fun(I) -> "
        'logger:error("burst ~8..0B", [I]), '
        f"case I rem {per_ms} of 0 -> timer:sleep(1); _ -> ok end end, "
        f"lists:seq({first}, {first + count - 1})) end), ok."
    )


def burst_numbers(entries: list[StoredEntry]) -> list[int]:
    out = []
    for e in entries:
        message = json.loads(e.line)["message"]
        if message.startswith("burst "):
            out.append(int(message.split()[1]))
    return out


def resend_report(loki: LokiDouble) -> str:
    """The pushes that carried entries Loki already had: when each came, its
    first and last re-sent line, and when the first copy of that line came."""
    with loki._lock:
        requests = list(loki.requests)
    first_copy = {(e.ts, e.line): e.arrival_ns for e in loki.entries()}
    t0 = requests[0].arrival_ns if requests else 0
    lines = []
    for i, r in enumerate(requests):
        if r.duplicate_span is None:
            continue
        first, last = r.duplicate_span
        original = first_copy.get(first, 0)
        stored_by = max((j for j, q in enumerate(requests) if q.arrival_ns <= original), default=-1)
        lines.append(
            f"push {i} at +{(r.arrival_ns - t0) / 1e9:.3f} s: {r.entries} entries, "
            f"{r.duplicates} already stored ({json.loads(first[1])['message']} .. "
            f"{json.loads(last[1])['message']}), first stored by push {stored_by} at "
            f"+{(original - t0) / 1e9:.3f} s"
        )
    return "\n".join(lines)


@pytest.mark.slow
def test_loki_down_60s_during_burst_loses_nothing(
    node_factory: NodeFactory,
    cookie: str,
    tmp_path: Path,
    loki: LokiDouble,
    beamside_procs: list[BeamsideProcess],
) -> None:
    node = node_factory("otp25")
    proc = run_beamside(
        beamside_procs,
        tmp_path,
        [node.name],
        cookie,
        loki,
        loki_extra={
            "spool_dir": str(tmp_path / "spool"),
            "memory_bytes": "4MiB",
            "batch_bytes": "256KiB",
            "max_backoff": "2s",
        },
        logs={"level": "error", "rate_limit": 100000},
    )
    selector = f'{{node="{node.name}",kind="log"}}'
    loki.set_mode("down")
    node.eval(burst_expr(1, BURST))
    time.sleep(60)
    spooled = proc.value("beamside_loki_spool_bytes") or 0
    loki.set_mode("ok")
    wait_for(lambda: len(burst_numbers(loki.entries(selector))) >= BURST, 120, "all delivered")
    time.sleep(2)  # anything extra (a duplicate) would arrive now
    numbers = burst_numbers(loki.entries(selector))
    assert numbers == list(range(1, BURST + 1)), "lost, duplicated or out of order"
    counts = loki.counts()
    assert counts.get("duplicates", 0) == 0, counts
    assert spooled > 0, "the memory bound should have pushed part of the burst to disk"
    assert not proc.value("beamside_loki_entries_dropped_total", reason="memory_full")
    assert (proc.value("beamside_node_events_dropped_total", node=node.name) or 0) == 0


def counted_burst_expr(first: int, count: int, per_ms: int = 50) -> str:
    """:func:`burst_expr` that also keeps the last number logged in an
    atomics array (:data:`BURST_AT`), so a test knows what was logged when."""
    return (
        "persistent_term:put(burst_at, atomics:new(1, [])), "
        "spawn(fun() -> A = persistent_term:get(burst_at), lists:foreach(fun(I) -> "
        'logger:error("burst ~8..0B", [I]), atomics:put(A, 1, I), '
        f"case I rem {per_ms} of 0 -> timer:sleep(1); _ -> ok end end, "
        f"lists:seq({first}, {first + count - 1})) end), ok."
    )


BURST_AT = "atomics:get(persistent_term:get(burst_at), 1)."


@pytest.mark.slow
def test_sigkill_mid_burst_then_restart_delivers_the_spool(
    node_factory: NodeFactory,
    cookie: str,
    tmp_path: Path,
    loki: LokiDouble,
    beamside_procs: list[BeamsideProcess],
) -> None:
    """SIGKILL at an arbitrary point of a burst, Loki down: what was spooled,
    what was still in the sink's memory (the node keeps it until it is
    durable) and what the node logged while beamside was down all arrive,
    once each, in order, when the same beamside comes back."""
    node = node_factory("otp25")
    spool = tmp_path / "spool"
    settings = {
        "spool_dir": str(spool),
        "memory_bytes": "2MiB",
        "batch_bytes": "256KiB",
        "spill_after": "1s",
        "max_backoff": "1s",
    }
    logs = {"level": "error", "rate_limit": 100000}
    total = 40_000
    proc = run_beamside(
        beamside_procs, tmp_path, [node.name], cookie, loki, loki_extra=settings, logs=logs
    )
    selector = f'{{node="{node.name}",kind="log"}}'
    loki.set_mode("down")
    node.eval(counted_burst_expr(1, total, per_ms=20))  # about 2 s
    time.sleep(random.uniform(0.2, 1.5))
    received = proc.value("beamside_node_events_received_total", node=node.name, kind="log") or 0
    spooled = proc.value("beamside_loki_spool_entries") or 0
    proc.kill()
    at_kill = int(node.eval(BURST_AT))
    time.sleep(0.5)  # the node keeps logging with no beamside attached
    loki.set_mode("ok")
    restarted = run_beamside(
        beamside_procs,
        tmp_path,
        [node.name],
        cookie,
        loki,
        loki_extra=settings,
        logs=logs,
        name="beamside-logs",  # the same node name: the node keeps its batches for it
    )
    at_up = int(node.eval(BURST_AT))
    print(
        f"\nkilled after {received:.0f} received, {spooled:.0f} on disk "
        f"({received - spooled:.0f} in memory or in flight); {at_kill} logged at the kill, "
        f"{at_up - at_kill} more while beamside was down"
    )
    wait_for(lambda: len(burst_numbers(loki.entries(selector))) >= total, 90, "all delivered")
    time.sleep(2)  # anything extra (a duplicate) would arrive now
    numbers = burst_numbers(loki.entries(selector))
    missing = sorted(set(range(1, total + 1)) - set(numbers))
    assert not missing, f"{len(missing)} lost: {missing[:10]} ..."
    assert len(numbers) == len(set(numbers)), "duplicates"
    assert numbers == list(range(1, total + 1)), "out of order"
    assert loki.counts().get("duplicates", 0) == 0, resend_report(loki)
    assert (restarted.value("beamside_node_events_dropped_total", node=node.name) or 0) == 0
    wait_for(lambda: restarted.value("beamside_loki_spool_bytes") == 0, 30, "spool emptied")
