"""The REST routes of a service, read from its google.api.http annotations, and the
matching of a request path against them the way grpc-gateway v2's ServeMux does it
(with UnescapingModeAllExceptReserved, the mode in which a percent-encoded reference is
one path segment):

- the raw path (still percent-encoded) is split on "/"; literal segments must be equal
  as sent, a single-segment variable is then percent-decoded in full, so
  `/v1/images/127.0.0.1%3A5000%2Fteam%2Fapp%3A1.0` binds image="127.0.0.1:5000/team/app:1.0";
- a custom verb is the ":verb" suffix of the last segment (`/v1/images:pull`);
- no route for the path: NOT_FOUND (404); a route for the path under another method:
  UNIMPLEMENTED "Method Not Allowed" (501); a malformed escape in a variable: 400;
- a POST with Content-Type application/x-www-form-urlencoded that matches only a GET
  route is that GET with its parameters in the form (grpc-gateway's path length
  fallback), and X-HTTP-Method-Override is honoured on such a POST.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from imagesvc.transport.rest.errors import (
    RestError,
    malformed_escape,
    method_not_allowed,
    route_not_found,
)

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=\*)?\}")
_HEX = frozenset("0123456789abcdefABCDEF")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Variable:
    """A path variable bound to a (possibly nested) request field."""

    field_path: tuple[str, ...]


Segment = str | Variable


@dataclass(frozen=True, slots=True)
class PathTemplate:
    template: str
    segments: tuple[Segment, ...]
    verb: str

    @classmethod
    def parse(cls, template: str) -> PathTemplate:
        """Literal segments, `{field}` / `{field=*}` variables and an optional `:verb`;
        other template forms (`**`, multi-segment variables) are refused."""
        if not template.startswith("/"):
            raise ValueError(f"path template {template!r} does not start with /")
        body, verb = template[1:], ""
        last_slash = body.rfind("/")
        colon = body.rfind(":")
        if colon > last_slash and "}" not in body[colon:]:
            body, verb = body[:colon], body[colon + 1 :]
        segments: list[Segment] = []
        for part in body.split("/"):
            variable = _VARIABLE.fullmatch(part)
            if variable:
                segments.append(Variable(tuple(variable[1].split("."))))
            elif not part or any(c in part for c in "{}*"):
                raise ValueError(f"unsupported path template {template!r}")
            else:
                segments.append(part)
        return cls(template, tuple(segments), verb)

    @property
    def variables(self) -> list[Variable]:
        return [s for s in self.segments if isinstance(s, Variable)]

    def match(self, components: Sequence[str], verb: str) -> dict[tuple[str, ...], str] | None:
        """The decoded variables if the components match, else None. A malformed escape
        in a variable reached while matching is an error, as in grpc-gateway."""
        if self.verb != verb:
            if self.verb:
                return None
            components = [*components[:-1], f"{components[-1]}:{verb}"]
        bound: dict[tuple[str, ...], str] = {}
        for position, segment in enumerate(self.segments):
            if position >= len(components):
                return None
            component = components[position]
            if isinstance(segment, Variable):
                bound[segment.field_path] = unescape_segment(component)
            elif component != segment:
                return None
        if len(components) > len(self.segments):
            return None
        return bound


def unescape_segment(text: str) -> str:
    """Percent-decodes every escape of one path segment (grpc-gateway decodes single
    segment variables in full); the bytes must be UTF-8."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                raise malformed_escape(escape)
            out.append(int(escape[1:], 16))
            i += 3
        else:
            out += char.encode()
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise RestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"path segment {text!r} is not UTF-8 once decoded"
        ) from None


@dataclass(frozen=True, slots=True)
class Binding:
    """One HTTP route of one RPC."""

    rpc: str  # e.g. "ListImages"
    http_method: str
    path: PathTemplate
    body: str  # "" (no body), "*" (the whole request)
    request_type: type[Message]
    client_streaming: bool
    server_streaming: bool
    # The response is google.api.HttpBody: served as its raw bytes, not as JSON.
    http_body: bool = False
    # The RPC's service, e.g. "imagesvc.v1.FleetService": which servicer answers it.
    service: str = ""

    @property
    def template(self) -> str:
        return self.path.template


HTTP_BODY = "google.api.HttpBody"


def bindings_of(service: ServiceDescriptor) -> list[Binding]:
    """Every route of every RPC of `service`, in proto order (additional bindings after
    their main one)."""
    routes: list[Binding] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
        for one in (rule, *rule.additional_bindings):
            routes.append(_binding(method, one))
    return routes


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Binding:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError(f"{method.full_name}: google.api.http without a pattern")
    if kind == "custom":
        http_method, template = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, template = kind.upper(), getattr(rule, kind)
    if rule.body not in ("", "*"):
        raise ValueError(f"{method.full_name}: body {rule.body!r} is not supported (only '*')")
    if rule.response_body:
        raise ValueError(f"{method.full_name}: response_body is not supported")
    return Binding(
        rpc=method.name,
        http_method=http_method,
        path=PathTemplate.parse(template),
        body=rule.body,
        request_type=message_factory.GetMessageClass(method.input_type),
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        http_body=method.output_type.full_name == HTTP_BODY,
        service=method.containing_service.full_name,
    )


@dataclass(frozen=True, slots=True)
class RouteMatch:
    binding: Binding
    variables: dict[tuple[str, ...], str]
    # The request's parameters are in its form body (path length fallback).
    form_body: bool = False


class Router:
    """Finds the binding for a method and raw path, or raises the RestError grpc-gateway
    answers (404, 501, 400)."""

    def __init__(self, bindings: Sequence[Binding]) -> None:
        self._by_method: dict[str, list[Binding]] = {}
        for binding in bindings:
            # grpc-gateway tries the most recently registered pattern first.
            self._by_method.setdefault(binding.http_method, []).insert(0, binding)

    @property
    def bindings(self) -> list[Binding]:
        return [b for group in self._by_method.values() for b in group]

    def route(
        self, method: str, raw_path: str, *, content_type: str = "", override: str = ""
    ) -> RouteMatch:
        if not raw_path.startswith("/"):
            raise RestError(grpc.StatusCode.INVALID_ARGUMENT, "Bad Request")
        fallback = method == "POST" and content_type == FORM_CONTENT_TYPE
        if override and fallback:
            method = override.upper()
        components = raw_path[1:].split("/")
        last = components[-1]
        for binding in self._by_method.get(method, []):
            verb, parts = "", components
            if binding.path.verb and last.endswith(":" + binding.path.verb):
                cut = len(last) - len(binding.path.verb) - 1
                if cut == 0:
                    raise route_not_found()
                verb, parts = binding.path.verb, [*components[:-1], last[:cut]]
            bound = binding.path.match(parts, verb)
            if bound is not None:
                return RouteMatch(binding, bound, form_body=fallback and not binding.body)
        for other, bindings in sorted(self._by_method.items(), key=lambda item: item[0] != "GET"):
            if other == method:
                continue
            for binding in bindings:
                verb, parts = "", components
                if binding.path.verb and last.endswith(":" + binding.path.verb):
                    cut = len(last) - len(binding.path.verb) - 1
                    if cut > 0:
                        verb, parts = binding.path.verb, [*components[:-1], last[:cut]]
                bound = binding.path.match(parts, verb)
                if bound is None:
                    continue
                if fallback and other == "GET":
                    return RouteMatch(binding, bound, form_body=True)
                raise method_not_allowed()
        raise route_not_found()
