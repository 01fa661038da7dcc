"""Exit and delete paths under races and lost calls (issue 9, items 1-3), without a daemon.

A real :class:`Client` talks to a fake gRPC connection: the stubs below stand
in for containerd at the grpc boundary (futures, unary calls, streams), so
the SDK's own code runs unchanged and the tests decide when each answer
comes. Interleavings are forced with events and barriers, never with sleeps.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from _fakes import FakeRpcError, in_thread, service_key
from grpc_health.v1 import health_pb2

from containerd_client import _rpc
from containerd_client._pb.containerd.cgroups.v1 import metrics_pb2 as cg1
from containerd_client._pb.containerd.events import task_pb2 as task_events
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client._pb.containerd.types import metrics_pb2 as types_metrics
from containerd_client._retry import RetryPolicy
from containerd_client._typeurl import pack
from containerd_client.client import Client
from containerd_client.errors import DeadlineExceededError, NotFoundError
from containerd_client.events import Event, EventDispatcher, _Registration
from containerd_client.tasks import ExitStatus, Process, Task

NS = "ns"
BOUND = 5.0  # generous bound for anything that should happen "at once"


# -- the fake grpc side ---------------------------------------------------------------


class FakeFuture:
    """A grpc call future whose outcome the test sets."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self._lock = threading.Lock()
        self._done = False
        self._cancelled = False
        self._resp: Any = None
        self._err: BaseException | None = None
        self._callbacks: list[Callable[[Any], None]] = []

    def _finish(self, resp: Any = None, err: BaseException | None = None, cancelled: bool = False) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done, self._resp, self._err, self._cancelled = True, resp, err, cancelled
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)
        return True

    def resolve(self, resp: Any) -> None:
        self._finish(resp=resp)

    def fail(self, code: grpc.StatusCode, details: str = "") -> None:
        self._finish(err=FakeRpcError(code, details))

    def cancel(self) -> bool:
        return self._finish(cancelled=True)

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        if self._cancelled:
            raise grpc.FutureCancelledError()
        if self._err is not None:
            raise self._err
        return self._resp

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)


class _Method:
    """A unary method: call it (blocking) or ``.future`` it."""

    def __init__(self, handler: Callable[..., Any], future: Callable[..., Any] | None = None) -> None:
        self._handler = handler
        self._future = future

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self._handler(request)

    def future(self, request: Any, **kwargs: Any) -> Any:
        assert self._future is not None
        return self._future(request)


