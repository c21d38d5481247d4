import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListAlarmsRequest(_message.Message):
    __slots__ = ("node", "family", "min_severity")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    node: str
    family: str
    min_severity: str
    def __init__(self, node: _Optional[str] = ..., family: _Optional[str] = ..., min_severity: _Optional[str] = ...) -> None: ...

class AlarmComment(_message.Message):
    __slots__ = ("at", "who", "text")
    AT_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    who: str
    text: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., who: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Alarm(_message.Message):
    __slots__ = ("alarm", "source", "severity", "node", "family", "cluster", "cause", "repair", "info_json", "raised_at", "updated_at", "acknowledged_by", "comments", "active")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    alarm: str
    source: str
    severity: str
    node: str
    family: str
    cluster: str
    cause: str
    repair: str
    info_json: str
    raised_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    comments: _containers.RepeatedCompositeFieldContainer[AlarmComment]
    active: bool
    def __init__(self, alarm: _Optional[str] = ..., source: _Optional[str] = ..., severity: _Optional[str] = ..., node: _Optional[str] = ..., family: _Optional[str] = ..., cluster: _Optional[str] = ..., cause: _Optional[str] = ..., repair: _Optional[str] = ..., info_json: _Optional[str] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., comments: _Optional[_Iterable[_Union[AlarmComment, _Mapping]]] = ..., active: _Optional[bool] = ...) -> None: ...

class ListAlarmsResponse(_message.Message):
    __slots__ = ("alarms",)
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    alarms: _containers.RepeatedCompositeFieldContainer[Alarm]
    def __init__(self, alarms: _Optional[_Iterable[_Union[Alarm, _Mapping]]] = ...) -> None: ...

class AlarmActionRequest(_message.Message):
    __slots__ = ("alarm", "source")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    alarm: str
    source: str
    def __init__(self, alarm: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class CommentRequest(_message.Message):
    __slots__ = ("alarm", "source", "text")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    alarm: str
    source: str
    text: str
    def __init__(self, alarm: _Optional[str] = ..., source: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
