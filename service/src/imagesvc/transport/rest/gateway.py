"""REST/JSON gateway for imagesvc.v1.ImageService (and FleetService): routes generated from the
google.api.http annotations, calling the same servicer as gRPC, on grpc-gateway v2's
wire format (a client written for grpc-gateway in front of this API works unchanged).

- Unary RPCs answer the response message as JSON (grpc-gateway's default marshaler:
  every field written, see rest/json.py), or a google.rpc.Status as JSON with the HTTP
  status of its code (rest/errors.py).
- Server streams (pull, push, build) answer chunked newline-delimited JSON, one
  `{"result": <message>}` line per message, sent as each message arrives. A failure
  before the first line answers the mapped HTTP status with one `{"error": <Status>}`
  line; after it, the stream ends with that line (the status is 200 by then).
- A client that disconnects cancels the call: the servicer's stream is closed, which
  closes the Engine's response and stops the pull, push or build on the daemon.
- `Grpc-Timeout` (e.g. "30S", "500m") sets the call's deadline, as with grpc-gateway.
- The request id travels as grpc-gateway carries the gRPC port's metadata: the answer
  to every call has Grpc-Metadata-X-Request-Id (beside X-Request-Id), and a request's
  Grpc-Metadata-X-Request-Id is taken as its id (http/observability.py).
- Every matched request carries its route template in scope["imagesvc.route"]
  (e.g. "/v1/images/{image}") for metrics and logs, never the raw path.

The HTTP stack is Starlette on uvicorn, embedded in the grpc.aio event loop (see
http/server.py): one process, one loop, and the REST layer is a thin transcoder in
front of the servicer gRPC uses, never a second implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from imagesvc.core.errors import (
    ImageServiceError,
    InternalError,
    InvalidArgumentError,
    Reason,
    ResourceExhaustedError,
)
from imagesvc.core.identity import current_origin
from imagesvc.core.redaction import collecting_call_secrets
from imagesvc.transport.failure_log import log_failure_cause
from imagesvc.transport.grpc.chunk_requests import RequestChunk
from imagesvc.transport.grpc.errors import status_code_for
from imagesvc.transport.grpc.http_body import HttpBodyChunk
from imagesvc.transport.grpc.servicer import ImageServiceServicer
from imagesvc.transport.request_id import GATEWAY_REQUEST_ID_HEADER, current_request_id
from imagesvc.transport.rest import build as rest_build
from imagesvc.transport.rest import json as rest_json
from imagesvc.transport.rest.errors import RestError, core_error_status, http_status, status_code
from imagesvc.transport.rest.paths import Binding, RouteMatch, Router, bindings_of
from imagesvc.transport.rest.query import QueryItems, parse_int, parse_query, populate
from imagesvc.v1 import fleet_service_pb2, image_service_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")

ROUTE_SCOPE_KEY = "imagesvc.route"
OPENAPI_PATH = "/openapi.json"
OPENAPI_RESOURCE = "image_service.swagger.json"
JSON = "application/json"

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class ClientGone(Exception):
    """The client closed the connection."""


class BodyCutShort(Exception):
    """A raw body stream failed after its first byte: the only way left to tell the
    client is to end the response without its last chunk (the server closes the
    connection)."""


class _RestContext:
    """What a servicer method gets for its `context` when called over REST. The
    servicer takes its input from the request message alone; this answers the few
    questions a wrapper may ask (metadata, peer)."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in self._scope.get("headers", [])
        )

    def peer(self) -> str:
        client = self._scope.get("client")
        if not client:
            return ""
        host, port = client
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _context(scope: Scope) -> grpc.aio.ServicerContext[object, object]:
    return cast("grpc.aio.ServicerContext[object, object]", _RestContext(scope))


class _Body:
    """The request body as it arrives; `finished` is set once it has been read to its end,
    after which the connection is watched for a disconnect."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.finished = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.finished.is_set():
            return
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self.finished.set()
                if chunk:
                    yield chunk
                return
            if chunk:
                yield chunk

    async def read(self, limit: int) -> bytes:
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise ResourceExhaustedError(
                    f"request body is over {limit} bytes", reason=Reason.REQUEST_TOO_LARGE
                )
        return bytes(data)

    async def drain(self) -> None:
        """Reads and drops what is left of the body (grpc-gateway discards it too)."""
        async for _ in self.chunks():
            pass

    async def wait_for_disconnect(self) -> None:
        await self.finished.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass


def _grpc_timeout(value: str) -> float | None:
    """grpc-gateway's Grpc-Timeout header: an integer and a unit (H M S m u n)."""
    if not value:
        return None
    unit = _TIMEOUT_UNITS.get(value[-1]) if len(value) >= 2 else None
    try:
        if unit is None:
            raise ValueError(value)
        amount = parse_int(value[:-1], 64, signed=True)
    except (ValueError, ImageServiceError):
        raise RestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid grpc-timeout: {value}"
        ) from None
    return amount * unit if amount else None