class FakeDaemon:
    """containerd as the tests script it: Wait futures, unary answers, health."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waits: list[FakeFuture] = []
        self.wait_armed = threading.Condition(self.lock)
        self.calls: list[tuple[str, Any]] = []
        self.handlers: dict[str, Callable[[Any], Any]] = {}
        self.before_wait_future: Callable[[], None] | None = None
        self.serving = True

    # Wait ------------------------------------------------------------------
    def _wait_future(self, request: Any) -> FakeFuture:
        hook = self.before_wait_future
        if hook is not None:
            hook()
        fut = FakeFuture(request)
        with self.lock:
            self.waits.append(fut)
            self.wait_armed.notify_all()
        return fut

    def wait_for_waits(self, n: int, timeout: float = BOUND) -> list[FakeFuture]:
        with self.lock:
            ok = self.wait_armed.wait_for(lambda: len(self.waits) >= n, timeout)
            assert ok, f"expected {n} Wait calls, saw {len(self.waits)}"
            return list(self.waits)

    # unary -----------------------------------------------------------------
    def _unary(self, name: str) -> Callable[[Any], Any]:
        def handler(request: Any) -> Any:
            with self.lock:
                self.calls.append((name, request))
            fn = self.handlers.get(name)
            if fn is None:
                raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, f"{name} not scripted")
            return fn(request)

        return handler

    def count(self, name: str) -> int:
        with self.lock:
            return sum(1 for n, _ in self.calls if n == name)

    def stub(self, service: str) -> Any:
        daemon = self

        class Stub:
            def __getattr__(self, method: str) -> Any:
                if service == "tasks" and method == "Wait":
                    return _Method(daemon._unary("tasks.Wait"), daemon._wait_future)
                if service == "health" and method == "Check":
                    return _Method(
                        lambda req: health_pb2.HealthCheckResponse(
                            status=health_pb2.HealthCheckResponse.SERVING
                            if daemon.serving
                            else health_pb2.HealthCheckResponse.NOT_SERVING
                        )
                    )
                return _Method(daemon._unary(f"{service}.{method}"))

        return Stub()


class FakeConnection:
    def __init__(self, daemon: FakeDaemon) -> None:
        self.address = "fake"
        self.daemon = daemon
        self.closed = False
        self.answered = True
        self.deferred = _rpc.DeferredCleanup()
        self.tunnel = None

    def callable(self, method: Any) -> Any:
        return getattr(self.daemon.stub(service_key(method)), method.name)

    def close(self) -> None:
        self.closed = True


def make_client(daemon: FakeDaemon) -> Client:
    client = Client("/nonexistent/containerd.sock", NS)
    real = client._connection
    conn = FakeConnection(daemon)
    client._connection = conn  # type: ignore[assignment]
    client._caller = _rpc.Caller(conn, NS, 5.0, RetryPolicy())  # type: ignore[arg-type]
    real.close()
    return client


class FakeContainer:
    def __init__(self, client: Client, cid: str) -> None:
        self._client = client
        self.id = cid
        self.forgotten: list[Any] = []

        class Info:
            spec: dict[str, Any] = {"linux": {"namespaces": [{"type": "pid"}]}}

        self._info = Info()

    def _forget_task(self, task: Any) -> None:
        self.forgotten.append(task)

    def _ensure_bundle(self) -> str:
        return "/nonexistent"


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
def client(daemon: FakeDaemon) -> Iterator[Client]:
    c = make_client(daemon)
    try:
        yield c
    finally:
        c.close()


def new_task(client: Client, cid: str = "c1", *, arm: bool = True) -> Task:
    task = Task(FakeContainer(client, cid), 100, None, started=True)  # type: ignore[arg-type]
    if arm:
        task._arm_wait()
    return task


def new_exec(task: Task, exec_id: str = "e1") -> Process:
    proc = Process(task, exec_id, None)
    proc._started = True
    proc._starting_done = True
    proc._pid = 200
    task._execs[exec_id] = proc
    proc._arm_wait()
    return proc


def wait_response(code: int) -> tasks_pb2.WaitResponse:
    resp = tasks_pb2.WaitResponse(exit_status=code)
    resp.exited_at.FromDatetime(_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc))
    return resp


def no_dispatcher(client: Client) -> bool:
    d = client._dispatcher
    return d is None or not d.running


# -- 1. a lost Wait call is re-armed; the timeout names the caller's --------------------


@pytest.mark.parametrize("kind", ["task", "exec"])
def test_wait_rearms_after_the_wait_call_is_lost(client: Client, daemon: FakeDaemon, kind: str) -> None:
    task = new_task(client)
    proc: Task | Process = task if kind == "task" else new_exec(task)
    first = daemon.wait_for_waits(1 if kind == "task" else 2)[-1]
    t, out = in_thread(lambda: proc.wait(timeout=30))
    n = len(daemon.waits)
    first.fail(grpc.StatusCode.UNAVAILABLE, "Socket closed")  # containerd was SIGKILLed
    again = daemon.wait_for_waits(n + 1)[n]
    assert again.request.exec_id == first.request.exec_id
    again.resolve(wait_response(3))  # containerd is back and reports the real code
    t.join(BOUND)
    assert not t.is_alive(), "wait() did not return after the re-armed call answered"
    assert out.get("value") == ExitStatus(3, _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc))
    assert no_dispatcher(client)


def test_wait_gives_unknown_code_when_the_daemon_forgot_the_task(client: Client, daemon: FakeDaemon) -> None:
    task = new_task(client)
    t, out = in_thread(lambda: task.wait(timeout=30))
    daemon.wait_for_waits(1)[0].fail(grpc.StatusCode.UNAVAILABLE, "connection reset")
    daemon.wait_for_waits(2)[1].fail(grpc.StatusCode.NOT_FOUND, "task c1 not found")  # 1.7 / 2.x
    t.join(BOUND)
    assert not t.is_alive()
    assert out.get("value") == ExitStatus(255)


def test_waiter_is_woken_when_the_call_is_lost_and_rearms_itself(client: Client, daemon: FakeDaemon) -> None:
    # Re-arming fails fast several times (a daemon that accepts and drops):
    # the waiter must keep re-arming (with backoff) instead of sleeping out
    # its whole timeout on a call that no longer exists.
    task = new_task(client)
    t, out = in_thread(lambda: task.wait(timeout=60))
    for n in range(1, 7):
        daemon.wait_for_waits(n)[n - 1].fail(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    daemon.wait_for_waits(7)[6].resolve(wait_response(4))
    t.join(BOUND)
    assert not t.is_alive()
    assert out["value"].exit_code == 4


def test_timeout_error_names_the_callers_timeout(client: Client, daemon: FakeDaemon) -> None:
    task = new_task(client)
    with pytest.raises(DeadlineExceededError) as info:
        task.wait(timeout=0.3)
    assert "did not exit within 0.3 s" in str(info.value)
    # Also when the call was lost meanwhile (the old code slept in 0.5 s slices).
    daemon.wait_for_waits(1)[0].fail(grpc.StatusCode.UNAVAILABLE, "gone")
    daemon.serving = False
    with pytest.raises(DeadlineExceededError) as info:
        task.wait(timeout=0.3)
    assert "did not exit within 0.3 s" in str(info.value)


# -- 2. one exit record, with the OOM flag, without the dispatcher -----------------------


def _oom_metrics(cid: str, kills: int) -> types_metrics.Metric:
    data = cg1.Metrics(memory_oom_control=cg1.MemoryOomControl(oom_kill=kills))
    return types_metrics.Metric(id=cid, data=pack(data))


@pytest.mark.parametrize("kills", [1, 0])
def test_oom_flag_reaches_every_path_without_the_dispatcher(
    client: Client, daemon: FakeDaemon, kills: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.handlers["tasks.Metrics"] = lambda req: tasks_pb2.MetricsResponse(
        metrics=[_oom_metrics("c1", kills)]
    )
    daemon.handlers["tasks.Delete"] = lambda req: tasks_pb2.DeleteResponse(exit_status=137, pid=100)
    # on_exit starts the reader; keep it out: the flag must not depend on it.
    monkeypatch.setattr(client.events, "start", lambda timeout=10.0: True)
    task = new_task(client)
    got: list[ExitStatus] = []
    called = threading.Event()
    task.on_exit(lambda st: (got.append(st), called.set()))
    daemon.wait_for_waits(1)[0].resolve(wait_response(137))
    oom = bool(kills)
    assert task.wait(timeout=BOUND).oom_killed is oom
    assert task.exit_status is not None
    assert task.exit_status.oom_killed is oom
    assert called.wait(BOUND)
    assert [s.oom_killed for s in got] == [oom]
    assert task.delete().oom_killed is oom
    assert task.oom_killed is oom
    assert daemon.count("tasks.Metrics") == 1  # checked once, for the SIGKILL exit only
    assert not client._dispatcher or not client._dispatcher.running


def test_ordinary_exit_makes_no_extra_rpc(client: Client, daemon: FakeDaemon) -> None:
    daemon.handlers["tasks.Delete"] = lambda req: tasks_pb2.DeleteResponse(exit_status=0, pid=100)
    task = new_task(client)
    daemon.wait_for_waits(1)[0].resolve(wait_response(0))
    assert task.wait(timeout=BOUND).exit_code == 0
    assert task.delete().exit_code == 0
    assert [n for n, _ in daemon.calls] == ["tasks.Delete"]


# -- 3a. on_exit callbacks run on the container's queue, not on the reader ---------------


def test_slow_on_exit_callback_does_not_stall_other_containers(
    client: Client, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.events, "start", lambda timeout=10.0: True)
    a, b = new_task(client, "a"), new_task(client, "b")
    release = threading.Event()
    ran_on: list[str] = []
    a.on_exit(lambda st: (ran_on.append(threading.current_thread().name), release.wait(3 * BOUND)))
    d = client.events

    def reader() -> None:
        d._dispatch(_exit_event("a", 100, 1))
        d._dispatch(_exit_event("b", 100, 2))

    t = threading.Thread(target=reader, name="fake-reader", daemon=True)
    t.start()
    try:
        # b's exit is delivered while a's callback still runs.
        assert b.wait(timeout=BOUND).exit_code == 2
        t.join(BOUND)
        assert not t.is_alive()
    finally:
        release.set()
    assert d.wait_idle(BOUND)
    assert ran_on
    assert ran_on[0] != "fake-reader"


def _exit_event(cid: str, pid: int, code: int, exec_id: str = "", *, synthesized: bool = False) -> Event:
    msg = task_events.TaskExit(container_id=cid, id=exec_id or cid, pid=pid, exit_status=code)
    now = _dt.datetime.now(_dt.timezone.utc)
    return Event("/tasks/exit", NS, now, msg, "containerd.events.TaskExit", synthesized=synthesized)


def _start_event(cid: str, pid: int) -> Event:
    msg = task_events.TaskStart(container_id=cid, pid=pid)
    return Event("/tasks/start", NS, _dt.datetime.now(_dt.timezone.utc), msg, "containerd.events.TaskStart")


# -- 3b. exec deletion is one-shot ----------------------------------------------------------


class _BlockingDelete:
    """DeleteProcess that holds the first call until released; later calls get NOT_FOUND."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, req: Any) -> Any:
        with self.lock:
            self.n += 1
            first = self.n == 1
        if not first:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"process {req.exec_id} not found")
        self.entered.set()
        assert self.release.wait(BOUND)
        return tasks_pb2.DeleteResponse(exit_status=7, pid=200)


