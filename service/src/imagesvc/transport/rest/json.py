"""The protobuf JSON mapping of grpc-gateway v2's default marshaler.

grpc-gateway marshals with protojson's EmitUnpopulated (every field without presence
is written with its default: "", 0, false, [], {}; an unset message field is written as
null) and unmarshals with DiscardUnknown (unknown fields are ignored). Python's
json_format writes fields without presence but omits unset message fields, so the nulls
are added here. Names are lowerCamelCase, int64 values strings, enums names.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from imagesvc.core.errors import InvalidArgumentError

M = TypeVar("M", bound=Message)

# Messages whose JSON form is not an object of their fields (Any is an object, but of
# the packed message's fields).
_SPECIAL_JSON = frozenset(
    "google.protobuf." + name
    for name in [
        "Any",
        "Timestamp",
        "Duration",
        "FieldMask",
        "Struct",
        "Value",
        "ListValue",
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    ]
)

_DECODER = json.JSONDecoder()


def to_value(message: Message) -> dict[str, Any]:
    """The JSON object grpc-gateway writes for `message`, as Python values."""
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return _with_unpopulated(cast("Descriptor", message.DESCRIPTOR), data)


def _with_unpopulated(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    """`data` in field order, with null for each unset singular message field (outside
    any oneof), recursively, as protojson's EmitUnpopulated writes it."""
    if descriptor.full_name in _SPECIAL_JSON:
        return data
    ordered: dict[str, Any] = {}
    for field in descriptor.fields:
        name = field.json_name
        nested = field.message_type
        if name not in data:
            if nested is not None and not _is_repeated(field) and field.containing_oneof is None:
                ordered[name] = None
            continue
        value = data[name]
        if nested is not None and nested.full_name not in _SPECIAL_JSON:
            if nested.GetOptions().map_entry:
                value_field = nested.fields_by_name["value"]
                if value_field.message_type is not None:
                    value = {
                        k: _with_unpopulated(value_field.message_type, v) for k, v in value.items()
                    }
            elif _is_repeated(field):
                value = [_with_unpopulated(nested, item) for item in value]
            else:
                value = _with_unpopulated(nested, value)
        ordered[name] = value
    return ordered


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def dumps(value: object) -> bytes:
    """Compact JSON, UTF-8, as protojson writes it; U+2028 and U+2029 escaped as Go's
    encoder escapes them (JavaScript line terminators)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def message_bytes(message: Message) -> bytes:
    return dumps(to_value(message))


def first_value(text: str) -> tuple[object, int] | None:
    """The first JSON value in `text` and where it ends, or None if there is only
    whitespace. Like Go's json.Decoder, what follows the value is not looked at."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        return None
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"request body is not JSON: {error}") from None
    except RecursionError:
        raise InvalidArgumentError("request body is nested too deeply") from None


def from_value(value: object, message: M) -> M:
    """Fills `message` from a decoded JSON value, ignoring unknown fields."""
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f"request body must be a JSON object ({message.DESCRIPTOR.full_name}),"
            f" not {type(value).__name__}"
        )
    _check_shape(cast("Descriptor", message.DESCRIPTOR), value, "")
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise InvalidArgumentError(f"request body: {error}") from None
    return message


def _check_shape(descriptor: Descriptor, value: dict[Any, Any], where: str) -> None:
    """Objects where the message has messages or maps, arrays where it has repeated
    fields (json_format would read a string given for a message as an empty one; protojson
    refuses it)."""
    fields = {f.json_name: f for f in descriptor.fields} | {f.name: f for f in descriptor.fields}
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:
            continue
        path = f"{where}{key}"
        nested = field.message_type
        is_map = nested is not None and nested.GetOptions().map_entry
        if field.is_repeated and not is_map:
            if not isinstance(item, list):
                raise InvalidArgumentError(f"request body: {path} must be an array")
            if nested is not None and nested.full_name not in _SPECIAL_JSON:
                for index, element in enumerate(item):
                    if not isinstance(element, dict):
                        raise InvalidArgumentError(
                            f"request body: {path}[{index}] must be an object"
                        )
                    _check_shape(nested, element, f"{path}[{index}].")
        elif is_map or (nested is not None and nested.full_name not in _SPECIAL_JSON):
            if not isinstance(item, dict):
                raise InvalidArgumentError(f"request body: {path} must be an object")
            if not is_map and nested is not None:
                _check_shape(nested, item, f"{path}.")


def parse_body(body: bytes, message: M) -> M:
    """A request message from a JSON body; an empty body is the empty message (grpc-gateway
    treats io.EOF so)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidArgumentError("request body is not UTF-8") from None
    decoded = first_value(text)
    if decoded is None:
        return message
    return from_value(decoded[0], message)
