"""The wire message of a core Image is converted once while that Image object lives,
converted afresh when the image changes (a new object), and forgotten with the object."""

from __future__ import annotations

import dataclasses
import gc
from datetime import UTC, datetime

from imagesvc.core.models import Image, ImageConfig, ImagePage
from imagesvc.transport.grpc import convert
from imagesvc.transport.grpc.message_cache import MessageCache
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb


def _image(n: int = 1, *, tags: tuple[str, ...] = ("acme/app:1",)) -> Image:
    return Image(
        id=f"sha256:{n:064x}",
        repo_tags=tags,
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        size=1234,
        config=ImageConfig(cmd=("sh",), labels={"a": "b"}),
        labels={"a": "b"},
    )


class _Counting:
    def __init__(self) -> None:
        self.converted: list[str] = []

    def __call__(self, value: Image) -> image_pb2.Image:
        self.converted.append(value.id)
        return image_pb2.Image(id=value.id, repo_tags=value.repo_tags)


def test_the_same_image_object_is_converted_once() -> None:
    counting = _Counting()
    cache = MessageCache(counting)
    image = _image()
    first = cache.get(image)
    assert cache.get(image) is first
    assert counting.converted == [image.id]


def test_a_changed_image_is_converted_afresh() -> None:
    counting = _Counting()
    cache = MessageCache(counting)
    before = _image()
    assert list(cache.get(before).repo_tags) == ["acme/app:1"]
    after = dataclasses.replace(before, repo_tags=("acme/app:1", "acme/app:latest"))
    assert list(cache.get(after).repo_tags) == ["acme/app:1", "acme/app:latest"]
    # An equal but distinct object is a different entry, never a stale answer.
    twin = dataclasses.replace(before)
    assert list(cache.get(twin).repo_tags) == ["acme/app:1"]
    assert len(counting.converted) == 3


def test_an_entry_goes_with_its_image() -> None:
    counting = _Counting()
    cache = MessageCache(counting)
    image = _image()
    cache.get(image)
    assert len(cache) == 1
    del image
    gc.collect()
    assert len(cache) == 0
    # Whatever object later gets the same id is converted from its own content.
    for n in range(2, 50):
        assert cache.get(_image(n)).id == f"sha256:{n:064x}"
    assert len(cache) == 0


def test_convert_image_answers_the_full_message_and_responses_hold_copies() -> None:
    image = _image()
    message = convert.image(image)
    assert convert.image(image) == message
    assert message.id == image.id
    assert message.created.seconds == int(image.created.timestamp())  # type: ignore[union-attr]
    assert list(message.config.cmd) == ["sh"]
    response = pb.ListImagesResponse(images=[message])
    response.images[0].repo_tags.append("mutated:1")
    single = pb.GetImageResponse(image=message)
    single.image.size = 1
    assert list(convert.image(image).repo_tags) == ["acme/app:1"]
    assert convert.image(image).size == 1234


def test_responses_built_from_the_kept_wire_form_equal_the_converted_messages() -> None:
    # Lengths of one, two and three varint bytes.
    images = (
        _image(1),
        dataclasses.replace(_image(2), inspect_json="x" * 300),
        dataclasses.replace(_image(3), inspect_json="x" * 20_000),
    )
    page = ImagePage(images, "next", 7)
    listed = convert.list_images_response(page)
    assert listed == pb.ListImagesResponse(
        images=[convert.image(image) for image in images], next_page_token="next", total_size=7
    )
    assert [message.id for message in listed.images] == [image.id for image in images]
    got = convert.get_image_response(images[0])
    assert got == pb.GetImageResponse(image=convert.image(images[0]))
    got.image.size = 1
    assert convert.get_image_response(images[0]).image.size == 1234
