"""The one image reference parser: Docker's normalisation of short names.

The table holds the cases of Docker's own normalisation (distribution's
``reference.ParseNormalizedNamed`` with ``TagNameOnly``, as ``docker pull``,
``docker load`` and containerd's ``ParseDockerRef`` apply it).
"""

from __future__ import annotations

import pytest

from containerd_client import errors
from containerd_client._registry import (
    InvalidReferenceError,
    Reference,
    normalize_reference,
    parse_reference,
    registry_endpoint,
)
from containerd_client._registry._reference import DOCKER_HUB_ENDPOINT

DIGEST = "sha256:" + "0" * 64

DOCKER_CASES = [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST),
    ("busybox:1.36@" + DIGEST, "docker.io/library/busybox:1.36@" + DIGEST),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/app:v2", "docker.io/user/app:v2"),
    ("user/team/app", "docker.io/user/team/app:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("docker.io/user/app", "docker.io/user/app:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3"),
    ("localhost/app:1", "localhost/app:1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("localhost:5000/x@" + DIGEST, "localhost:5000/x@" + DIGEST),
    ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ("registry.example/a/b/c:tag", "registry.example/a/b/c:tag"),
    ("registry.example:443/app", "registry.example:443/app:latest"),
    # A first component with an upper-case letter can only be a host.
    ("Host/app", "Host/app:latest"),
    # "library" is only added for Docker Hub.
    ("registry.example/busybox", "registry.example/busybox:latest"),
    ("a__b/c-d", "docker.io/a__b/c-d:latest"),
]


@pytest.mark.parametrize(("name", "normalized"), DOCKER_CASES)
def test_docker_normalisation(name: str, normalized: str) -> None:
    assert normalize_reference(name) == normalized
    ref = parse_reference(name)
    assert str(ref) == normalized
    # Normalising is idempotent: the long form parses to the same reference.
    assert parse_reference(normalized) == ref


def test_short_name_parts() -> None:
    assert parse_reference("busybox") == Reference("docker.io", "library/busybox", "latest")
    assert parse_reference("user/app@" + DIGEST) == Reference("docker.io", "user/app", None, DIGEST)


def test_an_explicit_default_host_takes_short_names_unchanged() -> None:
    assert parse_reference("busybox", default_host="127.0.0.1:5000") == Reference(
        "127.0.0.1:5000", "busybox", "latest"
    )
    assert parse_reference("team/app:2", default_host="127.0.0.1:5000").name == "127.0.0.1:5000/team/app"
    # A reference that names its host keeps it.
    assert parse_reference("localhost:5000/x", default_host="127.0.0.1:5000").host == "localhost:5000"


def test_the_environment_no_longer_changes_what_a_short_name_means(monkeypatch: pytest.MonkeyPatch) -> None:
    # pull, images.get, run and import_archive must agree on "busybox".
    monkeypatch.setenv("CONTAINERD_CLIENT_DEFAULT_REGISTRY", "127.0.0.1:5000")
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Busybox",
        "docker.io/Busybox",
        "busybox:",
        ":tag",
        "@" + DIGEST,
        "busybox@sha256:abc",
        "https://registry.example/app",
        "busybox app",
        "/busybox",
        "busybox/",
        "a" * 64,
        "x:" + "t" * 129,
        "docker.io/" + "a" * 300,
    ],
)
def test_invalid_references_get_the_typed_error(name: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        normalize_reference(name)
    assert isinstance(info.value, errors.InvalidArgumentError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidReferenceError):
        parse_reference(name)


@pytest.mark.parametrize("value", [None, 5, b"busybox"])
def test_non_strings_get_the_typed_error(value: object) -> None:
    with pytest.raises(InvalidReferenceError):
        normalize_reference(value)  # type: ignore[arg-type]


def test_docker_hub_is_reached_at_docker_s_registry_endpoint() -> None:
    # Docker, and containerd's docker resolver, send docker.io's requests to this host.
    assert registry_endpoint("docker.io") == DOCKER_HUB_ENDPOINT
    assert registry_endpoint(parse_reference("busybox").host) == DOCKER_HUB_ENDPOINT
    assert registry_endpoint("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_endpoint("registry.example") == "registry.example"


def test_the_error_quotes_the_name_as_given() -> None:
    with pytest.raises(InvalidReferenceError, match="invalid repository 'Busybox'"):
        parse_reference("Busybox")
