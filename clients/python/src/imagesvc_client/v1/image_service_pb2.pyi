import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from imagesvc_client.v1 import image_pb2 as _image_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TYPE_UNSPECIFIED: _ClassVar[ChangeType]
    CHANGE_TYPE_ADDED: _ClassVar[ChangeType]
    CHANGE_TYPE_UPDATED: _ClassVar[ChangeType]
    CHANGE_TYPE_DELETED: _ClassVar[ChangeType]

class UpdateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_STATUS_UNSPECIFIED: _ClassVar[UpdateStatus]
    UPDATE_STATUS_UP_TO_DATE: _ClassVar[UpdateStatus]
    UPDATE_STATUS_UPDATE_AVAILABLE: _ClassVar[UpdateStatus]
    UPDATE_STATUS_UNKNOWN: _ClassVar[UpdateStatus]
CHANGE_TYPE_UNSPECIFIED: ChangeType
CHANGE_TYPE_ADDED: ChangeType
CHANGE_TYPE_UPDATED: ChangeType
CHANGE_TYPE_DELETED: ChangeType
UPDATE_STATUS_UNSPECIFIED: UpdateStatus
UPDATE_STATUS_UP_TO_DATE: UpdateStatus
UPDATE_STATUS_UPDATE_AVAILABLE: UpdateStatus
UPDATE_STATUS_UNKNOWN: UpdateStatus

