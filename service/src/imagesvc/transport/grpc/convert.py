"""Conversions between imagesvc.v1 protobuf messages and core models."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from imagesvc.core import models
from imagesvc.core.image_changes import ChangeKind, ImageChange, Live
from imagesvc.transport.grpc.message_cache import MessageCache
from imagesvc.v1 import image_pb2, image_service_pb2


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(nanoseconds: int) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(nanoseconds)
    return duration


def registry_auth(message: image_pb2.RegistryAuth) -> models.RegistryAuth:
    return models.RegistryAuth(
        username=message.username,
        password=message.password,
        server_address=message.server_address,
        identity_token=message.identity_token,
        registry_token=message.registry_token,
    )


def optional_auth(has_auth: bool, message: image_pb2.RegistryAuth) -> models.RegistryAuth | None:
    return registry_auth(message) if has_auth else None


def image_filter(message: image_service_pb2.ImageFilter) -> models.ImageFilter:
    return models.ImageFilter(
        references=tuple(message.references),
        labels=tuple(message.labels),
        dangling=message.dangling if message.HasField("dangling") else None,
        before=message.before,
        since=message.since,
    )


def _config(config: models.ImageConfig) -> image_pb2.ImageConfig:
    message = image_pb2.ImageConfig(
        env=config.env,
        cmd=config.cmd,
        entrypoint=config.entrypoint,
        working_dir=config.working_dir,
        user=config.user,
        exposed_ports=config.exposed_ports,
        volumes=config.volumes,
        labels=config.labels,
        stop_signal=config.stop_signal,
    )
    check = config.healthcheck
    if check is not None:
        message.healthcheck.CopyFrom(
            image_pb2.Healthcheck(
                test=check.test,
                interval=_duration(check.interval_ns),
                timeout=_duration(check.timeout_ns),
                start_period=_duration(check.start_period_ns),
                retries=check.retries,
            )
        )
    return message


def _image_message(value: models.Image) -> image_pb2.Image:
    message = image_pb2.Image(
        id=value.id,
        repo_tags=value.repo_tags,
        repo_digests=value.repo_digests,
        parent=value.parent,
        created=_timestamp(value.created),
        author=value.author,
        comment=value.comment,
        architecture=value.architecture,
        os=value.os,
        variant=value.variant,
        size=value.size,
        root_fs_layers=value.root_fs_layers,
        labels=value.labels,
        containers=value.containers,
        docker_version=value.docker_version,
        inspect_json=value.inspect_json,
    )
    if value.config is not None:
        message.config.CopyFrom(_config(value.config))
    return message


def _image_wire(value: models.Image) -> bytes:
    return _image_message(value).SerializeToString()


# The wire form, not the message: a kept message costs about 7 KB of arena for an
# inspected image (1.8 KB serialized), 3.8 times what its bytes do.
_IMAGES: MessageCache[models.Image, bytes] = MessageCache(_image_wire)


def _field_tag(message: type[Message], field: str) -> int:
    """The tag byte of a length-delimited `field` (numbers below 16)."""
    number: int = message.DESCRIPTOR.fields_by_name[field].number
    assert number < 16
    return number << 3 | 2


_GET_IMAGE_TAG = _field_tag(image_service_pb2.GetImageResponse, "image")
_LIST_IMAGES_TAG = _field_tag(image_service_pb2.ListImagesResponse, "images")


def _field(tag: int, wire: bytes) -> bytes:
    """`wire` (a serialized message) as the field of `tag`."""
    prefix = bytearray([tag])
    length = len(wire)
    while length >= 0x80:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + wire


def image(value: models.Image) -> image_pb2.Image:
    """The message of `value`, parsed from its wire form, converted once while the
    Image lives (the index keeps an unchanged image's object)."""
    return image_pb2.Image.FromString(_IMAGES.get(value))


def get_image_response(value: models.Image) -> image_service_pb2.GetImageResponse:
    return image_service_pb2.GetImageResponse.FromString(_field(_GET_IMAGE_TAG, _IMAGES.get(value)))


def _page_wire(page: models.ImagePage) -> bytes:
    """The page serialized, its images joined from their kept wire forms."""
    response = image_service_pb2.ListImagesResponse(
        next_page_token=page.next_page_token, total_size=page.total_size
    )
    response.MergeFromString(
        b"".join(_field(_LIST_IMAGES_TAG, _IMAGES.get(value)) for value in page.images)
    )
    return response.SerializeToString()


# The core hands out the same page object while the index is unchanged
# (core/listing_cache.py): a repeated ListImages parses one kept wire form.
_PAGES: MessageCache[models.ImagePage, bytes] = MessageCache(_page_wire)


def list_images_response(page: models.ImagePage) -> image_service_pb2.ListImagesResponse:
    return image_service_pb2.ListImagesResponse.FromString(_PAGES.get(page))


def history(entries: Iterable[models.HistoryEntry]) -> image_service_pb2.GetImageHistoryResponse:
    return image_service_pb2.GetImageHistoryResponse(
        entries=[
            image_pb2.HistoryEntry(
                id=entry.id,
                created=_timestamp(entry.created),
                created_by=entry.created_by,
                size=entry.size,
                tags=entry.tags,
                comment=entry.comment,
            )
            for entry in entries
        ]
    )


def transfer_progress(value: models.TransferProgress) -> image_pb2.TransferProgress:
    return image_pb2.TransferProgress(
        layers=[
            image_pb2.LayerProgress(
                layer_id=layer.layer_id, state=layer.state, current=layer.current, total=layer.total
            )
            for layer in value.layers
        ],
        bytes_done=value.bytes_done,
        bytes_total=value.bytes_total,
        layers_done=value.layers_done,
        layers_total=value.layers_total,
        status=value.status,
    )


def pull_response(
    item: models.TransferProgress | models.PullResult,
) -> image_service_pb2.PullImageResponse:
    if isinstance(item, models.PullResult):
        return image_service_pb2.PullImageResponse(
            result=image_service_pb2.PullImageResult(
                image_id=item.image_id,
                digest=item.digest,
                reference=item.reference,
                status=item.status,
            )
        )
    return image_service_pb2.PullImageResponse(progress=transfer_progress(item))


def push_response(
    item: models.TransferProgress | models.PushResult,
) -> image_service_pb2.PushImageResponse:
    if isinstance(item, models.PushResult):
        return image_service_pb2.PushImageResponse(
            result=image_service_pb2.PushImageResult(
                digest=item.digest, size=item.size, tag=item.tag, reference=item.reference
            )
        )
    return image_service_pb2.PushImageResponse(progress=transfer_progress(item))


def build_options(message: image_service_pb2.BuildOptions) -> models.BuildOptions:
    return models.BuildOptions(
        tags=tuple(message.tags),
        dockerfile=message.dockerfile,
        build_args=dict(message.build_args),
        labels=dict(message.labels),
        target=message.target,
        no_cache=message.no_cache,
        pull=message.pull,
        platform=message.platform,
        network_mode=message.network_mode,
        registry_auths=tuple(registry_auth(auth) for auth in message.registry_auths),
    )


def build_response(item: str | models.BuildResult) -> image_service_pb2.BuildImageResponse:
    if isinstance(item, models.BuildResult):
        return image_service_pb2.BuildImageResponse(
            result=image_service_pb2.BuildImageResult(image_id=item.image_id, tags=item.tags)
        )
    return image_service_pb2.BuildImageResponse(log=item)


def prune_options(message: image_service_pb2.PruneImagesRequest) -> models.PruneOptions:
    until = message.until.ToDatetime(tzinfo=UTC) if message.HasField("until") else None
    return models.PruneOptions(
        all=message.all,
        labels=tuple(message.labels),
        exclude_labels=tuple(message.exclude_labels),
        until=until,
    )


_CHANGE_TYPES = {
    ChangeKind.ADDED: image_service_pb2.CHANGE_TYPE_ADDED,
    ChangeKind.UPDATED: image_service_pb2.CHANGE_TYPE_UPDATED,
    ChangeKind.DELETED: image_service_pb2.CHANGE_TYPE_DELETED,
}


def watch_response(event: ImageChange | Live) -> image_service_pb2.WatchImagesResponse:
    if isinstance(event, Live):
        return image_service_pb2.WatchImagesResponse(
            live=image_service_pb2.WatchLive(), resume_token=event.resume_token
        )
    return image_service_pb2.WatchImagesResponse(
        change=image_service_pb2.ImageChange(
            type=_CHANGE_TYPES[event.kind], image=image(event.image)
        ),
        resume_token=event.resume_token,
    )


# Registry inspection (issue 16) -------------------------------------------------------


def registry_image_response(
    found: models.RegistryImage,
) -> image_service_pb2.InspectRegistryImageResponse:
    return image_service_pb2.InspectRegistryImageResponse(
        reference=found.reference,
        digest=found.digest,
        media_type=found.media_type,
        size_bytes=found.size_bytes,
        platforms=[
            image_service_pb2.Platform(
                os=p.os, architecture=p.architecture, variant=p.variant, os_version=p.os_version
            )
            for p in found.platforms
        ],
    )


_UPDATE_STATUSES = {
    models.UpdateStatus.UP_TO_DATE: image_service_pb2.UPDATE_STATUS_UP_TO_DATE,
    models.UpdateStatus.UPDATE_AVAILABLE: image_service_pb2.UPDATE_STATUS_UPDATE_AVAILABLE,
    models.UpdateStatus.UNKNOWN: image_service_pb2.UPDATE_STATUS_UNKNOWN,
}


def image_updates_response(
    updates: Iterable[models.ImageUpdate],
) -> image_service_pb2.CheckImageUpdatesResponse:
    return image_service_pb2.CheckImageUpdatesResponse(
        updates=[
            image_service_pb2.ImageUpdate(
                reference=u.reference,
                status=_UPDATE_STATUSES[u.status],
                local_digests=u.local_digests,
                registry_digest=u.registry_digest,
                reason=u.reason,
                message=u.message,
            )
            for u in updates
        ]
    )


def disk_usage_response(value: models.DiskUsage) -> image_service_pb2.GetDiskUsageResponse:
    return image_service_pb2.GetDiskUsageResponse(
        images=[
            image_service_pb2.ImageDiskUsage(
                id=image.id,
                repo_tags=image.repo_tags,
                create_time=_timestamp(image.created),
                size_bytes=image.size_bytes,
                shared_size_bytes=image.shared_size_bytes,
                unique_size_bytes=image.unique_size_bytes,
                containers=image.containers,
            )
            for image in value.images
        ],
        image_count=value.image_count,
        active_image_count=value.active_image_count,
        total_size_bytes=value.total_size_bytes,
        reclaimable_bytes=value.reclaimable_bytes,
    )


def import_response(item: str | models.ImportResult) -> image_service_pb2.ImportImagesResponse:
    if isinstance(item, models.ImportResult):
        return image_service_pb2.ImportImagesResponse(
            result=image_service_pb2.ImportImagesResult(
                images=[
                    image_service_pb2.ImportedImage(id=image.id, tags=image.tags)
                    for image in item.images
                ]
            )
        )
    return image_service_pb2.ImportImagesResponse(log=item)
