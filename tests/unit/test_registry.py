"""The registry client's pure logic, and its HTTP exchanges against an in-process fake registry."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerd_client import errors
from containerd_client._registry import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Challenge,
    Credentials,
    InvalidReferenceError,
    Reference,
    RegistryClient,
    RegistryError,
    is_loopback,
    load_docker_config,
    parse_reference,
    parse_www_authenticate,
    verify_digest,
)
from containerd_client._retry import NO_RETRY, RetryPolicy
from containerd_client.content import DigestMismatchError

SECRET = "pa55-w0rd-never-shown"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/test/busybox:1", Reference("127.0.0.1:5000", "test/busybox", "1")),
        ("localhost/busybox", Reference("localhost", "busybox", "latest")),
        ("registry.example/a/b/c", Reference("registry.example", "a/b/c", "latest")),
        ("[::1]:5000/x:v1.2-rc_3", Reference("[::1]:5000", "x", "v1.2-rc_3")),
        (
            "reg.example:443/app@sha256:" + "a" * 64,
            Reference("reg.example:443", "app", None, "sha256:" + "a" * 64),
        ),
        (
            "reg.example/app:1@sha256:" + "b" * 64,
            Reference("reg.example", "app", "1", "sha256:" + "b" * 64),
        ),
        ("Host/app", Reference("Host", "app", "latest")),
        ("reg.example/a__b/c-d/e.f:t", Reference("reg.example", "a__b/c-d/e.f", "t")),
    ],
)
def test_parse_reference(ref: str, expected: Reference) -> None:
    parsed = parse_reference(ref)
    assert parsed == expected
    assert parse_reference(str(parsed)) == parsed


def test_reference_string_forms() -> None:
    ref = parse_reference("reg.example:5000/team/app")
    assert str(ref) == "reg.example:5000/team/app:latest"
    assert ref.name == "reg.example:5000/team/app"
    assert ref.object == "latest"
    pinned = parse_reference("reg.example/app@sha256:" + "c" * 64)
    assert pinned.object == "sha256:" + "c" * 64
    assert str(pinned) == "reg.example/app@sha256:" + "c" * 64


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "https://reg.example/app",
        "reg.example/App",
        "reg.example/app:",
        "reg.example/app:-bad",
        "reg.example/app@sha256:abc",
        "reg.example/app@sha256:" + "A" * 64,
        "reg.example/app@sha256:" + "a" * 63,
        "reg.example//app",
        "reg.example/app/",
        "reg.example/app with space",
        "reg_example:5000/app",
        "reg.example:port/app",
        "reg.example/" + "a" * 300,
        "reg.example/a..b",
        "reg.example/" + "x:" + "t" * 129,
    ],
)
def test_parse_reference_rejects_malformed(ref: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_reference(ref)


def test_invalid_reference_is_typed() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference("Nope")
    assert isinstance(info.value, errors.InvalidArgumentError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.4.5", True),
        ("[::1]:5000", True),
        ("reg.example:5000", False),
        ("10.0.0.1:5000", False),
        ("localhost.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- WWW-Authenticate -----------------------------------------------------------------


def test_parse_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:samalba/my-app:pull,push",
            },
        )
    ]


def test_parse_basic_and_several_challenges() -> None:
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [
        Challenge("basic", {"realm": "Registry Realm"})
    ]
    both = parse_www_authenticate('Basic realm="a, b", charset=UTF-8, Bearer realm="https://t/x",scope=s')
    assert both == [
        Challenge("basic", {"realm": "a, b", "charset": "UTF-8"}),
        Challenge("bearer", {"realm": "https://t/x", "scope": "s"}),
    ]


def test_parse_challenge_escapes_and_odd_spacing() -> None:
    assert parse_www_authenticate(r'BEARER  Realm = "a\"b\\c" ,  error="invalid_token"') == [
        Challenge("bearer", {"realm": 'a"b\\c', "error": "invalid_token"})
    ]
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate("Negotiate") == [Challenge("negotiate", {})]


# -- Docker config ----------------------------------------------------------------------


def _write_config(tmp_path: Any, doc: object) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_docker_config_auths(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    doc = {
        "auths": {
            "127.0.0.1:5000": {"auth": base64.b64encode(f"alice:{SECRET}".encode()).decode()},
            "https://reg.example/v1/": {"auth": base64.b64encode(b"bob:has:colons").decode()},
            "other.example": {"username": "carol", "password": SECRET},
            "token.example": {"identitytoken": SECRET},
            "broken.example": {"auth": "%%%not-base64" + SECRET},
            "nocolon.example": {"auth": base64.b64encode(SECRET.encode()).decode()},
        },
        "credsStore": "desktop",
    }
    creds = load_docker_config(_write_config(tmp_path, doc))
    assert creds == {
        "127.0.0.1:5000": Credentials("alice", SECRET),
        "reg.example": Credentials("bob", "has:colons"),
        "other.example": Credentials("carol", SECRET),
    }
    assert SECRET not in caplog.text
    assert "broken.example" in caplog.text
    assert SECRET not in repr(creds)


def test_docker_config_location(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(tmp_path, {"auths": {"h.example": {"auth": base64.b64encode(b"u:p").decode()}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_docker_config() == {"h.example": Credentials("u", "p")}
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "missing"))
    assert load_docker_config() == {}


def test_docker_config_unreadable(tmp_path: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert load_docker_config(str(path)) == {}
    assert load_docker_config(_write_config(tmp_path, ["a list"])) == {}


def test_credentials_repr_hides_everything() -> None:
    creds = Credentials("alice", SECRET)
    assert SECRET not in repr(creds)
    assert SECRET not in str(creds)


# -- digests ------------------------------------------------------------------------------


def test_verify_digest() -> None:
    data = b"hello"
    verify_digest(data, sha(data), 5)
    with pytest.raises(DigestMismatchError, match="does not match"):
        verify_digest(b"hellO", sha(data))
    with pytest.raises(DigestMismatchError, match="expected"):
        verify_digest(data, sha(data), 4)
    with pytest.raises(DigestMismatchError):
        verify_digest(data, sha(data), 6)
    with pytest.raises(InvalidReferenceError):
        verify_digest(data, "md5:" + "0" * 32)
    sha512 = "sha512:" + hashlib.sha512(data).hexdigest()
    verify_digest(data, sha512)


def test_registry_error_pickles() -> None:
    err = RegistryError("boom", "h:1", 503, True)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.host, back.status, back.transient) == ("boom", "h:1", 503, True)


# -- a fake registry ------------------------------------------------------------------------


class FakeRegistry:
    """Serves one repository over HTTP on 127.0.0.1, with optional basic or bearer auth."""

    def __init__(self, auth: str | None = None) -> None:
        self.auth = auth  # None, "basic" or "bearer"
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.corrupt: set[str] = set()
        self.fail_next: list[int] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self.token_requests: list[str] = []
        self.accept: list[str] = []
        self.redirect_blobs = False
        self.head_digest = True
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fake-registry"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                registry.handle(self, head=True)

            def do_GET(self) -> None:
                registry.handle(self, head=False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-registry",
            daemon=True,
        )

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_manifest(self, tag: str, doc: dict[str, Any], media_type: str) -> str:
        data = json.dumps(doc).encode()
        digest = sha(data)
        self.manifests[tag] = (data, media_type)
        self.manifests[digest] = (data, media_type)
        return digest

    def add_blob(self, data: bytes) -> str:
        digest = sha(data)
        self.blobs[digest] = data
        return digest

    def _authorized(self, h: http.server.BaseHTTPRequestHandler) -> bool:
        header = h.headers.get("Authorization")
        if self.auth is None:
            return True
        if self.auth == "basic":
            return header == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
        return header == "Bearer tok-123"

    def _send(
        self,
        h: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def handle(self, h: http.server.BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path
        self.requests.append((h.command, path, h.headers.get("Authorization")))
        self.accept.append(h.headers.get("Accept", ""))
        if path.startswith("/token"):
            self.token_requests.append(path)
            expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
            if h.headers.get("Authorization") != expected:
                self._send(h, 401, b'{"details":"bad creds"}')
                return
            self._send(h, 200, json.dumps({"token": "tok-123", "expires_in": 300}).encode())
            return
        if self.fail_next:
            self._send(h, self.fail_next.pop(0), b"try later", head=head)
            return
        if path.startswith("/storage/"):
            digest = path.rsplit("/", 1)[1]
            self._send(h, 200, self.blobs[digest], head=head)
            return
        if not self._authorized(h):
            if self.auth == "basic":
                challenge = 'Basic realm="fake"'
            else:
                challenge = (
                    f'Bearer realm="http://{self.host}/token",service="fake",scope="repository:test/app:pull"'
                )
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
            self._send(h, 401, body.encode(), {"WWW-Authenticate": challenge}, head=head)
            return
        parts = path.split("/")
        if len(parts) >= 5 and parts[-2] == "manifests":
            item = self.manifests.get(parts[-1])
            if item is None:
                body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
                self._send(h, 404, body.encode(), {"Content-Type": "application/json"}, head=head)
                return
            data, media_type = item
            headers = {"Content-Type": media_type}
            if self.head_digest:
                headers["Docker-Content-Digest"] = sha(data)
            self._send(h, 200, data, headers, head=head)
            return
        if len(parts) >= 5 and parts[-2] == "blobs":
            digest = parts[-1]
            data = self.blobs.get(digest)
            if data is None:
                self._send(h, 404, b"", head=head)
                return
            if self.redirect_blobs:
                self._send(h, 307, b"", {"Location": f"/storage/{digest}"}, head=head)
                return
            if digest in self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            self._send(h, 200, data, head=head)
            return
        self._send(h, 404, b"", head=head)


def resolve_once(host: str, ref: Reference, **kwargs: Any) -> Any:
    with RegistryClient(host, **kwargs) as client:
        return client.resolve(ref)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


def _image(registry: FakeRegistry) -> tuple[str, bytes, str]:
    layer = b"layer-bytes" * 1000
    layer_digest = registry.add_blob(layer)
    config_digest = registry.add_blob(b'{"architecture":"amd64","os":"linux"}')
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": 37,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    digest = registry.add_manifest("1", manifest, MEDIA_TYPE_OCI_MANIFEST)
    return digest, layer, layer_digest


def test_resolve_and_fetch_anonymous(fake: FakeRegistry) -> None:
    digest, layer, layer_digest = _image(fake)
    ref = parse_reference(f"{fake.host}/test/app:1")
    with RegistryClient(fake.host, auth=lambda host: None, retry=NO_RETRY) as client:
        resolved = client.resolve(ref)
        assert (resolved.digest, resolved.media_type) == (digest, MEDIA_TYPE_OCI_MANIFEST)
        assert client.scheme == "http"  # loopback registry without TLS
        data, media_type = client.fetch_manifest(ref, resolved.digest, resolved.size)
        assert sha(data) == digest
        assert media_type == MEDIA_TYPE_OCI_MANIFEST
        with client.open_blob("test/app", layer_digest, len(layer)) as blob:
            assert b"".join(blob) == layer
            assert blob.bytes_read == len(layer)
    methods = [m for m, _, _ in fake.requests]
    assert methods[:1] == ["HEAD"]


def test_resolve_without_digest_header_computes_it(fake: FakeRegistry) -> None:
    digest, _, _ = _image(fake)
    fake.head_digest = False
    with RegistryClient(fake.host, auth=lambda h: None, plain_http=True, retry=NO_RETRY) as client:
        assert client.resolve(parse_reference(f"{fake.host}/test/app:1")).digest == digest
    assert [m for m, _, _ in fake.requests] == ["HEAD", "GET"]


def test_resolve_by_digest_checks_bytes(fake: FakeRegistry) -> None:
    digest, _, _ = _image(fake)
    other = "sha256:" + "0" * 64
    data, media_type = fake.manifests["1"]
    fake.manifests[other] = (data, media_type)
    with RegistryClient(fake.host, auth=lambda h: None, plain_http=True, retry=NO_RETRY) as client:
        assert client.resolve(parse_reference(f"{fake.host}/test/app@{digest}")).digest == digest
        with pytest.raises(DigestMismatchError):
            client.resolve(parse_reference(f"{fake.host}/test/app@{other}"))


def test_unknown_tag_is_not_found(fake: FakeRegistry) -> None:
    _image(fake)
    with RegistryClient(fake.host, auth=lambda h: None, retry=NO_RETRY) as client:
        with pytest.raises(errors.NotFoundError, match="not found"):
            client.resolve(parse_reference(f"{fake.host}/test/app:nope"))
        with pytest.raises(errors.NotFoundError, match="MANIFEST_UNKNOWN"):
            client.fetch_manifest(parse_reference(f"{fake.host}/test/app:nope"))
        with pytest.raises(errors.NotFoundError):
            client.fetch_blob("test/app", "sha256:" + "1" * 64)


def test_corrupt_blob_raises_digest_mismatch(fake: FakeRegistry) -> None:
    _, layer, layer_digest = _image(fake)
    fake.corrupt.add(layer_digest)
    with RegistryClient(fake.host, auth=lambda h: None, retry=NO_RETRY) as client:
        received = []
        with (
            pytest.raises(DigestMismatchError),
            client.open_blob("test/app", layer_digest, len(layer)) as blob,
        ):
            received.extend(blob)
        # Every byte was handed over before the check failed at the end.
        assert sum(map(len, received)) == len(layer)
        # The connection stays usable for the next request.
        assert client.fetch_blob("test/app", fake.add_blob(b"x"), 1) == b"x"


def test_blob_redirect_is_followed(fake: FakeRegistry) -> None:
    _, layer, layer_digest = _image(fake)
    fake.redirect_blobs = True
    with RegistryClient(fake.host, auth=lambda h: None, retry=NO_RETRY) as client:
        assert client.fetch_blob("test/app", layer_digest, len(layer)) == layer


def test_basic_auth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeRegistry(auth="basic") as fake:
        digest, _, _ = _image(fake)
        ref = parse_reference(f"{fake.host}/test/app:1")
        with RegistryClient(fake.host, auth=("alice", SECRET), retry=NO_RETRY) as client:
            assert client.resolve(ref).digest == digest
            client.fetch_manifest(ref)
            assert SECRET not in repr(client)
        # The second request sends the credentials without waiting for a challenge.
        assert [auth is not None for _, _, auth in fake.requests] == [False, True, True]
        with pytest.raises(errors.UnauthenticatedError) as wrong:
            resolve_once(fake.host, auth=("alice", "wrong-" + SECRET), retry=NO_RETRY, ref=ref)
        with pytest.raises(errors.UnauthenticatedError, match="none were given") as none:
            resolve_once(fake.host, auth=lambda h: None, retry=NO_RETRY, ref=ref)
    for err in (wrong.value, none.value):
        assert SECRET not in str(err)
        assert SECRET not in repr(err)
        assert "alice" not in str(err)
    assert SECRET not in caplog.text


def test_bearer_token_flow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeRegistry(auth="bearer") as fake:
        digest, layer, layer_digest = _image(fake)
        ref = parse_reference(f"{fake.host}/test/app:1")
        seen: list[str] = []

        def creds(host: str) -> tuple[str, str]:
            seen.append(host)
            return ("alice", SECRET)

        with RegistryClient(fake.host, auth=creds, retry=NO_RETRY) as client:
            assert client.resolve(ref).digest == digest
            assert client.fetch_blob("test/app", layer_digest, len(layer)) == layer
        assert seen == [fake.host]
        # One token, fetched with the repository scope, reused for the blob.
        assert len(fake.token_requests) == 1
        assert "scope=repository%3Atest%2Fapp%3Apull" in fake.token_requests[0]
        assert "service=fake" in fake.token_requests[0]
        with pytest.raises(errors.UnauthenticatedError, match="refused") as info:
            resolve_once(fake.host, auth=("alice", "nope"), retry=NO_RETRY, ref=ref)
        assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_docker_config_credentials_are_used(tmp_path: Any) -> None:
    with FakeRegistry(auth="basic") as fake:
        digest, _, _ = _image(fake)
        auth = base64.b64encode(f"alice:{SECRET}".encode()).decode()
        config = _write_config(tmp_path, {"auths": {f"http://{fake.host}": {"auth": auth}}})
        with RegistryClient(fake.host, docker_config=config, retry=NO_RETRY) as client:
            assert client.resolve(parse_reference(f"{fake.host}/test/app:1")).digest == digest


def test_transient_errors_are_retried(fake: FakeRegistry) -> None:
    digest, _, _ = _image(fake)
    fake.fail_next = [503, 502]
    policy = RetryPolicy(attempts=3, initial=0.001, maximum=0.01, jitter=0.0)
    with RegistryClient(fake.host, auth=lambda h: None, retry=policy) as client:
        assert client.resolve(parse_reference(f"{fake.host}/test/app:1")).digest == digest
    fake.fail_next = [503]
    with pytest.raises(RegistryError) as info:
        resolve_once(
            fake.host, auth=lambda h: None, retry=NO_RETRY, ref=parse_reference(f"{fake.host}/test/app:1")
        )
    assert info.value.status == 503
    assert info.value.transient
    fake.fail_next = [400]
    with pytest.raises(RegistryError) as info:
        resolve_once(
            fake.host, auth=lambda h: None, retry=policy, ref=parse_reference(f"{fake.host}/test/app:1")
        )
    assert info.value.status == 400
    assert not info.value.transient


def test_forbidden_is_permission_denied(fake: FakeRegistry) -> None:
    _image(fake)
    fake.fail_next = [403]
    with pytest.raises(errors.PermissionDeniedError):
        resolve_once(
            fake.host, auth=lambda h: None, retry=NO_RETRY, ref=parse_reference(f"{fake.host}/test/app:1")
        )


def test_unreachable_registry_is_a_transient_error() -> None:
    with FakeRegistry() as fake:
        host = fake.host
    with pytest.raises(RegistryError) as info:
        resolve_once(host, auth=lambda h: None, retry=NO_RETRY, ref=parse_reference(f"{host}/test/app:1"))
    assert info.value.transient
    assert info.value.status is None


def test_index_media_type_is_reported(fake: FakeRegistry) -> None:
    digest, _, _ = _image(fake)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "digest": digest,
                "size": len(fake.manifests["1"][0]),
                "platform": {"os": "linux", "architecture": "amd64"},
            }
        ],
    }
    index_digest = fake.add_manifest("multi", index, MEDIA_TYPE_OCI_INDEX)
    with RegistryClient(fake.host, auth=lambda h: None, retry=NO_RETRY) as client:
        resolved = client.resolve(parse_reference(f"{fake.host}/test/app:multi"))
    assert (resolved.digest, resolved.media_type) == (index_digest, MEDIA_TYPE_OCI_INDEX)
    accept = fake.accept[-1].split(", ")
    assert accept[:2] == [MEDIA_TYPE_OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"]
    assert MEDIA_TYPE_OCI_MANIFEST in accept


# -- Docker credential helpers (a real helper program, written by the test) ---------


def _helper(tmp_path: Path, name: str, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    prog = bin_dir / f"docker-credential-{name}"
    prog.write_text("#!/bin/sh\n" + script)
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


_ANSWER = (
    '[ "$1" = get ] || exit 2\n'
    "read server\n"
    'case "$server" in\n'
    "  reg.example:5000)\n"
    '    echo \'{"ServerURL":"reg.example:5000","Username":"helper-user","Secret":"s3cret"}\' ;;\n'
    '  tok.example) echo \'{"ServerURL":"tok.example","Username":"<token>","Secret":"id-token"}\' ;;\n'
    "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
    "esac\n"
)


def test_cred_helpers_per_host_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from containerd_client._registry import docker_credentials

    _helper(tmp_path, "fake", _ANSWER, monkeypatch)
    plain = base64.b64encode(b"file-user:file-pass").decode()
    cfg = _write_config(
        tmp_path,
        {"credHelpers": {"reg.example:5000": "fake"}, "auths": {"reg.example:5000": {"auth": plain}}},
    )
    caplog.set_level("DEBUG")
    assert docker_credentials("reg.example:5000", cfg) == Credentials("helper-user", "s3cret")
    assert "s3cret" not in caplog.text


def test_creds_store_then_auths_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from containerd_client._registry import docker_credentials

    _helper(tmp_path, "store", _ANSWER, monkeypatch)
    plain = base64.b64encode(b"file-user:file-pass").decode()
    cfg = _write_config(tmp_path, {"credsStore": "store", "auths": {"other.example": {"auth": plain}}})
    assert docker_credentials("reg.example:5000", cfg) == Credentials("helper-user", "s3cret")
    # The helper knows nothing of this host: the file's entry is used.
    assert docker_credentials("other.example", cfg) == Credentials("file-user", "file-pass")
    assert docker_credentials("nobody.example", cfg) is None
    # Identity tokens are not supported: no credentials rather than a wrong login.
    assert docker_credentials("tok.example", cfg) is None


def test_missing_or_broken_helper_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from containerd_client._registry import docker_credentials

    cfg = _write_config(tmp_path, {"credsStore": "absent-helper"})
    assert docker_credentials("reg.example:5000", cfg) is None
    assert "docker-credential-absent-helper is not on PATH" in caplog.text
    _helper(tmp_path, "garbage", "echo not json\n", monkeypatch)
    cfg2 = _write_config(tmp_path, {"credsStore": "garbage"})
    assert docker_credentials("reg.example:5000", cfg2) is None


def test_docker_hub_credentials_are_found_where_the_docker_cli_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from containerd_client._registry import DOCKER_HUB_CONFIG_KEY, docker_credentials

    plain = base64.b64encode(b"hub-user:hub-pass").decode()
    cfg = _write_config(tmp_path, {"auths": {DOCKER_HUB_CONFIG_KEY: {"auth": plain}}})
    # "busybox" is on docker.io; `docker login` wrote the entry under its legacy address.
    assert docker_credentials(parse_reference("busybox").host, cfg) == Credentials("hub-user", "hub-pass")
    answer = (
        '[ "$1" = get ] || exit 2\n'
        "read server\n"
        f'[ "$server" = "{DOCKER_HUB_CONFIG_KEY}" ] || exit 1\n'
        'echo \'{"Username":"helper-hub","Secret":"s3cret"}\'\n'
    )
    _helper(tmp_path, "hub", answer, monkeypatch)
    cfg2 = _write_config(tmp_path, {"credsStore": "hub"})
    assert docker_credentials("docker.io", cfg2) == Credentials("helper-hub", "s3cret")


# -- secrets: put real ones in, then look for them everywhere -----------------------------

BEARER_TOKEN = "tok-123"  # what FakeRegistry's token service hands out


def _secret_forms() -> dict[str, str]:
    """Every shape the password takes on its way out: plain, in a Basic header, the bearer token."""
    return {
        "password": SECRET,
        "basic credentials": base64.b64encode(f"alice:{SECRET}".encode()).decode(),
        "bearer token": BEARER_TOKEN,
    }


def _texts(**objects: object) -> dict[str, str]:
    """repr and str of each object; for an exception its whole formatted chain too."""
    import traceback

    out: dict[str, str] = {}
    for name, obj in objects.items():
        out[f"repr({name})"] = repr(obj)
        out[f"str({name})"] = str(obj)
        if isinstance(obj, BaseException):
            out[f"traceback({name})"] = "".join(traceback.format_exception(obj))
    return out


def find_secrets(texts: dict[str, str]) -> list[str]:
    """Where a form of the secret shows up (empty when nowhere)."""
    forms = _secret_forms()
    return [
        f"{where} shows the {form}" for where, text in texts.items() for form in forms if forms[form] in text
    ]


def _exercise_secrets(auth: str, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, str], list[str | None]]:
    """Authenticate for real (the secret goes into the client), fail once with a wrong one.

    Returns:
        The texts to search (reprs, strs, tracebacks, the log), and the
        Authorization headers the registry received.
    """
    caplog.set_level(logging.DEBUG)
    with FakeRegistry(auth=auth) as fake:
        digest, _, _ = _image(fake)
        ref = parse_reference(f"{fake.host}/test/app:1")
        creds = Credentials("alice", SECRET)
        with RegistryClient(fake.host, auth=creds, retry=NO_RETRY) as client:
            resolved = client.resolve(ref)
            assert resolved.digest == digest
            manifest = client.fetch_manifest(ref)
            texts = _texts(credentials=creds, client=client, resolved=resolved, manifest=manifest)
        with pytest.raises(errors.UnauthenticatedError) as wrong:
            resolve_once(fake.host, auth=("alice", "wrong-" + SECRET), retry=NO_RETRY, ref=ref)
        texts.update(_texts(wrong_password_error=wrong.value))
        headers = [auth_header for _, _, auth_header in fake.requests]
    texts["log"] = caplog.text
    return texts, headers


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_repr_str_and_logs_hold_no_secret(auth: str, caplog: pytest.LogCaptureFixture) -> None:
    texts, headers = _exercise_secrets(auth, caplog)
    # The secret really went through the objects searched below: the registry got it.
    expected = (
        "Basic " + _secret_forms()["basic credentials"] if auth == "basic" else "Bearer " + BEARER_TOKEN
    )
    assert expected in headers, headers
    assert find_secrets(texts) == []


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_secret_check_catches_a_repr_that_shows_the_secret(
    auth: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A careless repr that prints the client's cached Authorization values.
    monkeypatch.setattr(
        RegistryClient, "__repr__", lambda self: f"<RegistryClient {self.host} {self._basic} {self._tokens}>"
    )
    texts, _ = _exercise_secrets(auth, caplog)
    form = "basic credentials" if auth == "basic" else "bearer token"
    assert f"repr(client) shows the {form}" in find_secrets(texts)


def test_secret_check_catches_a_logged_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("containerd_client._registry").debug("sending Authorization: Bearer %s", BEARER_TOKEN)
    assert find_secrets({"log": caplog.text}) == ["log shows the bearer token"]


def test_reference_with_user_and_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(f"alice:{SECRET}@127.0.0.1:5000/test/app:1")
    assert find_secrets(_texts(error=info.value)) == []