def _exited_exec(client: Client, daemon: FakeDaemon) -> Process:
    task = new_task(client)
    proc = new_exec(task)
    daemon.wait_for_waits(2)[1].resolve(wait_response(7))
    assert proc.wait(timeout=BOUND).exit_code == 7
    return proc


def test_user_delete_while_auto_delete_runs_gets_the_same_status(client: Client, daemon: FakeDaemon) -> None:
    blocking = _BlockingDelete()
    daemon.handlers["tasks.DeleteProcess"] = blocking
    proc = _exited_exec(client, daemon)
    auto, _ = in_thread(proc._auto_delete)  # what the dispatcher runs after the exit event
    assert blocking.entered.wait(BOUND)
    user, out = in_thread(proc.delete)
    # Let the first delete finish once the user's call is either waiting for
    # it (fixed) or has sent its own DeleteProcess (the race).
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline and blocking.n < 2 and not _waiting_in_delete(proc):
        time.sleep(0.005)
    blocking.release.set()
    user.join(BOUND)
    auto.join(BOUND)
    assert "error" not in out, out.get("error")
    assert out["value"].exit_code == 7
    assert blocking.n == 1


def test_auto_delete_while_user_delete_runs_sends_nothing(client: Client, daemon: FakeDaemon) -> None:
    blocking = _BlockingDelete()
    daemon.handlers["tasks.DeleteProcess"] = blocking
    proc = _exited_exec(client, daemon)
    user, out = in_thread(proc.delete)
    assert blocking.entered.wait(BOUND)
    proc._auto_delete()  # the exit event's cleanup arrives meanwhile
    blocking.release.set()
    user.join(BOUND)
    assert "error" not in out, out.get("error")
    assert out["value"].exit_code == 7
    assert blocking.n == 1
    with pytest.raises(NotFoundError):
        proc.delete()  # the user deleted it: a second delete() still says so