def _status_of(error: BaseException, scope: Scope, binding: Binding) -> status_pb2.Status:
    """The google.rpc.Status for any failure of a call; bugs are logged with their
    traceback and answered without their text."""
    origin = current_origin.get()
    request_id = (
        origin.request_id
        if origin is not None
        else current_request_id.get() or _header(scope, "x-request-id")
    )
    where = {"rpc": binding.rpc, "http_route": binding.template}
    if isinstance(error, RestError):
        status = error.status
        log_failure_cause(status_code(status.code), error, request_id=request_id, where=where)
        return status
    if isinstance(error, ImageServiceError):
        log_failure_cause(status_code_for(error), error, request_id=request_id, where=where)
        return core_error_status(error)
    quote = f"; quote request id {request_id} when reporting it" if request_id else ""
    answer = InternalError(f"internal error in imagesvc{quote}")
    log_failure_cause(status_code_for(answer), error, request_id=request_id, bug=True, where=where)
    return core_error_status(answer)


def _header(scope: Scope, name: str) -> str:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return ""


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_headers(status: status_pb2.Status) -> list[tuple[bytes, bytes]]:
    # grpc-gateway sets WWW-Authenticate to the message on UNAUTHENTICATED.
    if status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
        printable = "".join(c if " " <= c <= "~" else "?" for c in status.message)
        return [(b"www-authenticate", printable.encode("latin-1"))]
    return []


def _metadata_headers() -> list[tuple[bytes, bytes]]:
    """The header metadata the gRPC port sends on every call (its x-request-id), as
    grpc-gateway forwards it: Grpc-Metadata-X-Request-Id. Not on routing errors, which
    reach no call."""
    request_id = current_request_id.get()
    return [(GATEWAY_REQUEST_ID_HEADER.encode(), request_id.encode())] if request_id else []


async def _send_status(
    send: Send, status: status_pb2.Status, http: int | None = None, *, called: bool = True
) -> None:
    await _send_json(
        send,
        http if http is not None else http_status(status.code),
        rest_json.message_bytes(status),
        [*_error_headers(status), *(_metadata_headers() if called else [])],
    )


def _stream_line(key: str, message: Message) -> bytes:
    return rest_json.dumps({key: rest_json.to_value(message)}) + b"\n"


