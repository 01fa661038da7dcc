"""Pull's decisions that need no daemon: which path runs, progress display, auth-error inference."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from containerd_client import errors
from containerd_client._features import Features
from containerd_client._registry import parse_reference
from containerd_client.content import Platform
from containerd_client.pull import (
    ProgressEvent,
    PullOptions,
    TqdmProgress,
    _choose_path,
    _probe_scheme,
    _TransferPull,
    tqdm_progress,
)

TRANSFER_PLUGINS = [("io.containerd.grpc.v1", "transfer"), ("io.containerd.grpc.v1", "streaming")]


class FakeClient:
    def __init__(self, version: tuple[int, ...], plugins: list[tuple[str, str]]) -> None:
        self._features = Features.build(version, ".".join(map(str, version)), plugins)

    def features(self) -> Features:
        return self._features


V16 = FakeClient((1, 6, 20), [])
V17 = FakeClient((1, 7, 24), TRANSFER_PLUGINS)
V2 = FakeClient((2, 1, 9), TRANSFER_PLUGINS)
REMOTE = parse_reference("registry.example:5000/team/app:1")


def choose(client: FakeClient, via: str = "auto", ref: Any = REMOTE, **kw: Any) -> str:
    return _choose_path(client, via, ref, kw.get("plain_http"), kw.get("ca_file"))  # type: ignore[arg-type]


def test_choose_path_by_version() -> None:
    assert choose(V16) == "client"
    assert choose(V2) == "transfer"
    assert choose(V2, plain_http=True) == "transfer"
    assert choose(V17) == "transfer"  # a remote registry is HTTPS unless told otherwise
    assert choose(V17, plain_http=True) == "client"
    assert choose(V17, plain_http=False) == "transfer"
    for client in (V16, V17, V2):
        assert choose(client, "client") == "client"


def test_choose_path_ca_file_keeps_auto_on_the_client() -> None:
    assert choose(V2, ca_file="/ca.pem") == "client"
    assert choose(V17, ca_file="/ca.pem") == "client"
    assert choose(V2, "transfer", ca_file="/ca.pem") == "transfer"


def test_choose_path_refuses_what_the_daemon_cannot_do() -> None:
    with pytest.raises(errors.NotSupportedError, match=r"1\.7"):
        choose(V16, "transfer")
    with pytest.raises(errors.NotSupportedError, match=r"2\.0"):
        choose(V17, "transfer", plain_http=True)
    with pytest.raises(ValueError, match="via"):
        choose(V2, "daemon")


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_probe_scheme(http_server: str) -> None:
    assert _probe_scheme(http_server) == "http"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    # Unreachable from here: let the daemon try HTTPS.
    assert _probe_scheme(closed) == "https"


def test_choose_path_probes_loopback_registries_on_1_7(http_server: str) -> None:
    assert choose(V17, ref=parse_reference(f"{http_server}/team/app:1")) == "client"


def _transfer(auth: Any, ref: str = "127.0.0.1:5000/team/app:1") -> _TransferPull:
    return _TransferPull(
        None,  # type: ignore[arg-type]
        parse_reference(ref),
        PullOptions(auth=auth, timeout=None),
        platform=Platform("linux", "amd64"),
        timeout=None,
    )


def test_auth_callback_answers_and_infers_refusal(caplog: pytest.LogCaptureFixture) -> None:
    from containerd_client._pb.containerd.types.transfer import registry_pb2

    caplog.set_level(logging.DEBUG)
    pull = _transfer(("alice", "pw-9183"))
    request = registry_pb2.AuthRequest(host="127.0.0.1:5000", reference="127.0.0.1:5000/team/app:1")
    reply = pull._on_auth(request)
    assert (reply.authType, reply.username, reply.secret) == (registry_pb2.CREDENTIALS, "alice", "pw-9183")
    daemon_error = errors.UnknownError("failed to resolve image: 401 Unauthorized")
    # Asked once, then failed: not enough to call it an auth failure.
    assert pull._auth_error(daemon_error) is None
    pull._on_auth(request)
    pull._on_auth(request)
    refused = pull._auth_error(daemon_error)
    assert isinstance(refused, errors.UnauthenticatedError)
    assert "refused" in str(refused)
    assert pull._auth_error(errors.NotFoundError("not found")) is None
    # Fixed credentials go to the reference's registry only.
    elsewhere = pull._on_auth(registry_pb2.AuthRequest(host="storage.example"))
    assert (elsewhere.authType, elsewhere.secret) == (registry_pb2.NONE, "")
    assert "pw-9183" not in caplog.text


def test_fixed_credentials_for_docker_hub_go_to_its_endpoint() -> None:
    from containerd_client._pb.containerd.types.transfer import registry_pb2
    from containerd_client._registry import registry_endpoint

    # containerd's resolver asks for the host it talks to: Docker Hub's endpoint, not "docker.io".
    pull = _transfer(("alice", "pw-9183"), "busybox")
    for host in ("docker.io", registry_endpoint("docker.io")):
        reply = pull._on_auth(registry_pb2.AuthRequest(host=host))
        assert (reply.authType, reply.username) == (registry_pb2.CREDENTIALS, "alice")
    elsewhere = pull._on_auth(registry_pb2.AuthRequest(host="storage.example"))
    assert elsewhere.authType == registry_pb2.NONE


def test_auth_callback_without_credentials() -> None:
    from containerd_client._pb.containerd.types.transfer import registry_pb2

    def broken(host: str) -> tuple[str, str]:
        raise RuntimeError("keyring locked")

    for auth in (lambda host: None, broken):
        pull = _transfer(auth)
        reply = pull._on_auth(registry_pb2.AuthRequest(host="127.0.0.1:5000"))
        assert reply.authType == registry_pb2.NONE
        err = pull._auth_error(errors.UnknownError("no basic auth credentials"))
        assert isinstance(err, errors.UnauthenticatedError)
        assert "none were given" in str(err)


def test_tqdm_progress_bars() -> None:
    pytest.importorskip("tqdm")
    with tqdm_progress(disable=True) as bars:
        bars(ProgressEvent("layer-sha256:" + "a" * 64, 0, 100, "downloading"))
        bars(ProgressEvent("layer-sha256:" + "a" * 64, 60, 100, "downloading"))
        bars(ProgressEvent("config-sha256:" + "b" * 64, 10, 10, "waiting"))
        assert len(bars._bars) == 2
        bars(ProgressEvent("layer-sha256:" + "a" * 64, 100, 100, "done"))
        assert len(bars._bars) == 1
        bars(ProgressEvent("registry/app:1", 0, 0, "resolving"))
    assert bars._bars == {}


def test_progress_without_tqdm_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bars = TqdmProgress()
    bars._tqdm = None
    bars(ProgressEvent("registry/app:1", 0, 0, "resolving"))
    bars(ProgressEvent("layer-x", 5, 10, "downloading"))
    assert "registry/app:1: resolving" in caplog.text
    assert "layer-x" not in caplog.text
    bars.close()


class _Reached(Exception):
    """Raised by a fake Transfer to stop run() before it reads the image store."""


def _flaky_transfer(monkeypatch: pytest.MonkeyPatch, pull: _TransferPull, failures: int) -> list[int]:
    calls: list[int] = []

    def transfer() -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise errors.NotFoundError("not found")
        raise _Reached

    monkeypatch.setattr(pull, "_transfer", transfer)
    monkeypatch.setattr(pull, "_labels_before", lambda name: None)  # no image yet
    monkeypatch.setattr("containerd_client.pull._TRANSFER_BACKOFF", 0.0)
    return calls


def test_transfer_refused_before_any_work_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # containerd now and then answers NOT_FOUND before asking or storing anything.
    pull = _transfer(None)
    calls = _flaky_transfer(monkeypatch, pull, failures=1)
    with pytest.raises(_Reached):
        pull.run()
    assert len(calls) == 2


def test_transfer_not_found_after_the_daemon_asked_is_not_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from containerd_client._pb.containerd.types.transfer import registry_pb2

    pull = _transfer(None)
    pull._on_auth(registry_pb2.AuthRequest(host="127.0.0.1:5000"))
    calls = _flaky_transfer(monkeypatch, pull, failures=1)
    with pytest.raises(errors.NotFoundError):
        pull.run()
    assert len(calls) == 1


def test_transfer_not_found_every_time_is_raised_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from containerd_client.pull import _TRANSFER_ATTEMPTS

    pull = _transfer(None)
    calls = _flaky_transfer(monkeypatch, pull, failures=10)
    with pytest.raises(errors.NotFoundError):
        pull.run()
    assert len(calls) == _TRANSFER_ATTEMPTS
