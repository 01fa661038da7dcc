"""Per-key serial executor: the machinery under the event dispatcher.

One reader thread receives containerd events and submits each one here, keyed
by ``(namespace, container id)``. Handlers for one key run strictly in
submission order. Different keys run in parallel on a bounded set of worker
threads. A key that has nothing queued is forgotten.

This replaces moby's ``libcontainerd/queue``, which parks one goroutine per
event on its predecessor. That design has no worker cap, an unbounded backlog
of parked goroutines, no panic recovery, no shutdown and no way to see a
wedged key (moby#53614). Here each key has a ``deque`` and at most one *drain
job* exists for it at any time, either waiting in the ready queue or running
on a worker. The drain job runs the key's handlers until the deque is empty
and then forgets the key. The check for emptiness and the forgetting happen
under the same lock that ``submit`` holds, so an event that arrives meanwhile
is never stranded.

Fairness: a drain job that has run 64 handlers in a row goes to the back of
the ready queue when another key is waiting for a worker. One busy container
therefore cannot starve the others.

Diagnosing a wedged key: a watchdog thread logs one warning for each handler
that runs longer than ``slow_after``. The warning names the key, the handler,
how many events wait behind it, and the worker's current stack.
:meth:`KeyedSerialExecutor.stuck_keys` returns the same information on
demand, and :meth:`KeyedSerialExecutor.stats` returns the counters. A wedged
handler cannot be interrupted, because Python threads cannot be cancelled.
Handlers must give every blocking call a deadline.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Final

import attrs

from containerd_client.errors import ClosedError

__all__ = ["ExecutorStats", "KeyedSerialExecutor", "PendingCall"]

logger = logging.getLogger(__name__)

_Item = tuple[Callable[..., object], tuple[object, ...]]
# What a worker is running now: (key, handler, monotonic start time).
_Current = tuple[Hashable, Callable[..., object], float]
# An entry in the ready queue is one drain job. The deque travels with the
# key, so the worker does not look the key up again. ``None`` in the ready
# queue tells one worker to stop; a job is always a tuple, so no key can be
# mistaken for it.
_Job = tuple[Hashable, deque[_Item]]

# Handlers one drain job runs before it yields to other waiting keys. This is
# large enough that yielding costs almost nothing, and small enough that a
# flood on one container delays the others by milliseconds, not seconds.
_QUANTUM: Final = 64


@attrs.frozen
class ExecutorStats:
    """A snapshot of an executor's counters.

    The counters are read without stopping the workers, so a snapshot taken
    while handlers run may be off by the few handlers that finished during the
    read. When the executor is idle,
    ``submitted == completed + failed + dropped``.

    Attributes:
        pending: Handlers queued and not yet started.
        running: Handlers executing right now.
        active_keys: Keys that have queued or running handlers.
        workers: Worker threads started so far.
        submitted: Handlers accepted by ``submit``.
        completed: Handlers that returned normally.
        failed: Handlers that raised. Each one was logged.
        dropped: Handlers that ``close`` returned undelivered.
    """

    pending: int
    running: int
    active_keys: int
    workers: int
    submitted: int
    completed: int
    failed: int
    dropped: int


@attrs.frozen
class PendingCall:
    """A handler call that ``close`` removed from the queue before it ran.

    Attributes:
        key: The key it was submitted under.
        fn: The handler.
        args: The positional arguments it would have been called with.
    """

    key: Hashable
    fn: Callable[..., object]
    args: tuple[object, ...]


class _Worker:
    """State of one worker thread.

    Only the worker thread writes ``current`` and the counters. The watchdog
    and ``stats`` read them without a lock: each write replaces a single
    reference, so a reader sees either the old value or the new one.
    """

    __slots__ = ("completed", "current", "failed", "thread", "warned")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.current: _Current | None = None
        # The handler call the watchdog already warned about. It is compared
        # by identity, so a warning is logged once per call.
        self.warned: _Current | None = None
        self.completed = 0
        self.failed = 0


def _describe(fn: Callable[..., object]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


class KeyedSerialExecutor:
    """Runs handlers in submission order per key, and keys in parallel.

    Worker threads start on demand, up to ``max_workers``. They are daemon
    threads named ``<name>-<n>``. A watchdog thread named ``<name>-watchdog``
    starts with the first worker. All of them stop in :meth:`close`.

    Example::

        with KeyedSerialExecutor(max_workers=4) as ex:
            ex.submit(("default", "web"), handle_event, event)

    Args:
        max_workers: Most worker threads, and so most keys running at once.
        name: Prefix of the thread names, to recognise them in stack dumps.
        slow_after: Seconds after which a running handler counts as stuck.
            The watchdog warns about it and :meth:`stuck_keys` reports it.
        watchdog_interval: Seconds between two watchdog checks.

    Raises:
        ValueError: If ``max_workers`` is below 1, or ``slow_after`` or
            ``watchdog_interval`` is not positive.
    """

    def __init__(
        self,
        max_workers: int = 8,
        *,
        name: str = "containerd-dispatch",
        slow_after: float = 10.0,
        watchdog_interval: float = 1.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if slow_after <= 0:
            raise ValueError(f"slow_after must be positive, got {slow_after}")
        if watchdog_interval <= 0:
            raise ValueError(f"watchdog_interval must be positive, got {watchdog_interval}")
        self._max_workers = max_workers
        self._name = name
        self._slow_after = slow_after
        self._watchdog_interval = watchdog_interval

        # One lock guards the key map, the worker list and the closed flag.
        # Deques are appended to under it. Workers pop from them without it,
        # because deque pops and appends are atomic. Workers take the lock
        # only to forget a key or to yield it.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._idle_waiters = 0
        self._queues: dict[Hashable, deque[_Item]] = {}
        self._ready: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        # Marks the worker threads, so wait_idle can refuse a handler that
        # would wait for itself. Thread idents would be reused after exit.
        self._local = threading.local()
        self._closed = False
        self._submitted = 0
        self._dropped = 0
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()

    # -- public API ---------------------------------------------------------

    def submit(self, key: Hashable, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` to run after everything submitted earlier for ``key``.

        This takes O(1) time and never waits for a handler. It may start a
        worker thread, at most ``max_workers`` times over the executor's life.
        A handler may submit, including to its own key.

        Args:
            key: Serialisation key, for example ``(namespace, container_id)``.
            fn: The handler. Its exceptions are logged with the key, and the
                key's later handlers still run.
            *args: Positional arguments for ``fn``.

        Raises:
            ClosedError: If :meth:`close` has been called.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"executor {self._name!r} is closed")
            q = self._queues.get(key)
            if q is not None:
                # The key already has a drain job, queued or running, which
                # will pick this up. Most events take this path.
                q.append((fn, args))
                self._submitted += 1
                return
            # Spawn only when the active keys outnumber the workers. Then
            # some key would wait even though the pool may still grow.
            if len(self._queues) >= len(self._workers) and len(self._workers) < self._max_workers:
                self._spawn_worker_locked()
            q = deque(((fn, args),))
            self._queues[key] = q
            self._submitted += 1
            self._ready.put((key, q))

    def stuck_keys(self) -> dict[Hashable, float]:
        """Return the keys whose current handler has run longer than ``slow_after``.

        Returns:
            For each such key, the seconds its current handler has been
            running. Events for these keys wait behind that handler.
        """
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers)
        stuck: dict[Hashable, float] = {}
        for w in workers:
            cur = w.current
            if cur is not None and now - cur[2] >= self._slow_after:
                stuck[cur[0]] = now - cur[2]
        return stuck

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the counters.

        Returns:
            The snapshot. See :class:`ExecutorStats` for how exact it is.
        """
        with self._lock:
            pending = sum(len(q) for q in self._queues.values())
            active = len(self._queues)
            workers = list(self._workers)
            submitted = self._submitted
            dropped = self._dropped
        return ExecutorStats(
            pending=pending,
            running=sum(1 for w in workers if w.current is not None),
            active_keys=active,
            workers=len(workers),
            submitted=submitted,
            completed=sum(w.completed for w in workers),
            failed=sum(w.failed for w in workers),
            dropped=dropped,
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted handler has finished.

        Submissions that arrive while this waits extend the wait.

        Args:
            timeout: Most seconds to wait. ``None`` waits without limit.

        Returns:
            True if the executor became idle, False on timeout.

        Raises:
            RuntimeError: If called from a handler, which would wait for itself.
        """
        if getattr(self._local, "is_worker", False):
            raise RuntimeError("wait_idle() called from a handler would wait for itself")
        with self._idle:
            self._idle_waiters += 1
            try:
                return self._idle.wait_for(lambda: not self._queues, timeout)
            finally:
                self._idle_waiters -= 1

    def close(self, timeout: float | None = None, *, drain: bool = True) -> list[PendingCall]:
        """Stop accepting handlers, finish or drop the queued ones, and stop the threads.

        With ``drain=True``, queued handlers still run, in order, and this
        waits for them. With ``drain=False``, queued handlers are removed
        at once and returned, and only the handlers already running are
        waited for. Running handlers are never interrupted. If ``timeout``
        expires, the handlers still queued are removed and returned, and the
        workers stop when their current handler returns. ``stuck_keys`` then
        shows which keys hold them up.

        Calling ``close`` again is safe. A later call waits again and
        returns whatever is still queued. A handler that submits while
        ``close`` drains gets :class:`ClosedError`, which is logged like any
        handler failure. When called from a handler, ``close`` does not wait
        for the calling handler's own worker.

        Args:
            timeout: Most seconds to wait for the threads. ``None`` waits
                without limit.
            drain: Run the queued handlers (True) or drop them (False).

        Returns:
            The handler calls that were not run and never will be, in
            submission order within each key.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        undelivered: list[PendingCall] = []
        with self._lock:
            if not self._closed:
                self._closed = True
                # Every drain job was queued before these sentinels, because
                # jobs are queued only under this lock while still open.
                # When a worker gets a sentinel, every job has been taken.
                for _ in self._workers:
                    self._ready.put(None)
            if not drain:
                undelivered = self._take_pending_locked()
            threads = [w.thread for w in self._workers if w.thread is not None]
        me = threading.current_thread()
        threads = [t for t in threads if t is not me]
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            with self._lock:
                undelivered.extend(self._take_pending_locked())
            logger.warning(
                "executor %r: close timed out with %d handler(s) still running on %s; "
                "stuck keys: %r; %d queued handler(s) dropped",
                self._name,
                len(busy),
                ", ".join(busy),
                self.stuck_keys(),
                len(undelivered),
            )
        # Stop the watchdog last, so a handler that hangs during the drain
        # is still reported.
        self._watchdog_stop.set()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not me:
            watchdog.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return undelivered

    def __enter__(self) -> KeyedSerialExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- workers ------------------------------------------------------------

    def _spawn_worker_locked(self) -> None:
        w = _Worker()
        t = threading.Thread(
            target=self._run_worker,
            args=(w,),
            name=f"{self._name}-{len(self._workers)}",
            daemon=True,
        )
        # Start before recording it. If the OS refuses a thread, submit
        # raises and nothing has changed.
        t.start()
        w.thread = t
        self._workers.append(w)
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name=f"{self._name}-watchdog", daemon=True)
            self._watchdog.start()

    def _run_worker(self, w: _Worker) -> None:
        self._local.is_worker = True
        get = self._ready.get
        while True:
            job = get()
            if job is None:
                return
            self._drain(job[0], job[1], w)

    def _drain(self, key: Hashable, q: deque[_Item], w: _Worker) -> None:
        # Hot path. Pops happen without the lock, and the lock is taken only
        # to yield or to forget the key.
        popleft = q.popleft
        monotonic = time.monotonic
        ran = 0
        while True:
            if ran >= _QUANTUM:
                ran = 0
                if not self._ready.empty():
                    with self._lock:
                        # While closing, keep draining: a job queued behind
                        # the stop sentinels would never run.
                        if not self._closed and q:
                            self._ready.put((key, q))
                            return
            try:
                fn, args = popleft()
            except IndexError:
                with self._lock:
                    if q:
                        continue  # submit appended after our pop attempt
                    del self._queues[key]
                    if self._idle_waiters and not self._queues:
                        self._idle.notify_all()
                return
            ran += 1
            current = (key, fn, monotonic())
            w.current = current
            try:
                fn(*args)
            except BaseException:
                # BaseException too: SystemExit in a worker thread would only
                # end that thread, which wedges the key and shrinks the pool.
                w.failed += 1
                logger.exception("event handler %s for key %r failed", _describe(fn), key)
            else:
                w.completed += 1
            w.current = None
            if w.warned is current:
                w.warned = None
                logger.warning(
                    "event handler %s for key %r finished after %.1fs",
                    _describe(fn),
                    key,
                    monotonic() - current[2],
                )

    # -- watchdog -----------------------------------------------------------

    def _watch(self) -> None:
        while not self._watchdog_stop.wait(self._watchdog_interval):
            try:
                self._check_slow()
            except Exception:
                logger.exception("executor %r: watchdog check failed", self._name)

    def _check_slow(self) -> None:
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            cur = w.current
            if cur is None or cur is w.warned or now - cur[2] < self._slow_after:
                continue
            w.warned = cur
            key, fn, started = cur
            with self._lock:
                q = self._queues.get(key)
                waiting = len(q) if q is not None else 0
            thread = w.thread
            frame = sys._current_frames().get(thread.ident) if thread and thread.ident else None
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)\n"
            logger.warning(
                "event handler %s for key %r has run for %.1fs on thread %s; "
                "%d later event(s) for this key wait behind it. Stack:\n%s",
                _describe(fn),
                key,
                now - started,
                thread.name if thread else "?",
                waiting,
                stack.rstrip("\n"),
            )

    def _take_pending_locked(self) -> list[PendingCall]:
        taken: list[PendingCall] = []
        for key, q in self._queues.items():
            # Pop one at a time: a worker may pop concurrently without the
            # lock, and popleft hands each item to exactly one side.
            while True:
                try:
                    fn, args = q.popleft()
                except IndexError:
                    break
                taken.append(PendingCall(key, fn, args))
        self._dropped += len(taken)
        return taken