def _waiting_in_delete(proc: Process) -> bool:
    cond = getattr(proc, "_delete_cond", None)
    # A thread waiting on the condition holds no lock and is parked in it.
    return cond is not None and len(getattr(cond, "_waiters", ())) > 0


# -- 3c. arming the Wait call is atomic ---------------------------------------------------


def test_concurrent_waits_arm_one_wait_call(client: Client, daemon: FakeDaemon) -> None:
    task = new_task(client, arm=False)
    # Both waiters meet here if both get past the "is a call armed?" check.
    meet = threading.Barrier(2, timeout=1.0)

    def hook() -> None:
        # Alone (the barrier breaks): the other waiter saw the armed call.
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()

    daemon.before_wait_future = hook
    t1, out1 = in_thread(lambda: task.wait(timeout=30))
    t2, out2 = in_thread(lambda: task.wait(timeout=30))
    daemon.wait_for_waits(1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not (meet.broken or len(daemon.waits) >= 2):
        time.sleep(0.01)
    daemon.before_wait_future = None
    created = list(daemon.waits)
    task._cancel_wait()
    assert all(f.cancelled() for f in created), "a Wait call was left running"
    assert len(created) == 1, f"{len(created)} Wait calls armed"
    # The waiters re-arm after our cancel; answer them.
    daemon.wait_for_waits(len(created) + 1)[-1].resolve(wait_response(0))
    t1.join(BOUND)
    t2.join(BOUND)
    assert out1.get("value") == out2.get("value")
    assert out1["value"].exit_code == 0


# -- 3d. the dispatcher's running set under the reader and reconciliation ------------------


def test_reconcile_does_not_drop_a_run_started_meanwhile(client: Client, daemon: FakeDaemon) -> None:
    d = EventDispatcher(client)
    seen: list[Event] = []
    d._registrations.append(_Registration(seen.append, None, None, None))
    probing = threading.Event()
    answer = threading.Event()

    def get(req: Any) -> Any:
        probing.set()
        assert answer.wait(BOUND)
        # Run 100 had stopped with 3 (its exit event was lost while disconnected).
        return tasks_pb2.GetResponse(process=_process(pid=100, status=3, exit_status=3))

    daemon.handlers["tasks.Get"] = get
    try:
        d._dispatch(_start_event("c1", 100))
        recon, _ = in_thread(d._reconcile)  # the sync timer's thread
        assert probing.wait(BOUND)
        d._dispatch(_start_event("c1", 200))  # the reader: the next run starts
        answer.set()
        recon.join(BOUND)
        assert not recon.is_alive()
        assert d.wait_idle(BOUND)
        assert d._running == {(NS, "c1", ""): 200}, d._running
        exits = [e for e in seen if e.topic == "/tasks/exit"]
        assert [(e.payload.pid, e.payload.exit_status) for e in exits] == [(100, 3)]
        # A late live copy of the same exit is not delivered again.
        d._dispatch(_exit_event("c1", 100, 3))
        assert d.wait_idle(BOUND)
        assert len([e for e in seen if e.topic == "/tasks/exit"]) == 1
    finally:
        d.close()


def _process(pid: int, status: int, exit_status: int = 0) -> Any:
    from containerd_client._pb.containerd.types.task import task_pb2 as types_task

    return types_task.Process(pid=pid, status=status, exit_status=exit_status)


# -- 3e. start() reports whether it subscribed; connected is cleared on reconnect -----------


class _Stream:
    """A server stream that yields nothing and ends with an error when told."""

    def __init__(self) -> None:
        self.fail = threading.Event()
        self.cancelled = threading.Event()

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        while not self.fail.wait(0.05):
            if self.cancelled.is_set():
                raise FakeRpcError(grpc.StatusCode.CANCELLED, "cancelled")
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")

    def cancel(self) -> None:
        self.cancelled.set()


def test_start_reports_subscription_and_reconnect_clears_connected(
    client: Client, daemon: FakeDaemon
) -> None:
    streams: list[_Stream] = []
    publish_gate = threading.Event()

    def subscribe(req: Any) -> _Stream:
        s = _Stream()
        streams.append(s)
        return s

    def publish(req: Any) -> Any:
        assert publish_gate.wait(BOUND)
        # No sync marker support: the dispatcher then assumes it is live.
        raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "no publish")

    daemon.handlers["events.Subscribe"] = subscribe
    daemon.handlers["events.Publish"] = publish
    d = EventDispatcher(client)
    try:
        assert d.start(timeout=0.2) is False  # the subscription is not live yet
        publish_gate.set()
        assert d.start(timeout=BOUND) is True
        daemon.serving = False
        streams[0].fail.set()  # containerd goes away
        deadline = time.monotonic() + BOUND
        while d._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not d._connected.is_set(), "still 'connected' after the stream broke"
        daemon.serving = True
        assert d.start(timeout=BOUND) is True
        assert len(streams) == 2
    finally:
        d.close()


