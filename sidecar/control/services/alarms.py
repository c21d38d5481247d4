"""``beamside.v1.Alarms``: the alarm engine's active alarms; acknowledge, clear, comment.

Who acknowledged, cleared or commented is the caller's token name.
"""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.alarms.model import Alarm, AlarmKey, Severity
from sidecar.control.base import Context, Deps
from sidecar.control.errors import invalid, not_found
from sidecar.control.gen.beamside.v1 import alarms_pb2 as pb
from sidecar.control.identity import current_caller

MAX_COMMENT_CHARS = 2000


def _time(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def to_message(alarm: Alarm) -> pb.Alarm:
    return pb.Alarm(
        alarm=alarm.id,
        source=alarm.key.source,
        severity=str(alarm.severity),
        node=alarm.node,
        family=alarm.family,
        cluster=alarm.cluster,
        cause=alarm.cause,
        repair=alarm.repair,
        info_json=json.dumps(alarm.info, default=str, sort_keys=True),
        raised_at=_time(alarm.raised_at),
        updated_at=_time(alarm.updated_at),
        acknowledged_by=alarm.acknowledged_by or "",
        comments=[pb.AlarmComment(at=_time(c.at), who=c.who, text=c.text) for c in alarm.comments],
        active=alarm.active,
    )


def _key(alarm: str, source: str) -> AlarmKey:
    if not alarm:
        raise invalid("alarm is required (an alarm name, e.g. process_message_queue)")
    if not source:
        raise invalid("source is required (a node name, or family:<name>)")
    return AlarmKey(alarm, source)


class AlarmsService:
    def __init__(self, deps: Deps) -> None:
        self.engine = deps.alarms

    async def ListAlarms(
        self, request: pb.ListAlarmsRequest, context: Context
    ) -> pb.ListAlarmsResponse:
        minimum: Severity | None = None
        if request.min_severity:
            try:
                minimum = Severity.parse(request.min_severity)
            except ValueError as exc:
                raise invalid(f"min_severity: {exc}") from None
        alarms = [
            a
            for a in self.engine.active()
            if (not request.node or a.node == request.node)
            and (not request.family or a.family == request.family)
            and (minimum is None or a.severity >= minimum)
        ]
        return pb.ListAlarmsResponse(alarms=[to_message(a) for a in alarms])

    async def Acknowledge(self, request: pb.AlarmActionRequest, context: Context) -> pb.Alarm:
        key = _key(request.alarm, request.source)
        try:
            return to_message(self.engine.acknowledge(key, current_caller().name))
        except KeyError:
            raise not_found(f"no active alarm {key}") from None

    async def Clear(self, request: pb.AlarmActionRequest, context: Context) -> pb.Alarm:
        key = _key(request.alarm, request.source)
        try:
            return to_message(self.engine.clear(key, current_caller().name))
        except KeyError:
            raise not_found(f"no active alarm {key}") from None

    async def Comment(self, request: pb.CommentRequest, context: Context) -> pb.Alarm:
        key = _key(request.alarm, request.source)
        if not request.text.strip():
            raise invalid("text is required")
        if len(request.text) > MAX_COMMENT_CHARS:
            raise invalid(f"text is longer than {MAX_COMMENT_CHARS} characters")
        try:
            return to_message(self.engine.comment(key, current_caller().name, request.text))
        except KeyError:
            raise not_found(f"no active alarm {key}") from None