class RestGateway(BaseRoute):
    """One Starlette route that owns the API's path prefixes (e.g. /v1) and dispatches
    within them like grpc-gateway's ServeMux."""

    def __init__(
        self,
        servicer: ImageServiceServicer,
        bindings: list[Binding],
        *,
        max_body_bytes: int,
        other_servicers: Mapping[str, object] | None = None,
    ) -> None:
        """`servicer` answers ImageService's bindings; `other_servicers` the bindings of
        other services, by the service's full name."""
        self._servicer = servicer
        self._other_servicers = dict(other_servicers or {})
        self._max_body_bytes = max_body_bytes
        self._router = Router(bindings)
        self._prefixes = frozenset(
            str(b.path.segments[0]) for b in bindings if isinstance(b.path.segments[0], str)
        )

    @property
    def router(self) -> Router:
        return self._router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            first = scope["path"].lstrip("/").split("/", 1)[0].split(":", 1)[0]
            if first in self._prefixes:
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        try:
            match = self._router.route(
                scope["method"],
                path,
                content_type=_header(scope, "content-type").split(";", 1)[0].strip(),
                override=_header(scope, "x-http-method-override"),
            )
        except RestError as error:
            await _send_status(send, error.status, error.http, called=False)
            return
        scope[ROUTE_SCOPE_KEY] = match.binding.template
        body = _Body(receive)
        # Secrets of the call, for redacting the log line of its failure (failure_log).
        with collecting_call_secrets():
            if match.binding.server_streaming:
                await self._stream(scope, body, send, match)
            else:
                await self._unary(scope, body, send, match)

    # Requests ------------------------------------------------------------------------

    async def _request(self, scope: Scope, body: _Body, match: RouteMatch) -> Message:
        """The request message from the path, then the JSON body (`body: "*"`) or the
        query string (other fields)."""
        binding = match.binding
        request = binding.request_type()
        if binding.body == "*":
            rest_json.parse_body(await body.read(self._max_body_bytes), request)
        else:
            items = parse_query(scope.get("query_string", b""))
            if match.form_body:
                form = parse_query(await body.read(self._max_body_bytes))
                items = _merge(form, items)
            populate(request, items, skip=[v.field_path for v in binding.path.variables])
            _refuse_credentials_in_url(request)
        for field_path, value in match.variables.items():
            target = request
            for name in field_path[:-1]:
                target = getattr(target, name)
            setattr(target, field_path[-1], value)
        return request

    def _stream_requests(
        self, scope: Scope, body: _Body, binding: Binding
    ) -> AsyncIterator[Message | RequestChunk]:
        """A client stream's request messages: BuildImage's or ImportImages'."""
        raw = rest_build.is_raw_context(_header(scope, "content-type"))
        if binding.rpc == "ImportImages":
            if raw:
                return rest_build.raw_archive_requests(body.chunks())
            return rest_build.json_messages(
                body.chunks(), image_service_pb2.ImportImagesRequest, self._max_body_bytes
            )
        if raw:
            options = rest_build.options_from_query(
                parse_query(scope.get("query_string", b"")),
                _header(scope, rest_build.REGISTRY_CONFIG_HEADER) or None,
            )
            return rest_build.raw_requests(options, body.chunks())
        return rest_build.json_requests(body.chunks(), max_message_bytes=self._max_body_bytes)

    # Calls ---------------------------------------------------------------------------

    def _method(self, binding: Binding) -> Callable[..., Any]:
        servicer = self._other_servicers.get(binding.service, self._servicer)
        method: Callable[..., Any] = getattr(servicer, binding.rpc)
        return method

    async def _unary(self, scope: Scope, body: _Body, send: Send, match: RouteMatch) -> None:
        binding = match.binding
        try:
            timeout = _grpc_timeout(_header(scope, "grpc-timeout"))
            request = await self._request(scope, body, match)
            response = await _within(timeout, self._method(binding)(request, _context(scope)))
        except ClientGone:
            return
        except Exception as error:  # noqa: BLE001 (every failure is answered as a Status)
            await _send_status(send, _status_of(error, scope, binding))
            return
        await _send_json(send, 200, rest_json.message_bytes(response), _metadata_headers())

    async def _stream(self, scope: Scope, body: _Body, send: Send, match: RouteMatch) -> None:
        binding = match.binding
        try:
            timeout = _grpc_timeout(_header(scope, "grpc-timeout"))
            if binding.client_streaming:
                messages = self._method(binding)(
                    self._stream_requests(scope, body, binding), _context(scope)
                )
            else:
                request = await self._request(scope, body, match)
                # Read to its end, so that a disconnect is what receive() reports next.
                await body.drain()
                messages = self._method(binding)(request, _context(scope))
        except ClientGone:
            return
        except Exception as error:  # noqa: BLE001 (every failure is answered as a Status)
            await _send_status(send, _status_of(error, scope, binding))
            return
        produce = self._produce_body if binding.http_body else self._produce
        producer = asyncio.create_task(
            produce(scope, send, binding, cast("AsyncGenerator[Message, None]", messages), timeout),
            name=f"rest-{binding.rpc}",
        )
        watcher = asyncio.create_task(body.wait_for_disconnect(), name="rest-disconnect")
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, watcher):
                task.cancel()
            for task in (producer, watcher):
                with contextlib.suppress(asyncio.CancelledError, ClientGone):
                    await task

    async def _produce_body(
        self,
        scope: Scope,
        send: Send,
        binding: Binding,
        messages: AsyncGenerator[Message, None],
        seconds: float | None,
    ) -> None:
        """A stream of google.api.HttpBody as grpc-gateway serves it: the bytes
        themselves, with the first message's content type. A failure before the first
        byte is answered as a Status; after it, the response is cut short (no final
        chunk), so that the client sees an incomplete body rather than a clean end."""
        started = False
        try:
            async with contextlib.aclosing(messages):
                async for message in _iterate_within(seconds, messages):
                    body = cast("HttpBodyChunk", message)
                    if not started:
                        content_type = body.content_type or "application/octet-stream"
                        await _start_stream(send, 200, content_type=content_type)
                        started = True
                    await send({"type": "http.response.body", "body": body.data, "more_body": True})
        except (ClientGone, OSError):
            return  # the client is gone: nothing to tell it
        except Exception as error:  # every failure is answered as a Status
            failure = _status_of(error, scope, binding)
            if started:
                raise BodyCutShort(failure.message) from error
            with contextlib.suppress(OSError):
                await _send_status(send, failure)
            return
        with contextlib.suppress(OSError):
            if not started:
                await _start_stream(send, 200, content_type="application/octet-stream")
            await send({"type": "http.response.body", "body": b""})

    async def _produce(
        self,
        scope: Scope,
        send: Send,
        binding: Binding,
        messages: AsyncGenerator[Message, None],
        seconds: float | None,
    ) -> None:
        """Sends each message as it comes; a failure ends the stream with an error line."""
        started = False
        failure: status_pb2.Status | None = None
        try:
            async with contextlib.aclosing(messages):
                async for message in _iterate_within(seconds, messages):
                    line = _stream_line("result", message)
                    if not started:
                        await _start_stream(send, 200)
                        started = True
                    await send({"type": "http.response.body", "body": line, "more_body": True})
        except (ClientGone, OSError):
            return  # the client is gone: nothing to tell it
        except Exception as error:  # noqa: BLE001 (every failure is answered as a Status)
            failure = _status_of(error, scope, binding)
        with contextlib.suppress(OSError):
            if failure is None:
                if not started:
                    await _start_stream(send, 200)
                await send({"type": "http.response.body", "body": b""})
                return
            if not started:
                await _start_stream(send, http_status(failure.code), _error_headers(failure))
            await send({"type": "http.response.body", "body": _stream_line("error", failure)})