def test_synthesised_exit_and_live_events_reach_handlers_in_decision_order(client: Client) -> None:
    # Reconciliation (on the sync timer's thread) decides to deliver run 100's
    # exit; meanwhile the reader gets the START of run 200. Handlers must see
    # the exit first, and the live copy of the exit must not come again.
    d = EventDispatcher(client)
    seen: list[tuple[str, int]] = []
    d._registrations.append(_Registration(lambda e: seen.append((e.topic, e.payload.pid)), None, None, None))
    in_builtin = threading.Event()
    release = threading.Event()
    real_builtin = d._builtin

    def slow_builtin(event: Event) -> None:
        if event.synthesized:
            in_builtin.set()
            assert release.wait(BOUND)
        real_builtin(event)

    d._builtin = slow_builtin  # type: ignore[method-assign]
    try:
        d._dispatch(_start_event("c1", 100))
        timer, _ = in_thread(lambda: d._dispatch(_exit_event("c1", 100, 3, synthesized=True)))
        assert in_builtin.wait(BOUND)
        reader, _ = in_thread(
            lambda: (d._dispatch(_start_event("c1", 200)), d._dispatch(_exit_event("c1", 100, 3)))
        )
        reader.join(0.5)  # finishes at once without the dispatch lock; waits behind it with it
        release.set()
        timer.join(BOUND)
        reader.join(BOUND)
        assert not timer.is_alive()
        assert not reader.is_alive()
        assert d.wait_idle(BOUND)
    finally:
        d.close()
    assert seen == [("/tasks/start", 100), ("/tasks/exit", 100), ("/tasks/start", 200)]


