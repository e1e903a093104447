"""The server fixture answers over a real channel with the real engine behind it."""

from __future__ import annotations

from devtools.sandbox import BuiltImage
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc


def test_get_image_through_grpc(
    stub: image_service_pb2_grpc.ImageServiceStub, busybox_image: BuiltImage
) -> None:
    reply = stub.GetImage(pb.GetImageRequest(image=busybox_image.tag), timeout=10)
    assert reply.image.id == busybox_image.id
    assert busybox_image.tag in reply.image.repo_tags
