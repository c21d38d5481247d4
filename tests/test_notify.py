"""The notifier: what each kind of report becomes in Loki, and the loss counters."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from sidecar.alarms.model import Alarm, AlarmEvent, AlarmKey, EventKind, Severity
from sidecar.audit import AuditRecord
from sidecar.config import LogsConfig, NotificationsConfig
from sidecar.control.gen.beamside.v1 import config_pb2, eval_pb2, processes_pb2
from sidecar.control.server import Auditor, request_details
from sidecar.erldist.term import Atom
from sidecar.loki.model import LogEntry
from sidecar.notify import Notifier
from sidecar.own_logging import JsonFormatter
from sidecar.redact import marker
from tests.support.snapshots import node_snapshot

NODE = "app@127.0.0.1"


def notifier(sent: list[LogEntry], *, enabled: bool = True, **kw: Any) -> Notifier:
    return Notifier("prod", lambda node: "shop", sent.append if enabled else None, **kw)


def event(message: str, level: str = "error", kind: str = "log", **extra: Any) -> dict[Any, Any]:
    term: dict[Any, Any] = {
        Atom("kind"): Atom(kind),
        Atom("level"): Atom(level),
        Atom("time"): 1_700_000_000_000_000_000,
        Atom("node"): Atom(NODE),
        Atom("msg"): message.encode(),
    }
    term.update({Atom(k): v for k, v in extra.items()})
    return term


def batch(seq: int, *events: dict[Any, Any], node: str = NODE, **dropped: int) -> tuple[Any, ...]:
    drops = {Atom(k): v for k, v in dropped.items()}
    return (Atom("beamside_events"), Atom(node), seq, list(events), drops)


def samples(n: Notifier, name: str) -> dict[tuple[str, ...], float]:
    for family in n.metric_families():
        if family.name == name.removesuffix("_total"):
            return {tuple(s.labels.values()): s.value for s in family.samples}
    raise KeyError(name)


def test_node_events_become_labelled_json_lines() -> None:
    sent: list[LogEntry] = []
    n = notifier(sent)
    n.on_message(batch(1, event("boom", pid=b"<0.1.0>")))
    (entry,) = sent
    assert entry.label_dict == {
        "job": "beamside",
        "cluster": "prod",
        "family": "shop",
        "node": NODE,
        "kind": "log",
        "level": "error",
    }
    line = json.loads(entry.line)
    assert line["message"] == "boom" and line["pid"] == "<0.1.0>"
    assert "node" not in line and "level" not in line  # labels already
    assert entry.time_ns == 1_700_000_000_000_000_000


def test_a_node_cannot_speak_for_another() -> None:
    sent: list[LogEntry] = []
    n = notifier(sent)
    spoofed = event("x")
    spoofed[Atom("node")] = Atom("other@127.0.0.1")
    n.on_message(batch(1, spoofed))
    assert sent[0].label_dict["node"] == NODE  # the batch's sender


def test_losses_are_counted_never_silent() -> None:
    sent: list[LogEntry] = []
    n = notifier(sent)
    n.on_message(batch(1, event("a"), queue_full=3))
    n.on_message(batch(4, event("b"), rate=2))  # batches 2 and 3 never came
    n.on_message(batch(5, {Atom("kind"): Atom("bogus")}))  # one bad event
    n.on_message(("not", "a batch"))
    n.on_message(batch(-1))
    assert samples(n, "beamside_node_events_dropped_total") == {
        ("prod", NODE, "queue_full"): 3.0,
        ("prod", NODE, "rate"): 2.0,
        ("prod", NODE, "malformed"): 1.0,
    }
    assert samples(n, "beamside_node_event_batches_missing_total")[("prod", NODE)] == 2.0
    malformed = samples(n, "beamside_node_events_malformed_total")
    assert malformed[("prod", NODE)] == 1.0 and malformed[("prod", "unknown")] == 1.0
    assert samples(n, "beamside_node_events_received_total") == {("prod", NODE, "log"): 2.0}
    # ... and written into the node's stream, beside what did arrive
    lost = [json.loads(e.line) for e in sent if '"events_lost"' in e.line]
    assert [(x["dropped"], x["missing_batches"]) for x in lost] == [
        ({"queue_full": 3}, 0),
        ({"rate": 2}, 2),
        ({"malformed": 1}, 0),
    ]
    assert lost[1]["message"] == (
        "events lost before reaching beamside: 2 rate, 2 batches missing (seq 2 to 3)"
    )
    first = next(e for e in sent if '"events_lost"' in e.line)
    assert first.label_dict["kind"] == "notification" and first.label_dict["level"] == "warning"
    assert first.label_dict["node"] == NODE


def test_losses_logged_once_a_minute_per_node(caplog: pytest.LogCaptureFixture) -> None:
    n = notifier([])
    with caplog.at_level(logging.WARNING, logger="sidecar.notify"):
        n.on_message(batch(1, event("a"), retain_overflow=500))
        n.on_message(batch(2, event("b"), retain_overflow=500))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"{NODE}: events lost before reaching beamside: 500 retain_overflow"
        " (so far: {'retain_overflow': 500} dropped, 0 batches missing)"
    ]


def test_sequence_starts_again_after_a_reattach() -> None:
    n = notifier([])
    n.on_message(batch(7))
    n.on_node_state(NODE, "attached", "loaded")
    n.on_message(batch(1))
    n.on_message(batch(2))
    assert samples(n, "beamside_node_event_batches_missing_total") == {("prod", NODE): 0.0}


def test_alarm_events() -> None:
    sent: list[LogEntry] = []
    n = notifier(sent)
    alarm = Alarm(
        key=AlarmKey("process_message_queue", NODE),
        severity=Severity.MAJOR,
        node=NODE,
        family="shop",
        cluster="prod",
        cause="a queue grows",
        repair="find the consumer",
        info={"pid": "<0.9.0>"},
        updated_at=1_700_000_000.5,
    )
    n.alarm_event(AlarmEvent(EventKind.RAISED, alarm))
    n.alarm_event(AlarmEvent(EventKind.ACKNOWLEDGED, alarm, who="alice"))
    raised, acked = sent
    assert raised.label_dict["kind"] == "alarm" and raised.label_dict["level"] == "error"
    line = json.loads(raised.line)
    assert line["event"] == "raised" and line["alarm"] == "process_message_queue"
    assert line["info"] == {"pid": "<0.9.0>"} and line["repair"] == "find the consumer"
    assert raised.time_ns == 1_700_000_000_500_000_000
    assert json.loads(acked.line)["who"] == "alice"


def test_audit_records_go_to_the_log_and_loki(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.audit")
    sent: list[LogEntry] = []
    n = notifier(sent)
    n.audit(AuditRecord("alice", "operator", "Processes/GarbageCollect", NODE, "ok", True))
    n.audit(AuditRecord("bob", "viewer", "Eval/Evaluate", NODE, "PERMISSION_DENIED", False))
    ok, denied = sent
    assert ok.label_dict["kind"] == "audit" and ok.label_dict["level"] == "notice"
    assert denied.label_dict["level"] == "warning"
    assert json.loads(denied.line)["who"] == "bob"
    assert [r.name for r in caplog.records].count("sidecar.audit") == 2


def stderr_line(record: logging.LogRecord) -> dict[str, Any]:
    """``record`` as the daemon writes it to stderr (one JSON object)."""
    line: dict[str, Any] = json.loads(JsonFormatter().format(record))
    return line


def audit_lines(
    caplog: pytest.LogCaptureFixture, record: AuditRecord
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stderr line and the Loki line of one audit record."""
    caplog.clear()
    sent: list[LogEntry] = []
    notifier(sent).audit(record)
    (logged,) = [r for r in caplog.records if r.name == "sidecar.audit"]
    (entry,) = sent
    loki: dict[str, Any] = json.loads(entry.line)
    return stderr_line(logged), loki


