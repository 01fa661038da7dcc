"""Background teardown without a daemon: the pool's bounds, joins, failures; the client's use of it."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from containerd_client import Client, errors
from containerd_client._retry import NO_RETRY
from containerd_client._teardown import TeardownPool

WAIT = 10.0  # generous bound on every wait below; none is reached when the code is right


def _teardown_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "containerd-teardown"]


def test_no_thread_until_the_first_job() -> None:
    pool = TeardownPool(workers=2)
    assert pool.threads == 0
    done = threading.Event()
    assert pool.submit("k", "job", done.set)
    assert done.wait(WAIT)
    assert pool.join(WAIT) == []
    pool.shutdown(WAIT)


def test_workers_are_bounded() -> None:
    pool = TeardownPool(workers=3)
    release = threading.Event()
    lock = threading.Lock()
    running: list[int] = []
    peak: list[int] = [0]
    started = threading.Semaphore(0)

    def job() -> None:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        started.release()
        release.wait(WAIT)
        with lock:
            running.pop()

    for i in range(10):
        pool.submit(f"k{i}", f"job {i}", job)
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    assert pool.threads == 3
    assert len(pool) == 10
    release.set()
    assert pool.join(WAIT) == []
    assert peak[0] == 3
    assert len(pool) == 0
    pool.shutdown(WAIT)


def test_join_reports_failures_once() -> None:
    pool = TeardownPool(workers=2)
    pool.submit("a", "tear down a", lambda: None)

    def fail() -> None:
        raise errors.FailedPreconditionError("shim is stuck", errors.StatusCode.FAILED_PRECONDITION)

    pool.submit("b", "tear down b", fail)
    failures = pool.join(WAIT)
    assert [f.what for f in failures] == ["tear down b"]
    assert isinstance(failures[0].error, errors.FailedPreconditionError)
    assert "shim is stuck" in str(failures[0])
    assert pool.join(WAIT) == []  # reported once
    pool.shutdown(WAIT)


def test_join_is_bounded_and_names_what_still_runs() -> None:
    pool = TeardownPool(workers=1)
    release = threading.Event()
    pool.submit("slow", "tear down slow", lambda: release.wait(WAIT) and None)
    failures = pool.join(0.05)
    assert [f.what for f in failures] == ["tear down slow"]
    assert isinstance(failures[0].error, TimeoutError)
    release.set()
    assert pool.shutdown(WAIT) == []


def test_wait_for_waits_only_for_its_key() -> None:
    pool = TeardownPool(workers=2)
    release = threading.Event()
    pool.submit(("ns", "x"), "tear down x", lambda: release.wait(WAIT) and None)
    assert pool.wait_for(("ns", "y"), 0)  # nothing pending under another key
    assert not pool.wait_for(("ns", "x"), 0.05)
    release.set()
    assert pool.wait_for(("ns", "x"), WAIT)
    pool.shutdown(WAIT)


def test_shutdown_refuses_new_jobs_and_threads_end() -> None:
    pool = TeardownPool(workers=2)
    pool.submit("a", "a", lambda: None)
    assert pool.shutdown(WAIT) == []
    assert not pool.submit("b", "b", lambda: None)
    for thread in _teardown_threads():
        thread.join(WAIT)
    assert pool.threads == 0


def test_job_runs_outside_the_callers_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    seen: list[str] = []
    pool = TeardownPool(workers=1)
    pool.submit("k", "k", lambda: seen.append(var.get()))
    pool.shutdown(WAIT)
    assert seen == ["unset"]


# -- the client ---------------------------------------------------------------------


def _client(**kw: Any) -> Client:
    return Client("/nonexistent/containerd.sock", "ns", retry=NO_RETRY, timeout=2, **kw)


def test_client_starts_no_pool_until_used() -> None:
    with _client(background_teardown=True) as client:
        assert client.background_teardown
        assert client.namespace("other").background_teardown
        assert client._teardown is None
        assert client.pending_teardowns == []
        assert client.join_teardowns(WAIT) == []


def test_importing_the_package_loads_no_pool_module() -> None:
    code = "import containerd_client, sys; print('containerd_client._teardown' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_close_joins_the_pool_and_keeps_failures() -> None:
    client = _client()
    view = client.namespace("other")
    release = threading.Event()
    ran: list[str] = []

    def slow() -> None:
        release.wait(WAIT)
        ran.append("slow")

    def fail() -> None:
        raise errors.InternalError("delete failed", errors.StatusCode.INTERNAL)

    assert view._submit_teardown("a", "tear down a", slow)
    assert client._submit_teardown("b", "tear down b", fail)
    assert "tear down a" in client.pending_teardowns
    closer = threading.Thread(target=client.close)
    closer.start()
    release.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert ran == ["slow"]  # close waited for the job, not dropped it
    failures = client.join_teardowns()
    assert [f.what for f in failures] == ["tear down b"]
    assert client.join_teardowns() == []
    client.close()  # idempotent
    # A closed client takes no job: the caller runs it itself.
    assert not client._submit_teardown("c", "c", lambda: None)


def test_close_is_bounded_by_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from containerd_client import client as client_mod

    monkeypatch.setattr(client_mod, "TEARDOWN_JOIN_TIMEOUT", 0.05)
    release = threading.Event()
    client = _client()
    client._submit_teardown("a", "tear down a", lambda: release.wait(WAIT) and None)
    client.close()  # returns although the job still runs
    failures = client.join_teardowns()
    release.set()
    assert [f.what for f in failures] == ["tear down a"]
    assert isinstance(failures[0].error, TimeoutError)


def test_create_container_waits_for_a_pending_teardown_of_the_same_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from containerd_client import containers

    order: list[str] = []

    def fake_create(client: Client, container_id: str, **kw: Any) -> str:
        order.append(f"create {container_id}")
        return container_id

    monkeypatch.setattr(containers, "create_container", fake_create)
    release = threading.Event()

    def teardown() -> None:
        release.wait(WAIT)
        order.append("teardown x")

    with _client(background_teardown=True) as client:
        client._submit_teardown("x", "tear down x", teardown)
        client.create_container("y")  # another id: no wait
        creator = threading.Thread(target=client.create_container, args=("x",))
        creator.start()
        creator.join(0.1)
        assert creator.is_alive()  # held back by the pending teardown
        release.set()
        creator.join(WAIT)
        assert order == ["create y", "teardown x", "create x"]


def test_an_interrupted_close_still_closes_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: TeardownPool, timeout: float | None) -> list[object]:
        raise KeyboardInterrupt

    client = _client()
    client._submit_teardown("a", "tear down a", lambda: None)
    monkeypatch.setattr(TeardownPool, "shutdown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.close()
    assert client._connection.closed
    monkeypatch.undo()
    client._teardown.shutdown(WAIT)  # type: ignore[union-attr]
