"""The interceptor that carries every ImageService RPC from start to end: request id,
drain, the caller established, core errors turned into their gRPC status, and one JSON
access-log line per call. Handlers never pick status codes themselves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from imagesvc.core.authentication import Authenticator
from imagesvc.core.errors import ImageServiceError, InternalError
from imagesvc.core.identity import current_identity
from imagesvc.core.redaction import collecting_call_secrets
from imagesvc.transport.failure_log import log_failure_cause
from imagesvc.transport.grpc.auth import establish_caller
from imagesvc.transport.grpc.drain import Drain
from imagesvc.transport.grpc.errors import error_status, status_code_for
from imagesvc.transport.grpc.handlers import RewrappingInterceptor, behaviour_of, with_behaviour
from imagesvc.transport.grpc.metrics import cancelled_code
from imagesvc.transport.request_id import REQUEST_ID_KEY, current_request_id, request_id_from

log = logging.getLogger("imagesvc.access")

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

Context = grpc.aio.ServicerContext[Any, Any]


def _request_id(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return request_id_from(value)
    return request_id_from(None)


class _Call:
    """Bookkeeping of one RPC: its id, outcome and the access-log line."""

    def __init__(self, method: str, context: Context, *, streaming: bool) -> None:
        self.method = method
        self.streaming = streaming
        self.context = context
        self.request_id = _request_id(context)
        # Each RPC runs in a task of its own, so this never outlives the call.
        current_request_id.set(self.request_id)
        # Read now, while the call is alive: grpc_call_get_peer after the call was
        # cancelled reads freed memory (grpc/grpc#29069) and crashed the process.
        self.peer = context.peer()
        self.started = time.monotonic()
        self.code = grpc.StatusCode.OK
        self.reason = ""

    async def send_id(self) -> None:
        """The request id goes back at once on a stream (its caller may wait long for the
        first message) and with the answer, as trailing metadata, on a unary call:
        grpc.aio sends initial metadata of its own in a separate batch, which halved
        GetImage's throughput from memory (bench/reads.py)."""
        if self.streaming:
            await self.context.send_initial_metadata(self._id_metadata())
        else:
            self.context.set_trailing_metadata(self._id_metadata())

    def establish(self, authenticator: Authenticator | None) -> None:
        """Who calls (authorization follows in the servicer guard)."""
        if authenticator is not None:
            establish_caller(self.context, authenticator, self.request_id, self.peer or "")

    async def settle(self, error: BaseException) -> None:
        """The call ended with `error`: core errors become their status and bugs
        INTERNAL (both abort the call, which raises); otherwise the caller re-raises
        `error` (a cancellation, an abort, a closed stream)."""
        if isinstance(error, ImageServiceError):
            await self.fail(error)
        elif isinstance(error, asyncio.CancelledError):
            self.code = cancelled_code(self.context)  # or DEADLINE_EXCEEDED, as on /metrics
        elif isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
            await self.unexpected(error)

    def _id_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.request_id),)

    async def fail(self, error: ImageServiceError) -> None:
        code, message, details = error_status(error)
        self.code, self.reason = code, str(error.reason)
        log_failure_cause(
            code, error, request_id=self.request_id, where={"grpc_method": self.method}
        )
        await self.context.abort(
            code, message, trailing_metadata=((_STATUS_DETAILS_KEY, details), *self._id_metadata())
        )

    async def unexpected(self, bug: Exception) -> None:
        """A bug: logged with its (redacted) traceback, answered without its text (which
        may hold data)."""
        answer = InternalError(
            f"internal error in imagesvc; quote request id {self.request_id} when reporting it"
        )
        log_failure_cause(
            status_code_for(answer),
            bug,
            request_id=self.request_id,
            bug=True,
            where={"grpc_method": self.method},
        )
        code, message, details = error_status(answer)
        self.code, self.reason = code, str(answer.reason)
        await self.context.abort(
            code, message, trailing_metadata=((_STATUS_DETAILS_KEY, details), *self._id_metadata())
        )

    def finish(self) -> None:
        if self.code is grpc.StatusCode.OK:
            code = self.context.code()
            if isinstance(code, grpc.StatusCode):
                self.code = code
        fields: dict[str, object] = {
            "grpc_method": self.method,
            "grpc_code": self.code.name,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 2),
            "request_id": self.request_id,
            "peer": self.peer,
        }
        if self.reason:
            fields["reason"] = self.reason
        identity = current_identity.get()
        if identity is not None:
            fields["identity"] = identity.name
        # Written on the loop's next turn, once gRPC has the answer on its way: the line
        # (a record, JSON, a write) cost a unary call ~0.05 ms of its latency.
        asyncio.get_running_loop().call_soon(_write_access_line, fields)


def _write_access_line(fields: dict[str, object]) -> None:
    log.info("rpc", extra=fields)


# The two handlers below run every RPC: the caller established, core errors turned into
# their status, bugs into INTERNAL, and one access-log line at the end. Plain try blocks,
# not a shared async context manager: entering and leaving one cost each GetImage from
# memory more than its own work did. The secrets are collected outside the try, so
# that `settle` logs the failure with them.


def _wrap_unary(
    method: str,
    behaviour: Callable[[Any, Context], Awaitable[Any]],
    authenticator: Authenticator | None,
    drain: Drain,
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def handler(request: Any, context: Context) -> Any:
        call = _Call(method, context, streaming=False)
        with collecting_call_secrets():
            try:
                with drain.call():
                    await call.send_id()
                    call.establish(authenticator)
                    return await behaviour(request, context)
            except BaseException as error:
                await call.settle(error)
                raise
            finally:
                call.finish()

    return handler


def _wrap_stream(
    method: str,
    behaviour: Callable[[Any, Context], AsyncIterator[Any]],
    authenticator: Authenticator | None,
    drain: Drain,
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def handler(request: Any, context: Context) -> AsyncIterator[Any]:
        call = _Call(method, context, streaming=True)
        with collecting_call_secrets():
            try:
                with drain.call():
                    await call.send_id()
                    call.establish(authenticator)
                    async for response in behaviour(request, context):
                        yield response
            except BaseException as error:
                await call.settle(error)
                raise
            finally:
                call.finish()

    return handler


class CallLifecycleInterceptor(RewrappingInterceptor):
    def __init__(
        self,
        wrapped_services: frozenset[str],
        authenticator: Authenticator | None = None,
        drain: Drain | None = None,
    ) -> None:
        """`authenticator`: establishes the caller of each wrapped RPC (None: nobody is
        established, which the servicer guard, when present, refuses). `drain`: refuses
        new calls once the server shuts down."""
        super().__init__()
        self._services = wrapped_services
        self._authenticator = authenticator
        self.drain = drain if drain is not None else Drain()

    def _wrap(
        self, method: str, original: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service = method.rsplit("/", 2)[1] if method.count("/") >= 2 else ""
        if service not in self._services:
            return original
        behaviour = behaviour_of(original)
        wrap = _wrap_stream if original.response_streaming else _wrap_unary
        return with_behaviour(original, wrap(method, behaviour, self._authenticator, self.drain))
