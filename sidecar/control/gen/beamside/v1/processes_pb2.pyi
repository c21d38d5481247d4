from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TopRequest(_message.Message):
    __slots__ = ("node", "sort_by", "limit", "interval_ms", "count")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    node: str
    sort_by: str
    limit: int
    interval_ms: int
    count: int
    def __init__(self, node: _Optional[str] = ..., sort_by: _Optional[str] = ..., limit: _Optional[int] = ..., interval_ms: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class TopEntry(_message.Message):
    __slots__ = ("process", "reductions_change", "memory_change", "new")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    process: ProcessSummary
    reductions_change: int
    memory_change: int
    new: bool
    def __init__(self, process: _Optional[_Union[ProcessSummary, _Mapping]] = ..., reductions_change: _Optional[int] = ..., memory_change: _Optional[int] = ..., new: _Optional[bool] = ...) -> None: ...

class TopUpdate(_message.Message):
    __slots__ = ("node", "seq", "processes", "process_count", "truncated")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    node: str
    seq: int
    processes: _containers.RepeatedCompositeFieldContainer[TopEntry]
    process_count: int
    truncated: bool
    def __init__(self, node: _Optional[str] = ..., seq: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[TopEntry, _Mapping]]] = ..., process_count: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ("node", "sort_by", "limit", "name_filter", "module_filter", "sample_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NAME_FILTER_FIELD_NUMBER: _ClassVar[int]
    MODULE_FILTER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    sort_by: str
    limit: int
    name_filter: str
    module_filter: str
    sample_ms: int
    def __init__(self, node: _Optional[str] = ..., sort_by: _Optional[str] = ..., limit: _Optional[int] = ..., name_filter: _Optional[str] = ..., module_filter: _Optional[str] = ..., sample_ms: _Optional[int] = ...) -> None: ...

class ProcessSummary(_message.Message):
    __slots__ = ("pid", "registered_name", "memory", "message_queue_len", "reductions", "current_function", "initial_call", "status", "reductions_delta")
    PID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_QUEUE_LEN_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CALL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_DELTA_FIELD_NUMBER: _ClassVar[int]
    pid: str
    registered_name: str
    memory: int
    message_queue_len: int
    reductions: int
    current_function: str
    initial_call: str
    status: str
    reductions_delta: int
    def __init__(self, pid: _Optional[str] = ..., registered_name: _Optional[str] = ..., memory: _Optional[int] = ..., message_queue_len: _Optional[int] = ..., reductions: _Optional[int] = ..., current_function: _Optional[str] = ..., initial_call: _Optional[str] = ..., status: _Optional[str] = ..., reductions_delta: _Optional[int] = ...) -> None: ...

class ListProcessesResponse(_message.Message):
    __slots__ = ("processes", "process_count", "walked", "vanished", "truncated", "duration_us")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    WALKED_FIELD_NUMBER: _ClassVar[int]
    VANISHED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessSummary]
    process_count: int
    walked: int
    vanished: int
    truncated: bool
    duration_us: int
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessSummary, _Mapping]]] = ..., process_count: _Optional[int] = ..., walked: _Optional[int] = ..., vanished: _Optional[int] = ..., truncated: _Optional[bool] = ..., duration_us: _Optional[int] = ...) -> None: ...

class GetProcessRequest(_message.Message):
    __slots__ = ("node", "pid", "messages", "skip_state", "state_timeout_ms", "sys_status")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SKIP_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SYS_STATUS_FIELD_NUMBER: _ClassVar[int]
    node: str
    pid: str
    messages: int
    skip_state: bool
    state_timeout_ms: int
    sys_status: bool
    def __init__(self, node: _Optional[str] = ..., pid: _Optional[str] = ..., messages: _Optional[int] = ..., skip_state: _Optional[bool] = ..., state_timeout_ms: _Optional[int] = ..., sys_status: _Optional[bool] = ...) -> None: ...

class DictionaryEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GetProcessResponse(_message.Message):
    __slots__ = ("pid", "registered_name", "status", "current_function", "initial_call", "memory", "message_queue_len", "reductions", "heap_size", "total_heap_size", "stack_size", "trap_exit", "priority", "group_leader", "links", "links_count", "monitors", "monitored_by", "stacktrace", "garbage_collection", "dictionary", "dictionary_size", "messages", "messages_error", "state", "state_error", "sys_status", "sys_status_error")
    PID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CALL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_QUEUE_LEN_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_FIELD_NUMBER: _ClassVar[int]
    HEAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HEAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STACK_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAP_EXIT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GROUP_LEADER_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    LINKS_COUNT_FIELD_NUMBER: _ClassVar[int]
    MONITORS_FIELD_NUMBER: _ClassVar[int]
    MONITORED_BY_FIELD_NUMBER: _ClassVar[int]
    STACKTRACE_FIELD_NUMBER: _ClassVar[int]
    GARBAGE_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    SYS_STATUS_FIELD_NUMBER: _ClassVar[int]
    SYS_STATUS_ERROR_FIELD_NUMBER: _ClassVar[int]
    pid: str
    registered_name: str
    status: str
    current_function: str
    initial_call: str
    memory: int
    message_queue_len: int
    reductions: int
    heap_size: int
    total_heap_size: int
    stack_size: int
    trap_exit: bool
    priority: str
    group_leader: str
    links: _containers.RepeatedScalarFieldContainer[str]
    links_count: int
    monitors: _containers.RepeatedScalarFieldContainer[str]
    monitored_by: _containers.RepeatedScalarFieldContainer[str]
    stacktrace: _containers.RepeatedScalarFieldContainer[str]
    garbage_collection: str
    dictionary: _containers.RepeatedCompositeFieldContainer[DictionaryEntry]
    dictionary_size: int
    messages: _containers.RepeatedScalarFieldContainer[str]
    messages_error: str
    state: str
    state_error: str
    sys_status: str
    sys_status_error: str
    def __init__(self, pid: _Optional[str] = ..., registered_name: _Optional[str] = ..., status: _Optional[str] = ..., current_function: _Optional[str] = ..., initial_call: _Optional[str] = ..., memory: _Optional[int] = ..., message_queue_len: _Optional[int] = ..., reductions: _Optional[int] = ..., heap_size: _Optional[int] = ..., total_heap_size: _Optional[int] = ..., stack_size: _Optional[int] = ..., trap_exit: _Optional[bool] = ..., priority: _Optional[str] = ..., group_leader: _Optional[str] = ..., links: _Optional[_Iterable[str]] = ..., links_count: _Optional[int] = ..., monitors: _Optional[_Iterable[str]] = ..., monitored_by: _Optional[_Iterable[str]] = ..., stacktrace: _Optional[_Iterable[str]] = ..., garbage_collection: _Optional[str] = ..., dictionary: _Optional[_Iterable[_Union[DictionaryEntry, _Mapping]]] = ..., dictionary_size: _Optional[int] = ..., messages: _Optional[_Iterable[str]] = ..., messages_error: _Optional[str] = ..., state: _Optional[str] = ..., state_error: _Optional[str] = ..., sys_status: _Optional[str] = ..., sys_status_error: _Optional[str] = ...) -> None: ...

class TerminateProcessRequest(_message.Message):
    __slots__ = ("node", "pid", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    pid: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., pid: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TerminateProcessResponse(_message.Message):
    __slots__ = ("pid", "reason", "terminated")
    PID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    pid: str
    reason: str
    terminated: bool
    def __init__(self, pid: _Optional[str] = ..., reason: _Optional[str] = ..., terminated: _Optional[bool] = ...) -> None: ...

class GarbageCollectRequest(_message.Message):
    __slots__ = ("node", "pid", "batch_size", "pause_ms", "timeout_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    pid: str
    batch_size: int
    pause_ms: int
    timeout_ms: int
    def __init__(self, node: _Optional[str] = ..., pid: _Optional[str] = ..., batch_size: _Optional[int] = ..., pause_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class GarbageCollectResponse(_message.Message):
    __slots__ = ("collected", "bytes_freed", "vanished", "batches", "truncated", "processes_memory_before", "processes_memory_after", "duration_us")
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    VANISHED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_MEMORY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_MEMORY_AFTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    collected: int
    bytes_freed: int
    vanished: int
    batches: int
    truncated: bool
    processes_memory_before: int
    processes_memory_after: int
    duration_us: int
    def __init__(self, collected: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., vanished: _Optional[int] = ..., batches: _Optional[int] = ..., truncated: _Optional[bool] = ..., processes_memory_before: _Optional[int] = ..., processes_memory_after: _Optional[int] = ..., duration_us: _Optional[int] = ...) -> None: ...

class TerminateShellsRequest(_message.Message):
    __slots__ = ("node", "include_local")
    NODE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOCAL_FIELD_NUMBER: _ClassVar[int]
    node: str
    include_local: bool
    def __init__(self, node: _Optional[str] = ..., include_local: _Optional[bool] = ...) -> None: ...

class TerminatedShell(_message.Message):
    __slots__ = ("pid", "kind", "remote", "group_leader_node", "current_function")
    PID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    GROUP_LEADER_NODE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    pid: str
    kind: str
    remote: bool
    group_leader_node: str
    current_function: str
    def __init__(self, pid: _Optional[str] = ..., kind: _Optional[str] = ..., remote: _Optional[bool] = ..., group_leader_node: _Optional[str] = ..., current_function: _Optional[str] = ...) -> None: ...

class TerminateShellsResponse(_message.Message):
    __slots__ = ("terminated", "spared")
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    SPARED_FIELD_NUMBER: _ClassVar[int]
    terminated: _containers.RepeatedCompositeFieldContainer[TerminatedShell]
    spared: int
    def __init__(self, terminated: _Optional[_Iterable[_Union[TerminatedShell, _Mapping]]] = ..., spared: _Optional[int] = ...) -> None: ...
