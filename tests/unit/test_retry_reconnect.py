"""Retry across a reconnect, and cleanup deferred while the daemon is away (no daemon)."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from _fakes import FakeRpcError

from containerd_client import Client, errors
from containerd_client._pb import api
from containerd_client._retry import NO_RETRY, RetryPolicy
from containerd_client._rpc import Caller, Connection, DeferredCleanup

# No backoff at all: only the deadline and the attempt count bound the retries.
NO_BACKOFF = RetryPolicy(initial=0.0, maximum=0.0, jitter=0.0)


class Flaky:
    """A unary method that is UNAVAILABLE ``failures`` times, then answers."""

    def __init__(self, failures: int, answer: Any = "ok") -> None:
        self.failures = failures
        self.answer = answer
        self.calls = 0
        self.timeouts: list[float | None] = []

    def __call__(self, request: Any, *, timeout: float | None, metadata: Any) -> Any:
        self.calls += 1
        self.timeouts.append(timeout)
        if self.calls <= self.failures:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
        return self.answer


class FakeStub:
    def __init__(self, **methods: Any) -> None:
        self.__dict__.update(methods)


@pytest.fixture
def connection() -> Any:
    conn = Connection("/nonexistent/containerd.sock")
    yield conn
    conn.close()


def caller_with(
    connection: Connection, policy: RetryPolicy, *, answered: bool = True, **methods: Any
) -> Caller:
    """A caller on fake stubs; ``answered``: the daemon served this client before."""
    stub = FakeStub(**methods)
    connection.callable = lambda method: getattr(stub, method.name)  # type: ignore[method-assign]
    connection.answered = answered
    return Caller(connection, "ns", 5.0, policy)


def test_a_daemon_never_reached_fails_after_the_quick_attempts(connection: Connection) -> None:
    # A wrong address or no daemon yet: report it at once, not after the
    # 60 s default deadline (the commonest first-day mistake).
    method = Flaky(failures=10**9)
    caller = caller_with(connection, NO_BACKOFF, answered=False, Version=method)
    start = time.monotonic()
    with pytest.raises(errors.UnavailableError):
        caller.call(api.Version.Version, None, idempotent=True, timeout=60.0)
    assert method.calls == NO_BACKOFF.attempts
    assert time.monotonic() - start < 1.0


def test_a_success_marks_the_daemon_answered(connection: Connection) -> None:
    method = Flaky(failures=0)
    caller = caller_with(connection, NO_BACKOFF, answered=False, Version=method)
    caller.call(api.Version.Version, None, idempotent=True)
    assert connection.answered


def test_riding_out_stops_at_the_reconnect_window(connection: Connection) -> None:
    method = Flaky(failures=10**9)
    policy = RetryPolicy(initial=0.001, maximum=0.01, jitter=0.0, window=0.3)
    caller = caller_with(connection, policy, Version=method)
    start = time.monotonic()
    with pytest.raises(errors.UnavailableError):
        caller.call(api.Version.Version, None, idempotent=True, timeout=60.0)
    assert 0.2 <= time.monotonic() - start < 1.5


def test_idempotent_call_rides_out_a_long_reconnect(connection: Connection) -> None:
    # A daemon restart keeps the channel unavailable for 0.6-2 s: far more
    # failed attempts than a fixed count of 4 covers.
    method = Flaky(failures=50)
    caller = caller_with(connection, NO_BACKOFF, Version=method)
    assert caller.call(api.Version.Version, None, idempotent=True) == "ok"
    assert method.calls == 51


def test_each_retry_gets_what_is_left_of_the_deadline(connection: Connection) -> None:
    method = Flaky(failures=5)
    caller = caller_with(connection, NO_BACKOFF, Version=method)
    caller.call(api.Version.Version, None, idempotent=True, timeout=3.0)
    assert method.timeouts[0] == 3.0
    later = method.timeouts[1:]
    assert all(t is not None and 0 < t <= 3.0 for t in later)
    assert later == sorted(later, reverse=True)


def test_unavailable_until_the_deadline_ends_with_unavailable(connection: Connection) -> None:
    method = Flaky(failures=10**9)
    policy = RetryPolicy(initial=0.001, maximum=0.01, jitter=0.0)
    caller = caller_with(connection, policy, Version=method)
    start = time.monotonic()
    with pytest.raises(errors.UnavailableError):
        caller.call(api.Version.Version, None, idempotent=True, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 1.0, elapsed
    assert method.calls > 4


def test_non_idempotent_call_fails_fast(connection: Connection) -> None:
    method = Flaky(failures=1)
    caller = caller_with(connection, NO_BACKOFF, Create=method)
    with pytest.raises(errors.UnavailableError):
        caller.call(api.Containers.Create, None)
    assert method.calls == 1


def test_other_errors_are_not_retried(connection: Connection) -> None:
    calls = []

    def missing(request: Any, *, timeout: float | None, metadata: Any) -> Any:
        calls.append(timeout)
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "nope")

    caller = caller_with(connection, NO_BACKOFF, Get=missing)
    with pytest.raises(errors.NotFoundError):
        caller.call(api.Containers.Get, None, idempotent=True)
    assert len(calls) == 1


def test_no_retry_policy_and_attempt_cap_still_hold(connection: Connection) -> None:
    method = Flaky(failures=3)
    caller = caller_with(connection, NO_RETRY, Version=method)
    with pytest.raises(errors.UnavailableError):
        caller.call(api.Version.Version, None, idempotent=True)
    assert method.calls == 1
    capped = RetryPolicy(attempts=3, initial=0.0, maximum=0.0, jitter=0.0, reconnect=False)
    method2 = Flaky(failures=10)
    caller2 = caller_with(connection, capped, Version=method2)
    with pytest.raises(errors.UnavailableError):
        caller2.call(api.Version.Version, None, idempotent=True)
    assert method2.calls == 3


def test_injected_sleep_sees_capped_backoff(connection: Connection) -> None:
    slept: list[float] = []
    policy = RetryPolicy(initial=0.01, maximum=0.04, jitter=0.0, sleep=slept.append)
    method = Flaky(failures=8)
    caller = caller_with(connection, policy, Version=method)
    assert caller.call(api.Version.Version, None, idempotent=True, timeout=30.0) == "ok"
    assert len(slept) == 8
    assert max(slept) == pytest.approx(0.04)
    assert slept[0] == pytest.approx(0.01)


# -- deferred cleanup ------------------------------------------------------------


def unavailable() -> errors.UnavailableError:
    return errors.UnavailableError("daemon away", errors.StatusCode.UNAVAILABLE)


def test_deferred_job_waits_for_the_daemon_then_runs_once() -> None:
    queue = DeferredCleanup()
    away = [True]
    ran: list[str] = []

    def job() -> None:
        if away[0]:
            raise unavailable()
        ran.append("lease")

    queue.add("delete lease x", job)
    assert queue.drain() == 1
    assert ran == []
    away[0] = False
    assert queue.drain() == 0
    assert queue.drain() == 0
    assert ran == ["lease"]
    assert not queue


def test_deferred_failures_other_than_unavailable_are_dropped() -> None:
    queue = DeferredCleanup()

    def broken() -> None:
        raise errors.InternalError("boom", errors.StatusCode.INTERNAL)

    queue.add("broken", broken)
    assert queue.drain() == 0


def test_deferred_queue_is_bounded() -> None:
    queue = DeferredCleanup(limit=3)
    for i in range(5):
        queue.add(f"job {i}", lambda: None)
    assert queue.describe() == ["job 2", "job 3", "job 4"]


def test_concurrent_drains_run_each_job_once() -> None:
    queue = DeferredCleanup()
    entered = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    def slow() -> None:
        entered.set()
        assert release.wait(5)
        ran.append(1)

    queue.add("slow", slow)
    queue.add("fast", lambda: ran.append(2))
    worker = threading.Thread(target=queue.drain)
    worker.start()
    assert entered.wait(5)
    # A drain already running: a second one (another thread) does nothing.
    assert queue.drain() == 1
    release.set()
    worker.join(5)
    assert sorted(ran) == [1, 2]


def test_successful_call_drains_and_a_drain_does_not_recurse(connection: Connection) -> None:
    method = Flaky(failures=0)
    caller = caller_with(connection, NO_BACKOFF, Version=method)
    ran: list[int] = []

    def job() -> None:
        # A job's own calls succeed too; they must not start a nested drain.
        caller.call(api.Version.Version, None)
        ran.append(len(connection.deferred))

    connection.deferred.add("job", job)
    caller.call(api.Version.Version, None)
    assert ran == [0]
    assert method.calls == 2
    assert not connection.deferred


def test_lease_delete_during_an_outage_is_deferred_and_done_later() -> None:
    from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

    state = {"away": False}
    leases: dict[str, bool] = {}
    sync_flags: list[bool] = []

    def create(request: Any, *, timeout: float | None, metadata: Any) -> Any:
        leases[request.id] = True
        return leases_pb2.CreateResponse(lease=leases_pb2.Lease(id=request.id, labels=request.labels))

    def delete(request: Any, *, timeout: float | None, metadata: Any) -> Any:
        if state["away"]:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
        sync_flags.append(request.sync)
        leases.pop(request.id, None)
        return None

    def version(request: Any, *, timeout: float | None, metadata: Any) -> Any:
        return "v"

    stub = FakeStub(Create=create, Delete=delete, Version=version)
    with Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY) as client:
        client._connection.callable = lambda method: getattr(stub, method.name)  # type: ignore[method-assign]

        def operation() -> str:
            with client.lease() as lease:
                state["away"] = True  # the daemon dies mid-operation
                leased.append(lease.id)
                raise unavailable()

        leased: list[str] = []
        with pytest.raises(errors.UnavailableError):
            operation()
        lease_id = leased[0]
        assert leases == {lease_id: True}
        assert client.deferred_cleanups == [f"delete lease {lease_id} (namespace ns)"]
        state["away"] = False
        client.call(api.Version.Version, None)  # the daemon answers again
        assert leases == {}
        assert sync_flags == [True]
        assert client.deferred_cleanups == []


def test_close_drains_deferred_cleanup() -> None:
    done: list[str] = []
    client = Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY)
    client._defer("mark", lambda c: done.append(c.namespace_name))
    client.close()
    assert done == ["ns"]


def test_lease_expiry_is_minutes_and_grows_with_the_work() -> None:
    with Client("/nonexistent/containerd.sock", "ns") as client:
        small = client._operation_expiry()
        big = client._operation_expiry(1 << 30)
    assert 60 <= small <= 600
    assert big > small
    assert big < 3600


def test_session_id_names_this_process() -> None:
    import os
    import socket

    from containerd_client.client import session_id

    value = session_id()
    pid, rest = value.split("-", 1)
    start, where = rest.split("@", 1)
    host, _, pidns = where.partition(":")
    assert int(pid) == os.getpid()
    assert int(start) > 0
    assert host == socket.gethostname()
    assert f"pid:[{pidns}]" == os.readlink("/proc/self/ns/pid")
    with Client("/nonexistent/containerd.sock", "ns") as client:
        assert client.session == value


def test_close_with_the_daemon_still_away_does_not_wait_on_retries() -> None:
    method = Flaky(failures=10**9)
    stub = FakeStub(Get=method)
    client = Client("/nonexistent/containerd.sock", "ns", timeout=30.0)  # default retry policy
    client._connection.callable = lambda method: getattr(stub, method.name)  # type: ignore[method-assign]
    client._defer("look", lambda c: c.call(api.Containers.Get, None, idempotent=True))
    start = time.monotonic()
    client.close()
    # One attempt: the job stays for lease expiry instead of retrying for 10-30 s.
    assert time.monotonic() - start < 2.0
    assert method.calls == 1
