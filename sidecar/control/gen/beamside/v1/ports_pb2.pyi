from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListPortsRequest(_message.Message):
    __slots__ = ("node", "kind", "sort_by", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    kind: str
    sort_by: str
    limit: int
    def __init__(self, node: _Optional[str] = ..., kind: _Optional[str] = ..., sort_by: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class PortInfo(_message.Message):
    __slots__ = ("id", "kind", "driver", "local_address", "remote_address", "state", "owner_pid", "owner_name", "owner_initial_call", "input_bytes", "output_bytes", "queue_bytes", "memory_bytes", "os_pid", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OWNER_PID_FIELD_NUMBER: _ClassVar[int]
    OWNER_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_INITIAL_CALL_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_PID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    driver: str
    local_address: str
    remote_address: str
    state: str
    owner_pid: str
    owner_name: str
    owner_initial_call: str
    input_bytes: int
    output_bytes: int
    queue_bytes: int
    memory_bytes: int
    os_pid: int
    options: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., driver: _Optional[str] = ..., local_address: _Optional[str] = ..., remote_address: _Optional[str] = ..., state: _Optional[str] = ..., owner_pid: _Optional[str] = ..., owner_name: _Optional[str] = ..., owner_initial_call: _Optional[str] = ..., input_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ..., queue_bytes: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os_pid: _Optional[int] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PortTypeCount(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListPortsResponse(_message.Message):
    __slots__ = ("ports", "total", "walked", "vanished", "truncated", "types")
    PORTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    WALKED_FIELD_NUMBER: _ClassVar[int]
    VANISHED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    ports: _containers.RepeatedCompositeFieldContainer[PortInfo]
    total: int
    walked: int
    vanished: int
    truncated: bool
    types: _containers.RepeatedCompositeFieldContainer[PortTypeCount]
    def __init__(self, ports: _Optional[_Iterable[_Union[PortInfo, _Mapping]]] = ..., total: _Optional[int] = ..., walked: _Optional[int] = ..., vanished: _Optional[int] = ..., truncated: _Optional[bool] = ..., types: _Optional[_Iterable[_Union[PortTypeCount, _Mapping]]] = ...) -> None: ...
