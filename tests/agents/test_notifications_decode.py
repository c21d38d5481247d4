"""Decoding of the event batches (sidecar.agents.events), no node needed:
the terms are built as sidecar.erldist.term decodes them."""

from __future__ import annotations

import json

import pytest

from sidecar.agents import EventOptions
from sidecar.agents.events import (
    EventBatch,
    EventDecodeError,
    decode_batch,
    decode_event,
)
from sidecar.erldist.term import Atom, Pid
from sidecar.notify import snapshot_notifications
from tests.support.snapshots import node_snapshot

A = Atom
NODE = A("n@127.0.0.1")


def log_event(**extra: object) -> dict[Atom, object]:
    event: dict[Atom, object] = {
        A("kind"): A("log"),
        A("source"): A("logger"),
        A("level"): A("error"),
        A("time"): 1_700_000_000_123_456_000,
        A("node"): NODE,
        A("pid"): b"<0.90.0>",
        A("msg"): "caf\u00e9 down".encode(),
        A("truncated"): False,
        A("domain"): [A("otp"), A("sasl")],
        A("sasl"): True,
        A("report"): A("crash_report"),
        A("metadata"): {A("request_id"): b"r-1", A("n"): 3},
    }
    event.update({A(k): v for k, v in extra.items()})
    return event


def test_decode_batch() -> None:
    shell = {
        A("kind"): A("notification"),
        A("type"): A("shell_command"),
        A("level"): A("notice"),
        A("time"): 5,
        A("node"): NODE,
        A("msg"): b"X = 1 + 2",
        A("command"): 2,
        A("remote"): False,
        A("shell_node"): NODE,
    }
    batch = decode_batch((A("beamside_events"), NODE, 7, [log_event(), shell], {A("rate"): 3}))
    assert isinstance(batch, EventBatch)
    assert (batch.node, batch.seq, dict(batch.dropped), batch.dropped_total) == (
        "n@127.0.0.1",
        7,
        {"rate": 3},
        3,
    )
    log, cmd = batch.events
    assert (log.kind, log.type, log.level, log.time_ns, log.message) == (
        "log",
        "log",
        "error",
        1_700_000_000_123_456_000,
        "caf\u00e9 down",
    )
    assert log.fields["domain"] == ["otp", "sasl"] and log.fields["sasl"] is True
    assert log.fields["metadata"] == {"request_id": "r-1", "n": 3}
    assert "msg" not in log.fields and "level" not in log.fields
    assert (cmd.kind, cmd.type, cmd.message, cmd.fields["command"]) == (
        "notification",
        "shell_command",
        "X = 1 + 2",
        2,
    )
    line = json.dumps(log.to_json())
    assert json.loads(line)["message"] == "caf\u00e9 down"
    with pytest.raises(AttributeError):
        log.level = "info"  # type: ignore[misc]


def test_malformed_event_is_counted_not_fatal() -> None:
    bad = [
        log_event(kind=A("other")),
        log_event(level=b"error"),
        log_event(time=-1),
        {A("kind"): A("notification"), A("level"): A("notice"), A("time"): 1},  # no type
        "not a map",
    ]
    batch = decode_batch((A("beamside_events"), NODE, 1, [*bad, log_event()], {}))
    assert len(batch.events) == 1 and batch.dropped == {"malformed": 5}


@pytest.mark.parametrize(
    "message",
    [
        None,
        (A("beamside_events"), NODE, 1, []),
        (A("other"), NODE, 1, [], {}),
        (A("beamside_events"), b"node", 1, [], {}),
        (A("beamside_events"), NODE, -1, [], {}),
        (A("beamside_events"), NODE, 1, {}, {}),
        (A("beamside_events"), NODE, 1, [], []),
        (A("beamside_events"), NODE, 1, [], {A("rate"): -1}),
        (A("beamside_events"), NODE, 1, [], {b"rate": 1}),
    ],
)
def test_malformed_batch_raises(message: object) -> None:
    with pytest.raises(EventDecodeError):
        decode_batch(message)


def test_field_values_are_json_ready() -> None:
    pid = Pid(NODE, 5, 0, 1)
    ev = decode_event(
        log_event(owner=pid, pair=(A("a"), 1), nested={A("k"): [b"x", 1.5, None]}), "fallback"
    )
    assert ev.fields["owner"] == "<n@127.0.0.1.5.0>"
    assert ev.fields["pair"] == ["a", 1]
    assert ev.fields["nested"] == {"k": ["x", 1.5, None]}
    json.dumps(ev.to_json())
    no_node = log_event()
    del no_node[A("node")]
    assert decode_event(no_node, "fallback").node == "fallback"


def test_code_notifications() -> None:
    section = {
        A("baseline"): False,
        A("modules"): 10,
        A("truncated"): 2,
        A("events"): [
            {A("type"): A("module_loaded"), A("module"): A("m"), A("md5"): b"ab12"},
            {A("type"): A("module_purged"), A("module"): A("m")},
        ],
    }
    snap = node_snapshot("n@h", "f", "c", 42e-9, 0.0, {"code_events": section})
    events = snapshot_notifications(snap)
    assert [(e.type, e.message, e.level) for e in events] == [
        ("module_loaded", "module m loaded", "notice"),
        ("module_purged", "module m purged", "notice"),
        ("code_events_truncated", "2 more module events not listed", "warning"),
    ]
    assert events[0].fields == {"module": "m", "md5": "ab12"}
    assert all(e.kind == "notification" and e.time_ns == 42 for e in events)
    for quiet in ({A("baseline"): True, A("events"): []}, A("not_attached")):
        snap = node_snapshot("n@h", "f", "c", 1.0, 0.0, {"code_events": quiet})
        assert snapshot_notifications(snap) == [] and snap.errors == {}
    bad = {A("baseline"): False, A("events"): [{A("type"): A("x")}]}
    snap = node_snapshot("n@h", "f", "c", 1.0, 0.0, {"code_events": bad})
    assert snapshot_notifications(snap) == []
    error = snap.errors["code_events"]
    assert error.malformed and "bad code event" in error.reason


def test_event_options() -> None:
    opts = EventOptions(log_level="info", sysmon_events=True).to_attach_opts()
    assert opts["logs"]["level"] == "info" and opts["sysmon_events"] is True
    assert EventOptions(log_level=None).to_attach_opts()["logs"]["level"] == "none"
    with pytest.raises(ValueError, match="log_level"):
        EventOptions(log_level="verbose")
    with pytest.raises(ValueError, match="batch_size"):
        EventOptions(batch_size=0)
