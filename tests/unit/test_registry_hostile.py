"""The registry client against hostile registries and hostile input, without a daemon.

A :class:`~containerd_client.testing._bad_registry.BadRegistry` on 127.0.0.1
plays the registry. Each test bounds what it allows: time (the client's
deadline), memory (tracemalloc) and error class (typed, never a builtin).
"""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from containerd_client import errors
from containerd_client._registry import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    CredentialsError,
    InvalidManifestError,
    InvalidReferenceError,
    RegistryClient,
    RegistryError,
    parse_index,
    parse_manifest,
    parse_reference,
)
from containerd_client._retry import RetryPolicy
from containerd_client.content import DigestMismatchError
from containerd_client.testing._bad_registry import PASSWORD, BadRegistry

SECRET = "Ref-S3cret-pw-7731"
NO_RETRY = RetryPolicy(attempts=1)
DIGEST = "sha256:" + "a" * 64


class Heap:
    """Peak growth of the Python heap since the fixture started (tracemalloc)."""

    def __init__(self) -> None:
        tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]

    def peak(self) -> int:
        return tracemalloc.get_traced_memory()[1] - self.base


@pytest.fixture
def heap() -> Iterator[Heap]:
    try:
        yield Heap()
    finally:
        tracemalloc.stop()


def client_for(registry: BadRegistry, deadline: float | None = None, **kwargs: Any) -> RegistryClient:
    at = None if deadline is None else time.monotonic() + deadline
    return RegistryClient(registry.host, plain_http=True, retry=NO_RETRY, deadline=at, **kwargs)


# -- credentials never echoed ------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        f"alice:{SECRET}@127.0.0.1:5000/team/app",
        f"alice:{SECRET}@127.0.0.1:5000/team/app:1",
        f"https://alice:{SECRET}@127.0.0.1:5000/team/app",
        f"alice:{SECRET}@127.0.0.1:5000/team/app@sha256:{'a' * 64}",
        f"alice@{SECRET}:x@127.0.0.1:5000/team/app",
        f":{SECRET}@registry/x",
    ],
)
def test_reference_errors_never_echo_credentials(ref: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(ref)
    for text in (str(info.value), repr(info.value), caplog.text):
        assert SECRET not in text


def test_raising_auth_callable_is_wrapped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def creds(host: str) -> tuple[str, str]:
        raise RuntimeError(f"vault down (token {SECRET})")

    with (
        BadRegistry("basic-auth") as registry,
        client_for(registry, 5.0, auth=creds) as client,
        pytest.raises(CredentialsError) as info,
    ):
        client.resolve(parse_reference(registry.ref))
    assert isinstance(info.value, errors.UnauthenticatedError)
    assert isinstance(info.value.__cause__, RuntimeError)
    for text in (str(info.value), repr(info.value), caplog.text):
        assert SECRET not in text


def test_auth_callable_giving_junk_is_typed() -> None:
    with BadRegistry("basic-auth") as registry:
        junk: Any = lambda host: "alice:pw"  # noqa: E731
        with (
            client_for(registry, 5.0, auth=junk) as client,
            pytest.raises(CredentialsError, match="callable"),
        ):
            client.resolve(parse_reference(registry.ref))
        with client_for(registry, 5.0, auth=lambda host: ("alice", PASSWORD)) as client:
            assert client.resolve(parse_reference(registry.ref)).digest == registry.image.manifest_digest


# -- bodies are bounded --------------------------------------------------------------------


def test_401_body_is_not_read(heap: Heap) -> None:
    with BadRegistry("auth-huge-body") as registry, client_for(registry, 5.0) as client:
        started = time.monotonic()
        with pytest.raises(errors.UnauthenticatedError):
            client.fetch_manifest(parse_reference(registry.ref))
        assert time.monotonic() - started < 2.0
    assert heap.peak() < 8 << 20, heap.peak()


def test_redirect_body_is_not_read_and_the_redirect_followed(heap: Heap) -> None:
    with BadRegistry("redirect-once-huge-body") as registry, client_for(registry, 5.0) as client:
        data, media_type = client.fetch_manifest(parse_reference(registry.ref))
    assert data == registry.image.manifest
    assert media_type == MEDIA_TYPE_OCI_MANIFEST
    assert heap.peak() < 8 << 20, heap.peak()


def test_error_body_is_capped(heap: Heap) -> None:
    with (
        BadRegistry("error-endless-body") as registry,
        client_for(registry, 5.0) as client,
        pytest.raises(RegistryError) as info,
    ):
        client.resolve(parse_reference(registry.ref))
    assert info.value.status == 500
    assert heap.peak() < 8 << 20, heap.peak()


def test_manifest_over_the_ceiling_is_refused_unread(heap: Heap) -> None:
    with BadRegistry("manifest-huge-length") as registry, client_for(registry, 5.0) as client:
        ref = parse_reference(registry.ref)
        with pytest.raises(RegistryError, match="larger than"):
            client.fetch_manifest(ref, registry.image.manifest_digest)
    assert heap.peak() < 2 << 20, heap.peak()


def test_blob_longer_than_its_descriptor_is_refused(heap: Heap) -> None:
    with BadRegistry("blob-huge-length") as registry, client_for(registry, 5.0) as client:
        image = registry.image
        with (
            pytest.raises(DigestMismatchError),
            client.open_blob("test/app", image.layer_digest, len(image.layer)) as blob,
        ):
            blob.read()
    assert heap.peak() < 8 << 20, heap.peak()


def test_endless_token_answer_is_bounded(heap: Heap) -> None:
    with (
        BadRegistry("token-endless") as registry,
        client_for(registry, 5.0) as client,
        pytest.raises(RegistryError),
    ):
        client.resolve(parse_reference(registry.ref))
    assert heap.peak() < 8 << 20, heap.peak()


# -- one deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["manifest-slow", "headers-slow", "stall"])
def test_deadline_bounds_slow_and_stalled_registries(mode: str) -> None:
    with BadRegistry(mode, interval=0.2) as registry, client_for(registry, 1.0) as client:
        ref = parse_reference(registry.ref)
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceededError):
            client.fetch_manifest(ref, registry.image.manifest_digest)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.5, elapsed


