"""The audit trail of the control plane: one record type, one way to write it.

Every mutating control-plane call (and every refusal of one) becomes an
:class:`AuditRecord`; :func:`log_audit` writes it as one ``sidecar.audit``
log line (stderr, JSON) and, when given a Loki sink, as one Loki entry.
Both say the same thing - who, which action, which node, the result, and
what was asked (the request: the expression, the pid, the app/key ...) - from
the one dict :func:`audit_fields` builds.

Secrets: a record's ``details`` (request and response) are redacted before
the record is made, by :func:`redact_request` (values of
:data:`HIDDEN_FIELDS` - a configuration value may be a password - become
their marker, whatever the key; everything else goes through the one rule of
:mod:`sidecar.redact`; long texts are cut), and :func:`audit_fields` applies
the rule again to everything a line says (the result, an error message, the
details of a record made elsewhere), so neither path ever prints a secret.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .own_logging import LOG_RECORD_ATTRIBUTES, REDACTED
from .redact import marker, redact_json, redact_text

__all__ = [
    "HIDDEN_FIELDS",
    "MAX_AUDIT_TEXT",
    "AuditRecord",
    "AuditSink",
    "LokiAudit",
    "audit_fields",
    "audit_log",
    "log_audit",
    "redact_request",
]

audit_log = logging.getLogger("sidecar.audit")

MAX_AUDIT_TEXT: Final = 2000
#: Request fields whose value is never written to the audit trail (a config
#: value may be a password): their marker stands in for them.
HIDDEN_FIELDS: Final = frozenset({"value"})


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One mutating control-plane request: who asked what of which node, and how it went."""

    who: str  # the token's name (never the token itself)
    role: str
    action: str  # e.g. "Processes/GarbageCollect"
    node: str  # "" when not about one node
    result: str  # "ok", or the error status and message
    ok: bool
    #: already redacted (:func:`redact_request`): request, response, duration_ms
    details: Mapping[str, Any] = field(default_factory=dict)
    time_ns: int = field(default_factory=time.time_ns)


AuditSink = Callable[[AuditRecord], None]
#: ships a record to Loki, given the record and its line's fields
LokiAudit = Callable[[AuditRecord, Mapping[str, Any]], None]


def redact_request(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A request or a response (as a dict) fit for the audit trail: hidden
    fields replaced by their marker, secrets redacted, long texts cut."""
    hidden = {
        key: marker(value) if key in HIDDEN_FIELDS and isinstance(value, str) and value else value
        for key, value in raw.items()
    }
    redacted = redact_json(hidden)  # as a whole: {"key": ..., "value": ...} is a pair
    details: dict[str, Any] = {}
    for key, value in (redacted if isinstance(redacted, dict) else {"request": redacted}).items():
        if isinstance(value, str) and len(value) > MAX_AUDIT_TEXT:
            value = value[:MAX_AUDIT_TEXT] + "..."
        details[str(key)] = value
    return details


def audit_fields(record: AuditRecord) -> dict[str, Any]:
    """What an audit line says: the Loki line's JSON, the stderr line's fields
    (redacted: :func:`sidecar.redact.redact_json`)."""
    result = redact_text(record.result)
    fields: dict[str, Any] = {
        "message": f"{record.action} by {record.who}: {result}",
        "event": "audit",
        "action": record.action,
        "who": record.who,
        "role": record.role,
        "result": result,
        "ok": record.ok,
    }
    details = redact_json(dict(record.details))
    for key, value in (details if isinstance(details, dict) else {"details": details}).items():
        if key not in fields:
            fields[key] = value
    return fields


def log_audit(record: AuditRecord, loki: LokiAudit | None = None) -> None:
    """Write ``record``: one ``sidecar.audit`` log line, and to ``loki`` if given.

    The log line's text names who did what where, with the request; its
    structured fields are the Loki line's (``node`` added; a detail whose name
    a log record reserves is kept under ``detail_<name>``).
    """
    fields = audit_fields(record)
    # The text is made of the redacted fields only.
    extra: dict[str, Any] = {"audit": True, "node": record.node, REDACTED: True}
    for key, value in fields.items():
        if key == "message":
            continue
        extra[f"detail_{key}" if key in LOG_RECORD_ATTRIBUTES or key in extra else key] = value
    request = fields.get("request")
    asked = f" {_compact(request)}" if request else ""
    audit_log.info(
        "%s by %s (%s) on %s: %s%s",
        record.action,
        record.who,
        record.role,
        record.node or "-",
        fields["result"],
        asked,
        extra=extra,
    )
    if loki is not None:
        loki(record, fields)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
