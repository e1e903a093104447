"""REST/JSON gateway for imagesvc.v1.ImageService (issue 3): routes generated from the
google.api.http annotations, calling the same servicer as gRPC."""

from __future__ import annotations

from starlette.routing import BaseRoute

from imagesvc.transport.grpc_servicer import ImageServiceServicer


def rest_routes(servicer: ImageServiceServicer) -> list[BaseRoute]:
    return []
