from __future__ import annotations

import pytest

from imagesvc.core.build_options import validate_build_options
from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.models import BuildOptions, RegistryAuth


def test_defaults_are_valid() -> None:
    assert validate_build_options(BuildOptions()) == BuildOptions()


def test_valid_options_pass_through_with_tags_normalised() -> None:
    auth = RegistryAuth(username="u", password="p", server_address="127.0.0.1:5001")
    options = BuildOptions(
        tags=("app", "127.0.0.1:5000/team/app:1.0", "app:dev"),
        dockerfile="docker/Dockerfile.prod",
        build_args={"VERSION": "1.2", "HTTP_PROXY": ""},
        labels={"org.opencontainers.image.title": "app", "team": "a b"},
        target="runtime-stage_2.x",
        no_cache=True,
        pull=True,
        platform="linux/arm64/v8",
        network_mode="host",
        registry_auths=(auth,),
    )
    validated = validate_build_options(options)
    assert validated.tags == ("app:latest", "127.0.0.1:5000/team/app:1.0", "app:dev")
    assert validated.dockerfile == "docker/Dockerfile.prod"
    assert validated.build_args == {"VERSION": "1.2", "HTTP_PROXY": ""}
    assert validated.labels == options.labels
    assert validated.target == "runtime-stage_2.x"
    assert (validated.no_cache, validated.pull) == (True, True)
    assert validated.platform == "linux/arm64/v8"
    assert validated.network_mode == "host"
    assert validated.registry_auths == (auth,)
    # The result owns its mappings.
    assert validated.build_args is not options.build_args


def test_at_most_64_tags() -> None:
    validate_build_options(BuildOptions(tags=tuple(f"app:{i}" for i in range(64))))
    with pytest.raises(InvalidArgumentError) as caught:
        validate_build_options(BuildOptions(tags=tuple(f"app:{i}" for i in range(65))))
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert caught.value.metadata == {"field": "tags"}


@pytest.mark.parametrize("tag", ["App", "app@sha256:" + "0" * 64, "app:", "", "app:-x"])
def test_bad_tags_are_invalid_references(tag: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_build_options(BuildOptions(tags=("good", tag)))
    assert caught.value.reason is Reason.INVALID_REFERENCE


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (BuildOptions(dockerfile="/etc/passwd"), "dockerfile"),
        (BuildOptions(dockerfile="../Dockerfile"), "dockerfile"),
        (BuildOptions(dockerfile=".."), "dockerfile"),
        (BuildOptions(dockerfile="sub/../../Dockerfile"), "dockerfile"),
        (BuildOptions(build_args={"": "x"}), "build_args"),
        (BuildOptions(build_args={"A=B": "x"}), "build_args"),
        (BuildOptions(build_args={"A B": "x"}), "build_args"),
        (BuildOptions(labels={"": "x"}), "labels"),
        (BuildOptions(labels={"a b": "x"}), "labels"),
        (BuildOptions(target="1stage"), "target"),
        (BuildOptions(target="stage name"), "target"),
        (BuildOptions(network_mode="bad mode"), "network_mode"),
        (BuildOptions(network_mode="-x"), "network_mode"),
        (BuildOptions(platform="Linux/AMD64"), "platform"),
        (BuildOptions(platform="linux/"), "platform"),
        (
            BuildOptions(registry_auths=(RegistryAuth(username="u", password="p"),)),
            "registry_auths",
        ),
    ],
)
def test_invalid_options_name_their_field(options: BuildOptions, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_build_options(options)
    assert caught.value.reason is Reason.INVALID_BUILD_OPTIONS
    assert caught.value.metadata == {"field": field}


def test_inner_relative_dockerfile_paths_are_fine() -> None:
    for path in ("Dockerfile", "./Dockerfile", "a/../Dockerfile", "a/b/../Dockerfile.x"):
        assert validate_build_options(BuildOptions(dockerfile=path)).dockerfile == path


def test_network_modes() -> None:
    for mode in ("default", "none", "host", "my-net_1", "container:abc"):
        assert validate_build_options(BuildOptions(network_mode=mode)).network_mode == mode


def test_registry_auth_secrets_are_not_in_the_error() -> None:
    options = BuildOptions(registry_auths=(RegistryAuth(username="u", password="hunter2"),))
    with pytest.raises(InvalidArgumentError) as caught:
        validate_build_options(options)
    assert "hunter2" not in str(caught.value)
