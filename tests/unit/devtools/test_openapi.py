"""The OpenAPI document: up to date with the protos, in protoc-gen-openapiv2's shape,
and describing exactly the routes the gateway serves."""

from __future__ import annotations

import json
from typing import Any

from devtools.openapi import IMAGE, legacy_names, merged, render
from imagesvc.transport.rest.gateway import openapi_document
from imagesvc.transport.rest.paths import bindings_of
from imagesvc.v1 import fleet_service_pb2
from imagesvc.v1 import image_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"]
FLEET = fleet_service_pb2.DESCRIPTOR.services_by_name["FleetService"]


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(openapi_document())
    return loaded


def test_the_served_document_is_the_generated_one() -> None:
    assert openapi_document().decode() == render(merged(IMAGE.read_bytes()))


def test_render_is_go_json_encoder_output() -> None:
    assert render({"a": "<b & c>", "é": [1]}) == (
        '{\n  "a": "\\u003cb \\u0026 c\\u003e",\n  "\u00e9": [\n    1\n  ]\n}\n'
    )


def test_legacy_names() -> None:
    names = legacy_names(
        [".google.rpc.Status", ".imagesvc.v1.Image", ".a.x.Status2", ".p.One.Entry", ".p.Two.Entry"]
    )
    assert names[".google.rpc.Status"] == "rpcStatus"
    assert names[".imagesvc.v1.Image"] == "v1Image"
    assert names[".p.One.Entry"] == "pOneEntry"


def test_every_route_is_an_operation_and_nothing_else() -> None:
    paths = document()["paths"]
    served = {
        (b.http_method.lower(), b.template, b.service.rsplit(".", 1)[-1], b.rpc)
        for b in [*bindings_of(SERVICE), *bindings_of(FLEET)]
    }
    documented = {
        (method, path, *operation["operationId"].split("_", 1))
        for path, item in paths.items()
        for method, operation in item.items()
    }
    assert documented == served
    assert list(paths) == sorted(paths)
    assert [tag["name"] for tag in document()["tags"]] == ["ImageService", "FleetService"]
    for item in paths.values():
        for operation in item.values():
            assert operation["tags"] == [operation["operationId"].split("_", 1)[0]]
            assert operation["summary"]
            responses = operation["responses"]
            assert list(responses) == ["200", "503", "default"]
            assert responses["default"]["schema"] == {"$ref": "#/definitions/rpcStatus"}
            assert responses["503"]["schema"] == {"$ref": "#/definitions/rpcStatus"}
            assert operation["parameters"][-1]["name"] == "x-request-id"


def test_streams_are_stream_results() -> None:
    paths = document()["paths"]
    for path, name in [
        ("/v1/images:pull", "v1PullImageResponse"),
        ("/v1/images:push", "v1PushImageResponse"),
        ("/v1/images:build", "v1BuildImageResponse"),
    ]:
        ok = paths[path]["post"]["responses"]["200"]
        assert ok["description"] == "A successful response.(streaming responses)"
        assert ok["schema"] == {
            "type": "object",
            "properties": {
                "result": {"$ref": f"#/definitions/{name}"},
                "error": {"$ref": "#/definitions/rpcStatus"},
            },
            "title": f"Stream result of {name}",
        }
    build = paths["/v1/images:build"]["post"]
    body = next(p for p in build["parameters"] if p["in"] == "body")
    assert body["description"].endswith(" (streaming inputs)")
    assert "application/x-tar" in build["consumes"]
    names = {p["name"] for p in build["parameters"]}
    assert {"tags", "buildArgs[string]", "noCache", "X-Registry-Config"} <= names
    assert not any(name.startswith("registryAuths") for name in names)


def test_parameters_follow_the_annotations() -> None:
    paths = document()["paths"]
    listing = {p["name"]: p for p in paths["/v1/images"]["get"]["parameters"]}
    assert listing["filter.references"] == {
        "name": "filter.references",
        "description": listing["filter.references"]["description"],
        "in": "query",
        "required": False,
        "type": "array",
        "items": {"type": "string"},
        "collectionFormat": "multi",
    }
    assert listing["pageSize"]["type"] == "integer"
    assert listing["filter.dangling"]["type"] == "boolean"
    get = paths["/v1/images/{image}"]["get"]["parameters"][0]
    assert (get["name"], get["in"], get["required"], get["type"]) == (
        "image",
        "path",
        True,
        "string",
    )
    pull = paths["/v1/images:pull"]["post"]["parameters"][0]
    assert pull["in"] == "body"
    assert pull["schema"] == {"$ref": "#/definitions/v1PullImageRequest"}


def test_definitions() -> None:
    doc = document()
    definitions = doc["definitions"]
    assert list(definitions) == sorted(definitions)
    assert definitions["v1PullImageRequest"]["required"] == ["reference"]
    assert definitions["v1TagImageRequest"]["required"] == ["source", "target"]
    image = definitions["v1Image"]["properties"]
    assert image["size"] == {
        "type": "string",
        "format": "int64",
        "description": image["size"]["description"],
    }
    assert image["created"]["format"] == "date-time"
    assert image["labels"]["additionalProperties"] == {"type": "string"}
    assert definitions["protobufAny"] == {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": {},
    }
    # Enums as protoc-gen-openapiv2 renders them: names, the first as default, comments.
    change_type = definitions["v1ChangeType"]
    assert change_type["type"] == "string"
    assert change_type["enum"] == [
        "CHANGE_TYPE_UNSPECIFIED",
        "CHANGE_TYPE_ADDED",
        "CHANGE_TYPE_UPDATED",
        "CHANGE_TYPE_DELETED",
    ]
    assert change_type["default"] == "CHANGE_TYPE_UNSPECIFIED"
    assert "\n - CHANGE_TYPE_ADDED: The image is new" in change_type["description"]
    # Every reference resolves.
    text = json.dumps(doc)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/definitions/')[1:]):
        assert ref in definitions, ref
    # Map entries and well-known types are not definitions of their own.
    assert not any(
        name.endswith(("LabelsEntry", "ArgsEntry")) or name.startswith("protobufTimestamp")
        for name in definitions
    )
