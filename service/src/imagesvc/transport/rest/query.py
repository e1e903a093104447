"""Query parameters into request messages, as grpc-gateway v2's DefaultQueryParser does.

- The query string is split like Go's url.ParseQuery: on "&" only (a ";" is an error),
  "+" is a space, a malformed %-escape is an error.
- A key names a field by its proto name or its JSON name, dotted for nested messages
  (`filter.references`, `filter.dangling`); unknown keys are ignored.
- A repeated field takes every value of its key (`filter.labels=a&filter.labels=b`).
- A map entry is `key[map key]=value` (`buildArgs[HTTP_PROXY]=x`).
- Scalars parse like Go's strconv (bool accepts 1/t/T/TRUE/true/True and 0/f/F/...),
  enums by name or number, google.protobuf.Timestamp as RFC 3339, Duration as Go's
  "1h2m3s", wrappers as their scalar. A scalar given twice is an error.
- Fields bound by the path (or the body) are skipped.

Every error is INVALID_ARGUMENT, with grpc-gateway's message where it has one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

from google.protobuf import (
    duration_pb2,
    field_mask_pb2,
    json_format,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from imagesvc.core.errors import InvalidArgumentError

QueryItems = list[tuple[str, list[str]]]

_MAP_KEY = re.compile(r"^(.*)\[(.*)\]$", re.DOTALL)
_HEX = frozenset(b"0123456789abcdefABCDEF")


def parse_query(query: bytes | str) -> QueryItems:
    """Keys with all their values, keys in order of first appearance."""
    raw = query.encode("latin-1") if isinstance(query, str) else query
    grouped: dict[str, list[str]] = {}
    for piece in raw.split(b"&"):
        if b";" in piece:
            raise InvalidArgumentError("invalid semicolon separator in query")
        if not piece:
            continue
        key_raw, _, value_raw = piece.partition(b"=")
        key = _query_unescape(key_raw)
        if not key:
            continue
        grouped.setdefault(key, []).append(_query_unescape(value_raw))
    return list(grouped.items())


def _query_unescape(text: bytes) -> str:
    """Go's url.QueryUnescape: "+" is a space, "%XX" a byte; the result must be UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        byte = text[i]
        if byte == 0x25:  # %
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                shown = escape.decode("latin-1")
                raise InvalidArgumentError(f'invalid URL escape "{shown}"')
            out.append(int(escape[1:], 16))
            i += 3
            continue
        out.append(0x20 if byte == 0x2B else byte)
        i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise InvalidArgumentError("query parameters must be UTF-8") from None


def populate(message: Message, items: QueryItems, skip: Iterable[Sequence[str]] = ()) -> None:
    """Sets the fields of `message` named by the query; `skip` holds field paths (proto
    names) bound elsewhere, whose keys (and keys below them) are ignored."""
    skipped = [tuple(path) for path in skip]
    for key, values in items:
        match = _MAP_KEY.match(key)
        if match:
            key, values = match[1], [match[2], *values]
        path = _normalize(descriptor_of(message), key.split("."))
        if any(tuple(path[: len(prefix)]) == prefix for prefix in skipped):
            continue
        _populate_path(message, path, values)


