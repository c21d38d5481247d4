from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AllocatorsRequest(_message.Message):
    __slots__ = ("node", "allocators", "per_instance", "sort", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATORS_FIELD_NUMBER: _ClassVar[int]
    PER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    allocators: _containers.RepeatedScalarFieldContainer[str]
    per_instance: bool
    sort: str
    limit: int
    def __init__(self, node: _Optional[str] = ..., allocators: _Optional[_Iterable[str]] = ..., per_instance: _Optional[bool] = ..., sort: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class CarrierSizes(_message.Message):
    __slots__ = ("blocks", "blocks_bytes", "carriers", "carriers_bytes")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CARRIERS_FIELD_NUMBER: _ClassVar[int]
    CARRIERS_BYTES_FIELD_NUMBER: _ClassVar[int]
    blocks: int
    blocks_bytes: int
    carriers: int
    carriers_bytes: int
    def __init__(self, blocks: _Optional[int] = ..., blocks_bytes: _Optional[int] = ..., carriers: _Optional[int] = ..., carriers_bytes: _Optional[int] = ...) -> None: ...

class AllocatorUsage(_message.Message):
    __slots__ = ("allocator", "instance", "instances", "mbcs", "sbcs", "mbcs_pool", "blocks_bytes", "carriers_bytes", "usage", "average_block_bytes")
    ALLOCATOR_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MBCS_FIELD_NUMBER: _ClassVar[int]
    SBCS_FIELD_NUMBER: _ClassVar[int]
    MBCS_POOL_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CARRIERS_BYTES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_BLOCK_BYTES_FIELD_NUMBER: _ClassVar[int]
    allocator: str
    instance: int
    instances: int
    mbcs: CarrierSizes
    sbcs: CarrierSizes
    mbcs_pool: CarrierSizes
    blocks_bytes: int
    carriers_bytes: int
    usage: float
    average_block_bytes: float
    def __init__(self, allocator: _Optional[str] = ..., instance: _Optional[int] = ..., instances: _Optional[int] = ..., mbcs: _Optional[_Union[CarrierSizes, _Mapping]] = ..., sbcs: _Optional[_Union[CarrierSizes, _Mapping]] = ..., mbcs_pool: _Optional[_Union[CarrierSizes, _Mapping]] = ..., blocks_bytes: _Optional[int] = ..., carriers_bytes: _Optional[int] = ..., usage: _Optional[float] = ..., average_block_bytes: _Optional[float] = ...) -> None: ...

class SegmentCache(_message.Message):
    __slots__ = ("instance", "calls", "hits", "hit_rate")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    instance: int
    calls: int
    hits: int
    hit_rate: float
    def __init__(self, instance: _Optional[int] = ..., calls: _Optional[int] = ..., hits: _Optional[int] = ..., hit_rate: _Optional[float] = ...) -> None: ...

class AllocatorsResponse(_message.Message):
    __slots__ = ("allocators", "blocks_bytes", "carriers_bytes", "memory_total_bytes", "segment_cache", "truncated", "memory_code_bytes")
    ALLOCATORS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CARRIERS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_CACHE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CODE_BYTES_FIELD_NUMBER: _ClassVar[int]
    allocators: _containers.RepeatedCompositeFieldContainer[AllocatorUsage]
    blocks_bytes: int
    carriers_bytes: int
    memory_total_bytes: int
    segment_cache: _containers.RepeatedCompositeFieldContainer[SegmentCache]
    truncated: bool
    memory_code_bytes: int
    def __init__(self, allocators: _Optional[_Iterable[_Union[AllocatorUsage, _Mapping]]] = ..., blocks_bytes: _Optional[int] = ..., carriers_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., segment_cache: _Optional[_Iterable[_Union[SegmentCache, _Mapping]]] = ..., truncated: _Optional[bool] = ..., memory_code_bytes: _Optional[int] = ...) -> None: ...
