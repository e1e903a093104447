"""The registry policy against the real engine and registries: pulls, tags, pushes and
builds outside the allowlists are refused before the Engine is asked (a canary registry
named by the references sees no connection, nothing new appears on the Engine or in the
registry); allowed ones work. Over gRPC and REST alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.v1 import image_pb2
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.builds import dockerfile, make_tar, run_build
from tests.integration.local_images import cli_list_ids, expect_error
from tests.integration.policy.canary import CanaryRegistry
from tests.integration.policy.conftest import Running
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import (
    local_image,
    read_pull,
    read_push,
    registry_has_manifest,
    remove_local,
)

DENIED = grpc.StatusCode.PERMISSION_DENIED


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def created(engine: Engine) -> Iterator[list[str]]:
    """References a test made; removed from the Engine afterwards."""
    references: list[str] = []
    yield references
    remove_local(engine, *references)


def containers(engine: Engine) -> list[str]:
    return engine.docker("ps", "--all", "--quiet").stdout.split()


def stream_error(responses: Iterator[object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        for _ in responses:
            pass
    return caught.value


def assert_not_allowed(error: grpc.RpcError, repository: str, allowlist: str) -> None:
    assert isinstance(error, grpc.Call)
    assert error.code() is DENIED, error.details()
    info = error_info(error)
    assert info.reason == "REGISTRY_NOT_ALLOWED"
    assert dict(info.metadata) == {"repository": repository, "allowlist": allowlist}


def test_the_canary_sees_an_engine_that_asks_it(engine: Engine, canary: CanaryRegistry) -> None:
    """Without this, the canary's silence in the other tests would prove nothing."""
    before = canary.connections
    engine.docker("pull", f"{canary.address}/team/app:1", check=False)
    assert canary.connections > before


def test_pulls_outside_the_allowlist_never_reach_the_engine(
    policy: Running, engine: Engine, canary: CanaryRegistry, open_registry: Registry
) -> None:
    contacts = canary.connections
    images_before = cli_list_ids(engine, all=True)
    for reference, repository in [
        (f"{canary.address}/team/app:1", f"{canary.address}/team/app"),
        (f"{canary.address}/allowed/app", f"{canary.address}/allowed/app"),
        (f"{open_registry.address}/other/app:1", f"{open_registry.address}/other/app"),
    ]:
        error = stream_error(
            policy.stub.PullImage(pb.PullImageRequest(reference=reference), timeout=20)
        )
        assert_not_allowed(error, repository, "pull")
        assert f"pulling {reference!r}" in (error.details() or "")
    assert canary.connections == contacts
    assert cli_list_ids(engine, all=True) == images_before


def test_an_allowed_pull_works(
    policy: Running, engine: Engine, open_registry: Registry, created: list[str]
) -> None:
    reference = f"{open_registry.address}/allowed/{name('pulled')}:1"
    created.append(reference)
    image_id = build_busybox_image(engine, reference, extra_lines=[f"LABEL id={uuid.uuid4()}"])
    engine.docker("push", reference)
    remove_local(engine, reference)
    _, result = read_pull(
        policy.stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
    )
    assert result.image_id == image_id
    assert local_image(engine, reference) is not None


def test_tag_targets_outside_the_allowlist_are_refused(
    policy: Running,
    engine: Engine,
    busybox_image: BuiltImage,
    canary: CanaryRegistry,
    created: list[str],
) -> None:
    for target, repository in [
        (f"{canary.address}/team/app:1", f"{canary.address}/team/app"),
        ("imagesvc-test/not-allowed:1", "docker.io/imagesvc-test/not-allowed"),
    ]:
        error = expect_error(
            policy.stub.TagImage,
            pb.TagImageRequest(source=busybox_image.tag, target=target),
            DENIED,
            "REGISTRY_NOT_ALLOWED",
        )
        assert_not_allowed(error, repository, "push")
        assert local_image(engine, target) is None
    allowed = f"imagesvc-test/{name('policy-tag')}:1"
    created.append(allowed)
    reply = policy.stub.TagImage(pb.TagImageRequest(source=busybox_image.tag, target=allowed))
    assert reply.id == busybox_image.id


def test_pushes_outside_the_allowlist_never_reach_the_registry(
    policy: Running,
    engine: Engine,
    open_registry: Registry,
    canary: CanaryRegistry,
    created: list[str],
) -> None:
    contacts = canary.connections
    to_canary = f"{canary.address}/team/{name('push')}:1"
    repository = f"denied/{name('push')}"
    to_open = f"{open_registry.address}/{repository}:1"
    created += [to_canary, to_open]
    for reference in (to_canary, to_open):
        build_busybox_image(engine, reference)
        error = stream_error(
            policy.stub.PushImage(pb.PushImageRequest(reference=reference), timeout=20)
        )
        assert_not_allowed(error, reference.rsplit(":", 1)[0], "push")
    assert canary.connections == contacts
    assert not registry_has_manifest(open_registry, repository, "1")

    allowed_repository = f"allowed/{name('push')}"
    allowed = f"{open_registry.address}/{allowed_repository}:1"
    created.append(allowed)
    build_busybox_image(engine, allowed)
    _, result = read_push(policy.stub.PushImage(pb.PushImageRequest(reference=allowed), timeout=60))
    assert result.digest.startswith("sha256:")
    assert registry_has_manifest(open_registry, allowed_repository, "1")


