"""beamside's own logging: JSON log lines on stderr for the daemon (one object
per line).  The nodes' logs are another matter (``sidecar/notify.py``, Loki).

Every line goes through the one redaction rule (:mod:`sidecar.redact`): the
message and a traceback as free text, each ``extra=`` field as a value stored
under its name (a field whose name names a secret shows only its marker)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

from .redact import redact_json, redact_text

#: Attributes every LogRecord has; anything else was passed with ``extra=``
#: (and an ``extra=`` key among these would be refused).
LOG_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


#: ``extra={REDACTED: True}``: the message was built from redacted values
#: already (the audit line), and is not redacted again.
REDACTED: Final = "_beamside_redacted"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record)
            if getattr(record, REDACTED, False)
            else redact_text(_message(record)),
        }
        for key, value in vars(record).items():
            if key not in LOG_RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = redact_json(value, key)
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # a bad format string must not hide the line
        return f"{record.msg!r} (unformattable: {exc!r})"


def setup_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