def test_audit_stderr_line_carries_the_loki_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.audit")
    calls = [
        (eval_pb2.EvaluateRequest(node=NODE, expression="ets:delete(sessions)."), "expression"),
        (processes_pb2.TerminateProcessRequest(node=NODE, pid="<0.42.0>", reason="kill"), "pid"),
        (config_pb2.SetEnvRequest(node=NODE, app="kernel", key="ctl_limit", value="20."), "key"),
    ]
    for request, what in calls:
        details = {"request": request_details(request), "duration_ms": 3.5}
        record = AuditRecord("alice", "admin", "X/Y", NODE, "ok", True, details)
        stderr, loki = audit_lines(caplog, record)
        for key, value in loki.items():
            if key != "message":
                assert stderr[key] == value, (what, key)
        assert stderr["node"] == NODE and stderr["audit"] is True
        asked = loki["request"][what]
        assert stderr["request"][what] == asked and asked in stderr["msg"]
        assert stderr["msg"].startswith(f"X/Y by alice (admin) on {NODE}: ok ")
    assert loki["request"]["app"] == "kernel" and '"app":"kernel"' in stderr["msg"]


def test_audit_secret_value_redacted_in_both_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.audit")
    request = config_pb2.SetEnvRequest(node=NODE, app="db", key="password", value="hunter2")
    details = {"request": request_details(request), "duration_ms": 1.0}
    record = AuditRecord("alice", "admin", "Config/SetEnv", NODE, "ok", True, details)
    stderr, loki = audit_lines(caplog, record)
    for line in (stderr, loki):
        assert "hunter2" not in json.dumps(line)
        assert line["request"]["key"] == "password"
        assert line["request"]["value"] == marker("hunter2")
    assert stderr["request"]["value"] == loki["request"]["value"]
    assert loki["request"]["value"] in stderr["msg"]