class ImageFilter(_message.Message):
    __slots__ = ("references", "labels", "dangling", "before", "since")
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DANGLING_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    dangling: bool
    before: str
    since: str
    def __init__(self, references: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., dangling: _Optional[bool] = ..., before: _Optional[str] = ..., since: _Optional[str] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("filter", "all", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: ImageFilter
    all: bool
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[ImageFilter, _Mapping]] = ..., all: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token", "total_size")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_image_pb2.Image]
    next_page_token: str
    total_size: int
    def __init__(self, images: _Optional[_Iterable[_Union[_image_pb2.Image, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class WatchImagesRequest(_message.Message):
    __slots__ = ("filter", "send_initial_images", "resume_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: ImageFilter
    send_initial_images: bool
    resume_token: str
    def __init__(self, filter: _Optional[_Union[ImageFilter, _Mapping]] = ..., send_initial_images: _Optional[bool] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ImageChange(_message.Message):
    __slots__ = ("type", "image")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    type: ChangeType
    image: _image_pb2.Image
    def __init__(self, type: _Optional[_Union[ChangeType, str]] = ..., image: _Optional[_Union[_image_pb2.Image, _Mapping]] = ...) -> None: ...

class WatchLive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchImagesResponse(_message.Message):
    __slots__ = ("change", "live", "resume_token")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    change: ImageChange
    live: WatchLive
    resume_token: str
    def __init__(self, change: _Optional[_Union[ImageChange, _Mapping]] = ..., live: _Optional[_Union[WatchLive, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: _image_pb2.Image
    def __init__(self, image: _Optional[_Union[_image_pb2.Image, _Mapping]] = ...) -> None: ...

class GetImageHistoryRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class GetImageHistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_image_pb2.HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_image_pb2.HistoryEntry, _Mapping]]] = ...) -> None: ...

class PullImageRequest(_message.Message):
    __slots__ = ("reference", "platform", "auth")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    platform: str
    auth: _image_pb2.RegistryAuth
    def __init__(self, reference: _Optional[str] = ..., platform: _Optional[str] = ..., auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class PullImageResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _image_pb2.TransferProgress
    result: PullImageResult
    def __init__(self, progress: _Optional[_Union[_image_pb2.TransferProgress, _Mapping]] = ..., result: _Optional[_Union[PullImageResult, _Mapping]] = ...) -> None: ...

class PullImageResult(_message.Message):
    __slots__ = ("image_id", "digest", "reference", "status")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    digest: str
    reference: str
    status: str
    def __init__(self, image_id: _Optional[str] = ..., digest: _Optional[str] = ..., reference: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class TagImageRequest(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class TagImageResponse(_message.Message):
    __slots__ = ("id", "target")
    ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    id: str
    target: str
    def __init__(self, id: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class PushImageRequest(_message.Message):
    __slots__ = ("reference", "auth")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    auth: _image_pb2.RegistryAuth
    def __init__(self, reference: _Optional[str] = ..., auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class PushImageResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _image_pb2.TransferProgress
    result: PushImageResult
    def __init__(self, progress: _Optional[_Union[_image_pb2.TransferProgress, _Mapping]] = ..., result: _Optional[_Union[PushImageResult, _Mapping]] = ...) -> None: ...

class PushImageResult(_message.Message):
    __slots__ = ("digest", "size", "tag", "reference")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    tag: str
    reference: str
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., tag: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class BuildOptions(_message.Message):
    __slots__ = ("tags", "dockerfile", "build_args", "labels", "target", "no_cache", "pull", "platform", "network_mode", "registry_auths")
    class BuildArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    BUILD_ARGS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    PULL_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    NETWORK_MODE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTHS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    dockerfile: str
    build_args: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    target: str
    no_cache: bool
    pull: bool
    platform: str
    network_mode: str
    registry_auths: _containers.RepeatedCompositeFieldContainer[_image_pb2.RegistryAuth]
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., dockerfile: _Optional[str] = ..., build_args: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., target: _Optional[str] = ..., no_cache: _Optional[bool] = ..., pull: _Optional[bool] = ..., platform: _Optional[str] = ..., network_mode: _Optional[str] = ..., registry_auths: _Optional[_Iterable[_Union[_image_pb2.RegistryAuth, _Mapping]]] = ...) -> None: ...

class BuildImageRequest(_message.Message):
    __slots__ = ("options", "context_chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: BuildOptions
    context_chunk: bytes
    def __init__(self, options: _Optional[_Union[BuildOptions, _Mapping]] = ..., context_chunk: _Optional[bytes] = ...) -> None: ...

class BuildImageResponse(_message.Message):
    __slots__ = ("log", "result")
    LOG_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    log: str
    result: BuildImageResult
    def __init__(self, log: _Optional[str] = ..., result: _Optional[_Union[BuildImageResult, _Mapping]] = ...) -> None: ...

class BuildImageResult(_message.Message):
    __slots__ = ("image_id", "tags")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("image", "force", "no_prune")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_PRUNE_FIELD_NUMBER: _ClassVar[int]
    image: str
    force: bool
    no_prune: bool
    def __init__(self, image: _Optional[str] = ..., force: _Optional[bool] = ..., no_prune: _Optional[bool] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("untagged", "deleted")
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    untagged: _containers.RepeatedScalarFieldContainer[str]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, untagged: _Optional[_Iterable[str]] = ..., deleted: _Optional[_Iterable[str]] = ...) -> None: ...

class PruneImagesRequest(_message.Message):
    __slots__ = ("all", "labels", "exclude_labels", "until")
    ALL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_LABELS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    exclude_labels: _containers.RepeatedScalarFieldContainer[str]
    until: _timestamp_pb2.Timestamp
    def __init__(self, all: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., exclude_labels: _Optional[_Iterable[str]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PruneImagesResponse(_message.Message):
    __slots__ = ("deleted", "untagged", "space_reclaimed_bytes")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    SPACE_RECLAIMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    untagged: _containers.RepeatedScalarFieldContainer[str]
    space_reclaimed_bytes: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., untagged: _Optional[_Iterable[str]] = ..., space_reclaimed_bytes: _Optional[int] = ...) -> None: ...

class CheckRegistryAuthRequest(_message.Message):
    __slots__ = ("auth",)
    AUTH_FIELD_NUMBER: _ClassVar[int]
    auth: _image_pb2.RegistryAuth
    def __init__(self, auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class CheckRegistryAuthResponse(_message.Message):
    __slots__ = ("status", "identity_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    identity_token: str
    def __init__(self, status: _Optional[str] = ..., identity_token: _Optional[str] = ...) -> None: ...

class InspectRegistryImageRequest(_message.Message):
    __slots__ = ("reference", "auth")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    auth: _image_pb2.RegistryAuth
    def __init__(self, reference: _Optional[str] = ..., auth: _Optional[_Union[_image_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("os", "architecture", "variant", "os_version")
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    os: str
    architecture: str
    variant: str
    os_version: str
    def __init__(self, os: _Optional[str] = ..., architecture: _Optional[str] = ..., variant: _Optional[str] = ..., os_version: _Optional[str] = ...) -> None: ...

class InspectRegistryImageResponse(_message.Message):
    __slots__ = ("reference", "digest", "media_type", "size_bytes", "platforms")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    reference: str
    digest: str
    media_type: str
    size_bytes: int
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    def __init__(self, reference: _Optional[str] = ..., digest: _Optional[str] = ..., media_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ...) -> None: ...

class CheckImageUpdatesRequest(_message.Message):
    __slots__ = ("references", "registry_auths")
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTHS_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedScalarFieldContainer[str]
    registry_auths: _containers.RepeatedCompositeFieldContainer[_image_pb2.RegistryAuth]
    def __init__(self, references: _Optional[_Iterable[str]] = ..., registry_auths: _Optional[_Iterable[_Union[_image_pb2.RegistryAuth, _Mapping]]] = ...) -> None: ...

class ImageUpdate(_message.Message):
    __slots__ = ("reference", "status", "local_digests", "registry_digest", "reason", "message")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    status: UpdateStatus
    local_digests: _containers.RepeatedScalarFieldContainer[str]
    registry_digest: str
    reason: str
    message: str
    def __init__(self, reference: _Optional[str] = ..., status: _Optional[_Union[UpdateStatus, str]] = ..., local_digests: _Optional[_Iterable[str]] = ..., registry_digest: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CheckImageUpdatesResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ImageUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ImageUpdate, _Mapping]]] = ...) -> None: ...

class ExportImagesRequest(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, images: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDiskUsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImageDiskUsage(_message.Message):
    __slots__ = ("id", "repo_tags", "create_time", "size_bytes", "shared_size_bytes", "unique_size_bytes", "containers")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    size_bytes: int
    shared_size_bytes: int
    unique_size_bytes: int
    containers: int
    def __init__(self, id: _Optional[str] = ..., repo_tags: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size_bytes: _Optional[int] = ..., shared_size_bytes: _Optional[int] = ..., unique_size_bytes: _Optional[int] = ..., containers: _Optional[int] = ...) -> None: ...

class GetDiskUsageResponse(_message.Message):
    __slots__ = ("images", "image_count", "active_image_count", "total_size_bytes", "reclaimable_bytes")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageDiskUsage]
    image_count: int
    active_image_count: int
    total_size_bytes: int
    reclaimable_bytes: int
    def __init__(self, images: _Optional[_Iterable[_Union[ImageDiskUsage, _Mapping]]] = ..., image_count: _Optional[int] = ..., active_image_count: _Optional[int] = ..., total_size_bytes: _Optional[int] = ..., reclaimable_bytes: _Optional[int] = ...) -> None: ...

class ImportImagesRequest(_message.Message):
    __slots__ = ("archive_chunk",)
    ARCHIVE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    archive_chunk: bytes
    def __init__(self, archive_chunk: _Optional[bytes] = ...) -> None: ...

class ImportImagesResponse(_message.Message):
    __slots__ = ("log", "result")
    LOG_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    log: str
    result: ImportImagesResult
    def __init__(self, log: _Optional[str] = ..., result: _Optional[_Union[ImportImagesResult, _Mapping]] = ...) -> None: ...

class ImportImagesResult(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImportedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[ImportedImage, _Mapping]]] = ...) -> None: ...

class ImportedImage(_message.Message):
    __slots__ = ("id", "tags")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...