def test_reconcile_reports_a_run_replaced_meanwhile_without_touching_the_new_one(
    client: Client, daemon: FakeDaemon
) -> None:
    # Run 100's exit was lost; by the time of the reconciliation the same id
    # runs again as pid 300. Handlers learn that run 100 ended (code unknown),
    # and the new run's task object is not completed by it.
    d = EventDispatcher(client)
    seen: list[Event] = []
    d._registrations.append(_Registration(seen.append, None, None, None))
    daemon.handlers["tasks.Get"] = lambda req: tasks_pb2.GetResponse(process=_process(pid=300, status=2))
    task = new_task(client, "c1")
    task._pid = 300
    try:
        d._dispatch(_start_event("c1", 100))
        d._reconcile()
        assert d.wait_idle(BOUND)
    finally:
        d.close()
    assert [(e.payload.pid, e.payload.exit_status, e.synthesized) for e in seen[1:]] == [(100, 255, True)]
    assert task.exit_status is None


def test_a_wait_call_already_over_when_armed_does_not_deadlock(
    client: Client, daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # grpc runs a done callback at once, on the arming thread, when the call is
    # already over; arming holds its lock then, and the callback takes it too.
    task = new_task(client, arm=False)

    def answered_at_once(request: Any) -> FakeFuture:
        fut = FakeFuture(request)
        fut.resolve(wait_response(7))
        return fut

    monkeypatch.setattr(daemon, "_wait_future", answered_at_once)
    t, out = in_thread(lambda: task.wait(timeout=BOUND))
    t.join(BOUND + 2)
    assert not t.is_alive(), "wait() deadlocked arming a call that was already over"
    assert out["value"].exit_code == 7
