"""OpenAPI v2 for the REST gateway, generated from the protos in the shape
protoc-gen-openapiv2 (grpc-gateway v2, default options) gives it, so tools made for
grpc-gateway APIs read it as they read theirs.

Input: the buf image proto/imagesvc.v1.binpb (file descriptors with their comments), the
`google.api.http` annotations in it, and the google.rpc.Status / google.protobuf.Any
descriptors of the installed protobuf packages (without comments, as protoc-gen-openapiv2
renders them when the protos do not import google/rpc/status.proto).

What protoc-gen-openapiv2 does, and so this does:
- one path per binding, paths sorted; operationId Service_Method; tags [Service];
  summary / description from the method comment (first paragraph, the rest);
- path parameters, then the body (`body: "*"`: the request message, "(streaming
  inputs)" for a client stream), then query parameters for the other request fields,
  nested ones dotted (`filter.references`), repeated ones `collectionFormat: multi`;
- response 200: the response message, or for a server stream an object titled
  "Stream result of <name>" with `result` and `error` properties; default: rpcStatus;
- definitions named by its "legacy" strategy (v1ListImagesResponse, rpcStatus,
  protobufAny), well-known types inline (Timestamp: string/date-time), JSON names,
  int64 as string/int64, maps as additionalProperties, REQUIRED fields in `required`,
  a comment as title when its first paragraph does not end with a period, else as
  description.

Added, as protoc-gen-openapiv2's openapiv2_operation options would add them: a 503
response (the Docker daemon is down), the x-request-id header (sent and returned),
and for BuildImage the raw tar body with its query parameters and X-Registry-Config.

Stdlib and protobuf only. `python -m devtools.openapi [--out PATH] [--check]`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as FD

from devtools.generated_file import generator_parser, write_or_check

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "proto" / "imagesvc.v1.binpb"
SOURCE = "imagesvc/v1/image_service.proto"
# Served beside ImageService by every instance; merged into the one document, as
# protoc-gen-openapiv2's allow_merge does.
MERGED_SOURCES = ("imagesvc/v1/fleet_service.proto",)
OUT = ROOT / "service" / "src" / "imagesvc" / "v1" / "image_service.swagger.json"

# Extension field numbers (google/api/annotations.proto, google/api/field_behavior.proto).
_HTTP_EXTENSION = 72295728
_FIELD_BEHAVIOR_EXTENSION = 1052
_REQUIRED = 2  # google.api.FieldBehavior.REQUIRED

_PARAGRAPH = "\n\n"

_WKT_SCHEMAS: dict[str, dict[str, Any]] = {
    ".google.protobuf.FieldMask": {"type": "string"},
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string"},
    ".google.protobuf.StringValue": {"type": "string"},
    ".google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    ".google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": "integer", "format": "int64"},
    ".google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    ".google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    ".google.protobuf.FloatValue": {"type": "number", "format": "float"},
    ".google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    ".google.protobuf.BoolValue": {"type": "boolean"},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
    ".google.protobuf.ListValue": {"type": "array", "items": {"type": "object"}},
    ".google.protobuf.NullValue": {"type": "string"},
}

_PRIMITIVES: dict[int, tuple[str, str]] = {
    FD.TYPE_DOUBLE: ("number", "double"),
    FD.TYPE_FLOAT: ("number", "float"),
    FD.TYPE_INT64: ("string", "int64"),
    FD.TYPE_UINT64: ("string", "uint64"),
    FD.TYPE_INT32: ("integer", "int32"),
    FD.TYPE_FIXED64: ("string", "uint64"),
    FD.TYPE_FIXED32: ("integer", "int64"),
    FD.TYPE_BOOL: ("boolean", ""),
    FD.TYPE_STRING: ("string", ""),
    FD.TYPE_BYTES: ("string", "byte"),
    FD.TYPE_UINT32: ("integer", "int64"),
    FD.TYPE_SFIXED32: ("integer", "int32"),
    FD.TYPE_SFIXED64: ("string", "int64"),
    FD.TYPE_SINT32: ("integer", "int32"),
    FD.TYPE_SINT64: ("string", "int64"),
}

# Key order of protoc-gen-openapiv2's Go structs, which its JSON keeps.
_SCHEMA_KEYS = [
    "type",
    "format",
    "$ref",
    "x-nullable",
    "example",
    "items",
    "enum",
    "default",
    "properties",
    "additionalProperties",
    "description",
    "title",
    "externalDocs",
    "readOnly",
    "required",
]
_PARAMETER_KEYS = [
    "name",
    "description",
    "in",
    "required",
    "type",
    "format",
    "items",
    "enum",
    "collectionFormat",
    "default",
    "schema",
]
_OPERATION_KEYS = [
    "summary",
    "description",
    "operationId",
    "responses",
    "parameters",
    "tags",
    "consumes",
]
_RESPONSE_KEYS = ["description", "schema", "headers"]

Json = dict[str, Any]


def _ordered(values: Json, keys: Sequence[str]) -> Json:
    unknown = set(values) - set(keys)
    assert not unknown, f"unordered keys {unknown}"
    return {key: values[key] for key in keys if key in values}


# Descriptors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageInfo:
    proto: descriptor_pb2.DescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    path: tuple[int, ...]  # source location path of the message


@dataclass(frozen=True)
class EnumInfo:
    proto: descriptor_pb2.EnumDescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    path: tuple[int, ...]  # source location path of the enum


_HTTP_BODY = ".google.api.HttpBody"


class Registry:
    """Every message of the image (and Status, Any) by fully qualified name (".a.b.C")."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.files = {f.name: f for f in files}
        self.messages: dict[str, MessageInfo] = {}
        self.enums: list[str] = []
        self.enum_infos: dict[str, EnumInfo] = {}
        self.methods: list[str] = []
        for file in self.files.values():
            prefix = f".{file.package}" if file.package else ""
            for index, message in enumerate(file.message_type):
                self._add(message, file, prefix, (4, index))
            for index, enum in enumerate(file.enum_type):
                self._add_enum(f"{prefix}.{enum.name}", enum, file, (5, index))
            for service in file.service:
                for method in service.method:
                    self.methods.append(f"{prefix}.{service.name}.{method.name}")
        self._comments = {
            name: {tuple(loc.path): loc for loc in file.source_code_info.location}
            for name, file in self.files.items()
        }

    def _add(
        self,
        message: descriptor_pb2.DescriptorProto,
        file: descriptor_pb2.FileDescriptorProto,
        prefix: str,
        path: tuple[int, ...],
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = MessageInfo(message, file, path)
        for index, nested in enumerate(message.nested_type):
            self._add(nested, file, name, (*path, 3, index))
        for index, enum in enumerate(message.enum_type):
            self._add_enum(f"{name}.{enum.name}", enum, file, (*path, 4, index))

    def _add_enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        file: descriptor_pb2.FileDescriptorProto,
        path: tuple[int, ...],
    ) -> None:
        self.enums.append(name)
        self.enum_infos[name] = EnumInfo(enum, file, path)

    def comments(self, file: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> str:
        """protoc-gen-openapiv2's protoComments: leading comment trimmed, one leading
        space per line dropped, then the trailing comment as another paragraph."""
        location = self._comments.get(file.name, {}).get(path)
        if location is None:
            return ""
        text = ""
        if location.HasField("leading_comments"):
            text = location.leading_comments.rstrip("\n").strip().replace("\n ", "\n")
            text = _remove_internal_comments(text)
        if location.HasField("trailing_comments"):
            trailing = location.trailing_comments.strip()
            text = trailing if not text else f"{text}\n\n{trailing}"
        return text


def _remove_internal_comments(text: str) -> str:
    text = re.sub(r"[ \t]*\n?[ \t]*\(--.*?--\)", "", text, flags=re.DOTALL)
    # buf's lint directives are for buf, not for readers of the API.
    return re.sub(r"\n?[ \t]*buf:lint:ignore [A-Z_]+[ \t]*", "", text)


def legacy_names(names: Iterable[str]) -> dict[str, str]:
    """protoc-gen-openapiv2's "legacy" naming: the shortest unique suffix of the name's
    components plus one more, concatenated, lowercase package parts title-cased after the
    first (".google.rpc.Status" -> "rpcStatus", ".imagesvc.v1.Image" -> "v1Image")."""
    all_names = list(names)
    hierarchies = {name: name.split(".") for name in all_names}
    by_depth: dict[int, list[tuple[str, ...]]] = {}
    for parts in hierarchies.values():
        for depth in range(len(parts)):
            by_depth.setdefault(depth, []).append(tuple(parts[len(parts) - depth :]))
    resolved: dict[str, str] = {}
    for name, parts in hierarchies.items():
        depth = 0
        while depth < len(parts):
            suffix = tuple(parts[len(parts) - depth :])
            if depth + 1 > 0 and by_depth[depth].count(suffix) == 1:
                break
            depth += 1
        components = list(parts[max(len(parts) - depth - 1, 0) :])
        if len(components) > 1:
            first = next((i for i, c in enumerate(components) if c), -1)
            for i in range(first + 1, len(components)):
                if components[i] and components[i] == components[i].lower():
                    components[i] = components[i][:1].upper() + components[i][1:]
        resolved[name] = "".join(components)
    return resolved


# Comments into schema objects --------------------------------------------------------------


def _apply_comments(target: Json, comment: str, *, has_summary: bool) -> None:
    """protoc-gen-openapiv2's updateOpenAPIDataFromComments for an object with a summary
    (operations) or a title (schemas); only empty properties are filled."""
    if not comment:
        return
    paragraphs = comment.split(_PARAGRAPH)
    summary = paragraphs[0].strip()
    description = _PARAGRAPH.join(paragraphs[1:]).strip()
    key = "summary" if has_summary else "title"
    if has_summary or (summary and not summary.endswith(".")):
        if not target.get(key):
            target[key] = summary
        if description and not target.get("description"):
            target["description"] = description
        return
    if not target.get("description"):
        target["description"] = _PARAGRAPH.join(paragraphs)


def _merge_description(schema: Json) -> str:
    description = str(schema.get("description", ""))
    if schema.get("title"):
        return (str(schema["title"]) + _PARAGRAPH + description).strip()
    return description


# The generator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpBinding:
    method: str
    path: str
    body: str


class Generator:
    def __init__(self, registry: Registry, source: descriptor_pb2.FileDescriptorProto) -> None:
        self.registry = registry
        self.source = source
        package = source.package
        referenced = self._referenced()
        names = [
            n
            for n in (*registry.messages, *registry.enums, *registry.methods)
            if n.startswith(f".{package}.")
            or n in referenced
            or n.startswith((".google.", ".grpc."))
        ]
        self.names = legacy_names(names)

    def _referenced(self) -> set[str]:
        referenced = {".google.rpc.Status", ".google.protobuf.Any"}
        pending = [
            t
            for service in self.source.service
            for method in service.method
            for t in (method.input_type, method.output_type)
        ]
        while pending:
            name = pending.pop()
            if name in referenced or name not in self.registry.messages:
                referenced.add(name)
                continue
            referenced.add(name)
            pending.extend(f.type_name for f in self.registry.messages[name].proto.field)
        return referenced

    def ref(self, type_name: str) -> str:
        return f"#/definitions/{self.names[type_name]}"

    # Schemas -----------------------------------------------------------------------------

    def _is_map(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        info = self.registry.messages.get(field.type_name)
        return info is not None and info.proto.options.map_entry

    def _core(self, field: descriptor_pb2.FieldDescriptorProto) -> Json:
        if field.type in (FD.TYPE_MESSAGE, FD.TYPE_ENUM, FD.TYPE_GROUP):
            if field.type_name in _WKT_SCHEMAS:
                return dict(_WKT_SCHEMAS[field.type_name])
            return {"$ref": self.ref(field.type_name)}
        kind, fmt = _PRIMITIVES[field.type]
        return {"type": kind, "format": fmt} if fmt else {"type": kind}

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> Json:
        """schemaOfField: the field's schema, with `required` if it is REQUIRED."""
        if self._is_map(field):
            value = self.registry.messages[field.type_name].proto.field[1]
            schema: Json = {"type": "object", "additionalProperties": self._core(value)}
        elif field.label == FD.LABEL_REPEATED:
            items = self._core(field)
            if field.type == FD.TYPE_MESSAGE and field.type_name not in _WKT_SCHEMAS:
                items = {"type": "object", **items}
            schema = {"type": "array", "items": _ordered(items, _SCHEMA_KEYS)}
        else:
            schema = self._core(field)
        if _is_required(field):
            schema["required"] = [_json_name(field)]
        return schema

    def message_schema(self, type_name: str) -> Json:
        """renderMessageAsDefinition."""
        info = self.registry.messages[type_name]
        schema: Json = {"type": "object"}
        _apply_comments(schema, self.registry.comments(info.file, info.path), has_summary=False)
        properties: Json = {}
        required: list[str] = []
        for index, field in enumerate(info.proto.field):
            field_schema = self.field_schema(field)
            comment = self.registry.comments(info.file, (*info.path, 2, index))
            _apply_comments(field_schema, comment, has_summary=False)
            for name in field_schema.pop("required", []):
                if name not in required:
                    required.append(name)
            properties[_json_name(field)] = _ordered(field_schema, _SCHEMA_KEYS)
        if type_name == ".google.protobuf.Any":
            # Any's JSON is the packed message's fields plus "@type".
            schema["properties"] = {"@type": properties["typeUrl"]}
            schema["additionalProperties"] = {}
        elif properties:
            schema["properties"] = properties
        if required:
            schema["required"] = required
        return _ordered(schema, _SCHEMA_KEYS)

    def definitions(self) -> Json:
        wanted: set[str] = {".google.rpc.Status"}
        bodies: set[str] = set()
        for service in self.source.service:
            for method in service.method:
                bindings = _bindings(method)
                if not bindings:
                    continue
                if any(b.body for b in bindings):
                    bodies.add(method.input_type)
                self._nested(method.input_type, wanted)
                if method.output_type != _HTTP_BODY:  # raw bytes: no schema of its own
                    wanted.add(method.output_type)
                    self._nested(method.output_type, wanted)
        self._nested(".google.rpc.Status", wanted)
        wanted |= bodies
        result: Json = {}
        for type_name in sorted(wanted, key=lambda n: self.names[n]):
            if type_name in self.registry.enum_infos:
                result[self.names[type_name]] = self.enum_schema(type_name)
                continue
            info = self.registry.messages[type_name]
            if type_name in _WKT_SCHEMAS or info.proto.options.map_entry:
                continue
            result[self.names[type_name]] = self.message_schema(type_name)
        return result

    def enum_schema(self, type_name: str) -> Json:
        """renderEnumerationsAsDefinition: the value names, the first as the default, and
        the enum's comment followed by a " - NAME: comment" line per commented value."""
        info = self.registry.enum_infos[type_name]
        names = [value.name for value in info.proto.value]
        comment = self.registry.comments(info.file, info.path)
        values = [
            f"{value.name}: {text}"
            for index, value in enumerate(info.proto.value)
            if (text := self.registry.comments(info.file, (*info.path, 2, index)))
        ]
        if values:
            comment = (comment + "\n\n " + "- " + "\n - ".join(values)).lstrip("\n")
        schema: Json = {"type": "string", "enum": names, "default": names[0]}
        _apply_comments(schema, comment, has_summary=False)
        return _ordered(schema, _SCHEMA_KEYS)

    def _nested(self, type_name: str, found: set[str]) -> None:
        for field in self.registry.messages[type_name].proto.field:
            name = field.type_name
            if name and name not in found and name in self.registry.enum_infos:
                found.add(name)
            elif name and name not in found and name in self.registry.messages:
                found.add(name)
                self._nested(name, found)

    # Parameters --------------------------------------------------------------------------

    def query_parameters(
        self, type_name: str, bound: set[str], prefix: str = "", seen: tuple[str, ...] = ()
    ) -> list[Json]:
        """nestedQueryParams for every field not bound by the path."""
        info = self.registry.messages[type_name]
        params: list[Json] = []
        for index, field in enumerate(info.proto.field):
            if not prefix and field.name in bound:
                continue
            schema = self.field_schema(field)
            comment = self.registry.comments(info.file, (*info.path, 2, index))
            _apply_comments(schema, comment, has_summary=False)
            is_enum = field.type == FD.TYPE_ENUM
            if "type" in schema or is_enum:
                items = schema.get("items")
                if self._is_map(field):
                    schema["type"] = schema["additionalProperties"].get("type", "")
                if items is not None and items.get("type", "") in ("", "object"):
                    continue  # messages in the query string are not supported
                param: Json = {
                    "name": prefix + _json_name(field),
                    "description": _merge_description(schema),
                    "in": "query",
                    "required": _json_name(field) in schema.get("required", []),
                    "type": schema.get("type"),
                    "format": schema.get("format"),
                    "items": items,
                }
                if param["type"] == "array":
                    param["collectionFormat"] = "multi"
                kept = {k: v for k, v in param.items() if v or k == "required"}
                params.append(_ordered(kept, _PARAMETER_KEYS))
                continue
            if field.type_name in seen:
                raise ValueError(f"recursive message {field.type_name} in query parameters")
            params += self.query_parameters(
                field.type_name, bound, f"{prefix}{_json_name(field)}.", (*seen, field.type_name)
            )
        return params

    def path_parameter(self, type_name: str, field_path: list[str]) -> Json:
        info = self.registry.messages[type_name]
        field = next(f for f in info.proto.field if f.name == field_path[0])
        if len(field_path) > 1:
            return self.path_parameter(field.type_name, field_path[1:])
        if field.type not in _PRIMITIVES or field.label == FD.LABEL_REPEATED:
            raise ValueError(f"unsupported path parameter {field.name}")
        kind, fmt = _PRIMITIVES[field.type]
        index = list(info.proto.field).index(field)
        param: Json = {
            "name": _json_name(field),
            "description": self.registry.comments(info.file, (*info.path, 2, index)),
            "in": "path",
            "required": True,
            "type": kind,
            "format": fmt,
        }
        return _ordered({k: v for k, v in param.items() if v != ""}, _PARAMETER_KEYS)

    # Operations --------------------------------------------------------------------------

    def operation(
        self,
        service_index: int,
        service: descriptor_pb2.ServiceDescriptorProto,
        method_index: int,
        method: descriptor_pb2.MethodDescriptorProto,
        binding: HttpBinding,
    ) -> Json:
        variables = re.findall(r"\{([^}=]+)(?:=[^}]*)?\}", binding.path)
        parameters = [self.path_parameter(method.input_type, v.split(".")) for v in variables]
        if binding.body == "*":
            body_schema = self.message_schema(method.input_type)
            description = str(body_schema.get("description", ""))
            if method.client_streaming:
                description += " (streaming inputs)"
            parameters.append(
                _ordered(
                    {
                        "name": "body",
                        "description": description,
                        "in": "body",
                        "required": True,
                        "schema": {"$ref": self.ref(method.input_type)},
                    },
                    _PARAMETER_KEYS,
                )
            )
        elif binding.body:
            raise ValueError(f"{method.name}: body {binding.body!r} is not supported")
        else:
            bound = {v.split(".")[0] for v in variables}
            parameters += self.query_parameters(method.input_type, bound)

        description = "A successful response."
        schema: Json = {"$ref": self.ref(method.output_type)}
        if method.output_type == _HTTP_BODY:
            # grpc-gateway serves HttpBody as its raw bytes, streamed or not.
            if method.server_streaming:
                description += "(streaming responses)"
            schema = {"type": "string", "format": "binary"}
        elif method.server_streaming:
            description += "(streaming responses)"
            schema = {
                "type": "object",
                "properties": {
                    "result": {"$ref": self.ref(method.output_type)},
                    "error": {"$ref": self.ref(".google.rpc.Status")},
                },
                "title": f"Stream result of {self.names[method.output_type]}",
            }
        operation: Json = {
            "operationId": f"{service.name}_{method.name}",
            "responses": {
                "200": {"description": description, "schema": schema},
                "default": {
                    "description": "An unexpected error response.",
                    "schema": {"$ref": self.ref(".google.rpc.Status")},
                },
            },
            "parameters": parameters,
            "tags": [service.name],
        }
        comment = self.registry.comments(self.source, (6, service_index, 2, method_index))
        _apply_comments(operation, comment, has_summary=True)
        _add_service_conventions(operation, method, self)
        operation["responses"] = {
            code: _ordered(response, _RESPONSE_KEYS)
            for code, response in sorted(operation["responses"].items())
        }
        return _ordered(operation, _OPERATION_KEYS)

    def document(self) -> Json:
        paths: dict[str, Json] = {}
        for service_index, service in enumerate(self.source.service):
            for method_index, method in enumerate(service.method):
                for binding in _bindings(method):
                    path = re.sub(
                        r"\{([^}=]+)(?:=[^}]*)?\}",
                        lambda m: "{" + _json_path(m[1]) + "}",
                        binding.path,
                    )
                    item = paths.setdefault(path, {})
                    key = binding.method.lower()
                    if key in item:
                        raise ValueError(f"two bindings for {binding.method} {path}")
                    item[key] = self.operation(
                        service_index, service, method_index, method, binding
                    )
        tags = []
        for index, service in enumerate(self.source.service):
            tag: Json = {"name": service.name}
            comment = self.registry.comments(self.source, (6, index))
            if comment:
                tag["description"] = comment
            tags.append(tag)
        info: Json = {"title": self.source.name, "version": "version not set"}
        package_comment = self.registry.comments(self.source, (2,))
        if package_comment:
            _apply_comments(info, package_comment, has_summary=False)
            info = {k: info[k] for k in ("title", "description", "version") if k in info}
        return {
            "swagger": "2.0",
            "info": info,
            "tags": tags,
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "paths": {
                path: {
                    method: paths[path][method]
                    for method in ("get", "delete", "post", "put", "patch", "head", "options")
                    if method in paths[path]
                }
                for path in sorted(paths)
            },
            "definitions": self.definitions(),
        }


def _json_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    """The field's JSON name (descriptors copied from generated code do not carry it)."""
    return field.json_name or _camel(field.name)


def _json_path(field_path: str) -> str:
    return ".".join(_camel(part) for part in field_path.split("."))


def _camel(name: str) -> str:
    """protoc's JSON name: each letter after an underscore upper-cased, underscores dropped."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _is_required(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    behaviors = _extension_varints(field.options, _FIELD_BEHAVIOR_EXTENSION)
    return _REQUIRED in behaviors


def _bindings(method: descriptor_pb2.MethodDescriptorProto) -> list[HttpBinding]:
    """The google.api.http rule (and its additional bindings) of a method, read from the
    options' unknown fields so that this needs no generated googleapis code."""
    raw = _extension_bytes(method.options, _HTTP_EXTENSION)
    if raw is None:
        return []
    return _http_rule(raw)


def _http_rule(raw: bytes) -> list[HttpBinding]:
    fields = _wire_fields(raw)
    methods = {2: "GET", 3: "PUT", 4: "POST", 5: "DELETE", 6: "PATCH"}
    body = ""
    rule: HttpBinding | None = None
    additional: list[HttpBinding] = []
    for number, value in fields:
        if number in methods:
            rule = HttpBinding(methods[number], bytes(value).decode(), "")
        elif number == 8:  # custom: CustomHttpPattern{kind=1, path=2}
            custom = dict(_wire_fields(bytes(value)))
            rule = HttpBinding(bytes(custom[1]).decode().upper(), bytes(custom[2]).decode(), "")
        elif number == 7:
            body = bytes(value).decode()
        elif number == 11:
            additional += _http_rule(bytes(value))
    if rule is None:
        return additional
    return [HttpBinding(rule.method, rule.path, body), *additional]


def _extension_bytes(options: Any, number: int) -> bytes | None:
    for field_number, value in _wire_fields(options.SerializeToString()):
        if field_number == number:
            return bytes(value)
    return None


def _extension_varints(options: Any, number: int) -> list[int]:
    found: list[int] = []
    for field_number, value in _wire_fields(options.SerializeToString()):
        if field_number != number:
            continue
        if isinstance(value, int):
            found.append(value)
        else:  # packed
            data, position = bytes(value), 0
            while position < len(data):
                item, position = _varint(data, position)
                found.append(item)
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _wire_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a serialized message: varints as int, length-delimited
    as bytes (fixed-size fields are skipped)."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
            fields.append((number, value))
        elif wire_type == 2:
            length, position = _varint(data, position)
            fields.append((number, data[position : position + length]))
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return fields


# The service's own conventions, as openapiv2_operation options would state them -------------

_DAEMON_DOWN = (
    "The Docker daemon is not answering (reason DAEMON_UNAVAILABLE; /readyz reports the"
    " same state), or a registry it was asked to reach is not (REGISTRY_UNAVAILABLE). The"
    " service keeps running and answers again once they do."
)
_REQUEST_ID = (
    "A request id for logs and error reports (at most 128 characters of"
    " [A-Za-z0-9._:/+=@~-]); one is made up when absent or invalid, and returned in the"
    " x-request-id response header."
)
_RAW_CONTEXT_TYPES = [
    "application/x-tar",
    "application/gzip",
    "application/x-gzip",
    "application/octet-stream",
]
_BUILD_DESCRIPTION = (
    "Two request forms, chosen by Content-Type. With application/x-tar (or gzip:"
    " application/gzip, application/x-gzip, application/octet-stream) the body is the build"
    " context itself, streamed to the Engine as it arrives; the build options are the"
    " query parameters below (proto or JSON names, an `options.` prefix allowed; maps as"
    " `buildArgs[NAME]=VALUE` and `labels[NAME]=VALUE`), and registry credentials for"
    " base images come in the X-Registry-Config header, never in the URL. With"
    " application/json the body is a newline-delimited sequence of BuildImageRequest"
    ' objects, as a grpc-gateway client streams them: `{"options": {...}}` first, then'
    ' `{"contextChunk": "<base64>"}` objects.'
)
_IMPORT_DESCRIPTION = (
    "Two request forms, chosen by Content-Type. With application/x-tar (or gzip:"
    " application/gzip, application/x-gzip, application/octet-stream) the body is the image"
    " archive itself, checked as it arrives. With application/json the body is a"
    " newline-delimited sequence of ImportImagesRequest objects, as a grpc-gateway client"
    ' streams them: `{"archiveChunk": "<base64>"}` objects.'
)
_REGISTRY_CONFIG = (
    "Registry credentials for the raw-body form, as Docker's API takes them: base64url of"
    ' a JSON object mapping each registry to {"username", "password"} (or'
    ' {"identitytoken"}), e.g. {"127.0.0.1:5000": {"username": "ci", "password": "..."}}.'
)


def _add_service_conventions(
    operation: Json, method: descriptor_pb2.MethodDescriptorProto, generator: Generator
) -> None:
    responses = operation["responses"]
    responses["200"]["headers"] = {
        "x-request-id": {
            "description": "The request id (see the x-request-id parameter).",
            "type": "string",
        }
    }
    responses["503"] = {
        "description": _DAEMON_DOWN,
        "schema": {"$ref": generator.ref(".google.rpc.Status")},
    }
    operation["parameters"].append(
        _ordered(
            {
                "name": "x-request-id",
                "description": _REQUEST_ID,
                "in": "header",
                "required": False,
                "type": "string",
            },
            _PARAMETER_KEYS,
        )
    )
    if method.client_streaming and method.name == "ImportImages":
        operation["description"] = _IMPORT_DESCRIPTION
        operation["consumes"] = ["application/json", *_RAW_CONTEXT_TYPES]
    elif method.client_streaming:
        operation["description"] = _BUILD_DESCRIPTION
        operation["consumes"] = ["application/json", *_RAW_CONTEXT_TYPES]
        options_type = next(
            f.type_name
            for f in generator.registry.messages[method.input_type].proto.field
            if f.name == "options"
        )
        for param in generator.query_parameters(options_type, {"registry_auths"}):
            if "[" not in param["name"] and _is_map_param(generator, options_type, param["name"]):
                param["name"] += "[string]"
            param["description"] = (
                param.get("description", "") + " (raw build context body only)"
            ).strip()
            operation["parameters"].insert(-1, _ordered(param, _PARAMETER_KEYS))
        operation["parameters"].insert(
            -1,
            _ordered(
                {
                    "name": "X-Registry-Config",
                    "description": _REGISTRY_CONFIG,
                    "in": "header",
                    "required": False,
                    "type": "string",
                },
                _PARAMETER_KEYS,
            ),
        )


def _is_map_param(generator: Generator, type_name: str, json_name: str) -> bool:
    for field in generator.registry.messages[type_name].proto.field:
        if _json_name(field) == json_name:
            return generator._is_map(field)
    return False


# Entry points ------------------------------------------------------------------------------


def _status_files() -> list[descriptor_pb2.FileDescriptorProto]:
    from google.rpc import status_pb2

    files = []
    for module in (status_pb2, any_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files.append(proto)
    return files


def generate(image: bytes, source: str = SOURCE) -> Json:
    # Status and Any as protoc-gen-openapiv2 knows them (without their source comments),
    # also when the image carries any.proto (google.api.HttpBody imports it).
    status_files = _status_files()
    replaced = {f.name for f in status_files}
    files = [
        f for f in descriptor_pb2.FileDescriptorSet.FromString(image).file if f.name not in replaced
    ]
    registry = Registry([*files, *status_files])
    return Generator(registry, registry.files[source]).document()


def merged(image: bytes, sources: Sequence[str] = MERGED_SOURCES) -> Json:
    """The document of SOURCE with the paths, tags and definitions of `sources` added."""
    document = generate(image)
    for source in sources:
        other = generate(image, source)
        document["tags"] = [*document["tags"], *other["tags"]]
        paths = {**document["paths"], **other["paths"]}
        document["paths"] = {path: paths[path] for path in sorted(paths)}
        definitions = {**document["definitions"], **other["definitions"]}
        document["definitions"] = {name: definitions[name] for name in sorted(definitions)}
    return document


def render(document: Json) -> str:
    """Go's json.Encoder with a two-space indent: <, > and & escaped, a final newline."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__, OUT)
    parser.add_argument("--image", type=Path, default=IMAGE)
    args = parser.parse_args(argv)
    text = render(merged(args.image.read_bytes()))
    return write_or_check(args.out, text, check=args.check, regenerate="scripts/gen-proto")


if __name__ == "__main__":
    sys.exit(main())
