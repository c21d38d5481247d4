"""A seeded fuzz of the redaction rule over every path that writes a line.

Generated configurations (nested proplists, maps and Elixir keyword lists)
carry planted secrets under secret-named keys at random depths, PEM blocks
and URL passwords under plain keys, and visible values (to prove the lines
carry the configuration at all).  Each configuration, printed as Erlang,
Elixir and JSON text and as a JSON-like value, goes through every producer
of a Loki line or a log line: node log events and notifications, config
changes, node state notices, alarm events (with the global-config check's own
details), audit records (request and response), the sidecar's stderr
formatter (message, extras, traceback).  No planted secret may appear in any
line, label or log line.
"""

from __future__ import annotations

import json
import logging
import random
import string
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.agents.events import EventBatch, NodeEvent
from sidecar.alarms.catalogue import GlobalParam
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.alarms.model import Alarm, AlarmEvent, AlarmKey, EventKind, Severity
from sidecar.audit import AuditRecord, log_audit
from sidecar.control.gen.beamside.v1 import config_pb2
from sidecar.control.server import request_details, response_summary
from sidecar.erldist.term import Atom
from sidecar.loki.model import LogEntry
from sidecar.model import NodeState, NodeStatus
from sidecar.notify import Notifier
from sidecar.own_logging import JsonFormatter
from sidecar.redact import SECRET_WORDS
from tests.support.snapshots import node_snapshot

SEED = 20240613
CONFIGS = 60
NODE = "app@127.0.0.1"
PLAIN_KEYS = ("host", "port", "pool_size", "verify", "mode", "level", "opts", "backend", "data")


class Bin(str):
    """An Erlang binary / Elixir string."""


class Chars(str):
    """An Erlang string (charlist)."""


@dataclass
class Planted:
    secrets: list[str] = field(default_factory=list)
    visible: list[str] = field(default_factory=list)


def _token(rng: random.Random, prefix: str) -> str:
    body = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(14))
    return f"{prefix}{body}"


def _secret_key(rng: random.Random) -> str:
    word = rng.choice(SECRET_WORDS)
    word = rng.choice((word, word.upper(), word.capitalize()))
    return rng.choice(("", "db_", "x", "api_", "ssl_")) + word + rng.choice(("", "_1", "file", "s"))


def _secret_value(rng: random.Random, planted: Planted) -> Any:
    secret = _token(rng, "Zq")
    planted.secrets.append(secret)
    shape = rng.randrange(5)
    if shape == 0:
        return Bin(secret)
    if shape == 1:
        return Chars(secret)
    if shape == 2:
        return [(Atom("inner"), Bin(secret)), (Atom("n"), 3)]
    if shape == 3:
        return {Atom("a"): {Atom("b"): Chars(secret)}}
    return Bin(secret + " with spaces")


def _plain_value(rng: random.Random, planted: Planted, depth: int) -> Any:
    shape = rng.randrange(9 if depth < 4 else 5)
    if shape == 0:
        visible = _token(rng, "Vis")
        planted.visible.append(visible)
        return Bin(visible)
    if shape == 1:
        return rng.randrange(100000)
    if shape == 2:
        return Atom(rng.choice(("info", "verify_peer", "true", "undefined")))
    if shape == 3:  # a PEM block under a plain key
        body = _token(rng, "MIIB")
        planted.secrets.append(body)
        return Bin(
            f"-----BEGIN CERTIFICATE-----\n{body}\n{body[::-1]}==\n-----END CERTIFICATE-----\n"
        )
    if shape == 4:  # a URL with a password
        password = _token(rng, "Pw")
        planted.secrets.append(password)
        return Chars(f"amqp://user{rng.randrange(9)}:{password}@mq{rng.randrange(9)}.local:5672/v")
    return _config(rng, planted, depth + 1)


def _config(rng: random.Random, planted: Planted, depth: int = 0) -> Any:
    """A proplist, a map or a keyword list of 1..5 entries."""
    entries: list[tuple[str, Any]] = []
    for i in range(rng.randrange(1, 6)):
        # Keys unique in their level (a map keeps one of equal keys).
        if rng.random() < 0.35:
            entries.append((f"{_secret_key(rng)}{i}", _secret_value(rng, planted)))
        else:
            entries.append((f"{rng.choice(PLAIN_KEYS)}{i}", _plain_value(rng, planted, depth)))
    kind = rng.randrange(3)
    if kind == 0:
        return [(Atom(k), v) for k, v in entries]
    if kind == 1:
        return {Atom(k) if rng.random() < 0.7 else Bin(k): v for k, v in entries}
    return ("keyword", [(Atom(k), v) for k, v in entries])


# -- printers -----------------------------------------------------------------