def descriptor_of(message: Message) -> Descriptor:
    return cast("Descriptor", message.DESCRIPTOR)


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _by_text_or_json(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(name)
    if field is None:
        field = next((f for f in descriptor.fields if f.json_name == name), None)
    return field


def _normalize(descriptor: Descriptor, path: list[str]) -> list[str]:
    """Proto names for a path given in proto or JSON names; the path unchanged if some
    part names no field (it is then ignored)."""
    normalized: list[str] = []
    for index, name in enumerate(path):
        field = _by_text_or_json(descriptor, name)
        if field is None:
            return path
        normalized.append(field.name)
        if index == len(path) - 1:
            break
        if field.message_type is None or field.is_repeated:
            return path
        descriptor = field.message_type
    return normalized


def _populate_path(message: Message, path: list[str], values: list[str]) -> None:
    target = message
    field: FieldDescriptor | None = None
    for index, name in enumerate(path):
        field = _by_text_or_json(descriptor_of(target), name)
        if field is None:
            return  # not a field of the request: ignored, as grpc-gateway does
        oneof = field.containing_oneof
        if oneof is not None and not _is_synthetic(oneof.name, field):
            current = target.WhichOneof(oneof.name)
            if current is not None and (field.message_type is None or current != field.name):
                raise InvalidArgumentError(f'field already set for oneof "{oneof.name}"')
        if index == len(path) - 1:
            break
        if field.message_type is None or field.is_repeated:
            raise InvalidArgumentError(f'invalid path: "{name}" is not a message')
        target = getattr(target, field.name)
    assert field is not None
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        _populate_map(target, field, values)
    elif field.is_repeated:
        container = getattr(target, field.name)
        for value in values:
            parsed = _parse_field(field, value, "list")
            if field.message_type is not None:
                assert isinstance(parsed, Message)
                container.add().CopyFrom(parsed)
            else:
                container.append(parsed)
    else:
        if len(values) > 1:
            raise InvalidArgumentError(
                f'too many values for field "{field.name}": {", ".join(values)}'
            )
        _set(target, field, _parse_field(field, values[0], "field"))


def _is_synthetic(oneof_name: str, field: FieldDescriptor) -> bool:
    """A proto3 `optional` field sits alone in a synthetic oneof named "_<field>"."""
    return oneof_name == f"_{field.name}"


def _populate_map(target: Message, field: FieldDescriptor, values: list[str]) -> None:
    if len(values) != 2:
        raise InvalidArgumentError(
            f'more than one value provided for key "{values[0]}" in map "{field.full_name}"'
        )
    entry = _message_type(field)
    key = _parse_field(entry.fields_by_name["key"], values[0], "map key")
    value = _parse_field(entry.fields_by_name["value"], values[1], "map value")
    container = getattr(target, field.name)
    if isinstance(value, Message):
        container[key].CopyFrom(value)
    else:
        container[key] = value


def _set(target: Message, field: FieldDescriptor, value: object) -> None:
    if isinstance(value, Message):
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


# Scalars -------------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"\+?[0-9]+")
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (32, True),
    FieldDescriptor.TYPE_SINT32: (32, True),
    FieldDescriptor.TYPE_SFIXED32: (32, True),
    FieldDescriptor.TYPE_INT64: (64, True),
    FieldDescriptor.TYPE_SINT64: (64, True),
    FieldDescriptor.TYPE_SFIXED64: (64, True),
    FieldDescriptor.TYPE_UINT32: (32, False),
    FieldDescriptor.TYPE_FIXED32: (32, False),
    FieldDescriptor.TYPE_UINT64: (64, False),
    FieldDescriptor.TYPE_FIXED64: (64, False),
}


def _parse_field(field: FieldDescriptor, value: str, what: str) -> object:
    try:
        return _parse(field, value)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f'parsing {what} "{field.name}": {error.message}') from None


def _parse(field: FieldDescriptor, value: str) -> object:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        return parse_bool(value)
    if kind in _INT_RANGES:
        bits, signed = _INT_RANGES[kind]
        return parse_int(value, bits, signed=signed)
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        if not _FLOAT.fullmatch(value):
            raise InvalidArgumentError(f'strconv.ParseFloat: parsing "{value}": invalid syntax')
        return float(value)
    if kind == FieldDescriptor.TYPE_STRING:
        return value
    if kind == FieldDescriptor.TYPE_BYTES:
        return _parse_bytes(value)
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None
        named = enum.values_by_name.get(value)
        if named is not None:
            return named.number
        if _INT.fullmatch(value) and int(value) in enum.values_by_number:
            return int(value)
        raise InvalidArgumentError(f'"{value}" is not a valid value')
    return _parse_message(_message_type(field), value)


def parse_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_int(value: str, bits: int, *, signed: bool) -> int:
    name = "ParseInt" if signed else "ParseUint"
    if not (_INT if signed else _UINT).fullmatch(value):
        raise InvalidArgumentError(f'strconv.{name}: parsing "{value}": invalid syntax')
    number = int(value)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if not low <= number <= high:
        raise InvalidArgumentError(f'strconv.{name}: parsing "{value}": value out of range')
    return number


