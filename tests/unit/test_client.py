"""Client lifecycle without a daemon: close, reuse, views, threads, defaults."""

from __future__ import annotations

import threading

import pytest

from containerd_client import Client, errors
from containerd_client._retry import NO_RETRY


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERD_ADDRESS", "/tmp/elsewhere.sock")
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "envns")
    with Client() as client:
        assert client.address == "/tmp/elsewhere.sock"
        assert client.namespace_name == "envns"


def test_builtin_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTAINERD_ADDRESS", raising=False)
    monkeypatch.delenv("CONTAINERD_NAMESPACE", raising=False)
    with Client() as client:
        assert client.address == "/run/containerd/containerd.sock"
        assert client.namespace_name == "default"
        assert client.metadata == (("containerd-namespace", "default"),)


def test_close_is_idempotent_and_refuses_use(tmp_path: object) -> None:
    client = Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(errors.ClosedError):
        client.version()
    with pytest.raises(errors.ClosedError):
        client.namespaces.list()
    with pytest.raises(errors.ClosedError):
        client.create_container("c1")
    with pytest.raises(errors.ClosedError), client:
        pass


def test_unreachable_daemon_raises_unavailable() -> None:
    with Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY, timeout=2) as client:
        with pytest.raises(errors.UnavailableError) as info:
            client.version()
        assert info.value.code is errors.StatusCode.UNAVAILABLE
        assert not client.is_serving(timeout=0.2)
        with pytest.raises(errors.DeadlineExceededError):
            client.wait_ready(timeout=0.3)


def test_namespace_view_shares_channel_and_closes_alone() -> None:
    with Client("/nonexistent/containerd.sock", "root") as client:
        view = client.namespace("other")
        assert view.namespace_name == "other"
        assert view.metadata == (("containerd-namespace", "other"),)
        view.close()
        assert view.closed
        assert not client.closed
        view2 = client.namespace("third")
    assert view2.closed  # closing the root closes its views


def test_namespace_view_validates_name() -> None:
    with Client("/nonexistent/containerd.sock") as client, pytest.raises(errors.InvalidIdError):
        client.namespace("../etc")


def test_no_thread_left_behind() -> None:
    before = {t.ident for t in threading.enumerate()}
    for _ in range(20):
        with Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY, timeout=0.5) as client:
            client.is_serving(timeout=0.1)
    after = {t.ident for t in threading.enumerate() if t.is_alive()}
    assert after <= before


def test_repr_has_no_secrets_and_shows_state() -> None:
    client = Client("/x.sock", "ns")
    assert "open" in repr(client)
    client.close()
    assert "closed" in repr(client)


def test_public_all_is_pinned() -> None:
    import containerd_client

    assert sorted(containerd_client.__all__) == sorted(
        [
            "Client",
            "Container",
            "ContainerInfo",
            "ContainerdError",
            "Event",
            "EventKind",
            "ExecResult",
            "ExitStatus",
            "Lease",
            "Namespace",
            "Plugin",
            "Process",
            "RetryPolicy",
            "RuncOptions",
            "ServerInfo",
            "Task",
            "TaskStatus",
            "Version",
            "__version__",
            "errors",
        ]
    )
    for name in containerd_client.__all__:
        assert hasattr(containerd_client, name)


def test_unclosed_client_warns_and_closed_one_does_not() -> None:
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = Client("/nonexistent/containerd.sock", "ns")
        del client
        gc.collect()
        closed = Client("/nonexistent/containerd.sock", "ns")
        closed.close()
        del closed
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(messages) == 1
    assert "unclosed containerd Client" in messages[0]