def _erl_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def erlang(term: Any) -> str:
    """As io_lib:format("~p") prints it."""
    if isinstance(term, Atom):
        s = str(term)
        ok = s[:1].islower() and all(c.isalnum() or c in "_@" for c in s)
        return s if ok else "'" + s.replace("'", "\\'") + "'"
    if isinstance(term, Bin):
        return f'<<"{_erl_escape(term)}">>'
    if isinstance(term, Chars):
        return f'"{_erl_escape(term)}"'
    if isinstance(term, bool):
        return str(term).lower()
    if isinstance(term, int):
        return str(term)
    if isinstance(term, tuple) and len(term) == 2 and term[0] == "keyword":
        return erlang(term[1])
    if isinstance(term, tuple):
        return "{" + ",".join(erlang(t) for t in term) + "}"
    if isinstance(term, list):
        return "[" + ",".join(erlang(t) for t in term) + "]"
    if isinstance(term, dict):
        return "#{" + ",".join(f"{erlang(k)} => {erlang(v)}" for k, v in term.items()) + "}"
    raise TypeError(term)


def elixir(term: Any) -> str:
    """As Kernel.inspect prints it."""
    if isinstance(term, Atom):
        s = str(term)
        return ":" + s if all(c.isalnum() or c == "_" for c in s) else f':"{s}"'
    if isinstance(term, Bin):
        return '"' + _erl_escape(term) + '"'
    if isinstance(term, Chars):
        return '~c"' + _erl_escape(term) + '"'
    if isinstance(term, int):
        return str(term)
    if isinstance(term, tuple) and len(term) == 2 and term[0] == "keyword":
        pairs = term[1]
        return "[" + ", ".join(f"{_kw(k)}: {elixir(v)}" for k, v in pairs) + "]"
    if isinstance(term, tuple):
        return "{" + ", ".join(elixir(t) for t in term) + "}"
    if isinstance(term, list):
        return "[" + ", ".join(elixir(t) for t in term) + "]"
    if isinstance(term, dict):
        if all(isinstance(k, Atom) for k in term):
            return "%{" + ", ".join(f"{_kw(k)}: {elixir(v)}" for k, v in term.items()) + "}"
        return "%{" + ", ".join(f"{elixir(k)} => {elixir(v)}" for k, v in term.items()) + "}"
    raise TypeError(term)


def _kw(key: str) -> str:
    return key if all(c.isalnum() or c == "_" for c in key) else f'"{key}"'


def jsonish(term: Any) -> Any:
    """As a JSON-like value (what a structured field carries)."""
    if isinstance(term, tuple) and len(term) == 2 and term[0] == "keyword":
        return {str(k): jsonish(v) for k, v in term[1]}
    if isinstance(term, list) and all(isinstance(t, tuple) and len(t) == 2 for t in term):
        return {str(k): jsonish(v) for k, v in term}
    if isinstance(term, dict):
        return {str(k): jsonish(v) for k, v in term.items()}
    if isinstance(term, list | tuple):
        return [jsonish(t) for t in term]
    if isinstance(term, int | str):
        return term if not isinstance(term, Atom) else str(term)
    raise TypeError(term)


def to_term(term: Any) -> Any:
    """As the erldist decoder gives it (for hand-written collect replies)."""
    if isinstance(term, Bin):
        return term.encode()
    if isinstance(term, tuple) and len(term) == 2 and term[0] == "keyword":
        return to_term(term[1])
    if isinstance(term, tuple):
        return tuple(to_term(t) for t in term)
    if isinstance(term, list):
        return [to_term(t) for t in term]
    if isinstance(term, dict):
        return {to_term(k): to_term(v) for k, v in term.items()}
    return term


# -- the producers of lines ------------------------------------------------------


