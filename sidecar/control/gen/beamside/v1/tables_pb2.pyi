from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListTablesRequest(_message.Message):
    __slots__ = ("node", "order_by", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    order_by: str
    limit: int
    def __init__(self, node: _Optional[str] = ..., order_by: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("id", "name", "type", "size", "memory_words", "owner_pid", "owner_name", "protection", "named_table", "memory_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WORDS_FIELD_NUMBER: _ClassVar[int]
    OWNER_PID_FIELD_NUMBER: _ClassVar[int]
    OWNER_NAME_FIELD_NUMBER: _ClassVar[int]
    PROTECTION_FIELD_NUMBER: _ClassVar[int]
    NAMED_TABLE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    size: int
    memory_words: int
    owner_pid: str
    owner_name: str
    protection: str
    named_table: bool
    memory_bytes: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., size: _Optional[int] = ..., memory_words: _Optional[int] = ..., owner_pid: _Optional[str] = ..., owner_name: _Optional[str] = ..., protection: _Optional[str] = ..., named_table: _Optional[bool] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class ListTablesResponse(_message.Message):
    __slots__ = ("tables", "total")
    TABLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    total: int
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ReadTableRequest(_message.Message):
    __slots__ = ("node", "table", "limit", "continuation")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_FIELD_NUMBER: _ClassVar[int]
    node: str
    table: str
    limit: int
    continuation: str
    def __init__(self, node: _Optional[str] = ..., table: _Optional[str] = ..., limit: _Optional[int] = ..., continuation: _Optional[str] = ...) -> None: ...

class ReadTableResponse(_message.Message):
    __slots__ = ("rows", "continuation", "size")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CONTINUATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedScalarFieldContainer[str]
    continuation: str
    size: int
    def __init__(self, rows: _Optional[_Iterable[str]] = ..., continuation: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...
