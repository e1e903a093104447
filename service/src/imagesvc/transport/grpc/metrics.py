"""Standard gRPC server metrics, as go-grpc-middleware's prometheus provider exports them.

Names, label names and label order, the `grpc_type` values, Go's code names in
`grpc_code`, the histogram's buckets (client_golang's DefBuckets) and the series created
at start-up for every method of every registered service are the same as in
providers/prometheus/server_metrics.go, so the dashboards and alerts written for Go
services work unchanged.

Messages are counted as they really cross the wire: every request message the handler
reads (a unary request counts once) and every response actually handed to gRPC (a unary
response only when the call succeeded), like the original go-grpc-prometheus; a
stream's end-of-input is not a message.

One interceptor, first in the chain, wraps the handlers of every service (health and
reflection too); the status a call ended with is read from the context, where the
error-mapping interceptor put it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from imagesvc.transport.grpc.handlers import RewrappingInterceptor, behaviour_of, with_behaviour

# prometheus.DefBuckets of client_golang, the provider's default for the histogram.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# grpc-go's codes.Code.String(), in the order of go-grpc-middleware's AllCodes.
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# The caller's expiry reaches the server as a cancel (RST_STREAM), a few ms before the
# server's own copy of the deadline passes: a cancel this close to it is the deadline.
_DEADLINE_SLACK_SECONDS = 0.1

Context = grpc.aio.ServicerContext[Any, Any]


class MethodDescription(Protocol):
    """What start-up initialisation reads of a protobuf MethodDescriptor."""

    @property
    def name(self) -> str: ...
    @property
    def client_streaming(self) -> bool: ...
    @property
    def server_streaming(self) -> bool: ...


class ServiceDescription(Protocol):
    """What start-up initialisation reads of a protobuf ServiceDescriptor."""

    @property
    def full_name(self) -> str: ...
    @property
    def methods(self) -> Sequence[MethodDescription]: ...


def grpc_type(*, client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def split_method(full_method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> ("pkg.Service", "Method"), as the Go provider splits it."""
    service, sep, method = full_method.removeprefix("/").partition("/")
    return (service, method) if sep else ("unknown", "unknown")


def _status_code(value: object) -> grpc.StatusCode | None:
    """What `context.code()` holds: a StatusCode, its number (grpc.aio after abort) or None."""
    if isinstance(value, grpc.StatusCode):
        return value
    if isinstance(value, int):
        return _BY_NUMBER.get(value)
    return None


class GrpcServerMetrics:
    """The provider's four counters and its handling-time histogram on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels,
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level"
            " handled by the server.",
            labels,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )
        self._methods: dict[str, _MethodMetrics] = {}

    def initialize(self, services: Iterable[ServiceDescription]) -> None:
        """Creates every series at zero, for every method of these services and, for
        grpc_server_handled_total, every code (the provider's InitializeMetrics)."""
        for service in services:
            for method in service.methods:
                self.method(
                    f"/{service.full_name}/{method.name}",
                    grpc_type(
                        client_streaming=method.client_streaming,
                        server_streaming=method.server_streaming,
                    ),
                ).initialize()

    def method(self, full_method: str, kind: str) -> _MethodMetrics:
        metrics = self._methods.get(full_method)
        if metrics is None:
            service, method = split_method(full_method)
            metrics = _MethodMetrics(self, (kind, service, method))
            self._methods[full_method] = metrics
        return metrics


class _MethodMetrics:
    """The children of one method, looked up once rather than on every call."""

    def __init__(self, metrics: GrpcServerMetrics, labels: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self._labels = labels
        self.started = metrics.started.labels(*labels)
        self.received = metrics.msg_received.labels(*labels)
        self.sent = metrics.msg_sent.labels(*labels)
        self.seconds = metrics.handling_seconds.labels(*labels)

        # grpc_server_handled_total's child of each code, made on first use.
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def initialize(self) -> None:
        for code in GO_CODE_NAMES:
            self._handled_child(code)

    def _handled_child(self, code: grpc.StatusCode) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._metrics.handled.labels(*self._labels, GO_CODE_NAMES.get(code, "Unknown"))
            self._handled[code] = child
        return child

    def handled(self, code: grpc.StatusCode, seconds: float) -> None:
        self._handled_child(code).inc()
        self.seconds.observe(seconds)


def cancelled_code(context: Context) -> grpc.StatusCode:
    """What a handler that grpc.aio cancelled ended with. grpc.aio cancels it both when
    the caller cancels and when the caller's deadline passes; Go's provider tells them
    apart (the context's error), and alerts count a passed deadline as the service's
    failure, a cancel as not."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= _DEADLINE_SLACK_SECONDS:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class _Call:
    def __init__(self, metrics: _MethodMetrics, context: Context) -> None:
        self.metrics = metrics
        self.context = context
        self.started = time.perf_counter()
        metrics.started.inc()

    async def counted(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            self.metrics.received.inc()
            yield request

    def finish(self, error: BaseException | None = None) -> None:
        code = _status_code(self.context.code())
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            code = cancelled_code(self.context)
        elif error is not None and not isinstance(error, grpc.aio.AbortError):
            code = grpc.StatusCode.UNKNOWN  # what grpc answers for an unhandled exception
        self.metrics.handled(code or grpc.StatusCode.OK, time.perf_counter() - self.started)


def _unary_response(
    metrics: _MethodMetrics,
    behaviour: Callable[[Any, Context], Awaitable[Any]],
    *,
    streaming_request: bool,
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def handler(request: Any, context: Context) -> Any:
        call = _Call(metrics, context)
        if streaming_request:
            request = call.counted(request)
        else:
            metrics.received.inc()
        try:
            response = await behaviour(request, context)
        except BaseException as error:
            call.finish(error)
            raise
        metrics.sent.inc()
        call.finish()
        return response

    return handler


def _streaming_response(
    metrics: _MethodMetrics,
    behaviour: Callable[[Any, Context], AsyncIterator[Any]],
    *,
    streaming_request: bool,
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def handler(request: Any, context: Context) -> AsyncIterator[Any]:
        call = _Call(metrics, context)
        if streaming_request:
            request = call.counted(request)
        else:
            metrics.received.inc()
        try:
            async for response in behaviour(request, context):
                yield response
                # Resumed: gRPC has written it and asks for the next one.
                metrics.sent.inc()
        except BaseException as error:
            call.finish(error)
            raise
        call.finish()

    return handler


class GrpcMetricsInterceptor(RewrappingInterceptor):
    """Counts and times every RPC of every service. Put it first among the interceptors,
    so that it sees the status the others settle on."""

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def _wrap(
        self, method: str, original: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        streaming_request = bool(original.request_streaming)
        streaming_response = bool(original.response_streaming)
        behaviour = behaviour_of(original)
        asynchronous = (
            inspect.isasyncgenfunction(behaviour)
            if streaming_response
            else inspect.iscoroutinefunction(behaviour)
        )
        if not asynchronous:
            return original  # every service here is grpc.aio; leave anything else alone
        metrics = self._metrics.method(
            method,
            grpc_type(client_streaming=streaming_request, server_streaming=streaming_response),
        )
        wrap = _streaming_response if streaming_response else _unary_response
        return with_behaviour(
            original, wrap(metrics, behaviour, streaming_request=streaming_request)
        )