class Lines(logging.Handler):
    """Everything written: Loki entries (line and labels) and stderr log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.texts: list[str] = []
        self.entries = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))

    def publish(self, entry: LogEntry) -> None:
        self.entries += 1
        self.texts.append(entry.line)
        self.texts.append(json.dumps(entry.labels))


def produce(rng: random.Random, lines: Lines, n: int) -> Planted:
    planted = Planted()
    config = _config(rng, planted)
    printed = [erlang(config), elixir(config)]
    structured = jsonish(config)
    secret_key = _secret_key(rng)
    planted_value = _secret_value(rng, planted)
    value_text = erlang(planted_value)
    log = logging.getLogger("tests.redact_fuzz")

    notifier = Notifier("fuzz", lambda node: "shop", lines.publish)
    # Node log events and notifications, message and fields.
    events = tuple(
        NodeEvent(
            kind=kind,
            type=kind_type,
            level="info",
            time_ns=1_700_000_000_000_000_000 + i,
            node=NODE,
            message=f"{what}: {text}",
            fields=MappingProxyType({"config": structured, "report": text, secret_key: value_text}),
        )
        for i, (kind, kind_type, what, text) in enumerate(
            [
                ("log", "logger", "started with", printed[0]),
                ("log", "logger", "Elixir config", printed[1]),
                ("notification", "shell_command", "shell ran", printed[0]),
            ]
        )
    )
    notifier.node_events(EventBatch(NODE, n + 1, events, {}))
    # Config changes, a secret key and a plain key whose value holds secrets.
    change = {"type": Atom("config_changed"), "app": Atom("app")}
    reply = {
        "config_events": {
            "baseline": False,
            "truncated": 0,
            "events": [
                {**change, "key": Atom(secret_key), "old": value_text.encode(), "new": b"x1"},
                {
                    **change,
                    "key": Atom("opts"),
                    "old": Atom("undefined"),
                    "new": printed[0].encode(),
                },
            ],
        }
    }
    notifier.on_snapshot(node_snapshot(NODE, "shop", "fuzz", 1_700_000_000.0, 0.01, reply))
    notifier.on_node_state(NODE, "lost", f"connection reset while reading {printed[1]}")

    # Alarms: the global-config check with env values that differ, through
    # the engine's bus to the notifier.
    engine = AlarmEngine("fuzz")
    engine.subscribe(notifier.alarm_event)
    params = [GlobalParam("app", secret_key), GlobalParam("app", "opts")]
    checker = AlarmChecker(engine, global_params=params, interval=1)
    snaps = {}
    for node, secret_text, opts_text in (
        ("a@h", value_text, printed[0]),
        ("b@h", "x1", printed[1]),
    ):
        env = {
            (Atom("app"), Atom(secret_key)): {
                "hash": len(secret_text),
                "text": secret_text.encode(),
            },
            (Atom("app"), Atom("opts")): {"hash": len(opts_text), "text": opts_text.encode()},
        }
        snaps[node] = node_snapshot(node, "shop", "fuzz", 1e6, 0.01, {"env": env})
        checker.on_snapshot(snaps[node])
    checker.on_family(snaps, [NodeStatus(node, "shop", NodeState.UP) for node in snaps])
    assert any(a.id == "global_config_inconsistent" for a in engine.active())
    alarm = Alarm(
        key=AlarmKey("custom", NODE),
        severity=Severity.MAJOR,
        node=NODE,
        family="shop",
        cluster="fuzz",
        cause=f"bad config {printed[0]}",
        repair="fix it",
        info={"config": structured, secret_key: value_text},
    )
    notifier.alarm_event(AlarmEvent(EventKind.RAISED, alarm))

    # Audit records: SetEnv of a secret key (request and response), through
    # the notifier (Loki and stderr) and alone (stderr).
    request = config_pb2.SetEnvRequest(node=NODE, app="app", key=secret_key, value=value_text)
    response = config_pb2.SetEnvResponse(previous=value_text, was_set=True, value=printed[0])
    details = {
        "request": request_details(request),
        "response": response_summary("/beamside.v1.Config/SetEnv", response, request),
    }
    record = AuditRecord("alice", "operator", "Config/SetEnv", NODE, "ok", True, details)
    notifier.audit(record)
    failed = AuditRecord(
        "bob", "admin", "Eval/Evaluate", NODE, f"INTERNAL: {printed[1]}", False, {"raw": structured}
    )
    log_audit(failed)

    # The sidecar's own log: message, extras, traceback.
    log.warning("node said %s", printed[0], extra={"config": structured, secret_key: value_text})
    try:
        raise RuntimeError(f"could not parse {printed[1]}")
    except RuntimeError:
        log.exception("failed", extra={"detail": printed[0]})
    return planted


def test_no_planted_secret_in_any_line() -> None:
    rng = random.Random(SEED)
    lines = Lines()
    for name in ("tests.redact_fuzz", "sidecar"):
        logging.getLogger(name).addHandler(lines)
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        secrets: list[str] = []
        visible: list[str] = []
        for n in range(CONFIGS):
            before = len(lines.texts)
            planted = produce(rng, lines, n)
            produced = "\n".join(lines.texts[before:])
            for secret in planted.secrets:
                assert secret not in produced, (n, secret, _context(produced, secret))
            secrets += planted.secrets
            visible += planted.visible
    finally:
        for name in ("tests.redact_fuzz", "sidecar"):
            logging.getLogger(name).removeHandler(lines)
    everything = "\n".join(lines.texts)
    # Not vacuous: many secrets were planted, the lines carried the configs
    # (their visible values) and the markers that replaced the secrets.
    assert len(secrets) > 3 * CONFIGS
    assert visible and all(v in everything for v in visible)
    assert everything.count("<redacted sha256:") > len(secrets)
    assert lines.entries >= 8 * CONFIGS


def _context(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 200) : at + 100]


if __name__ == "__main__":  # pragma: no cover - print one sample
    sample = Lines()
    produce(random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else SEED), sample, 0)
    print("\n".join(sample.texts))
