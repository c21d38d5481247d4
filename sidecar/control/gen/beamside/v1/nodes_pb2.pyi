from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplicationTreeRequest(_message.Message):
    __slots__ = ("node", "application", "max_depth", "max_children")
    NODE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    node: str
    application: str
    max_depth: int
    max_children: int
    def __init__(self, node: _Optional[str] = ..., application: _Optional[str] = ..., max_depth: _Optional[int] = ..., max_children: _Optional[int] = ...) -> None: ...

class SupervisionNode(_message.Message):
    __slots__ = ("id", "pid", "registered_name", "type", "modules", "strategy", "child_count", "active", "children", "truncated", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CHILD_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    pid: str
    registered_name: str
    type: str
    modules: _containers.RepeatedScalarFieldContainer[str]
    strategy: str
    child_count: int
    active: int
    children: _containers.RepeatedCompositeFieldContainer[SupervisionNode]
    truncated: bool
    error: str
    def __init__(self, id: _Optional[str] = ..., pid: _Optional[str] = ..., registered_name: _Optional[str] = ..., type: _Optional[str] = ..., modules: _Optional[_Iterable[str]] = ..., strategy: _Optional[str] = ..., child_count: _Optional[int] = ..., active: _Optional[int] = ..., children: _Optional[_Iterable[_Union[SupervisionNode, _Mapping]]] = ..., truncated: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ApplicationInfo(_message.Message):
    __slots__ = ("name", "version", "description", "master", "tree", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    master: str
    tree: SupervisionNode
    error: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., master: _Optional[str] = ..., tree: _Optional[_Union[SupervisionNode, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class ApplicationTreeResponse(_message.Message):
    __slots__ = ("applications", "truncated")
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    applications: _containers.RepeatedCompositeFieldContainer[ApplicationInfo]
    truncated: bool
    def __init__(self, applications: _Optional[_Iterable[_Union[ApplicationInfo, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("family",)
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    family: str
    def __init__(self, family: _Optional[str] = ...) -> None: ...

class NodeSummary(_message.Message):
    __slots__ = ("name", "family", "up", "otp_release", "uptime_seconds", "state", "agent_version", "last_error", "discovered_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    OTP_RELEASE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    up: bool
    otp_release: str
    uptime_seconds: float
    state: str
    agent_version: int
    last_error: str
    discovered_by: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., up: _Optional[bool] = ..., otp_release: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., state: _Optional[str] = ..., agent_version: _Optional[int] = ..., last_error: _Optional[str] = ..., discovered_by: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeSummary]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeSummary, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class Application(_message.Message):
    __slots__ = ("name", "version", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node", "system_info", "applications", "release_name", "release_version", "release_source", "erts_version", "releases")
    class SystemInfoEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_INFO_FIELD_NUMBER: _ClassVar[int]
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_NAME_FIELD_NUMBER: _ClassVar[int]
    RELEASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERTS_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    node: NodeSummary
    system_info: _containers.ScalarMap[str, str]
    applications: _containers.RepeatedCompositeFieldContainer[Application]
    release_name: str
    release_version: str
    release_source: str
    erts_version: str
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    def __init__(self, node: _Optional[_Union[NodeSummary, _Mapping]] = ..., system_info: _Optional[_Mapping[str, str]] = ..., applications: _Optional[_Iterable[_Union[Application, _Mapping]]] = ..., release_name: _Optional[str] = ..., release_version: _Optional[str] = ..., release_source: _Optional[str] = ..., erts_version: _Optional[str] = ..., releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("name", "version", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    status: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class AddNodeRequest(_message.Message):
    __slots__ = ("node", "cookie_file", "cookie_env", "family")
    NODE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FILE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_ENV_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    node: str
    cookie_file: str
    cookie_env: str
    family: str
    def __init__(self, node: _Optional[str] = ..., cookie_file: _Optional[str] = ..., cookie_env: _Optional[str] = ..., family: _Optional[str] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("node", "tls")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    node: NodeSummary
    tls: bool
    def __init__(self, node: _Optional[_Union[NodeSummary, _Mapping]] = ..., tls: _Optional[bool] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...