def _parse_bytes(value: str) -> bytes:
    """grpc-gateway's runtime.Bytes: standard base64, else URL-safe base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(value, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f'illegal base64 data: "{value}"') from None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)
# Go accepts both micro signs: U+00B5 and U+03BC.
_DURATION_PART = re.compile("([0-9]*(?:\\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DURATION_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

_WRAPPERS: dict[str, type[Message]] = {
    "google.protobuf.DoubleValue": wrappers_pb2.DoubleValue,
    "google.protobuf.FloatValue": wrappers_pb2.FloatValue,
    "google.protobuf.Int64Value": wrappers_pb2.Int64Value,
    "google.protobuf.UInt64Value": wrappers_pb2.UInt64Value,
    "google.protobuf.Int32Value": wrappers_pb2.Int32Value,
    "google.protobuf.UInt32Value": wrappers_pb2.UInt32Value,
    "google.protobuf.BoolValue": wrappers_pb2.BoolValue,
    "google.protobuf.StringValue": wrappers_pb2.StringValue,
    "google.protobuf.BytesValue": wrappers_pb2.BytesValue,
}


def _parse_message(descriptor: Descriptor, value: str) -> Message:
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        return parse_timestamp(value)
    if name == "google.protobuf.Duration":
        return parse_duration(value)
    if name in _WRAPPERS:
        wrapper = _WRAPPERS[name]()
        inner = descriptor_of(wrapper).fields_by_name["value"]
        _set(wrapper, inner, _parse(inner, value))
        return wrapper
    if name == "google.protobuf.FieldMask":
        return field_mask_pb2.FieldMask(paths=value.split(","))
    if name in ("google.protobuf.Struct", "google.protobuf.Value"):
        target: Message = (
            struct_pb2.Struct() if name == "google.protobuf.Struct" else struct_pb2.Value()
        )
        try:
            json_format.Parse(value, target)
        except (json_format.ParseError, json.JSONDecodeError, ValueError) as error:
            raise InvalidArgumentError(str(error)) from None
        return target
    raise InvalidArgumentError(f'unsupported message type: "{name}"')


def parse_timestamp(value: str) -> timestamp_pb2.Timestamp:
    """RFC 3339 with optional fractional seconds and a Z or ±hh:mm offset (Go's
    time.RFC3339Nano layout), not before year 1."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidArgumentError(f'parsing time "{value}" as RFC 3339: invalid syntax')
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    zone = match[8]
    try:
        offset = timedelta(0) if zone == "Z" else _offset(zone)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - offset
    except (ValueError, OverflowError):
        raise InvalidArgumentError(f'parsing time "{value}": out of range') from None
    nanos = int((match[7] or "")[:9].ljust(9, "0"))
    seconds = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    if seconds < _MIN_TIMESTAMP_SECONDS:
        raise InvalidArgumentError(f"{value} before 0001-01-01")
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


_MIN_TIMESTAMP_SECONDS = -62135596800  # 0001-01-01T00:00:00Z


def _offset(zone: str) -> timedelta:
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(zone)
    delta = timedelta(hours=hours, minutes=minutes)
    return -delta if zone[0] == "-" else delta


def parse_duration(value: str) -> duration_pb2.Duration:
    """Go's time.ParseDuration: "300ms", "-1.5h", "2h45m"; "0" alone is allowed."""
    text = value
    negative = text[:1] == "-"
    if text[:1] in "+-" and text:
        text = text[1:]
    if text == "0":
        return duration_pb2.Duration()
    if not text:
        raise InvalidArgumentError(f'time: invalid duration "{value}"')
    total = 0
    position = 0
    while position < len(text):
        part = _DURATION_PART.match(text, position)
        if part is None or part[1] in ("", "."):
            raise InvalidArgumentError(f'time: invalid duration "{value}"')
        number = part[1]
        whole, _, fraction = number.partition(".")
        unit = _DURATION_UNIT_NS[part[2]]
        total += int(whole or "0") * unit
        if fraction:
            total += int(fraction) * unit // 10 ** len(fraction)
        position = part.end()
    if total >= 2**63:
        raise InvalidArgumentError(f'time: invalid duration "{value}"')
    total = -total if negative else total
    seconds, nanos = divmod(abs(total), 1_000_000_000)
    sign = -1 if total < 0 else 1
    return duration_pb2.Duration(seconds=sign * seconds, nanos=sign * nanos)