def test_retry_backoff_stops_at_the_deadline() -> None:
    slow_retry = RetryPolicy(attempts=10, initial=2.0, maximum=2.0, jitter=0.0)
    with BadRegistry("error-endless-body") as registry:
        client = RegistryClient(
            registry.host, plain_http=True, retry=slow_retry, deadline=time.monotonic() + 1.0
        )
        with client:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceededError) as info:
                client.resolve(parse_reference(registry.ref))
            elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert isinstance(info.value.__cause__, RegistryError)


def test_expired_deadline_sends_nothing() -> None:
    with (
        BadRegistry("ok") as registry,
        client_for(registry, -1.0) as client,
        pytest.raises(errors.DeadlineExceededError),
    ):
        client.resolve(parse_reference(registry.ref))
    assert registry.requests == []


# -- malformed documents -------------------------------------------------------------------------


def _desc(**over: Any) -> dict[str, Any]:
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST, "size": 3, **over}


GOOD_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
    "config": _desc(mediaType="application/vnd.oci.image.config.v1+json"),
    "layers": [_desc()],
}

BAD_MANIFESTS: list[Any] = [
    b"{not json",
    b"\xff\xfe",
    b"[]",
    b"null",
    b'"text"',
    {**GOOD_MANIFEST, "config": "sha256:abc"},
    {**GOOD_MANIFEST, "config": None},
    {k: v for k, v in GOOD_MANIFEST.items() if k != "config"},
    {**GOOD_MANIFEST, "layers": {"a": 1}},
    {**GOOD_MANIFEST, "layers": "abc"},
    {**GOOD_MANIFEST, "layers": [1, 2]},
    {**GOOD_MANIFEST, "layers": [_desc(digest="sha256:../../etc/passwd")]},
    {**GOOD_MANIFEST, "layers": [_desc(digest="sha256:ABC")]},
    {**GOOD_MANIFEST, "layers": [_desc(digest=7)]},
    {**GOOD_MANIFEST, "layers": [_desc(size=-1)]},
    {**GOOD_MANIFEST, "layers": [_desc(size="3")]},
    {**GOOD_MANIFEST, "layers": [_desc(size=True)]},
    {**GOOD_MANIFEST, "layers": [_desc(size=1 << 63)]},
    {**GOOD_MANIFEST, "layers": [_desc(mediaType=["x"])]},
    {**GOOD_MANIFEST, "layers": [_desc(annotations=[1])]},
    {**GOOD_MANIFEST, "layers": [_desc(annotations={"a": 1})]},
    {**GOOD_MANIFEST, "layers": [_desc(urls="http://x")]},
    {**GOOD_MANIFEST, "mediaType": "application/vnd.example.unknown+json"},
    {**GOOD_MANIFEST, "mediaType": MEDIA_TYPE_OCI_INDEX},
    {**GOOD_MANIFEST, "schemaVersion": 1},
    {**GOOD_MANIFEST, "schemaVersion": "2"},
]


