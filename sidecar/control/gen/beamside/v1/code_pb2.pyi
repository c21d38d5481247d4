from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModulesRequest(_message.Message):
    __slots__ = ("node", "prefix", "only_old_code", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ONLY_OLD_CODE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    prefix: str
    only_old_code: bool
    limit: int
    def __init__(self, node: _Optional[str] = ..., prefix: _Optional[str] = ..., only_old_code: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ModuleInfo(_message.Message):
    __slots__ = ("name", "md5", "old_code", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MD5_FIELD_NUMBER: _ClassVar[int]
    OLD_CODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    md5: str
    old_code: bool
    path: str
    def __init__(self, name: _Optional[str] = ..., md5: _Optional[str] = ..., old_code: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class ListModulesResponse(_message.Message):
    __slots__ = ("modules", "total", "matching")
    MODULES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[ModuleInfo]
    total: int
    matching: int
    def __init__(self, modules: _Optional[_Iterable[_Union[ModuleInfo, _Mapping]]] = ..., total: _Optional[int] = ..., matching: _Optional[int] = ...) -> None: ...

class SoftPurgeRequest(_message.Message):
    __slots__ = ("node", "module")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    node: str
    module: str
    def __init__(self, node: _Optional[str] = ..., module: _Optional[str] = ...) -> None: ...

class SoftPurgeResponse(_message.Message):
    __slots__ = ("purged", "in_use")
    PURGED_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    purged: _containers.RepeatedScalarFieldContainer[str]
    in_use: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, purged: _Optional[_Iterable[str]] = ..., in_use: _Optional[_Iterable[str]] = ...) -> None: ...

class DiffModulesRequest(_message.Message):
    __slots__ = ("family", "prefix", "limit")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    family: str
    prefix: str
    limit: int
    def __init__(self, family: _Optional[str] = ..., prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ModuleDiff(_message.Message):
    __slots__ = ("module", "md5")
    class Md5Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MD5_FIELD_NUMBER: _ClassVar[int]
    module: str
    md5: _containers.ScalarMap[str, str]
    def __init__(self, module: _Optional[str] = ..., md5: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DiffModulesResponse(_message.Message):
    __slots__ = ("nodes", "unavailable", "differences", "identical")
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
    IDENTICAL_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    unavailable: _containers.ScalarMap[str, str]
    differences: _containers.RepeatedCompositeFieldContainer[ModuleDiff]
    identical: int
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., unavailable: _Optional[_Mapping[str, str]] = ..., differences: _Optional[_Iterable[_Union[ModuleDiff, _Mapping]]] = ..., identical: _Optional[int] = ...) -> None: ...
