"""A small bounded pool that runs teardown jobs off the caller's critical path.

Owned by a root :class:`~containerd_client.client.Client` (shared by its
namespace views) and created on first use: no thread exists until the first
job, and a client that never hands teardown to the background pays nothing.

A job is keyed (``(namespace, container id)``), so that creating a container
with an id whose teardown is still pending can first wait for it
(:meth:`TeardownPool.wait_for`). Jobs run on at most ``workers`` threads,
started on demand; :meth:`TeardownPool.join` waits (bounded) for every job
submitted so far and returns the failures collected since the last join.

A job reports failure by raising: :class:`~containerd_client.errors.ContainerdError`
(or any other ``Exception``) is caught, logged and collected as a
:class:`TeardownFailure`. The pool knows nothing of containerd objects.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Hashable

import attrs

__all__ = ["DEFAULT_WORKERS", "TeardownFailure", "TeardownPool"]

logger = logging.getLogger(__name__)

#: Threads of a client's teardown pool: teardown is a few RPCs per container
#: that mostly wait on the daemon, so a few threads keep up with a test suite.
DEFAULT_WORKERS = 4
# A worker with nothing to do for this long ends (a new job starts another).
_IDLE_EXIT = 2.0


@attrs.frozen
class TeardownFailure:
    """One teardown job that failed: what it was and the error it raised."""

    what: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.what}: {type(self.error).__name__}: {self.error}"


@attrs.define(eq=False)
class _Job:
    key: Hashable
    what: str
    fn: Callable[[], None]
    done: threading.Event = attrs.field(factory=threading.Event)


class TeardownPool:
    """Bounded background runner of teardown jobs (see the module docstring).

    Args:
        workers: The most threads running jobs at once (at least 1).
    """

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError("a teardown pool needs at least one worker")
        self._workers = workers
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._pending: dict[Hashable, list[_Job]] = {}
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._failures: list[TeardownFailure] = []
        self._closed = False

    # -- inspection -----------------------------------------------------------

    @property
    def threads(self) -> int:
        """How many worker threads exist now."""
        with self._cond:
            return len(self._threads)

    def pending(self) -> list[str]:
        """What is queued or running, oldest first."""
        with self._cond:
            return [job.what for jobs in self._pending.values() for job in jobs]

    def __len__(self) -> int:
        with self._cond:
            return sum(len(jobs) for jobs in self._pending.values())

    # -- submitting -------------------------------------------------------------

    def submit(self, key: Hashable, what: str, fn: Callable[[], None]) -> bool:
        """Queue ``fn`` (described by ``what``) under ``key``; False once the pool is shut.

        A caller that gets False runs the job itself.
        """
        job = _Job(key, what, fn)
        with self._cond:
            if self._closed:
                return False
            self._queue.append(job)
            self._pending.setdefault(key, []).append(job)
            if self._idle >= len(self._queue):
                self._cond.notify()
            elif len(self._threads) < self._workers:
                self._start_worker()
        return True

    def _start_worker(self) -> None:
        # Under self._cond. Daemon threads: a process that exits without
        # close() is not held up; close() joins, so nothing is lost there.
        thread = threading.Thread(target=self._work, name="containerd-teardown", daemon=True)
        self._threads.add(thread)
        # Outside the caller's context: no lease of the caller leaks into teardown.
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._cond:
                    deadline = time.monotonic() + _IDLE_EXIT
                    while not self._queue:
                        left = deadline - time.monotonic()
                        if self._closed or left <= 0:
                            return
                        self._idle += 1
                        try:
                            self._cond.wait(left)
                        finally:
                            self._idle -= 1
                    job = self._queue.popleft()
                self._run(job)
        finally:
            with self._cond:
                self._threads.discard(me)
                self._cond.notify_all()

    def _run(self, job: _Job) -> None:
        try:
            contextvars.Context().run(job.fn)
        except Exception as exc:  # a teardown failure is reported, not raised here
            logger.warning("background teardown failed: %s", job.what, exc_info=True)
            with self._cond:
                self._failures.append(TeardownFailure(job.what, exc))
        finally:
            with self._cond:
                self._forget(job)
                self._cond.notify_all()

    def _forget(self, job: _Job) -> None:
        """Drop ``job`` from the pending ones and mark it done (under the condition's lock)."""
        jobs = self._pending.get(job.key, [])
        if job in jobs:
            jobs.remove(job)
        if not jobs:
            self._pending.pop(job.key, None)
        job.done.set()

    # -- waiting ------------------------------------------------------------------

    def wait_for(self, key: Hashable, timeout: float | None) -> bool:
        """Wait until no job under ``key`` is queued or running; False if still pending at ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending.get(key):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def join(self, timeout: float | None) -> list[TeardownFailure]:
        """Wait for every job submitted so far; return (and forget) the failures collected.

        Jobs still pending when ``timeout`` runs out keep running; each is
        reported as a failure with a :class:`TimeoutError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            failures, self._failures = self._failures, []
            late = TimeoutError(f"still running after {timeout} s")
            failures.extend(TeardownFailure(j.what, late) for jobs in self._pending.values() for j in jobs)
        return failures

    def shutdown(self, timeout: float | None) -> list[TeardownFailure]:
        """Refuse new jobs, :meth:`join` the rest, and let the idle workers end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        failures = self.join(timeout)
        with self._cond:
            # Jobs that never started are dropped (they are among the failures).
            for job in self._queue:
                self._forget(job)
            self._queue.clear()
            self._cond.notify_all()
        return failures