@pytest.mark.parametrize("doc", BAD_MANIFESTS, ids=range(len(BAD_MANIFESTS)))
def test_malformed_manifests_raise_typed_errors(doc: Any) -> None:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidManifestError):
        parse_manifest(data, DIGEST)


def test_good_manifest_parses() -> None:
    config, layers = parse_manifest(json.dumps(GOOD_MANIFEST).encode(), DIGEST)
    assert config.digest == DIGEST
    assert [layer.size for layer in layers] == [3]


GOOD_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": MEDIA_TYPE_OCI_INDEX,
    "manifests": [
        {**_desc(mediaType=MEDIA_TYPE_OCI_MANIFEST), "platform": {"os": "linux", "architecture": "amd64"}}
    ],
}

BAD_INDEXES: list[Any] = [
    b"{",
    {**GOOD_INDEX, "manifests": {"a": 1}},
    {**GOOD_INDEX, "manifests": "x"},
    {**GOOD_INDEX, "manifests": [None]},
    {**GOOD_INDEX, "manifests": [{**GOOD_INDEX["manifests"][0], "platform": "linux/amd64"}]},
    {**GOOD_INDEX, "manifests": [{**GOOD_INDEX["manifests"][0], "platform": {"os": 1}}]},
    {**GOOD_INDEX, "manifests": [{**GOOD_INDEX["manifests"][0], "digest": "md5:x"}]},
    {**GOOD_INDEX, "mediaType": MEDIA_TYPE_OCI_MANIFEST},
]


@pytest.mark.parametrize("doc", BAD_INDEXES, ids=range(len(BAD_INDEXES)))
def test_malformed_indexes_raise_typed_errors(doc: Any) -> None:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidManifestError):
        parse_index(data, DIGEST)


def test_good_index_parses() -> None:
    (child,) = parse_index(json.dumps(GOOD_INDEX).encode(), DIGEST)
    assert child.platform is not None
    assert child.platform.architecture == "amd64"


# -- pull arguments, checked before any call ------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), "5", True])
def test_pull_refuses_a_bad_timeout_before_any_call(timeout: Any) -> None:
    from containerd_client.pull import PullOptions, pull

    # No client at all: the check comes before anything talks to a daemon.
    with pytest.raises(errors.InvalidArgumentError, match="timeout"):
        pull(None, "127.0.0.1:5000/team/app:1", PullOptions(timeout=timeout))  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", [12345, ("alice",), ("alice", 7), ["alice", SECRET]])
def test_pull_refuses_a_bad_auth_before_any_call(auth: Any) -> None:
    from containerd_client.pull import PullOptions, pull

    with pytest.raises(CredentialsError) as info:
        pull(None, "127.0.0.1:5000/team/app:1", PullOptions(auth=auth))  # type: ignore[arg-type]
    assert SECRET not in str(info.value)
