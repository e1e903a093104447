from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from imagesvc_client.v1 import image_pb2 as _image_pb2
from imagesvc_client.v1 import image_service_pb2 as _image_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompletionPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLETION_POLICY_UNSPECIFIED: _ClassVar[CompletionPolicy]
    COMPLETION_POLICY_BEST_EFFORT: _ClassVar[CompletionPolicy]
    COMPLETION_POLICY_STOP_ON_FIRST_FAILURE: _ClassVar[CompletionPolicy]

class NodePullPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_PULL_PHASE_UNSPECIFIED: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_WAITING: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_PULLING: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_SUCCEEDED: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_SKIPPED: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_FAILED: _ClassVar[NodePullPhase]
    NODE_PULL_PHASE_CANCELLED: _ClassVar[NodePullPhase]
COMPLETION_POLICY_UNSPECIFIED: CompletionPolicy
COMPLETION_POLICY_BEST_EFFORT: CompletionPolicy
COMPLETION_POLICY_STOP_ON_FIRST_FAILURE: CompletionPolicy
NODE_PULL_PHASE_UNSPECIFIED: NodePullPhase
NODE_PULL_PHASE_WAITING: NodePullPhase
NODE_PULL_PHASE_PULLING: NodePullPhase
NODE_PULL_PHASE_SUCCEEDED: NodePullPhase
NODE_PULL_PHASE_SKIPPED: NodePullPhase
NODE_PULL_PHASE_FAILED: NodePullPhase
NODE_PULL_PHASE_CANCELLED: NodePullPhase

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

class PullImageOnNodesRequest(_message.Message):
    __slots__ = ("reference", "platform", "auth", "nodes", "parallelism", "node_timeout_seconds", "stall_timeout_seconds", "retries", "retry_backoff_seconds", "completion_policy", "local_only", "registry_digest")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STALL_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_POLICY_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    reference: str
    platform: str
    auth: _image_pb2.RegistryAuth
    nodes: _containers.RepeatedScalarFieldContainer[str]
    parallelism: str
    node_timeout_seconds: float
    stall_timeout_seconds: float
    retries: int
    retry_backoff_seconds: float
    completion_policy: CompletionPolicy
    local_only: bool
    registry_digest: str
    def __init__(self, reference: _Optional[str] = ..., platform: _Optional[str] = ..., auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ..., parallelism: _Optional[str] = ..., node_timeout_seconds: _Optional[float] = ..., stall_timeout_seconds: _Optional[float] = ..., retries: _Optional[int] = ..., retry_backoff_seconds: _Optional[float] = ..., completion_policy: _Optional[_Union[CompletionPolicy, str]] = ..., local_only: _Optional[bool] = ..., registry_digest: _Optional[str] = ...) -> None: ...

class NodePull(_message.Message):
    __slots__ = ("node", "address", "phase", "attempt", "bytes_done", "bytes_total", "percent", "error", "error_cause", "retry_in_seconds", "image_id", "digest", "local")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CAUSE_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    node: str
    address: str
    phase: NodePullPhase
    attempt: int
    bytes_done: int
    bytes_total: int
    percent: float
    error: NodeError
    error_cause: str
    retry_in_seconds: float
    image_id: str
    digest: str
    local: bool
    def __init__(self, node: _Optional[str] = ..., address: _Optional[str] = ..., phase: _Optional[_Union[NodePullPhase, str]] = ..., attempt: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., percent: _Optional[float] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., error_cause: _Optional[str] = ..., retry_in_seconds: _Optional[float] = ..., image_id: _Optional[str] = ..., digest: _Optional[str] = ..., local: _Optional[bool] = ...) -> None: ...

