from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EvaluateRequest(_message.Message):
    __slots__ = ("node", "expression", "timeout_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    expression: str
    timeout_ms: int
    def __init__(self, node: _Optional[str] = ..., expression: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("result", "exception", "output", "duration_us")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    result: str
    exception: str
    output: str
    duration_us: int
    def __init__(self, result: _Optional[str] = ..., exception: _Optional[str] = ..., output: _Optional[str] = ..., duration_us: _Optional[int] = ...) -> None: ...