async def _start_stream(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: str = JSON,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                *_metadata_headers(),
                *(headers or []),
            ],
        }
    )


class _DeadlineExceeded(RestError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")


async def _within(seconds: float | None, call: Awaitable[T]) -> T:
    """Awaits `call` within the Grpc-Timeout deadline, if any."""
    if seconds is None:
        return await call
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise _DeadlineExceeded from None


async def _iterate_within(
    seconds: float | None, messages: AsyncIterator[Message]
) -> AsyncIterator[Message]:
    """The stream's messages, all within the Grpc-Timeout deadline, if any."""
    if seconds is None:
        async for message in messages:
            yield message
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                message = await anext(messages)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _DeadlineExceeded from None
        yield message


_REGISTRY_AUTH = "imagesvc.v1.RegistryAuth"


def _refuse_credentials_in_url(request: Message) -> None:
    """Registry credentials never come from a query string (URLs end up in logs)."""
    for field in request.DESCRIPTOR.fields:
        message_type = field.message_type
        is_auth = message_type is not None and message_type.full_name == _REGISTRY_AUTH
        if is_auth and request.HasField(field.name):
            raise InvalidArgumentError(
                "registry credentials are not accepted in the URL; POST them in the JSON body",
                metadata={"field": field.name},
            )


def _merge(first: QueryItems, then: QueryItems) -> QueryItems:
    """Form values first, then the URL's, per key (Go's Request.Form)."""
    merged: dict[str, list[str]] = {}
    for key, values in (*first, *then):
        merged.setdefault(key, []).extend(values)
    return list(merged.items())


def openapi_document() -> bytes:
    """The OpenAPI v2 document generated from the protos (devtools/openapi.py)."""
    return resources.files("imagesvc.v1").joinpath(OPENAPI_RESOURCE).read_bytes()


def rest_routes(
    servicer: ImageServiceServicer,
    *,
    max_body_bytes: int,
    fleet_servicer: object | None = None,
) -> list[BaseRoute]:
    """The gateway for every annotated RPC of ImageService (and of FleetService, given
    its servicer), and GET /openapi.json.
    `max_body_bytes` bounds a JSON body and each message of a JSON client stream (the
    server passes its gRPC message limit, so both transports accept the same requests);
    a raw build context is bounded by the core."""
    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    bindings = bindings_of(image_service_pb2.DESCRIPTOR.services_by_name["ImageService"])
    others: dict[str, object] = {}
    if fleet_servicer is not None:
        fleet = fleet_service_pb2.DESCRIPTOR.services_by_name["FleetService"]
        bindings += bindings_of(fleet)
        others[fleet.full_name] = fleet_servicer
    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
        RestGateway(servicer, bindings, max_body_bytes=max_body_bytes, other_servicers=others),
    ]
