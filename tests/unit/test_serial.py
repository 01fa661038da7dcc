"""Tests for the per-key serial executor under the event dispatcher.

Ordering is forced with Events and Barriers, never with sleeps. The only
waits are deadlines on conditions that must become true.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest

from containerd_client import _serial
from containerd_client._serial import ExecutorStats, KeyedSerialExecutor, PendingCall
from containerd_client.errors import ClosedError, ContainerdError

LOGGER = "containerd_client._serial"
TIMEOUT = 10.0


def _until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Wait for a condition another thread makes true, up to a deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _our_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


@pytest.fixture
def make_executor() -> Iterator[Callable[..., KeyedSerialExecutor]]:
    """Build executors with unique thread names and check they leave no thread."""
    made: list[tuple[str, KeyedSerialExecutor]] = []

    def make(max_workers: int = 4, **kwargs: Any) -> KeyedSerialExecutor:
        name = kwargs.pop("name", f"test-serial-{len(made)}-{id(made)}")
        ex = KeyedSerialExecutor(max_workers, name=name, **kwargs)
        made.append((name, ex))
        return ex

    yield make
    for name, ex in made:
        ex.close(timeout=TIMEOUT)
        assert _our_threads(name) == []


# -- ordering and parallelism -------------------------------------------------


def test_per_key_fifo_with_many_keys_and_random_interleaving(
    make_executor: Callable[..., KeyedSerialExecutor],
) -> None:
    ex = make_executor(8)
    n_keys, per_key = 64, 500
    seen: dict[Hashable, list[int]] = {("ns", f"c{k}"): [] for k in range(n_keys)}
    rng = random.Random(1234)
    order = [key for key in seen for _ in range(per_key)]
    rng.shuffle(order)
    next_seq = dict.fromkeys(seen, 0)

    def handler(key: Hashable, seq: int) -> None:
        seen[key].append(seq)
        if seq % 97 == 0:
            time.sleep(0)  # give up the GIL so workers interleave more

    for key in order:
        ex.submit(key, handler, key, next_seq[key])
        next_seq[key] += 1

    assert ex.wait_idle(TIMEOUT)
    for key, got in seen.items():
        assert got == list(range(per_key)), key
    stats = ex.stats()
    assert stats.submitted == stats.completed == n_keys * per_key


def test_per_key_fifo_with_concurrent_submitters(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    # The SDK has one reader thread, but submit must stay correct when it
    # races with workers forgetting keys, from any number of threads.
    ex = make_executor(4)
    n_threads, keys_per_thread, per_key = 4, 8, 300
    seen: dict[tuple[int, int], list[int]] = {
        (t, k): [] for t in range(n_threads) for k in range(keys_per_thread)
    }
    start = threading.Barrier(n_threads)

    def producer(t: int) -> None:
        start.wait(TIMEOUT)
        for i in range(per_key):
            for k in range(keys_per_thread):
                ex.submit((t, k), seen[(t, k)].append, i)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT)
    assert ex.wait_idle(TIMEOUT)
    for got in seen.values():
        assert got == list(range(per_key))


def test_blocked_key_does_not_delay_other_keys(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(2)
    a_started, release_a, b_ran = threading.Event(), threading.Event(), threading.Event()
    a_done: list[str] = []

    def block_a() -> None:
        a_started.set()
        assert release_a.wait(TIMEOUT)

    ex.submit("a", block_a)
    ex.submit("a", a_done.append, "after-block")
    assert a_started.wait(TIMEOUT)
    ex.submit("b", b_ran.set)
    # b runs while a is still blocked: the proof of parallelism.
    assert b_ran.wait(TIMEOUT)
    assert a_done == []
    release_a.set()
    assert ex.wait_idle(TIMEOUT)
    assert a_done == ["after-block"]


def test_hot_key_yields_to_waiting_keys(
    make_executor: Callable[..., KeyedSerialExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_serial, "_QUANTUM", 8)
    ex = make_executor(1)
    gate, started = threading.Event(), threading.Event()
    log: list[str] = []

    def first() -> None:
        started.set()
        assert gate.wait(TIMEOUT)
        log.append("hot")

    ex.submit("hot", first)
    assert started.wait(TIMEOUT)
    for _ in range(100):
        ex.submit("hot", log.append, "hot")
    ex.submit("cold", log.append, "cold")
    gate.set()
    assert ex.wait_idle(TIMEOUT)
    # The single worker runs one quantum of the hot key, then the cold key.
    assert log.index("cold") == 8
    assert log.count("hot") == 101


# -- bounds and invariants ----------------------------------------------------


def test_thread_count_is_bounded(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    base = threading.active_count()
    max_workers = 4
    ex = make_executor(max_workers)
    gate = threading.Event()
    counts: list[int] = []

    def handler() -> None:
        counts.append(threading.active_count())
        assert gate.wait(TIMEOUT)

    for k in range(200):
        ex.submit(k, handler)
        counts.append(threading.active_count())
    # Every worker is now blocked; 196 keys wait for one. The pool is full.
    assert _until(lambda: ex.stats().running == max_workers)
    stats = ex.stats()
    assert stats.workers == max_workers
    assert stats.active_keys == 200
    gate.set()
    assert ex.wait_idle(TIMEOUT)
    assert max(counts) <= base + max_workers + 1  # + watchdog


def test_at_most_one_drain_job_per_key(
    make_executor: Callable[..., KeyedSerialExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_serial, "_QUANTUM", 4)  # force many yields
    ex = make_executor(4)
    lock = threading.Lock()
    # Jobs in flight per key, queued or running. Every change below happens
    # under the executor's lock, so this count is exact, not sampled.
    jobs: dict[Hashable, int] = {}
    draining = threading.local()
    in_handler: dict[Hashable, int] = {}
    violations: list[str] = []

    def on_put(job: Any) -> None:
        if job is None:
            return
        key = job[0]
        with lock:
            if getattr(draining, "key", _NOTHING) == key:
                if jobs.get(key) != 1:  # a job re-queuing itself to yield
                    violations.append(f"yield of {key!r} with {jobs.get(key)} jobs")
            elif jobs.get(key, 0) != 0:
                violations.append(f"second job for {key!r}")
            else:
                jobs[key] = 1

    def on_forget(key: Hashable) -> None:
        with lock:
            if jobs.get(key) != 1:
                violations.append(f"forgot {key!r} with {jobs.get(key)} jobs")
            jobs[key] = 0

    real_drain = ex._drain

    def drain(key: Hashable, q: Any, w: Any) -> None:
        draining.key = key
        try:
            real_drain(key, q, w)
        finally:
            draining.key = _NOTHING

    def handler(key: Hashable) -> None:
        with lock:
            in_handler[key] = in_handler.get(key, 0) + 1
            if in_handler[key] > 1:
                violations.append(f"handlers of {key!r} overlap")
        time.sleep(0)
        with lock:
            in_handler[key] -= 1

    ex._ready = _PutSpy(ex._ready, on_put)  # type: ignore[assignment]
    ex._queues = _ForgetSpy(on_forget)
    ex._drain = drain  # type: ignore[method-assign]
    for i in range(4000):
        key = i % 8
        ex.submit(key, handler, key)
    assert ex.wait_idle(TIMEOUT)
    assert violations == []
    assert jobs == dict.fromkeys(range(8), 0)
    assert ex.stats().completed == 4000


_NOTHING = object()


class _PutSpy:
    """Wraps the ready queue so the test sees every job put on it."""

    def __init__(self, inner: Any, on_put: Callable[[Any], None]) -> None:
        self._inner = inner
        self._on_put = on_put

    def put(self, job: Any) -> None:
        self._on_put(job)
        self._inner.put(job)

    def get(self) -> Any:
        return self._inner.get()

    def empty(self) -> bool:
        return bool(self._inner.empty())


class _ForgetSpy(dict):  # type: ignore[type-arg]
    """The executor's key map, reporting each key it forgets."""

    def __init__(self, on_forget: Callable[[Hashable], None]) -> None:
        super().__init__()
        self._on_forget = on_forget

    def __delitem__(self, key: Hashable) -> None:
        self._on_forget(key)
        super().__delitem__(key)


