from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListNodesRequest(_message.Message):
    __slots__ = ("local_only",)
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    local_only: bool
    def __init__(self, local_only: _Optional[bool] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "address", "ready", "error", "engine_version", "engine_api_version", "image_count", "images_size_bytes", "local")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_API_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    ready: bool
    error: NodeError
    engine_version: str
    engine_api_version: str
    image_count: int
    images_size_bytes: int
    local: bool
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., ready: _Optional[bool] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., engine_version: _Optional[str] = ..., engine_api_version: _Optional[str] = ..., image_count: _Optional[int] = ..., images_size_bytes: _Optional[int] = ..., local: _Optional[bool] = ...) -> None: ...

class NodeError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FindImageRequest(_message.Message):
    __slots__ = ("image", "local_only")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    image: str
    local_only: bool
    def __init__(self, image: _Optional[str] = ..., local_only: _Optional[bool] = ...) -> None: ...

class FindImageResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeImage]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeImage, _Mapping]]] = ...) -> None: ...

class NodeImage(_message.Message):
    __slots__ = ("node", "address", "present", "image_id", "repo_digests", "repo_tags", "error", "local")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    node: str
    address: str
    present: bool
    image_id: str
    repo_digests: _containers.RepeatedScalarFieldContainer[str]
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    error: NodeError
    local: bool
    def __init__(self, node: _Optional[str] = ..., address: _Optional[str] = ..., present: _Optional[bool] = ..., image_id: _Optional[str] = ..., repo_digests: _Optional[_Iterable[str]] = ..., repo_tags: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., local: _Optional[bool] = ...) -> None: ...
