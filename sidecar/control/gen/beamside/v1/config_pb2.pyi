from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnvEntry(_message.Message):
    __slots__ = ("key", "value", "redacted")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    redacted: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., redacted: _Optional[bool] = ...) -> None: ...

class GetEnvRequest(_message.Message):
    __slots__ = ("node", "app", "key", "reveal_secrets")
    NODE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REVEAL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    node: str
    app: str
    key: str
    reveal_secrets: bool
    def __init__(self, node: _Optional[str] = ..., app: _Optional[str] = ..., key: _Optional[str] = ..., reveal_secrets: _Optional[bool] = ...) -> None: ...

class GetEnvResponse(_message.Message):
    __slots__ = ("app", "loaded", "entries")
    APP_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    app: str
    loaded: bool
    entries: _containers.RepeatedCompositeFieldContainer[EnvEntry]
    def __init__(self, app: _Optional[str] = ..., loaded: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[EnvEntry, _Mapping]]] = ...) -> None: ...

class SetEnvRequest(_message.Message):
    __slots__ = ("node", "app", "key", "value", "persistent")
    NODE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    node: str
    app: str
    key: str
    value: str
    persistent: bool
    def __init__(self, node: _Optional[str] = ..., app: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., persistent: _Optional[bool] = ...) -> None: ...

class SetEnvResponse(_message.Message):
    __slots__ = ("previous", "was_set", "value")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    WAS_SET_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    previous: str
    was_set: bool
    value: str
    def __init__(self, previous: _Optional[str] = ..., was_set: _Optional[bool] = ..., value: _Optional[str] = ...) -> None: ...

class GlobalParameter(_message.Message):
    __slots__ = ("app", "key", "family")
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    app: str
    key: str
    family: str
    def __init__(self, app: _Optional[str] = ..., key: _Optional[str] = ..., family: _Optional[str] = ...) -> None: ...

class MarkGlobalRequest(_message.Message):
    __slots__ = ("app", "key", "family")
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    app: str
    key: str
    family: str
    def __init__(self, app: _Optional[str] = ..., key: _Optional[str] = ..., family: _Optional[str] = ...) -> None: ...

class MarkGlobalResponse(_message.Message):
    __slots__ = ("globals",)
    GLOBALS_FIELD_NUMBER: _ClassVar[int]
    globals: _containers.RepeatedCompositeFieldContainer[GlobalParameter]
    def __init__(self, globals: _Optional[_Iterable[_Union[GlobalParameter, _Mapping]]] = ...) -> None: ...

class SetGlobalRequest(_message.Message):
    __slots__ = ("family", "app", "key", "value", "persistent")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    family: str
    app: str
    key: str
    value: str
    persistent: bool
    def __init__(self, family: _Optional[str] = ..., app: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., persistent: _Optional[bool] = ...) -> None: ...

class NodeResult(_message.Message):
    __slots__ = ("node", "ok", "error", "previous")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    node: str
    ok: bool
    error: str
    previous: str
    def __init__(self, node: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., previous: _Optional[str] = ...) -> None: ...

class SetGlobalResponse(_message.Message):
    __slots__ = ("results", "value")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[NodeResult]
    value: str
    def __init__(self, results: _Optional[_Iterable[_Union[NodeResult, _Mapping]]] = ..., value: _Optional[str] = ...) -> None: ...

class DiffConfigRequest(_message.Message):
    __slots__ = ("family", "app")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    family: str
    app: str
    def __init__(self, family: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...

class ConfigDiff(_message.Message):
    __slots__ = ("app", "key", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    app: str
    key: str
    values: _containers.ScalarMap[str, str]
    def __init__(self, app: _Optional[str] = ..., key: _Optional[str] = ..., values: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DiffConfigResponse(_message.Message):
    __slots__ = ("nodes", "unavailable", "differences")
    class UnavailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    unavailable: _containers.ScalarMap[str, str]
    differences: _containers.RepeatedCompositeFieldContainer[ConfigDiff]
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., unavailable: _Optional[_Mapping[str, str]] = ..., differences: _Optional[_Iterable[_Union[ConfigDiff, _Mapping]]] = ...) -> None: ...
