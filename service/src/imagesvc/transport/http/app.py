"""The ASGI application behind the HTTP port: the REST gateway's routes beside the
operational endpoints, one Starlette app."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute


def create_http_app(
    routes: Sequence[BaseRoute], middleware: Sequence[Middleware] = ()
) -> Starlette:
    return Starlette(routes=list(routes), middleware=list(middleware))
