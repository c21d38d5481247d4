from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartTraceRequest(_message.Message):
    __slots__ = ("node", "family", "all_nodes", "module", "function", "arity", "match_spec", "return_trace", "process", "send", "receive", "max_events_per_node", "rate_events", "rate_ms", "budget", "max_duration_ms", "max_chars")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ALL_NODES_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARITY_FIELD_NUMBER: _ClassVar[int]
    MATCH_SPEC_FIELD_NUMBER: _ClassVar[int]
    RETURN_TRACE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    RATE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RATE_MS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    node: str
    family: str
    all_nodes: bool
    module: str
    function: str
    arity: int
    match_spec: str
    return_trace: bool
    process: str
    send: bool
    receive: bool
    max_events_per_node: int
    rate_events: int
    rate_ms: int
    budget: int
    max_duration_ms: int
    max_chars: int
    def __init__(self, node: _Optional[str] = ..., family: _Optional[str] = ..., all_nodes: _Optional[bool] = ..., module: _Optional[str] = ..., function: _Optional[str] = ..., arity: _Optional[int] = ..., match_spec: _Optional[str] = ..., return_trace: _Optional[bool] = ..., process: _Optional[str] = ..., send: _Optional[bool] = ..., receive: _Optional[bool] = ..., max_events_per_node: _Optional[int] = ..., rate_events: _Optional[int] = ..., rate_ms: _Optional[int] = ..., budget: _Optional[int] = ..., max_duration_ms: _Optional[int] = ..., max_chars: _Optional[int] = ...) -> None: ...

class TraceStarted(_message.Message):
    __slots__ = ("node", "tracer", "matched")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TRACER_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    node: str
    tracer: str
    matched: int
    def __init__(self, node: _Optional[str] = ..., tracer: _Optional[str] = ..., matched: _Optional[int] = ...) -> None: ...

class TraceEvent(_message.Message):
    __slots__ = ("node", "time_unix_nano", "pid", "type", "text")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    node: str
    time_unix_nano: int
    pid: str
    type: str
    text: str
    def __init__(self, node: _Optional[str] = ..., time_unix_nano: _Optional[int] = ..., pid: _Optional[str] = ..., type: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class NodeTraceEnd(_message.Message):
    __slots__ = ("node", "reason", "events", "discarded", "detail")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    events: int
    discarded: int
    detail: str
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ..., events: _Optional[int] = ..., discarded: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class TraceEnd(_message.Message):
    __slots__ = ("nodes", "events", "budget_reached")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_REACHED_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTraceEnd]
    events: int
    budget_reached: bool
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeTraceEnd, _Mapping]]] = ..., events: _Optional[int] = ..., budget_reached: _Optional[bool] = ...) -> None: ...

class TraceMessage(_message.Message):
    __slots__ = ("started", "event", "end")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    started: TraceStarted
    event: TraceEvent
    end: TraceEnd
    def __init__(self, started: _Optional[_Union[TraceStarted, _Mapping]] = ..., event: _Optional[_Union[TraceEvent, _Mapping]] = ..., end: _Optional[_Union[TraceEnd, _Mapping]] = ...) -> None: ...
