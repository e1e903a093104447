from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from imagesvc.v1 import image_pb2 as _image_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
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
    __slots__ = ("name", "address", "ready", "error", "engine_version", "engine_api_version", "image_count", "images_size_bytes", "local", "kept_images")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_API_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    KEPT_IMAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    ready: bool
    error: NodeError
    engine_version: str
    engine_api_version: str
    image_count: int
    images_size_bytes: int
    local: bool
    kept_images: _containers.RepeatedCompositeFieldContainer[KeptImage]
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., ready: _Optional[bool] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., engine_version: _Optional[str] = ..., engine_api_version: _Optional[str] = ..., image_count: _Optional[int] = ..., images_size_bytes: _Optional[int] = ..., local: _Optional[bool] = ..., kept_images: _Optional[_Iterable[_Union[KeptImage, _Mapping]]] = ...) -> None: ...

class KeptImage(_message.Message):
    __slots__ = ("reference", "state", "image_id", "error")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[KeptImage.State]
        STATE_PRESENT: _ClassVar[KeptImage.State]
        STATE_PULLING: _ClassVar[KeptImage.State]
        STATE_FAILED: _ClassVar[KeptImage.State]
    STATE_UNSPECIFIED: KeptImage.State
    STATE_PRESENT: KeptImage.State
    STATE_PULLING: KeptImage.State
    STATE_FAILED: KeptImage.State
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    reference: str
    state: KeptImage.State
    image_id: str
    error: NodeError
    def __init__(self, reference: _Optional[str] = ..., state: _Optional[_Union[KeptImage.State, str]] = ..., image_id: _Optional[str] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ...) -> None: ...

class NodeError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FindImageRequest(_message.Message):
    __slots__ = ("image", "local_only", "check_registry", "auth")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    CHECK_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    image: str
    local_only: bool
    check_registry: bool
    auth: _image_pb2.RegistryAuth
    def __init__(self, image: _Optional[str] = ..., local_only: _Optional[bool] = ..., check_registry: _Optional[bool] = ..., auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class FindImageResponse(_message.Message):
    __slots__ = ("nodes", "registry_digest")
    NODES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeImage]
    registry_digest: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeImage, _Mapping]]] = ..., registry_digest: _Optional[str] = ...) -> None: ...

class NodeImage(_message.Message):
    __slots__ = ("node", "address", "present", "image_id", "repo_digests", "repo_tags", "error", "local", "drift")
    class Drift(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DRIFT_UNSPECIFIED: _ClassVar[NodeImage.Drift]
        DRIFT_CURRENT: _ClassVar[NodeImage.Drift]
        DRIFT_STALE: _ClassVar[NodeImage.Drift]
        DRIFT_UNKNOWN: _ClassVar[NodeImage.Drift]
    DRIFT_UNSPECIFIED: NodeImage.Drift
    DRIFT_CURRENT: NodeImage.Drift
    DRIFT_STALE: NodeImage.Drift
    DRIFT_UNKNOWN: NodeImage.Drift
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    node: str
    address: str
    present: bool
    image_id: str
    repo_digests: _containers.RepeatedScalarFieldContainer[str]
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    error: NodeError
    local: bool
    drift: NodeImage.Drift
    def __init__(self, node: _Optional[str] = ..., address: _Optional[str] = ..., present: _Optional[bool] = ..., image_id: _Optional[str] = ..., repo_digests: _Optional[_Iterable[str]] = ..., repo_tags: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., local: _Optional[bool] = ..., drift: _Optional[_Union[NodeImage.Drift, str]] = ...) -> None: ...
