"""Client lifecycle without a daemon: close, reuse, views, threads, defaults."""

from __future__ import annotations

import concurrent.futures
import queue
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from containerd_client import Client, errors
from containerd_client._pb import api
from containerd_client._pb.containerd.services.events.v1 import events_pb2, events_pb2_grpc
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


# -- threads: the ones the SDK starts are gone when close() returns ---------------------------


class _FakeEvents(events_pb2_grpc.EventsServicer):
    """containerd's event bus, enough for the dispatcher: Publish fans out to every Subscribe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[events_pb2.Envelope]] = []

    def Publish(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        namespace = dict(context.invocation_metadata()).get("containerd-namespace", "")
        env = events_pb2.Envelope(namespace=namespace, topic=request.topic, event=request.event)
        env.timestamp.GetCurrentTime()
        with self._lock:
            for q in self._subscribers:
                q.put(env)
        return empty_pb2.Empty()

    def Subscribe(self, request: Any, context: grpc.ServicerContext) -> Iterator[events_pb2.Envelope]:
        q: queue.Queue[events_pb2.Envelope] = queue.Queue()
        with self._lock:
            self._subscribers.append(q)
        try:
            while context.is_active():
                try:
                    yield q.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.remove(q)


FAKE_PREFIX = "fake-containerd"


@pytest.fixture
def fake_containerd(tmp_path: Path) -> Iterator[str]:
    """An in-process gRPC server on a unix socket with health and events: no daemon needed."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix=FAKE_PREFIX)
    server = grpc.server(pool)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    events_pb2_grpc.add_EventsServicer_to_server(_FakeEvents(), server)
    address = str(tmp_path / "containerd.sock")
    server.add_insecure_port(f"unix://{address}")
    server.start()
    try:
        yield address
    finally:
        server.stop(None).wait(5)
        pool.shutdown(wait=True)


@pytest.fixture
def started_threads(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Every thread started from now on (the fake server's own excepted), whatever its kind."""
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if not self.name.startswith(FAKE_PREFIX):
            target = getattr(self, "_target", None)
            if getattr(target, "__module__", "").startswith("grpc"):
                _GRPC_OWNED.add(self)
            started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    return started


def _use_every_kind_of_thread(address: str, tmp_path: Path) -> Client:
    """Drive the dispatcher (reader, sync timer, handler workers) and an IO copy; returns the client."""
    from containerd_client import cio
    from containerd_client._pb.containerd.events import container_pb2
    from containerd_client._typeurl import pack

    client = Client(address, "ns", retry=NO_RETRY, timeout=5)
    handled: list[str] = []
    all_handled = threading.Event()

    def handler(event: Any) -> None:
        handled.append(event.container_id)
        if len(handled) == 12:
            all_handled.set()

    client.events.add_handler(handler, topic="/containers/update")
    for i in range(12):
        update = container_pb2.ContainerUpdate(id=f"c{i % 4}")
        client.call(
            api.Events.Publish, events_pb2.PublishRequest(topic="/containers/update", event=pack(update))
        )
    assert all_handled.wait(10), handled
    # An IO copy with stdin and stdout, against a process playing the shim.
    out = cio.Capture()
    with cio.stdio(stdin=b"hello", stdout=out)(str(tmp_path), "p") as proc_io:
        cfg = proc_io.config
        peer = subprocess.Popen(
            ["sh", "-c", 'exec 2>"$3"; cat <"$1" >"$2"', "sh", cfg.stdin, cfg.stdout, cfg.stderr]
        )
        proc_io.start()
        assert proc_io.wait(10)
        assert peer.wait(10) == 0
    assert out.getvalue() == b"hello"
    return client


#: Threads grpcio starts in Python (its channel-spin helper): they end a moment after
#: the channel closes, so they get a bounded wait; ours must be gone when close() returns.
_GRPC_OWNED: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _alive(threads: list[threading.Thread]) -> list[str]:
    """Names of the recorded threads still running."""
    ours = sorted(t.name for t in threads if t.is_alive() and t not in _GRPC_OWNED)
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in _GRPC_OWNED) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition with a deadline
    return ours + sorted(t.name for t in threads if t.is_alive() and t in _GRPC_OWNED)


#: Started by the work above (every other thread it starts is checked too, e.g. the
#: dispatcher's sync timer).
EXPECTED_THREADS = (
    "containerd-events-reader",
    "containerd-events-0",
    "containerd-events-watchdog",
    "cio-p-stdin",
    "cio-p-stdout",
)


def test_no_thread_left_behind(
    fake_containerd: str, tmp_path: Path, started_threads: list[threading.Thread]
) -> None:
    client = _use_every_kind_of_thread(fake_containerd, tmp_path)
    client.close()
    names = {t.name for t in started_threads}
    # The check below means something only if the threads it is about were started.
    for expected in EXPECTED_THREADS:
        assert expected in names, (expected, sorted(names))
    assert _alive(started_threads) == []


def test_no_thread_left_behind_catches_a_close_that_skips_joining(
    fake_containerd: str,
    tmp_path: Path,
    started_threads: list[threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from containerd_client._serial import KeyedSerialExecutor

    real_close = KeyedSerialExecutor.close
    # A leaky variant: the dispatcher's executor "closes" without stopping its workers.
    monkeypatch.setattr(KeyedSerialExecutor, "close", lambda self, timeout=None, drain=True: [])
    client = _use_every_kind_of_thread(fake_containerd, tmp_path)
    client.close()
    assert client._dispatcher is not None
    executor = client._dispatcher._executor
    try:
        leaked = _alive(started_threads)
        assert "containerd-events-0" in leaked
        assert "containerd-events-watchdog" in leaked
    finally:
        real_close(executor, 10)
    assert _alive(started_threads) == []


def test_repr_shows_state() -> None:
    # A Client holds no secret (registry credentials live in the registry client, whose
    # reprs, errors and logs are searched for them in test_registry.py).
    client = Client("/x.sock", "ns")
    assert "open" in repr(client)
    client.close()
    assert "closed" in repr(client)


def test_public_all_is_pinned() -> None:
    import containerd_client

    assert sorted(containerd_client.__all__) == sorted(
        [
            "Checkpoint",
            "check_criu",
            "Client",
            "Container",
            "ContainerInfo",
            "ContainerdError",
            "ContentInfo",
            "ContentStore",
            "Descriptor",
            "Event",
            "EventDispatcher",
            "EventKind",
            "ExecResult",
            "ExitStatus",
            "Image",
            "ImageStore",
            "Lease",
            "Metrics",
            "Mount",
            "Namespace",
            "NetworkConfig",
            "Platform",
            "PortMapping",
            "Plugin",
            "Process",
            "ProgressEvent",
            "PullOptions",
            "PullResult",
            "RetryPolicy",
            "RuncOptions",
            "ServerInfo",
            "SnapshotInfo",
            "SnapshotStore",
            "Subscription",
            "SweepReport",
            "Task",
            "TaskStatus",
            "TeardownFailure",
            "UnclosedClientWarning",
            "Version",
            "WaitStrategy",
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


def test_wait_ready_on_a_missing_socket_says_what_to_do(tmp_path: Path) -> None:
    address = str(tmp_path / "containerd.sock")
    with Client(address, "ns", retry=NO_RETRY) as client, pytest.raises(errors.DeadlineExceededError) as info:
        client.wait_ready(timeout=0.3)
    message = str(info.value)
    assert address in message
    assert "CONTAINERD_ADDRESS" in message