def test_idle_keys_are_forgotten(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(4)
    for i in range(1000):
        ex.submit(i % 50, lambda: None)
    assert ex.wait_idle(TIMEOUT)
    assert ex._queues == {}
    assert ex.stats() == ExecutorStats(
        pending=0, running=0, active_keys=0, workers=4, submitted=1000, completed=1000, failed=0, dropped=0
    )


def test_handler_may_submit_to_its_own_key(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(1)  # one worker: a handler waiting on its own key would deadlock
    got: list[int] = []
    other: list[int] = []

    def handler(n: int) -> None:
        got.append(n)
        if n < 200:
            ex.submit("self", handler, n + 1)
            ex.submit("other", other.append, n)

    ex.submit("self", handler, 0)
    assert ex.wait_idle(TIMEOUT)
    assert got == list(range(201))
    assert other == list(range(200))


# -- failures -----------------------------------------------------------------


def test_handler_exception_is_logged_and_queue_goes_on(
    make_executor: Callable[..., KeyedSerialExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    ex = make_executor(2)
    got: list[str] = []

    def boom() -> None:
        raise ValueError("bad event")

    def exits() -> None:
        raise SystemExit(3)

    key = ("default", "web")
    ex.submit(key, got.append, "before")
    ex.submit(key, boom)
    ex.submit(key, exits)
    ex.submit(key, got.append, "after")
    assert ex.wait_idle(TIMEOUT)

    assert got == ["before", "after"]
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "boom" in errors[0].getMessage()
    assert repr(key) in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)
    assert isinstance(errors[1].exc_info[1], SystemExit)  # type: ignore[index]
    stats = ex.stats()
    assert (stats.completed, stats.failed) == (2, 2)
    assert stats.workers == 1  # the worker survived both


# -- close --------------------------------------------------------------------


def test_close_drains_queued_work(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(2)
    gate, started = threading.Event(), threading.Event()
    got: list[int] = []

    def first() -> None:
        started.set()
        assert gate.wait(TIMEOUT)

    ex.submit("k", first)
    for i in range(100):
        ex.submit("k", got.append, i)
        ex.submit(i, got.append, 1000 + i)
    assert started.wait(TIMEOUT)

    result: list[list[PendingCall]] = []
    closer = threading.Thread(target=lambda: result.append(ex.close(timeout=TIMEOUT)))
    closer.start()

    def refused() -> bool:
        # Probes that land before close begins are accepted and run; that is fine.
        try:
            ex.submit("late", lambda: None)
        except ClosedError:
            return True
        return False

    # close has begun: new work is refused while queued work still waits.
    assert _until(refused)
    assert [n for n in got if n < 1000] == []  # key "k" is still held by the gate
    gate.set()
    closer.join(TIMEOUT)
    assert result == [[]]
    assert [n for n in got if n < 1000] == list(range(100))
    assert sorted(n for n in got if n >= 1000) == list(range(1000, 1100))


@pytest.mark.parametrize("drain", [True, False])
def test_close_returns_undelivered_when_a_handler_is_stuck(
    make_executor: Callable[..., KeyedSerialExecutor], caplog: pytest.LogCaptureFixture, drain: bool
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ex = make_executor(1, slow_after=0.001)
    gate, started = threading.Event(), threading.Event()
    got: list[str] = []

    def stuck() -> None:
        started.set()
        assert gate.wait(TIMEOUT)

    ex.submit("a", stuck)
    ex.submit("a", got.append, "a1")
    ex.submit("a", got.append, "a2")
    ex.submit("b", got.append, "b1")  # waits for the only worker
    assert started.wait(TIMEOUT)

    # The timeout bounds the wait for the stuck handler; it orders nothing.
    undelivered = ex.close(timeout=0.05, drain=drain)
    assert sorted((p.key, p.args) for p in undelivered) == [("a", ("a1",)), ("a", ("a2",)), ("b", ("b1",))]
    assert all(p.fn == got.append for p in undelivered)
    assert any("close timed out" in r.getMessage() for r in caplog.records)
    assert ex.stuck_keys().keys() == {"a"}

    gate.set()
    assert ex.close(timeout=TIMEOUT) == []
    assert got == []
    stats = ex.stats()
    assert (stats.completed, stats.dropped, stats.submitted, stats.active_keys) == (1, 3, 4, 0)


def test_close_without_drain_drops_queued_work(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(1)
    got: list[int] = []
    dropped: list[list[PendingCall]] = []

    def closes() -> None:
        # Closing from a handler must not wait for this handler's worker.
        dropped.append(ex.close(drain=False))

    ex.submit("k", closes)
    for i in range(5):
        ex.submit("k", got.append, i)
    ex.close(timeout=TIMEOUT)
    assert got == []
    assert [(p.key, p.args) for p in dropped[0]] == [("k", (i,)) for i in range(5)]


def test_submit_after_close_raises_closed_error(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor()
    ex.submit("k", lambda: None)
    ex.close()
    with pytest.raises(ClosedError):
        ex.submit("k", lambda: None)
    assert issubclass(ClosedError, ContainerdError)


def test_close_is_idempotent_and_leaves_no_thread(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    base = threading.active_count()
    ex = make_executor(3, name="idem-test")
    for i in range(30):
        ex.submit(i, lambda: None)
    assert _our_threads("idem-test")  # workers and watchdog exist
    assert ex.close(timeout=TIMEOUT) == []
    assert ex.close(timeout=TIMEOUT) == []
    assert ex.close(timeout=TIMEOUT, drain=False) == []
    assert _our_threads("idem-test") == []
    assert threading.active_count() == base


def test_context_manager_closes(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    got: list[int] = []
    with make_executor(2, name="ctx-test") as ex:
        for i in range(10):
            ex.submit("k", got.append, i)
    assert got == list(range(10))
    assert _our_threads("ctx-test") == []
    with pytest.raises(ClosedError):
        ex.submit("k", got.append, 99)


def test_unused_executor_starts_no_thread() -> None:
    base = threading.active_count()
    ex = KeyedSerialExecutor()
    assert threading.active_count() == base
    assert ex.close() == []


# -- watchdog and diagnostics -------------------------------------------------


def test_watchdog_reports_slow_handler_once(
    make_executor: Callable[..., KeyedSerialExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ex = make_executor(2, slow_after=0.02, watchdog_interval=0.005)
    checks = 0
    enough_checks = threading.Event()
    real_check = ex._check_slow

    def counting_check() -> None:
        nonlocal checks
        real_check()
        checks += 1
        if checks >= 20 and any("has run for" in r.getMessage() for r in caplog.records):
            enough_checks.set()

    ex._check_slow = counting_check  # type: ignore[method-assign]
    gate, started = threading.Event(), threading.Event()

    def wedged_exit_handler() -> None:
        started.set()
        assert gate.wait(TIMEOUT)

    key = ("default", "wedged")
    ex.submit(key, wedged_exit_handler)
    ex.submit(key, lambda: None)
    ex.submit("fine", lambda: None)
    assert started.wait(TIMEOUT)
    assert _until(lambda: key in ex.stuck_keys())
    assert ex.stuck_keys()[key] >= 0.02
    # Let the watchdog look many more times at the same stuck handler.
    assert enough_checks.wait(TIMEOUT)
    assert list(ex.stuck_keys()) == [key]

    gate.set()
    assert ex.wait_idle(TIMEOUT)
    assert ex.stuck_keys() == {}
    slow = [r.getMessage() for r in caplog.records if "has run for" in r.getMessage()]
    assert len(slow) == 1
    assert "wedged_exit_handler" in slow[0]
    assert repr(key) in slow[0]
    assert "1 later event(s)" in slow[0]
    assert "gate.wait" in slow[0]  # the stack shows where it hangs
    assert any("finished after" in r.getMessage() for r in caplog.records)


def test_stats_counts(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(2)
    gate, started = threading.Event(), threading.Event()

    def first() -> None:
        started.set()
        assert gate.wait(TIMEOUT)

    ex.submit("a", first)
    ex.submit("a", lambda: None)
    ex.submit("a", lambda: None)
    assert started.wait(TIMEOUT)
    stats = ex.stats()
    assert (stats.pending, stats.running, stats.active_keys, stats.submitted) == (2, 1, 1, 3)
    gate.set()
    assert ex.wait_idle(TIMEOUT)
    assert ex.stats().completed == 3


def test_wait_idle_times_out_and_refuses_handlers(make_executor: Callable[..., KeyedSerialExecutor]) -> None:
    ex = make_executor(1)
    gate = threading.Event()
    errors: list[BaseException] = []

    def waits_for_itself() -> None:
        try:
            ex.wait_idle()
        except RuntimeError as e:
            errors.append(e)
        assert gate.wait(TIMEOUT)

    ex.submit("k", waits_for_itself)
    assert ex.wait_idle(0.01) is False
    gate.set()
    assert ex.wait_idle(TIMEOUT) is True
    assert len(errors) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"max_workers": 0}, {"slow_after": 0}, {"watchdog_interval": -1.0}],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        KeyedSerialExecutor(**kwargs)
