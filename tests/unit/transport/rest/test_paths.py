"""Routes from the google.api.http annotations, and matching raw paths the way
grpc-gateway v2's ServeMux does (runtime/mux.go, runtime/pattern.go)."""

from __future__ import annotations

import pytest

from imagesvc.transport.rest.errors import RestError
from imagesvc.transport.rest.paths import (
    FORM_CONTENT_TYPE,
    PathTemplate,
    Router,
    Variable,
    bindings_of,
    unescape_segment,
)
from imagesvc.v1 import image_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(bindings_of(SERVICE))


def _error(router: Router, method: str, path: str, **kwargs: str) -> RestError:
    with pytest.raises(RestError) as caught:
        router.route(method, path, **kwargs)
    return caught.value


def test_every_annotated_rpc_has_its_route(router: Router) -> None:
    routes = {(b.http_method, b.template): b.rpc for b in router.bindings}
    assert routes == {
        ("GET", "/v1/images"): "ListImages",
        ("GET", "/v1/images/{image}"): "GetImage",
        ("GET", "/v1/images/{image}/history"): "GetImageHistory",
        ("GET", "/v1/images:watch"): "WatchImages",
        ("GET", "/v1/images:export"): "ExportImages",
        ("GET", "/v1/diskUsage"): "GetDiskUsage",
        ("POST", "/v1/images:pull"): "PullImage",
        ("POST", "/v1/images:tag"): "TagImage",
        ("POST", "/v1/images:push"): "PushImage",
        ("POST", "/v1/images:build"): "BuildImage",
        ("POST", "/v1/images:import"): "ImportImages",
        ("DELETE", "/v1/images/{image}"): "RemoveImage",
        ("POST", "/v1/images:prune"): "PruneImages",
        ("POST", "/v1/registries:checkAuth"): "CheckRegistryAuth",
        ("POST", "/v1/images:inspectRegistry"): "InspectRegistryImage",
        ("POST", "/v1/images:checkUpdates"): "CheckImageUpdates",
    }
    assert {m.name for m in SERVICE.methods} == set(routes.values())
    build = next(b for b in router.bindings if b.rpc == "BuildImage")
    assert build.client_streaming
    assert build.server_streaming
    assert build.body == "*"
    assert build.request_type is pb.BuildImageRequest


def test_template_parsing() -> None:
    assert PathTemplate.parse("/v1/images:pull") == PathTemplate(
        "/v1/images:pull", ("v1", "images"), "pull"
    )
    assert PathTemplate.parse("/v1/images/{image}/history").segments == (
        "v1",
        "images",
        Variable(("image",)),
        "history",
    )
    assert PathTemplate.parse("/v1/{a.b=*}").segments == ("v1", Variable(("a", "b")))
    for unsupported in ("/v1/{name=things/*}", "/v1/**", "v1/images", "/v1//x"):
        with pytest.raises(ValueError, match="path template"):
            PathTemplate.parse(unsupported)


def test_a_percent_encoded_reference_is_one_segment(router: Router) -> None:
    match = router.route("GET", "/v1/images/127.0.0.1%3A5000%2Fteam%2Fapp%3A1.0")
    assert match.binding.rpc == "GetImage"
    assert match.variables == {("image",): "127.0.0.1:5000/team/app:1.0"}
    digest = "sha256:" + "a" * 64
    match = router.route("DELETE", f"/v1/images/team%2Fapp%40{digest.replace(':', '%3a')}")
    assert match.binding.rpc == "RemoveImage"
    assert match.variables == {("image",): f"team/app@{digest}"}
    history = router.route("GET", "/v1/images/busybox%3A1.36/history")
    assert history.binding.rpc == "GetImageHistory"
    assert history.variables == {("image",): "busybox:1.36"}


def test_an_unencoded_slash_splits_the_reference(router: Router) -> None:
    assert _error(router, "GET", "/v1/images/team/app").http == 404
    # ... which makes /v1/images/<x>/history the history of <x>, as in grpc-gateway.
    assert router.route("GET", "/v1/images/team/history").variables == {("image",): "team"}


def test_custom_verbs(router: Router) -> None:
    for verb, rpc in [
        ("pull", "PullImage"),
        ("push", "PushImage"),
        ("tag", "TagImage"),
        ("build", "BuildImage"),
        ("prune", "PruneImages"),
    ]:
        assert router.route("POST", f"/v1/images:{verb}").binding.rpc == rpc
    assert router.route("POST", "/v1/registries:checkAuth").binding.rpc == "CheckRegistryAuth"
    # A reference containing a colon is a variable, not a verb, for GET.
    assert router.route("GET", "/v1/images/busybox:pull").variables == {("image",): "busybox:pull"}


def test_unknown_paths_are_not_found_as_grpc_gateway_says_it(router: Router) -> None:
    for method, path in [
        ("GET", "/v1/nothing"),
        ("POST", "/v1/images:unknown"),
        ("GET", "/v1/images/a/b/c"),
        ("POST", "/v1/:pull"),
        ("GET", "/v1/imag%65s"),  # literals compare as sent
        ("GET", "//v1/images"),
    ]:
        error = _error(router, method, path)
        assert (error.http, error.status.code, error.status.message) == (404, 5, "Not Found")


def test_a_known_path_under_another_method_is_unimplemented_501(router: Router) -> None:
    for method, path in [
        ("GET", "/v1/images:pull"),
        ("PUT", "/v1/images"),
        ("POST", "/v1/images/x"),
        ("PATCH", "/v1/images/x/history"),
        ("DELETE", "/v1/registries:checkAuth"),
    ]:
        error = _error(router, method, path)
        assert (error.http, error.status.code, error.status.message) == (
            501,
            12,
            "Method Not Allowed",
        )


def test_a_malformed_escape_in_a_variable_is_400(router: Router) -> None:
    for path in ("/v1/images/%zz", "/v1/images/a%2", "/v1/images/%"):
        error = _error(router, "GET", path)
        assert error.http == 400
        assert error.status.code == 2  # grpc-gateway: UNKNOWN, with HTTP 400
        assert error.status.message.startswith('malformed path escape "%')
    # Found while matching, before the extra segment is seen.
    assert _error(router, "GET", "/v1/images/%zz/extra").http == 400
    # Bytes that are not UTF-8 are refused too.
    assert _error(router, "GET", "/v1/images/%ff").http == 400


def test_unescape_segment() -> None:
    assert unescape_segment("a%2Fb%3ac%40d%25e+f") == "a/b:c@d%e+f"
    assert unescape_segment("plain") == "plain"
    assert unescape_segment("%C3%A9") == "\u00e9"


def test_post_form_falls_back_to_get(router: Router) -> None:
    match = router.route("POST", "/v1/images", content_type=FORM_CONTENT_TYPE)
    assert match.binding.rpc == "ListImages"
    assert match.form_body
    # Without the form content type it is a plain method mismatch.
    assert _error(router, "POST", "/v1/images").http == 501


def test_method_override_on_a_form_post(router: Router) -> None:
    match = router.route("POST", "/v1/images/x", content_type=FORM_CONTENT_TYPE, override="delete")
    assert match.binding.rpc == "RemoveImage"
    assert match.form_body
    # Only a form POST may override its method.
    with pytest.raises(RestError):
        router.route("POST", "/v1/images/x", override="DELETE")


def test_only_export_images_is_served_as_raw_bytes(router: Router) -> None:
    # google.api.HttpBody responses are the body itself, as grpc-gateway serves them.
    assert {b.rpc for b in router.bindings if b.http_body} == {"ExportImages"}