def test_audit_detail_named_like_a_log_record_attribute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.audit")
    record = AuditRecord("bob", "operator", "A/B", "", "ok", True, {"name": "x", "args": [1]})
    stderr, loki = audit_lines(caplog, record)
    assert loki["name"] == "x" and loki["args"] == [1]
    assert stderr["detail_name"] == "x" and stderr["detail_args"] == [1]
    assert stderr["logger"] == "sidecar.audit" and stderr["node"] == ""


def test_default_audit_sink_writes_the_request(caplog: pytest.LogCaptureFixture) -> None:
    """Without ``Deps.audit`` the control plane logs through the same function."""
    caplog.set_level(logging.INFO, logger="sidecar.audit")
    request = eval_pb2.EvaluateRequest(node=NODE, expression="erlang:halt().")
    Auditor(None).record(
        "/beamside.v1.Eval/Evaluate",
        None,
        NODE,
        "PERMISSION_DENIED: no",
        False,
        {"request": request_details(request)},
    )
    (logged,) = [r for r in caplog.records if r.name == "sidecar.audit"]
    line = stderr_line(logged)
    assert line["action"] == "Eval/Evaluate" and line["who"] == "unauthenticated"
    assert line["ok"] is False and line["request"]["expression"] == "erlang:halt()."
    assert "erlang:halt()." in line["msg"]


def test_nothing_installed_without_a_sink() -> None:
    n = notifier([], enabled=False)
    assert n.attach_options(NODE) is None and n.collect_options(NODE) == {}
    n.audit(AuditRecord("alice", "admin", "Eval/Evaluate", NODE, "ok", True))  # only logged


def test_options_follow_the_config() -> None:
    n = notifier(
        [],
        logs=LogsConfig(
            level="error", node_levels=((NODE, "debug"),), rate_limit=50, crash_grace=0
        ),
        notifications=NotificationsConfig(code=False, system_monitor=True),
    )
    opts = n.attach_options(NODE)
    assert opts is not None and opts["logs"]["level"] == "debug"
    assert n.attach_options("b@h")["logs"]["level"] == "error"  # type: ignore[index]
    assert opts["sysmon_events"] is True and opts["events"]["max_rate"] == 50
    assert opts["events"]["grace_s"] == 0  # logs.crash_grace reaches the node
    assert n.collect_options(NODE) == {"config_events": True}


def test_code_and_config_events_of_a_snapshot() -> None:
    sent: list[LogEntry] = []
    n = notifier(sent)
    data = {
        "code_events": {
            "baseline": False,
            "truncated": 0,
            "events": [{"type": Atom("module_reloaded"), "module": Atom("m"), "md5": b"ab"}],
        },
        "config_events": {
            "baseline": False,
            "truncated": 2,
            "events": [
                {
                    "type": Atom("config_changed"),
                    "app": Atom("kernel"),
                    "key": Atom("knob"),
                    "old": b"1",
                    "new": Atom("undefined"),
                }
            ],
        },
    }
    n.on_snapshot(node_snapshot(NODE, "shop", "prod", 1_700_000_000.0, 0.01, data))
    lines = [json.loads(e.line) for e in sent]
    assert [line["type"] for line in lines] == [
        "module_reloaded",
        "config_changed",
        "config_events_truncated",
    ]
    assert lines[1]["message"] == "kernel.knob unset" and lines[1]["old"] == "1"
    assert lines[1]["new"] is None
    # A malformed section is counted, the rest of the snapshot still used.
    n.on_snapshot(
        node_snapshot(NODE, "shop", "prod", 1.0, 0.01, {"code_events": {"baseline": False}})
    )
    assert samples(n, "beamside_node_events_malformed_total")[("prod", NODE)] == 1.0