def _refused_dockerfiles(
    canary: str, open_registry: str, busybox: str
) -> list[tuple[str, str, dict[str, str], str]]:
    """(case, Dockerfile, build_args, reason) of builds the policy must refuse."""
    return [
        ("from", dockerfile(f"FROM {canary}/base:1", "RUN true"), {}, "REGISTRY_NOT_ALLOWED"),
        (
            "multi-stage",
            dockerfile(
                f"FROM {busybox} AS tools",
                "RUN true",
                f"FROM {canary}/runtime:1",
                "COPY --from=tools /bin/busybox /bb",
            ),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            "build-arg",
            dockerfile(f"ARG BASE={open_registry}/allowed/base:1", "FROM ${BASE}", "RUN true"),
            {"BASE": f"{canary}/evil:1"},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            "copy-from",
            dockerfile(f"FROM {busybox}", f"COPY --from={canary}/tools:1 /x /x"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            "stage-own-name",
            dockerfile(f"FROM {busybox} AS self", "COPY --from=self /bin/busybox /bb"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # Parser directives are found after leading blanks: with ` as the escape,
            # the backslash continues nothing and FROM starts a stage (the policy once
            # missed both of these, and the Engine pulled from the canary).
            "indented-escape-directive",
            dockerfile(" # escape=`", f"FROM {busybox}", "RUN echo \\", f"FROM {canary}/evil:1"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # An unknown directive (and `check`, before buildkit 0.14) ends the directives:
            # the escape stays a backslash; "\`" is the shell's escaped backtick.
            "escape-directive-after-an-unknown-one",
            dockerfile(
                "# foo=bar",
                "# escape=`",
                f"FROM {busybox}",
                "RUN echo \\`",
                f"FROM {canary}/evil:1",
            ),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # \x1c is blank for Python, not for Go: the Engine ends the RUN there.
            "continuation-ended-by-a-control-character",
            dockerfile(f"FROM {busybox}", "RUN echo \\", "\x1c", f"FROM {canary}/evil:1"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # A trigger runs in every build FROM this image: built as an allowed name, a
            # later build FROM it would pull the trigger's image.
            "onbuild-copy-from",
            dockerfile(f"FROM {busybox}", f"ONBUILD COPY --from={canary}/evil:1 /x /x"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # One ARG line's defaults see only the arguments of the lines before it.
            "defaults-of-one-arg-line",
            dockerfile(f"ARG X={busybox} Y=${{X:-{canary}/evil:1}}", "FROM $Y"),
            {},
            "REGISTRY_NOT_ALLOWED",
        ),
        (
            # The proxy build arguments reach FROM without an ARG.
            "proxy-build-arg",
            dockerfile(f"FROM ${{HTTP_PROXY:-{busybox}}}"),
            {"HTTP_PROXY": f"{canary}/evil:1"},
            "REGISTRY_NOT_ALLOWED",
        ),
        ("unset-arg", dockerfile("ARG BASE", "FROM ${BASE}"), {}, "BASE_IMAGE_UNRESOLVED"),
        (
            "remote-add",
            dockerfile(f"FROM {busybox}", f"ADD http://{canary}/payload /payload"),
            {},
            "BUILD_OPTION_NOT_ALLOWED",
        ),
    ]


def test_builds_whose_images_are_outside_the_allowlist_never_start(
    policy: Running,
    engine: Engine,
    open_registry: Registry,
    canary: CanaryRegistry,
    busybox_image: BuiltImage,
) -> None:
    contacts = canary.connections
    images_before = cli_list_ids(engine, all=True)
    containers_before = containers(engine)
    cases = _refused_dockerfiles(canary.address, open_registry.address, busybox_image.tag)
    for case, text, build_args, reason in cases:
        tag = f"imagesvc-test/{name('policy-build')}:1"
        options = pb.BuildOptions(tags=[tag], build_args=build_args)
        outcome = run_build(policy.stub, options, make_tar({"Dockerfile": text}))
        error = outcome.failed()
        assert error.code() is DENIED, (case, error.details())
        assert error_info(error).reason == reason, case
        assert outcome.logs == [], case  # the Engine never started: no "Step 1/..."
        assert local_image(engine, tag) is None
    assert canary.connections == contacts
    assert cli_list_ids(engine, all=True) == images_before
    assert containers(engine) == containers_before


def test_builds_from_allowed_images_work(
    policy: Running,
    engine: Engine,
    open_registry: Registry,
    busybox_image: BuiltImage,
    created: list[str],
) -> None:
    base = f"{open_registry.address}/allowed/{name('base')}:1"
    created.append(base)
    build_busybox_image(engine, base, extra_lines=["RUN echo base > /base.txt"])
    engine.docker("push", base)
    tag = f"imagesvc-test/{name('policy-build')}:1"
    created.append(tag)
    text = dockerfile(
        "ARG BASE=placeholder",
        "FROM ${BASE} AS base",
        f"FROM {busybox_image.tag}",
        "COPY --from=base /base.txt /base.txt",
        "RUN cat /base.txt",
    )
    outcome = run_build(
        policy.stub,
        pb.BuildOptions(tags=[tag], build_args={"BASE": base}),
        make_tar({"Dockerfile": text}),
    )
    result = outcome.succeeded()
    assert "base\n" in outcome.text
    assert local_image(engine, tag) is not None
    assert result.tags == [tag]


def test_build_tags_outside_the_allowlist_are_refused(
    policy: Running, canary: CanaryRegistry, busybox_image: BuiltImage
) -> None:
    tag = f"{canary.address}/team/app:1"
    context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}")})
    error = run_build(policy.stub, pb.BuildOptions(tags=[tag]), context).failed()
    assert_not_allowed(error, f"{canary.address}/team/app", "push")
    assert f"tagging the build as {tag!r}" in (error.details() or "")


def test_rest_applies_the_same_policy(
    policy: Running, canary: CanaryRegistry, busybox_image: BuiltImage
) -> None:
    contacts = canary.connections
    with httpx.Client(base_url=policy.http_url, timeout=30, trust_env=False) as client:
        pulled = client.post("/v1/images:pull", json={"reference": f"{canary.address}/a/b:1"})
        tagged = client.post(
            "/v1/images:tag",
            json={"source": busybox_image.tag, "target": f"{canary.address}/a/b:1"},
        )
    # A stream that fails before its first message answers the status with one
    # {"error": Status} line; a unary call answers the Status itself.
    for response, status in ((pulled, pulled.json()["error"]), (tagged, tagged.json())):
        assert response.status_code == 403, response.text
        assert status["code"] == 7
        [info] = [d for d in status["details"] if d["@type"].endswith("ErrorInfo")]
        assert info["reason"] == "REGISTRY_NOT_ALLOWED"
    assert canary.connections == contacts


def _check_auth(server: Running, address: str) -> grpc.RpcError:
    auth = image_pb2.RegistryAuth(
        username="ci", password="not-a-real-password", server_address=address
    )
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.CheckRegistryAuth(pb.CheckRegistryAuthRequest(auth=auth), timeout=30)
    return caught.value


def test_check_registry_auth_outside_the_allowlists_never_reaches_the_registry(
    policy: Running, canary: CanaryRegistry, open_registry: Registry
) -> None:
    """CheckRegistryAuth makes the daemon contact server_address: with allowlists, only
    registries they name may be asked, or a puller could point the daemon at any host."""
    contacts = canary.connections
    for address in (canary.address, f"https://{canary.address}/v2/", f"http://{canary.address}"):
        error = _check_auth(policy, address)
        assert error.code() is DENIED, (address, error.details())
        info = error_info(error)
        assert info.reason == "REGISTRY_NOT_ALLOWED"
        assert dict(info.metadata) == {"registry": canary.address, "allowlist": "pull, push"}
    assert canary.connections == contacts


@pytest.mark.parametrize(
    "address",
    [
        "{open}@{canary}",
        "https://ci:secret@{canary}",
        "{canary}?@{open}",
        "{canary}#@{open}",
        "{open}/../x?y",
        "https://{canary}:{canary}",
        " {canary}",
        "ftp://{canary}",
    ],
)
def test_check_registry_auth_refuses_addresses_the_engine_would_read_differently(
    policy: Running, canary: CanaryRegistry, open_registry: Registry, address: str
) -> None:
    """Go's URL parser takes the host after the last '@' and before '?' or '#': any such
    address is refused rather than read one way here and another by the Engine."""
    contacts = canary.connections
    text = address.format(open=open_registry.address, canary=canary.address)
    error = _check_auth(policy, text)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "secret" not in (error.details() or "")
    assert canary.connections == contacts


def test_check_registry_auth_of_an_allowed_registry_reaches_it(
    policy: Running, open_registry: Registry
) -> None:
    for address in (open_registry.address, f"http://{open_registry.address}/v2/"):
        auth = image_pb2.RegistryAuth(username="ci", password="anything", server_address=address)
        reply = policy.stub.CheckRegistryAuth(pb.CheckRegistryAuthRequest(auth=auth), timeout=30)
        assert reply.status == "Login Succeeded"