class PullImageOnNodesSummary(_message.Message):
    __slots__ = ("desired", "succeeded", "skipped", "failed", "cancelled", "stopped_early", "complete")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EARLY_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    desired: int
    succeeded: _containers.RepeatedCompositeFieldContainer[NodePull]
    skipped: _containers.RepeatedCompositeFieldContainer[NodePull]
    failed: _containers.RepeatedCompositeFieldContainer[NodePull]
    cancelled: _containers.RepeatedCompositeFieldContainer[NodePull]
    stopped_early: bool
    complete: bool
    def __init__(self, desired: _Optional[int] = ..., succeeded: _Optional[_Iterable[_Union[NodePull, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[NodePull, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[NodePull, _Mapping]]] = ..., cancelled: _Optional[_Iterable[_Union[NodePull, _Mapping]]] = ..., stopped_early: _Optional[bool] = ..., complete: _Optional[bool] = ...) -> None: ...

class PullImageOnNodesResponse(_message.Message):
    __slots__ = ("node", "summary")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    node: NodePull
    summary: PullImageOnNodesSummary
    def __init__(self, node: _Optional[_Union[NodePull, _Mapping]] = ..., summary: _Optional[_Union[PullImageOnNodesSummary, _Mapping]] = ...) -> None: ...

class RemoveImageOnNodesRequest(_message.Message):
    __slots__ = ("image", "force", "no_prune", "nodes", "node_timeout_seconds", "local_only")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_PRUNE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    image: str
    force: bool
    no_prune: bool
    nodes: _containers.RepeatedScalarFieldContainer[str]
    node_timeout_seconds: float
    local_only: bool
    def __init__(self, image: _Optional[str] = ..., force: _Optional[bool] = ..., no_prune: _Optional[bool] = ..., nodes: _Optional[_Iterable[str]] = ..., node_timeout_seconds: _Optional[float] = ..., local_only: _Optional[bool] = ...) -> None: ...

class PruneImagesOnNodesRequest(_message.Message):
    __slots__ = ("prune", "nodes", "node_timeout_seconds", "local_only")
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    prune: _image_service_pb2.PruneImagesRequest
    nodes: _containers.RepeatedScalarFieldContainer[str]
    node_timeout_seconds: float
    local_only: bool
    def __init__(self, prune: _Optional[_Union[_image_service_pb2.PruneImagesRequest, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ..., node_timeout_seconds: _Optional[float] = ..., local_only: _Optional[bool] = ...) -> None: ...

class NodeImagesChange(_message.Message):
    __slots__ = ("node", "address", "untagged", "deleted", "space_reclaimed_bytes", "error", "local")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    node: str
    address: str
    untagged: _containers.RepeatedScalarFieldContainer[str]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed_bytes: int
    error: NodeError
    local: bool
    def __init__(self, node: _Optional[str] = ..., address: _Optional[str] = ..., untagged: _Optional[_Iterable[str]] = ..., deleted: _Optional[_Iterable[str]] = ..., space_reclaimed_bytes: _Optional[int] = ..., error: _Optional[_Union[NodeError, _Mapping]] = ..., local: _Optional[bool] = ...) -> None: ...

class ImagesOnNodesSummary(_message.Message):
    __slots__ = ("desired", "succeeded", "skipped", "failed", "complete", "space_reclaimed_bytes")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    desired: int
    succeeded: _containers.RepeatedCompositeFieldContainer[NodeImagesChange]
    skipped: _containers.RepeatedCompositeFieldContainer[NodeImagesChange]
    failed: _containers.RepeatedCompositeFieldContainer[NodeImagesChange]
    complete: bool
    space_reclaimed_bytes: int
    def __init__(self, desired: _Optional[int] = ..., succeeded: _Optional[_Iterable[_Union[NodeImagesChange, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[NodeImagesChange, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[NodeImagesChange, _Mapping]]] = ..., complete: _Optional[bool] = ..., space_reclaimed_bytes: _Optional[int] = ...) -> None: ...

class RemoveImageOnNodesResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: ImagesOnNodesSummary
    def __init__(self, summary: _Optional[_Union[ImagesOnNodesSummary, _Mapping]] = ...) -> None: ...

class PruneImagesOnNodesResponse(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: ImagesOnNodesSummary
    def __init__(self, summary: _Optional[_Union[ImagesOnNodesSummary, _Mapping]] = ...) -> None: ...
