"""The FIFO engine: :class:`FifoIO` copies between our FIFOs and the sinks and sources."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from containerd_client.cio import _fifo
from containerd_client.cio._logs import LogFile
from containerd_client.cio._protocol import IOConfig
from containerd_client.cio._sinks import _Feed, _SinkPlan
from containerd_client.cio._sources import _read_chunks, _SourceKind, _StdinQueue
from containerd_client.errors import ClosedError

# One logger for the whole of cio, as before the split.
logger = logging.getLogger("containerd_client.cio")

#: Default bound for joining the copy threads in :meth:`FifoIO.close`.
CLOSE_TIMEOUT = 5.0


@attrs.define(eq=False)
class _OutStream:
    name: str
    path: str
    fd: int
    plan: _SinkPlan
    thread: threading.Thread | None = None
    outcome: _fifo.Outcome | None = None


@attrs.define(eq=False)
class _InStream:
    path: str
    kind: _SourceKind
    payload: Any  # bytes, a descriptor, a file object or an iterable
    source: object  # the caller's object, kept alive while we use its descriptor
    stop: _fifo.Flag
    queue: _StdinQueue | None
    thread: threading.Thread | None = None
    outcome: _fifo.Outcome | None = None


_STDIN_END = {
    _fifo.Outcome.EOF: "it reached EOF",
    _fifo.Outcome.CANCELLED: "it was cancelled",
    _fifo.Outcome.BROKEN: "the reader went away",
}


class FifoIO:
    """Stdio through FIFOs that this client copies (from :func:`stdio` or :func:`attach`).

    Threads: one per stream, named ``cio-<process_id>-<stream>``, daemonic,
    all ended by :meth:`close`. User code (callable sinks, iterator and file
    sources without a descriptor) runs on them; if it blocks, :meth:`cancel`
    cannot interrupt it and :meth:`close` gives up joining after its timeout.
    """

    def __init__(
        self,
        config: IOConfig,
        process_id: str,
        *,
        stdin: _InStream | None,
        outputs: list[_OutStream],
        canceller: _fifo.Flag,
        owned_paths: list[str],
        owned_dirs: list[str],
        log: LogFile | None = None,
    ) -> None:
        self._config = config
        self._log = log
        self._process_id = process_id
        self._stdin = stdin
        self._outputs = outputs
        self._canceller = canceller
        self._owned_paths = owned_paths
        self._owned_dirs = owned_dirs
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._started = False
        self._closed = False
        self._live = 0
        self._released = False
        self._eof_fired = False
        self._eof_callbacks: list[Callable[[], object]] = []
        self._errors: list[BaseException] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        return f"<FifoIO {self._process_id!r} {state}>"

    @property
    def config(self) -> IOConfig:
        """What goes into the create/exec request."""
        return self._config

    @property
    def log(self) -> LogFile | None:
        """The log file kept of the output (``stdio(logs=True)``), else None."""
        return self._log

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Failures of sinks and stdin sources so far (each was also logged).

        A failing sink does not stop its stream: the rest is discarded so the
        process never blocks on a full pipe.
        """
        with self._lock:
            return tuple(self._errors)

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called, or :meth:`close` stopped unfinished copies."""
        return self._canceller.is_set

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the copy threads; never blocks. A second call does nothing.

        After :meth:`cancel` it starts nothing.

        Raises:
            ClosedError: The IO was closed.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"stdio of {self._process_id} is closed")
            if self._started:
                return
            self._started = True
            if self._canceller.is_set:
                return
            threads: list[threading.Thread] = []
            for out in self._outputs:
                out.thread = self._thread(out.name, self._run_output, out)
                threads.append(out.thread)
            if self._stdin is not None:
                self._stdin.thread = self._thread("stdin", self._run_stdin, self._stdin)
                threads.append(self._stdin.thread)
            self._live = len(threads)
            # Started under the lock so that a concurrent close() never sees
            # (and tries to join) a thread that was not started yet.
            for thread in threads:
                thread.start()

    def _thread(self, name: str, target: Callable[[Any], None], arg: object) -> threading.Thread:
        return threading.Thread(
            target=target, args=(arg,), name=f"cio-{self._process_id}-{name}", daemon=True
        )

    def cancel(self) -> None:
        """Give up on peers and stop every copy promptly; does not block.

        Streams stop where they are: output not yet read is lost and the
        stdin EOF callbacks do not run.
        """
        feeds: list[_Feed] = []
        with self._lock:
            if self._closed or self._canceller.is_set:
                return
            self._canceller.set()
            for out in self._outputs:
                if out.thread is None and out.outcome is None:
                    out.outcome = _fifo.Outcome.CANCELLED
                    if out.plan.feed is not None:
                        feeds.append(out.plan.feed)
            if self._stdin is not None:
                if self._stdin.queue is not None:
                    self._stdin.queue.kill(f"stdin of {self._process_id} was cancelled")
                if self._stdin.thread is None:
                    self._stdin.outcome = _fifo.Outcome.CANCELLED
            self._done.notify_all()
        self._close_feeds(feeds)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop copying, join the threads, close descriptors, remove our FIFOs.

        Idempotent, never raises for FIFOs that are already gone, logs what it
        could not clean up. Call :meth:`wait` first to keep the output.

        Args:
            timeout: Bound for joining the threads, in seconds.
        """
        with self._lock:
            running = any(s.outcome is None for s in self._streams())
        if running:
            self.cancel()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = [s.thread for s in self._streams() if s.thread is not None]
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive() and t is not current]
        if stuck:
            logger.warning(
                "stdio threads %s did not stop within %.1fs; they release their descriptors when they end",
                stuck,
                timeout,
            )
        with self._lock:
            # Descriptors of threads that never ran are ours; running threads
            # close their own, since closing under them could let a recycled
            # descriptor number receive their data.
            for out in self._outputs:
                if out.thread is None and out.fd >= 0:
                    _close_fd(out.fd)
                    out.fd = -1
            release = self._live == 0 and not self._released
            self._released = self._released or release
        if release:
            self._release_shared()
        self._remove_files()

    def __enter__(self) -> FifoIO:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stdout and stderr reached EOF and were fully copied.

        Args:
            timeout: Seconds to wait; None waits until the copies end.

        Returns:
            True if every output stream was copied to its end; False if the
            timeout expired first or the copies were cancelled.
        """
        with self._done:
            finished = self._done.wait_for(
                lambda: all(out.outcome is not None for out in self._outputs), timeout
            )
            return finished and all(out.outcome is _fifo.Outcome.EOF for out in self._outputs)

    # -- stdin -----------------------------------------------------------------------------------

    def on_stdin_eof(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once our stdin write end was closed after its source ended.

        Runs at once (in this thread) if that already happened, otherwise on
        the stdin thread. It does not run without stdin, after :meth:`cancel`,
        or when the reader went away before EOF. Exceptions are logged.
        """
        with self._lock:
            if not self._eof_fired:
                self._eof_callbacks.append(callback)
                return
        self._run_callback(callback)

    def close_stdin(self) -> None:
        """End stdin: stop reading the source now (with :data:`PIPE`: after what was written).

        The FIFO is closed once the shim has opened it, then the EOF callbacks
        run. Without stdin this does nothing.
        """
        with self._lock:
            stream = self._stdin
            if stream is None or self._closed:
                return
            if stream.queue is not None:
                stream.queue.finish()
            else:
                stream.stop.set()

    def stdin_write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue bytes (or UTF-8 text) for stdin; needs ``stdin=cio.PIPE``.

        Blocks while more than STDIN_QUEUE_LIMIT bytes wait to be written
        (also before :meth:`start`: the queue only drains once started).

        Raises:
            ValueError: stdin was not set up with :data:`PIPE`.
            ClosedError: stdin was closed or cancelled, or its reader went away.
        """
        stream = self._stdin
        if stream is None or stream.queue is None:
            raise ValueError("stdin_write() needs stdin=cio.PIPE")
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if payload:
            stream.queue.put(payload)

    # -- threads ---------------------------------------------------------------------------------

    def _run_output(self, out: _OutStream) -> None:
        outcome = _fifo.Outcome.FAILED
        try:
            outcome = self._copy_output(out)
        except Exception as exc:
            logger.exception("copying %s of %s failed", out.name, self._process_id)
            self._record(exc)
        finally:
            with self._lock:
                fd, out.fd = out.fd, -1
            _close_fd(fd)
            if out.plan.feed is not None:
                self._close_feeds([out.plan.feed])
            with self._lock:
                out.outcome = outcome
                self._done.notify_all()
            self._thread_done()

    def _copy_output(self, out: _OutStream) -> _fifo.Outcome:
        waiter = _fifo.Waiter(self._canceller)
        if not _fifo.wait_connected(out.fd, waiter):
            return _fifo.Outcome.CANCELLED
        plan = out.plan
        if plan.fd >= 0:
            try:
                return _fifo.copy_out(out.fd, plan.fd, waiter)
            except _fifo.SinkError as exc:
                if not _unsupported(exc):
                    return self._sink_failed(out, exc, waiter)
            # splice cannot write there (a terminal, say): copy by hand.
            try:
                return _fifo.read_out(out.fd, _fifo.fd_writer(plan.fd, waiter), waiter)
            except _fifo.SinkError as exc:
                return self._sink_failed(out, exc, waiter)
        if plan.feed is not None:
            try:
                return _fifo.read_out(out.fd, plan.feed.write, waiter)
            except _fifo.SinkError as exc:
                return self._sink_failed(out, exc, waiter)
        return self._drain(out, waiter)

    def _sink_failed(self, out: _OutStream, exc: _fifo.SinkError, waiter: _fifo.Waiter) -> _fifo.Outcome:
        if waiter.interrupted():
            return _fifo.Outcome.CANCELLED
        cause = exc.__cause__ or exc
        logger.error("the %s sink of %s failed, discarding the rest: %s", out.name, self._process_id, cause)
        self._record(cause)
        return self._drain(out, waiter)

    def _drain(self, out: _OutStream, waiter: _fifo.Waiter) -> _fifo.Outcome:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            devnull = -1
        try:
            return _fifo.drain(out.fd, waiter, devnull)
        finally:
            _close_fd(devnull)

    def _run_stdin(self, stream: _InStream) -> None:
        outcome = _fifo.Outcome.FAILED
        fd: int | None = None
        try:
            fd = _fifo.open_writer(stream.path, _fifo.Waiter(self._canceller))
            outcome = _fifo.Outcome.CANCELLED if fd is None else self._copy_stdin(stream, fd)
        except BrokenPipeError:
            outcome = _fifo.Outcome.BROKEN
            logger.debug("the stdin reader of %s went away", self._process_id)
        except Exception as exc:
            logger.exception("stdin of %s failed", self._process_id)
            self._record(exc)
        finally:
            if fd is not None:
                _close_fd(fd)
            if stream.queue is not None:
                why = _STDIN_END.get(outcome, "it failed")
                stream.queue.kill(f"stdin of {self._process_id} is closed: {why}")
            with self._lock:
                stream.outcome = outcome
                fire = outcome is _fifo.Outcome.EOF and not self._eof_fired
                callbacks: list[Callable[[], object]] = []
                if fire:
                    self._eof_fired = True
                    callbacks, self._eof_callbacks = self._eof_callbacks, []
            for callback in callbacks:
                self._run_callback(callback)
            self._thread_done()

    def _copy_stdin(self, stream: _InStream, fd: int) -> _fifo.Outcome:
        queue = stream.queue
        if queue is not None:
            # Queued data is still written after close_stdin(): only a cancel stops it.
            waiter = _fifo.Waiter(self._canceller)
            while (chunk := queue.get()) is not None:
                if not _fifo.write_all(fd, chunk, waiter):
                    break
            return _fifo.Outcome.CANCELLED if self._canceller.is_set else _fifo.Outcome.EOF
        # For the other sources close_stdin() interrupts any wait: early EOF.
        waiter = _fifo.Waiter(self._canceller, stream.stop)
        try:
            if stream.kind is _SourceKind.DATA:
                _fifo.write_all(fd, stream.payload, waiter)
            elif stream.kind is _SourceKind.FD:
                _fifo.copy_in(stream.payload, fd, waiter)
            else:
                self._copy_chunks(stream, fd, waiter)
        except BrokenPipeError:
            raise
        except Exception as exc:
            # A failing source still ends in EOF: the process must not wait forever.
            logger.error("the stdin source of %s failed, closing stdin: %s", self._process_id, exc)
            self._record(exc)
        return _fifo.Outcome.CANCELLED if self._canceller.is_set else _fifo.Outcome.EOF

    def _copy_chunks(self, stream: _InStream, fd: int, waiter: _fifo.Waiter) -> None:
        chunks = _read_chunks(stream.payload) if stream.kind is _SourceKind.FILE else iter(stream.payload)
        for chunk in chunks:
            if waiter.interrupted():
                return
            if isinstance(chunk, str):
                data: bytes | bytearray | memoryview = chunk.encode()
            elif isinstance(chunk, bytes | bytearray | memoryview):
                data = chunk
            else:
                raise TypeError(f"stdin chunks must be bytes or str, not {type(chunk).__name__}")
            if data and not _fifo.write_all(fd, data, waiter):
                return

    def _thread_done(self) -> None:
        with self._lock:
            self._live -= 1
            release = self._closed and self._live == 0 and not self._released
            self._released = self._released or release
        if release:
            self._release_shared()

    # -- helpers ---------------------------------------------------------------------------------

    def _streams(self) -> list[_OutStream | _InStream]:
        streams: list[_OutStream | _InStream] = list(self._outputs)
        if self._stdin is not None:
            streams.append(self._stdin)
        return streams

    def _record(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _run_callback(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("stdin EOF callback of %s failed", self._process_id)

    def _close_feeds(self, feeds: list[_Feed]) -> None:
        for feed in feeds:
            try:
                feed.close()
            except Exception as exc:
                logger.warning("closing an output sink of %s failed: %s", self._process_id, exc)
                self._record(exc)

    def _release_shared(self) -> None:
        self._canceller.close()
        if self._stdin is not None:
            self._stdin.stop.close()

    def _remove_files(self) -> None:
        for path in self._owned_paths:
            _remove(path)
        for folder in reversed(self._owned_dirs):
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.debug("left FIFO folder %s: %s", folder, exc)


def _unsupported(exc: _fifo.SinkError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in _fifo.UNSUPPORTED


def _close_fd(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError as exc:
            logger.warning("closing fd %d failed: %s", fd, exc)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("failed to remove FIFO %s: %s", path, exc)
