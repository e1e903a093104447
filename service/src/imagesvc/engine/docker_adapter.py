"""The Docker Engine behind the core's DockerPort, through docker-py.

The only module that imports docker. It uses docker-py's low-level APIClient and,
for pull, push and build, builds the Engine request itself so that it (a) keeps the
HTTP response, to close it when the caller goes away, (b) sends registry
credentials per request and never reads or stores any on the shared client, and
(c) checks for errors inside the 200 stream (docker-py's push does not).

Errors: `_translate_errors` is the one table from docker-py/requests exceptions to
core errors; Engine error text, in an HTTP error or an in-stream error line, goes
through engine.errors. Callers only ever see core errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import docker
import docker.errors
import docker.transport.unixconn
import requests
import urllib3.exceptions

from imagesvc.core.errors import (
    DeadlineExceededError,
    EngineError,
    FailedPreconditionError,
    ImageServiceError,
    NotFoundError,
    Reason,
    UnavailableError,
)
from imagesvc.core.models import BuildLimits, RegistryAuth
from imagesvc.core.port import BuildRequest, JsonDocument
from imagesvc.core.references import parse_reference
from imagesvc.engine.errors import classify_engine_message, stream_failure
from imagesvc.engine.loop_http import (
    EngineConnectionLost,
    EngineHTTPError,
    EngineIdleError,
    LoopEndpoint,
    LoopEngineBytes,
    loop_endpoint,
)

log = logging.getLogger(__name__)

# The API version used until the daemon has been asked for its own: docker-py's
# "auto" would need a reachable daemon at start-up, and this service must start
# (and report NOT_SERVING) while the daemon is down. 1.41 is Engine 20.10.
_INITIAL_API_VERSION = "1.41"
_CONNECT_TIMEOUT = 10.0


def _connect_unix(self: Any) -> None:
    """docker-py's UnixHTTPConnection.connect, closing the socket when connect() fails.

    docker-py 7.1 leaves it open (docker/docker-py#3356), so while the daemon is down
    every ping and every call leaked a socket until the garbage collector found it.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(self.timeout)
        sock.connect(self.unix_socket)
    except BaseException:
        sock.close()
        raise
    self.sock = sock


docker.transport.unixconn.UnixHTTPConnection.connect = _connect_unix


class _WaitingStream(threading.local):
    """The stream whose request this thread sends, while it waits for the answer."""

    stream: _AbortableResponse | None = None


_waiting = _WaitingStream()
_urllib3_getresponse = docker.transport.unixconn.UnixHTTPConnection.getresponse


def _getresponse_abortable(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Hands the socket to the stream being opened before blocking on the answer.

    The Engine answers a pull, push or build only with its first progress line; until
    then requests holds no response whose socket `DockerEngineStream.close()` could
    shut down, and a caller that went away would leave a thread (and the daemon's
    work) waiting on a registry that may never answer.
    """
    stream = _waiting.stream
    if stream is not None and isinstance(self.sock, socket.socket):
        stream._attach(self.sock)
    return _urllib3_getresponse(self, *args, **kwargs)


docker.transport.unixconn.UnixHTTPConnection.getresponse = _getresponse_abortable


def _explanation(exc: docker.errors.APIError) -> str:
    """The Engine's own message, without docker-py's "500 Server Error for http+docker://..."."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    if explanation:
        return str(explanation)
    if exc.response is not None and exc.response.reason:
        return str(exc.response.reason)
    return str(exc)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _unreachable(operation: str) -> UnavailableError:
    return UnavailableError(
        f"the Docker daemon is not reachable ({operation}): check that it runs and that"
        " DOCKER_HOST points at its socket",
        reason=Reason.DAEMON_UNAVAILABLE,
    )


@contextmanager
def _translate_errors(operation: str, image: str = "") -> Iterator[None]:
    """The one table from docker-py and requests failures to core errors."""
    try:
        yield
    except ImageServiceError:
        raise
    except docker.errors.ImageNotFound as exc:
        if not image:
            raise classify_engine_message(_explanation(exc), http_status=404) from exc
        raise NotFoundError(
            f"image {image!r} not found on the Docker daemon ({operation})",
            reason=Reason.IMAGE_NOT_FOUND,
            metadata={"image": image[:256]},
        ) from exc
    except docker.errors.APIError as exc:
        status = exc.status_code
        raise classify_engine_message(
            _explanation(exc), http_status=status, building=operation == "build"
        ) from exc
    except EngineHTTPError as exc:  # the event-loop reader's (loop_http.py) HTTP error
        raise classify_engine_message(
            exc.message, http_status=exc.status, building=operation == "build"
        ) from exc
    except EngineIdleError as exc:
        raise DeadlineExceededError(
            f"the Docker daemon sent nothing for too long during {operation}",
            reason=Reason.DAEMON_TIMEOUT,
        ) from exc
    except EngineConnectionLost as exc:
        raise UnavailableError(
            f"the connection to the Docker daemon failed during {operation}",
            reason=Reason.DAEMON_UNAVAILABLE,
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        # requests reports a read timeout in the middle of a stream as a ConnectionError.
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
            raise DeadlineExceededError(
                f"the Docker daemon sent nothing for too long during {operation}",
                reason=Reason.DAEMON_TIMEOUT,
            ) from exc
        raise _unreachable(operation) from exc
    except requests.exceptions.Timeout as exc:
        raise DeadlineExceededError(
            f"the Docker daemon did not answer {operation} in time",
            reason=Reason.DAEMON_TIMEOUT,
        ) from exc
    except (ConnectionError, FileNotFoundError) as exc:
        raise _unreachable(operation) from exc
    except TimeoutError as exc:  # the event-loop reader's connect timeout
        raise DeadlineExceededError(
            f"the Docker daemon did not answer {operation} in time",
            reason=Reason.DAEMON_TIMEOUT,
        ) from exc
    except docker.errors.DockerException as exc:
        raise EngineError(f"{operation} failed: {exc}", reason=Reason.ENGINE_ERROR) from exc
    except requests.exceptions.RequestException as exc:
        raise UnavailableError(
            f"the connection to the Docker daemon failed during {operation}",
            reason=Reason.DAEMON_UNAVAILABLE,
        ) from exc


def _encoded_header(document: Mapping[str, Any]) -> str:
    """A JSON document as the Engine's X-Registry-Auth / X-Registry-Config headers want it."""
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def _auth_header(auth: RegistryAuth | None) -> str:
    return _encoded_header(auth.engine_document() if auth else {})


def _response_socket(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response, found through urllib3's internals."""
    paths = (("_fp", "fp", "raw", "_sock"), ("_connection", "sock"), ("_fp", "fp", "raw"))
    for path in paths:
        node: Any = response.raw
        for attribute in path:
            node = getattr(node, attribute, None)
        if isinstance(node, socket.socket):
            return node
    return None


def _keep_connection(response: requests.Response) -> None:
    """Keeps the stream's connection out of the pool until it is closed with the stream.

    urllib3 gives a connection back to its pool as soon as a response has been read to
    its end (the last chunk, or an error body read by raise_for_status), and
    `DockerEngineStream.close()` shuts the socket down after that: the pool may have
    handed the connection to another request by then (docker-py keeps a pool per URL,
    so the next pull of the same image), whose request the shutdown aborted. The Engine
    logged "context canceled" for that pull and its caller got UNAVAILABLE. A stream's
    connection is therefore its own: closed by `close()`, never reused.
    """
    raw = response.raw
    if getattr(raw, "_pool", None) is not None:
        raw._pool = None


class _AbortableResponse:
    """A streamed Engine response that `close()` aborts from any thread, at any point:
    before the request is sent, while waiting for the Engine's answer, or mid-body."""

    def __init__(self, start: Callable[[], requests.Response], operation: str) -> None:
        self._start = start
        self._operation = operation
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._socket: socket.socket | None = None
        self._closed = threading.Event()

    def _attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            closed = self._closed.is_set()
        if closed:
            _shutdown(sock)

    def _open_response(self) -> requests.Response:
        _waiting.stream = self
        try:
            response = self._start()
        finally:
            _waiting.stream = None
        with self._lock:
            self._response = response
            self._socket = _response_socket(response) or self._socket
            closed = self._closed.is_set()
        if closed:
            _close_response(response)
        return response

    def close(self) -> None:
        """Thread-safe: shuts the socket down so a blocked send or read returns at once."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            sock, response = self._socket, self._response
        if sock is not None:
            _shutdown(sock)
        if response is not None:
            _close_response(response)


class DockerEngineStream(_AbortableResponse):
    """Decoded JSON messages of a streamed Engine response; `close()` aborts it.

    The request is sent by the first `next()`, so that `close()` can abort it at any
    point. An error line (`errorDetail`) is raised as its core error, never handed out.
    """

    def __init__(
        self, start: Callable[[], requests.Response], operation: str, *, registry: str = ""
    ) -> None:
        super().__init__(start, operation)
        # The registry a pull or push talks to, named when it turns out unreachable.
        self._registry = registry
        self._lines: Iterator[bytes] | None = None

    def __iter__(self) -> DockerEngineStream:
        return self

    def _open(self) -> Iterator[bytes]:
        return self._open_response().iter_lines(chunk_size=None)

    def open(self) -> None:
        """Sends the request now, once, and returns when the Engine has answered (an
        event stream's subscription then exists). Closed meanwhile: returns quietly, and
        the next read ends the iteration."""
        if self._lines is not None or self._closed.is_set():
            return
        try:
            with _translate_errors(self._operation):
                self._lines = self._open()
        except ImageServiceError:
            if self._closed.is_set():
                return
            raise

    def __next__(self) -> JsonDocument:
        while True:
            if self._closed.is_set():
                raise StopIteration
            try:
                with _translate_errors(self._operation):
                    if self._lines is None:
                        self._lines = self._open()
                    line = next(self._lines)
            except StopIteration:
                self.close()
                raise
            except ImageServiceError as error:
                if self._closed.is_set():  # reading failed because we closed it
                    raise StopIteration from None
                raise self._named(error) from error.__cause__
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                return {"stream": line.decode(errors="replace")}
            if not isinstance(message, dict):
                return {"stream": str(message)}
            failure = stream_failure(message, building=self._operation == "build")
            if failure is not None:
                raise self._named(failure)
            return message

    def _named(self, error: ImageServiceError) -> ImageServiceError:
        """The error, saying which registry when it is one that could not be reached: the
        Engine's own words ("read tcp 127.0.0.1:58618->127.0.0.1:5000: connection reset
        by peer") do not say which end is the registry."""
        if error.reason is not Reason.REGISTRY_UNAVAILABLE or not self._registry:
            return error
        return error.with_message(
            f"the registry {self._registry} is unavailable ({self._operation}): {error.message}"
        )


class DockerEngineBytes(_AbortableResponse):
    """The raw body of a streamed Engine response (an image archive), read in chunks of
    about `chunk_size` bytes; `close()` aborts it, which stops the Engine's work.

    The request is sent by the first `read()`. A chunk is whatever the body delivered
    once `chunk_size` bytes are there or the body ended (b"" after the end, or once
    closed).
    """

    def __init__(
        self, start: Callable[[], requests.Response], operation: str, *, chunk_size: int
    ) -> None:
        super().__init__(start, operation)
        self._chunk_size = chunk_size
        self._body: Any = None

    def read(self) -> bytes:
        if self._closed.is_set():
            return b""
        try:
            with _translate_errors(self._operation):
                if self._body is None:
                    self._body = self._open_response().raw
                chunk = bytes(self._body.read(self._chunk_size))
        except ImageServiceError:
            if self._closed.is_set():  # reading failed because we closed it
                return b""
            raise
        except urllib3.exceptions.HTTPError as exc:
            if self._closed.is_set():
                return b""
            raise UnavailableError(
                f"the connection to the Docker daemon failed during {self._operation}",
                reason=Reason.DAEMON_UNAVAILABLE,
            ) from exc
        if not chunk:
            self.close()
        return chunk


class _LoopArchive:
    """EngineBytes read on the event loop (loop_http.py), its failures as core errors."""

    def __init__(self, inner: LoopEngineBytes, operation: str) -> None:
        self._inner = inner
        self._operation = operation

    async def read(self) -> bytes:
        with _translate_errors(self._operation):
            return await self._inner.read()

    def close(self) -> None:
        self._inner.close()


class _ThreadedArchive:
    """EngineBytes over docker-py's reader (DockerEngineBytes), for Engines the event
    loop does not speak to (TLS, ssh://): each chunk is read in the loop's default
    executor (slower: the thread and the loop contend for the GIL, issue 16)."""

    def __init__(self, inner: DockerEngineBytes) -> None:
        self._inner = inner

    async def read(self) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self._inner.read)

    def close(self) -> None:
        self._inner.close()  # also ends a read running in the executor


def _close_response(response: requests.Response) -> None:
    """Closes the response and its connection (requests closes neither once the body
    was read to its end: it leaves that to the pool the stream's connection left)."""
    response.raw.close()
    response.close()


def _registry_of(name: str) -> str:
    """The registry host[:port] of a repository name (docker.io when it names none)."""
    try:
        return parse_reference(name).registry
    except ImageServiceError:
        return ""


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.shutdown(socket.SHUT_RDWR)


def _container_limits(limits: BuildLimits) -> dict[str, Any]:
    """The /build query parameters for the RUN containers' cgroup limits (docker-py's
    `container_limits`, plus the CFS quota it does not accept). No swap beyond the memory
    limit: a limit that can spill into swap limits nothing."""
    params: dict[str, Any] = {}
    if limits.memory_bytes:
        params["memory"] = limits.memory_bytes
        params["memswap"] = limits.memory_bytes
    if limits.cpu_quota_us:
        params["cpuperiod"] = limits.cpu_period_us
        params["cpuquota"] = limits.cpu_quota_us
    if limits.cpu_shares:
        params["cpushares"] = limits.cpu_shares
    if limits.cpuset_cpus:
        params["cpusetcpus"] = limits.cpuset_cpus
    return params


def _is_podman(version: Mapping[str, Any]) -> bool:
    components = version.get("Components") or []
    return any(
        isinstance(c, dict) and str(c.get("Name", "")).startswith("Podman") for c in components
    )


def _podman_build_network(network_mode: str) -> dict[str, str]:
    """The /build parameters that give Podman's RUN steps the network the request asks for.

    Podman (4.3 to at least 5) ignores Docker's ``networkmode`` and runs every RUN step
    of a Docker-API build in the host's network namespace, which the build policy
    refuses (``host``). A private network namespace (``nsoptions``) joined to Podman's
    default network is Docker's ``default``; buildah's ``NetworkDisabled`` policy is
    ``none`` (loopback only).
    """
    params = {"nsoptions": json.dumps([{"Name": "network", "Host": False}])}
    if network_mode == "none":
        params["networkmode"] = "NetworkDisabled"
    return params


_SHORT_ID = re.compile(r"sha256:([0-9a-f]{1,63})")


def _podman_image(image: str) -> str:
    """What Podman finds ``image`` by: Docker takes ``sha256:<short prefix>`` for an id
    prefix, Podman (4.3 to at least 5) refuses anything after ``sha256:`` but a full id,
    and takes the bare prefix for the same lookup."""
    short = _SHORT_ID.fullmatch(image)
    return short[1] if short else image


def _podman_prune_refusal(filters: Mapping[str, list[str]]) -> str | None:
    """Why Podman's Docker API would not prune what Docker prunes with these filters.

    Podman 4.3's compat prune always adds ``dangling=true`` (so ``all`` fails), ignores
    ``label!`` and matches no image for two ``label`` conditions: pruning more, or other
    images, than asked is worse than refusing.
    """
    if filters.get("dangling") == ["false"]:
        return "it prunes only dangling images (all=true is not supported)"
    if filters.get("label!"):
        return "it ignores exclude_labels"
    if len(filters.get("label", [])) > 1:
        return "it does not combine several labels"
    return None


class DockerAdapter:
    """DockerPort over one shared docker-py APIClient (thread-safe connection pool)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        stream_idle_timeout: float | None = None,
        ping_timeout: float = 5.0,
        max_pool_size: int = 32,
    ) -> None:
        self._stream_idle_timeout = stream_idle_timeout
        self._ping_timeout = ping_timeout
        # A TLS daemon is configured as for the docker CLI (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).
        kwargs: dict[str, Any] = {}
        if base_url.startswith(("tcp://", "https://")):
            env_tls = docker.utils.kwargs_from_env().get("tls")
            if env_tls:
                kwargs["tls"] = env_tls
        self._client = docker.APIClient(
            base_url=base_url,
            version=_INITIAL_API_VERSION,
            timeout=timeout,
            max_pool_size=max_pool_size,
            **kwargs,
        )
        # The Engine is reached as DOCKER_HOST and DOCKER_CERT_PATH say, nothing else:
        # requests would otherwise let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set in many
        # images for other HTTPS calls) replace the Engine's CA, failing every call to
        # a TLS Engine (docker/docker-py#2433); proxy and .netrc settings of the
        # environment are not for the Engine either.
        self._client.trust_env = False

        # Exports are read on the event loop when the Engine is a unix socket or plain
        # TCP; a TLS Engine keeps docker-py's reader in a thread (slower: issue 16).
        self._loop_endpoint: LoopEndpoint | None = loop_endpoint(
            base_url, tls=bool(kwargs.get("tls"))
        )
        self._negotiated = False
        self._negotiate_lock = threading.Lock()
        self._podman = False

    def close(self) -> None:
        self._client.close()

    def _negotiate_version(self) -> None:
        """Speaks the newest API version both the daemon and docker-py know (once)."""
        with self._negotiate_lock:
            if self._negotiated:
                return
            answer = self._client.version(api_version=False)
            self._podman = _is_podman(answer)
            server = str(answer.get("ApiVersion", ""))
            if server:
                ours = docker.constants.DEFAULT_DOCKER_API_VERSION
                chosen = min(server, ours, key=_version_tuple)
                self._client._version = chosen
                log.info("docker api version negotiated", extra={"api_version": chosen})
            self._negotiated = True

    def _is_podman(self) -> bool:
        """Whether the daemon is Podman's Docker-compatible API (asked once)."""
        if not self._negotiated:
            with _translate_errors("version"):
                self._negotiate_version()
        return self._podman

    def _url(self, path: str, *args: str) -> str:
        return str(self._client._url(path, *args))

    def _stream(
        self,
        operation: str,
        path: str,
        *args: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        data: Any = None,
        registry: str = "",
        get: bool = False,
        idle_timeout: float | None = None,
    ) -> DockerEngineStream:
        url = self._url(path, *args)
        send = self._client._get if get else self._client._post
        idle = idle_timeout if get else self._stream_idle_timeout

        def start() -> requests.Response:
            response: requests.Response = send(
                url,
                params=dict(params),
                headers=dict(headers),
                data=data,
                stream=True,
                # No limit on the whole stream (the RPC deadline bounds it), only on silence.
                timeout=(_CONNECT_TIMEOUT, idle),
            )
            _keep_connection(response)
            try:
                self._client._raise_for_status(response)
            except BaseException:
                _close_response(response)
                raise
            return response

        # Sent by the stream's first read (errors of the request surface there).
        return DockerEngineStream(start, operation, registry=registry)

    def ping(self) -> bool:
        try:
            response = self._client._get(self._url("/_ping"), timeout=self._ping_timeout)
            answered = bool(self._client._result(response) == "OK")
            if answered and not self._negotiated:
                self._negotiate_version()
            return answered
        except Exception:  # noqa: BLE001 (any failure means "not serving")
            return False

    def version(self) -> JsonDocument:
        with _translate_errors("version"):
            return dict(self._client.version(api_version=False))

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        with _translate_errors("list images"):
            params: dict[str, Any] = {"all": "1" if all else "0"}
            if filters:
                params["filters"] = json.dumps(filters)
            result = self._client._result(
                self._client._get(self._url("/images/json"), params=params), json=True
            )
        return list(result or [])

    def _engine_image(self, image: str) -> str:
        return _podman_image(image) if self._is_podman() else image

    def inspect_image(self, image: str) -> JsonDocument:
        with _translate_errors("inspect image", image):
            return dict(self._client.inspect_image(self._engine_image(image)))

    def image_history(self, image: str) -> list[JsonDocument]:
        with _translate_errors("image history", image):
            return list(self._client.history(self._engine_image(image)))

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> DockerEngineStream:
        params = {"fromImage": name, "tag": tag_or_digest}
        if platform:
            params["platform"] = platform
        return self._stream(
            "pull",
            "/images/create",
            params=params,
            headers={"X-Registry-Auth": _auth_header(auth)},
            registry=_registry_of(name),
        )

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> DockerEngineStream:
        return self._stream(
            "push",
            "/images/{0}/push",
            name,
            params={"tag": tag},
            headers={"X-Registry-Auth": _auth_header(auth)},
            registry=_registry_of(name),
        )

    def tag(self, source: str, repository: str, tag: str) -> None:
        with _translate_errors("tag image", source):
            response = self._client._post(
                self._url("/images/{0}/tag", self._engine_image(source)),
                params={"repo": repository, "tag": tag},
            )
            self._client._raise_for_status(response)

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> DockerEngineStream:
        params: dict[str, Any] = {
            "t": list(request.tags),
            "dockerfile": request.dockerfile or "Dockerfile",
            "rm": "1",
            "forcerm": "1",
            "nocache": "1" if request.no_cache else "0",
            "pull": "1" if request.pull else "0",
        }
        if request.build_args:
            params["buildargs"] = json.dumps(dict(request.build_args))
        if request.labels:
            params["labels"] = json.dumps(dict(request.labels))
        if request.target:
            params["target"] = request.target
        if request.platform:
            params["platform"] = request.platform
        if request.network_mode:
            params["networkmode"] = request.network_mode
        if self._is_podman():
            params.update(_podman_build_network(request.network_mode))
        params.update(_container_limits(request.limits))
        headers = {"Content-Type": "application/x-tar"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        if request.registry_auths:
            # X-Registry-Config: every registry the build may pull from, keyed by address.
            config = {a.server_address: a.engine_document() for a in request.registry_auths}
            headers["X-Registry-Config"] = _encoded_header(config)
        return self._stream("build", "/build", params=params, headers=headers, data=context)

    def load(self, archive: IO[bytes] | Iterator[bytes]) -> DockerEngineStream:
        # quiet=0: progress as JSON messages, then one "Loaded image" line per image.
        return self._stream(
            "load",
            "/images/load",
            params={"quiet": "0"},
            headers={"Content-Type": "application/x-tar"},
            data=archive,
        )

    def remove_image(self, image: str, *, force: bool, no_prune: bool) -> list[JsonDocument]:
        with _translate_errors("remove image", image):
            removed = self._client.remove_image(
                self._engine_image(image), force=force, noprune=no_prune
            )
            return list(removed or [])

    def prune_images(self, filters: Mapping[str, list[str]]) -> JsonDocument:
        with _translate_errors("prune images"):
            refusal = _podman_prune_refusal(filters) if self._is_podman() else None
            if refusal:
                raise FailedPreconditionError(
                    f"Podman's Docker API cannot prune what was asked: {refusal}",
                    reason=Reason.ENGINE_ERROR,
                )
            response = self._client._post(
                self._url("/images/prune"), params={"filters": json.dumps(filters)}
            )
            return dict(self._client._result(response, json=True) or {})

    def export_images(
        self, images: Sequence[str], *, chunk_size: int
    ) -> _LoopArchive | _ThreadedArchive:
        names = [self._engine_image(image) for image in images]
        url = self._url("/images/get")
        if self._loop_endpoint is not None:
            target = f"{urlsplit(url).path}?{urlencode([('names', n) for n in names])}"
            reader = LoopEngineBytes(
                self._loop_endpoint,
                target,
                chunk_size=chunk_size,
                connect_timeout=_CONNECT_TIMEOUT,
                idle_timeout=self._stream_idle_timeout,
            )
            return _LoopArchive(reader, "export images")

        def start() -> requests.Response:
            response: requests.Response = self._client._get(
                url,
                params={"names": names},
                stream=True,
                timeout=(_CONNECT_TIMEOUT, self._stream_idle_timeout),
            )
            _keep_connection(response)
            try:
                self._client._raise_for_status(response)
            except BaseException:
                _close_response(response)
                raise
            return response

        return _ThreadedArchive(DockerEngineBytes(start, "export images", chunk_size=chunk_size))

    def disk_usage(self) -> JsonDocument:
        with _translate_errors("disk usage"):
            if not self._negotiated:
                self._negotiate_version()
            api = _version_tuple(str(self._client._version))
            params: dict[str, Any] = {}
            if api >= (1, 42):
                params["type"] = "image"  # skips the containers' and volumes' sizes
            if api >= (1, 52):
                params["verbose"] = "1"  # the per-image Items of ImagesDiskUsage
            response = self._client._get(self._url("/system/df"), params=params)
            document = dict(self._client._result(response, json=True) or {})
            if self._podman:
                self._podman_df_tags(document)
            return document

    def _podman_df_tags(self, document: JsonDocument) -> None:
        """Podman (4.3) puts only the tag ("1.0") in its /system/df RepoTags and a bare
        hex id: both are taken from its image list instead, which has them right."""
        listed = self._client._result(
            self._client._get(self._url("/images/json"), params={"all": "1"}), json=True
        )
        tags = {str(i.get("Id", "")).removeprefix("sha256:"): i.get("RepoTags") for i in listed}
        for image in document.get("Images") or []:
            bare = str(image.get("Id", "")).removeprefix("sha256:")
            image["Id"] = f"sha256:{bare}"
            image["RepoTags"] = tags.get(bare) or []

    def image_events(self, *, since: str = "") -> DockerEngineStream:
        params = {"filters": json.dumps({"type": ["image"]})}
        if since:
            params["since"] = since
        # An event stream is silent for as long as nothing changes: no read timeout.
        return self._stream("events", "/events", params=params, headers={}, get=True)

    def check_auth(self, auth: RegistryAuth) -> JsonDocument:
        # POST /auth directly: docker-py's login() would keep the credentials on the client.
        with _translate_errors("check registry credentials"):
            response = self._client._post_json(self._url("/auth"), data=auth.engine_document())
            return dict(self._client._result(response, json=True) or {})

    # Registry inspection (issue 16) -----------------------------------------------------

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        with _translate_errors("inspect at the registry"):
            if self._is_podman():
                # Podman's compat API (4.3 to at least 5) answers 404 for every name.
                raise FailedPreconditionError(
                    "Podman's Docker API has no registry inspect (GET /distribution/{name}"
                    "/json): resolving an image at its registry needs a Docker Engine",
                    reason=Reason.ENGINE_ERROR,
                )
            response = self._client._get(
                self._url("/distribution/{0}/json", name),
                headers={"X-Registry-Auth": _auth_header(auth)},
            )
            return dict(self._client._result(response, json=True) or {})
