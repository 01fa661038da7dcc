"""Tasks (a container's init process) and exec processes.

A :class:`Task` is created by :meth:`Container.new_task` and started with
:meth:`Task.start`; creation is split from start so callers can act in
between (set up networking against ``/proc/<pid>/ns/net``). Its exit is
watched from the moment it is created (a ``Tasks.Wait`` call is armed before
start), so a fast exit is never missed, and the call is armed again when
containerd restarts. Each process has one exit record, completed once with
everything known about the exit (code, time, OOM kill), whichever source saw
it first (the Wait call, the event stream, reconciliation or delete).

Both :class:`Task` and :class:`Process` are context managers: leaving the
block kills and deletes what is still alive and closes the stdio, under a
deadline of its own that the caller's deadlines do not shorten.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import logging
import signal as _signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import attrs

from containerd_client import _typeurl
from containerd_client._convert import from_timestamp
from containerd_client._ids import validate_timeout
from containerd_client._pb import api
from containerd_client.errors import (
    CancelledError,
    ClosedError,
    ContainerdError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RPCError,
    StatusCode,
    UnavailableError,
)
from containerd_client.spec import parse_signal, signal_number

if TYPE_CHECKING:
    import os
    from types import TracebackType

    from typing_extensions import Self

    from containerd_client import cio
    from containerd_client._rpc import Pending
    from containerd_client.checkpoint import Checkpoint, RestorePlan
    from containerd_client.client import Client
    from containerd_client.containers import Container
    from containerd_client.metrics import Metrics
    from containerd_client.spec import Command
    from containerd_client.wait import WaitStrategy

__all__ = [
    "CLEANUP_TIMEOUT",
    "STOP_SIGNAL_LABEL",
    "STOP_TIMEOUT",
    "ExecResult",
    "ExitStatus",
    "Process",
    "ProcessInfo",
    "Task",
    "TaskStatus",
    "parse_signal",
]

logger = logging.getLogger(__name__)

#: Deadline for cleanup work (kill, wait, delete) run by ``with`` blocks and
#: failure paths; independent of the caller's deadline, as moby does.
CLEANUP_TIMEOUT = 30.0
#: Deadline of the delete of an exec whose Start failed, detached from the
#: caller's deadline: moby's value for the same cleanup (libcontainerd's
#: ``Exec``, moby#38383), longer than :data:`CLEANUP_TIMEOUT` because a shim
#: still tearing down the failed start's FIFOs can hold the delete up.
EXEC_START_CLEANUP_TIMEOUT = 45.0
#: How long wait()/delete() let stdout/stderr drain after an exit. A
#: grandchild that inherited the pipes can keep them open forever (moby#39383).
IO_DRAIN_TIMEOUT = 2.0

#: Default of :meth:`Task.stop`: how long the stop signal has before SIGKILL (docker's 10 s).
STOP_TIMEOUT = 10.0
#: Container label holding the image's stop signal (the one containerd's own
#: ``WithImageStopSignal`` and nerdctl write); read by :meth:`Task.stop`.
STOP_SIGNAL_LABEL = "io.containerd.image.config.stop-signal"
#: The OCI annotation the spec carries it in (``spec.with_image_config``).
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"

#: containerd reports this exit code when it cannot know the real one.
UNKNOWN_EXIT_CODE = 255

#: A Wait call lost sooner than this after it was armed counts as failing fast;
#: after this many of those in a row, only wait() re-arms it (with backoff).
_QUICK_LOSS = 1.0
_QUICK_LOSS_REARMS = 3
_REARM_BACKOFF_MIN = 0.05
_REARM_BACKOFF_MAX = 1.0
#: Bound of the check that completes an exit record (the OOM check).
_EXIT_CHECK_TIMEOUT = 5.0
#: Exit code of a process killed by SIGKILL, as an OOM kill is.
_SIGKILL_EXIT = 128 + int(_signal.SIGKILL)


class _DeleteInProgress(Exception):
    """Another caller is deleting the process (internal to the auto-delete)."""


class TaskStatus(enum.Enum):
    """The state of a task or process (``containerd.v1.types.Status``)."""

    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    PAUSING = "pausing"


_STATUS_BY_NUMBER = {
    0: TaskStatus.UNKNOWN,
    1: TaskStatus.CREATED,
    2: TaskStatus.RUNNING,
    3: TaskStatus.STOPPED,
    4: TaskStatus.PAUSED,
    5: TaskStatus.PAUSING,
}


@attrs.frozen
class ExitStatus:
    """How a process ended.

    Attributes:
        exit_code: The exit code; ``128 + n`` when killed by signal ``n``
            (the same name as :attr:`ExecResult.exit_code` and docker-py's).
        exited_at: When it exited, as the daemon saw it.
        oom_killed: Whether an OOM kill was seen for this run of the task (init
            process only; see :attr:`Task.oom_killed`).
    """

    exit_code: int
    exited_at: _dt.datetime | None = None
    oom_killed: bool = False

    @property
    def code(self) -> int:
        """Deprecated: use :attr:`exit_code`."""
        warnings.warn("ExitStatus.code is deprecated; use exit_code", DeprecationWarning, stacklevel=2)
        return self.exit_code

    @property
    def ok(self) -> bool:
        """Whether the process exited with status 0."""
        return self.exit_code == 0

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, if the code says so."""
        return self.exit_code - 128 if 128 < self.exit_code < 128 + 65 else None


@attrs.frozen
class ProcessInfo:
    """One process inside a task (``Tasks.ListPids``)."""

    pid: int
    info: Any = None


@attrs.frozen
class ExecResult:
    """What :meth:`Task.run` returns: the exit status and the captured output."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        def cut(data: bytes) -> str:
            return repr(data[:60]) + (f"...({len(data)} bytes)" if len(data) > 60 else "")

        return f"ExecResult(exit_code={self.exit_code}, stdout={cut(self.stdout)}, stderr={cut(self.stderr)})"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        rows = [("exit", _html.exit_badge(self.exit_code))]
        for name, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                rows.append((name, _html.pre(data)))
        return _html.card("ExecResult", f"exit {self.exit_code}", rows)


def _default_io(
    stdin: cio.StdinSource | None, stdout: cio.OutputSink, stderr: cio.OutputSink, terminal: bool
) -> cio.IOCreator:
    """FIFOs when the caller gives a stream (or a terminal needs one), else no stdio at all."""
    from containerd_client import cio as _cio

    if stdin is None and stdout is None and stderr is None and not terminal:
        return _cio.null_io()
    return _cio.stdio(stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal)


class _ExitSlot:
    """The one exit record of a process: completed once, with everything known.

    Every source that sees the exit (the Wait call, the event stream,
    reconciliation, delete) offers it; the first completion wins and later
    ones are ignored. A source that still has to learn something before the
    record is complete (the OOM check of an init process killed by SIGKILL)
    first *claims* it, so nobody else completes it meanwhile.

    Waiters sleep on one condition, woken by completion, by failure and by
    :meth:`lost` (the Wait call broke and must be re-armed). Callbacks are
    handed to ``post`` (the container's queue), never run inline.
    """

    __slots__ = ("_callbacks", "_claimed", "_cond", "_error", "_lost", "_post", "_value")

    def __init__(self, post: Callable[[Callable[[ExitStatus], None], ExitStatus], None]) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._value: ExitStatus | None = None
        self._error: ContainerdError | None = None
        self._claimed = False
        self._lost = 0
        self._callbacks: list[Callable[[ExitStatus], None]] = []
        self._post = post

    @property
    def done(self) -> bool:
        return self._value is not None or self._error is not None

    @property
    def value(self) -> ExitStatus | None:
        return self._value

    @property
    def generation(self) -> int:
        """Bumped each time the Wait call is lost."""
        return self._lost

    def claim(self) -> bool:
        """Reserve the completion for the caller; False if another source has it."""
        with self._cond:
            if self._claimed or self._value is not None:
                return False
            self._claimed = True
            return True

    def set(self, status: ExitStatus) -> bool:
        with self._cond:
            if self._value is not None:
                return False
            self._value = status
            self._error = None
            self._claimed = True
            callbacks, self._callbacks = self._callbacks, []
            self._cond.notify_all()
        for cb in callbacks:
            self._post(cb, status)
        return True

    def fail(self, error: ContainerdError) -> None:
        with self._cond:
            if self._value is not None or self._error is not None:
                return
            self._error = error
            self._cond.notify_all()

    def lost(self) -> None:
        """The Wait call broke: wake the waiters so they re-arm it."""
        with self._cond:
            self._lost += 1
            self._cond.notify_all()

    def add_callback(self, cb: Callable[[ExitStatus], None]) -> None:
        with self._cond:
            if self._value is None:
                self._callbacks.append(cb)
                return
            value = self._value
        self._post(cb, value)

    def wait_change(self, generation: int, timeout: float | None) -> None:
        """Sleep until the record is done, the Wait call is lost again, or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.done or self._lost != generation, timeout)

    def wait_done(self, timeout: float | None) -> None:
        """Sleep until the record is done or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.done, timeout)

    def result(self) -> ExitStatus:
        if self._value is not None:
            return self._value
        assert self._error is not None
        raise self._error

    def wait(self, timeout: float | None) -> ExitStatus:
        with self._cond:
            if not self._cond.wait_for(lambda: self.done, timeout):
                raise DeadlineExceededError(f"process did not exit within {timeout:g} s")
        return self.result()


def _run_callback(cb: Callable[[ExitStatus], None], status: ExitStatus) -> None:
    try:
        cb(status)
    except Exception:
        logger.exception("exit callback %r failed", cb)


class _StdinCloser:
    """Sends containerd's CloseIO exactly once, only once the process exists.

    A CloseIO that reaches the shim before it opened the stdin FIFO is lost
    and the process never sees EOF (moby#37870): the init process's FIFO is
    open after Tasks.Create, an exec's only after its Start. So the request
    (stdin source exhausted, or close_stdin()) and readiness are tracked
    separately and the RPC goes out when both are true.
    """

    def __init__(self, send: Callable[[], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._requested = False
        self._ready = False
        self._abandoned = False
        self._sent = False

    def request(self) -> None:
        with self._lock:
            self._requested = True
            go = self._take()
        if go:
            self._do_send()

    def ready(self) -> None:
        with self._lock:
            self._ready = True
            go = self._take()
        if go:
            self._do_send()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True

    def _take(self) -> bool:
        if self._requested and self._ready and not self._sent and not self._abandoned:
            self._sent = True
            return True
        return False

    def _do_send(self) -> None:
        try:
            self._send()
        except (NotFoundError, UnavailableError, ClosedError):
            # The process is gone or the daemon is going away: nothing to close.
            logger.debug("CloseIO skipped: process gone", exc_info=True)
        except ContainerdError:
            logger.warning("failed to close stdin", exc_info=True)


class _ProcessBase:
    """What a task's init process and an exec process share."""

    _kind = "process"

    def __init__(
        self,
        client: Client,
        container_id: str,
        exec_id: str,
        pid: int,
        io: cio.ProcessIO | None,
    ) -> None:
        self._client = client
        self._container_id = container_id
        self._exec_id = exec_id
        self._pid = pid
        self._io = io
        self._exit = _ExitSlot(self._post_callback)
        self._stdin = _StdinCloser(self._send_close_io)
        self._deleted: ExitStatus | None = None
        self._started = False
        self._lock = threading.Lock()
        # Guards _wait_call: arming is check-then-act, so it happens under it.
        # Reentrant: grpc runs a done callback at once, on the arming thread,
        # when the call is already over, and the callback takes this lock too.
        self._wait_lock = threading.RLock()
        self._wait_call: Pending | None = None
        self._quick_losses = 0
        # Deletion is one-shot: _delete_cond guards _deleting and _deleted.
        self._delete_cond = threading.Condition(threading.Lock())
        self._deleting = False
        self._auto_deleted = False
        if io is not None:
            io.on_stdin_eof(self._stdin.request)
        client._track(self)

    # -- identity ------------------------------------------------------------------

    @property
    def container_id(self) -> str:
        """The container this process belongs to."""
        return self._container_id

    @property
    def pid(self) -> int:
        """The host pid of the process (0 before it exists)."""
        return self._pid

    @property
    def io(self) -> cio.ProcessIO | None:
        """The stdio plumbing, if the process has any."""
        return self._io

    def _exec_field(self) -> str:
        return self._exec_id

    # -- exit watching -------------------------------------------------------------

    def _arm_wait(self) -> None:
        """Arm the Tasks.Wait call unless one is armed or the exit is known.

        Atomic: concurrent callers arm one call between them. The call is a
        gRPC future (no thread) queued until the channel is ready, so one
        armed while containerd restarts goes out when it serves again.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        with self._wait_lock:
            if self._wait_call is not None or self._exit.done or self._deleted is not None:
                return
            req = tasks_pb2.WaitRequest(container_id=self._container_id, exec_id=self._exec_id)
            try:
                call = self._client._caller.future(api.Tasks.Wait, req, self._wait_done, wait_for_ready=True)
            except ClosedError as exc:
                self._exit.fail(ClosedError(f"cannot wait: {exc}"))
                return
            # A call over already (its callback ran, or waits for this lock) is
            # not kept: the callback decides what comes next.
            if not call.done():
                self._wait_call = call

    def _wait_done(self, call: Pending, resp: Any, err: ContainerdError | None) -> None:
        with self._wait_lock:
            if self._wait_call is call:
                self._wait_call = None
        if err is None:
            self._offer_exit(ExitStatus(resp.exit_status, from_timestamp(resp.exited_at)))
            return
        if isinstance(err, ClosedError) or self._client.closed:
            self._exit.fail(ClosedError("the wait was cancelled (client closed)"))
            return
        if isinstance(err, NotFoundError):
            # The task is gone (deleted elsewhere, or containerd >= 1.7 dropped
            # it after a restart): it has exited, with a status nobody knows.
            self._offer_exit(ExitStatus(UNKNOWN_EXIT_CODE))
            return
        if isinstance(err, CancelledError) and call.cancelled:
            self._exit.lost()  # cancelled by us: a waiter re-arms if it still needs to
            return
        if isinstance(err, (UnavailableError, CancelledError)):
            # containerd went away (restart) and took the call with it: wake the
            # waiters and arm again; the new call goes out once it serves.
            self._exit.lost()
            self._rearm_after_loss(call)
            return
        self._exit.fail(err)

    def _rearm_after_loss(self, call: Pending) -> None:
        # A call that lived long was lost to a restart: re-arm at once. Calls
        # that keep failing fast are left to wait(), which backs off, and to
        # the event dispatcher's reconciliation.
        if time.monotonic() - call.started < _QUICK_LOSS:
            self._quick_losses += 1
        else:
            self._quick_losses = 0
        if self._quick_losses <= _QUICK_LOSS_REARMS:
            self._arm_wait()

    def _offer_exit(self, status: ExitStatus, *, inline: bool = False) -> None:
        """A source saw the exit: complete the exit record once, with all that is known.

        When one more fact is needed (see :meth:`_exit_check_needed`), the
        check runs on the event dispatcher's executor (or on this thread
        with ``inline``), never on a gRPC or reader thread.
        """
        if self._exit.value is not None:
            # Completed already. A record that only holds an error (the Wait
            # call failed, e.g. "ttrpc: closed" when the shim died) still takes
            # the real exit when another source sees it, so on_exit fires.
            return
        if not self._exit_check_needed(status):
            self._exit.set(self._complete(status, False))
            return
        if not self._exit.claim():
            return  # another source is completing it
        if not inline:
            try:
                executor = self._client.events._executor
                key = ("exit-check", self._client.namespace_name, self._container_id)
                executor.submit(key, self._finish_exit, status)
                return
            except ClosedError:
                pass
        self._finish_exit(status)

    def _finish_exit(self, status: ExitStatus) -> None:
        try:
            checked = self._exit_check(status)
        except Exception:
            logger.warning("exit check of %s %s failed", self._kind, self._ident(), exc_info=True)
            checked = False
        self._exit.set(self._complete(status, checked))

    def _exit_check_needed(self, status: ExitStatus) -> bool:
        return False

    def _exit_check(self, status: ExitStatus) -> bool:
        return False

    def _complete(self, status: ExitStatus, checked: bool) -> ExitStatus:
        return status

    def _post_callback(self, cb: Callable[[ExitStatus], None], status: ExitStatus) -> None:
        """Run an on_exit callback on this container's queue of the event executor."""
        try:
            executor = self._client.events._executor
            executor.submit((self._client.namespace_name, self._container_id), _run_callback, cb, status)
        except ClosedError:
            _run_callback(cb, status)

    def _notify_exit(self, status: ExitStatus) -> None:
        """Complete wait() from another source (the event stream). First wins."""
        self._offer_exit(status)

    def wait(self, timeout: float | None = None, *, drain_io: bool = True) -> ExitStatus:
        """Block until the process exits and return its status.

        The wait was armed when the process was created, so an exit that
        happened before this call is reported too. When containerd restarts
        meanwhile, the wait is armed again and completes with the real code,
        or with ``UNKNOWN_EXIT_CODE`` (255) when containerd forgot the
        process (1.7 and later forget tasks that exited while it was down).
        By default output still in the FIFOs is copied before returning
        (bounded, see IO_DRAIN_TIMEOUT).

        Args:
            timeout: Seconds to wait; None waits forever.
            drain_io: Also wait (briefly) for stdout/stderr to be fully copied.

        Raises:
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite.
            DeadlineExceededError: It did not exit within ``timeout``.
            ClosedError: The client was closed while waiting.
            RPCError: The daemon failed the wait.
        """
        timeout = validate_timeout(timeout, what="wait timeout")
        if self._deleted is not None:
            return self._deleted
        status = self._wait_exit(timeout)
        if drain_io and self._io is not None:
            self._io.wait(IO_DRAIN_TIMEOUT)
        return status

    def _wait_exit(self, timeout: float | None) -> ExitStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = _REARM_BACKOFF_MIN
        pause = False
        while True:
            if self._exit.done:
                return self._exit.result()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise DeadlineExceededError(
                    f"{self._kind} {self._ident()} did not exit within {timeout:g} s",
                    StatusCode.DEADLINE_EXCEEDED,
                )
            if pause:
                # The Wait call could not be armed or keeps failing fast: pause
                # before arming it again (an exit from the event stream still
                # ends the pause at once).
                step = backoff if left is None else min(backoff, left)
                backoff = min(backoff * 2, _REARM_BACKOFF_MAX)
                self._exit.wait_done(step)
                pause = False
                continue
            generation = self._exit.generation
            self._arm_wait()
            if self._wait_call is None:
                pause = True
                continue
            # Armed: sleep until the exit, or until the call is lost.
            self._exit.wait_change(generation, left)
            pause = self._quick_losses > _QUICK_LOSS_REARMS

    def on_exit(self, callback: Callable[[ExitStatus], None]) -> None:
        """Call ``callback(status)`` once, when the process exits (soon, if it has).

        Starts the client's event dispatcher, so the exit is seen even across
        a containerd restart. The callback runs on the container's queue of
        the dispatcher's executor, in order with that container's event
        handlers; a slow callback holds up only that container. The process
        object holds the callback, so the callback never keeps the process
        alive by itself.
        """
        self._client.events._start_once()
        self._exit.add_callback(callback)

    @property
    def exit_status(self) -> ExitStatus | None:
        """The exit status if the exit was already seen, else None (no RPC)."""
        return self._deleted or self._exit.value

    # -- control -------------------------------------------------------------------

    def kill(self, sig: int | str | _signal.Signals = _signal.SIGTERM, *, all: bool = False) -> None:
        """Send a signal (number, ``"SIGTERM"``, ``"TERM"`` or ``signal.SIGTERM``).

        Args:
            sig: The signal; SIGTERM by default.
            all: Signal every process in the container (init task only).

        Raises:
            UnknownSignalError: ``sig`` is not a signal here (no RPC is made).
            NotFoundError: The process already exited or does not exist.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        number = parse_signal(sig)
        req = tasks_pb2.KillRequest(
            container_id=self._container_id, exec_id=self._exec_id, signal=number, all=all
        )
        self._client.call(api.Tasks.Kill, req)

    def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal (TTY processes only).

        Raises:
            RPCError: The call failed (e.g. NotFoundError once it exited).
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if width <= 0 or height <= 0:
            from containerd_client.errors import InvalidArgumentError

            raise InvalidArgumentError(f"terminal size must be positive, got {width}x{height}")
        req = tasks_pb2.ResizePtyRequest(
            container_id=self._container_id, exec_id=self._exec_id, width=width, height=height
        )
        self._client.call(api.Tasks.ResizePty, req)

    def close_stdin(self) -> None:
        """Signal end of input: close our end of stdin and tell the shim, exactly once."""
        if self._io is not None and self._io.config.stdin:
            self._io.close_stdin()  # fires the EOF callback, which requests CloseIO
        else:
            self._stdin.request()

    def _send_close_io(self) -> None:
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        req = tasks_pb2.CloseIORequest(container_id=self._container_id, exec_id=self._exec_id, stdin=True)
        self._client._caller.call(api.Tasks.CloseIO, req, timeout=CLEANUP_TIMEOUT)

    def status(self) -> TaskStatus:
        """The current state, from the daemon.

        Raises:
            NotFoundError: The process was deleted.
            RPCError: The call failed.
        """
        return self._get().status

    def _get(self) -> _ProcessState:
        return get_process_state(self._client, self._container_id, self._exec_id)

    # -- deletion --------------------------------------------------------------------

    def _finish_io(self) -> None:
        if self._io is not None:
            self._io.wait(IO_DRAIN_TIMEOUT)
            self._io.close()

    def _abort_io(self) -> None:
        self._stdin.abandon()
        if self._io is not None:
            self._io.cancel()
            self._io.close()

    def _cancel_wait(self) -> None:
        with self._wait_lock:
            call, self._wait_call = self._wait_call, None
        if call is not None and not call.done():
            call.cancel()

    def force_delete(self, *, timeout: float = CLEANUP_TIMEOUT) -> ExitStatus:
        """Kill everything and delete, whatever the state (created, running, paused).

        Sends SIGKILL (to every process of the container for an init task),
        waits for the exit and deletes, all within ``timeout``. A process
        that is already gone is not an error.

        Raises:
            InvalidTimeoutError: ``timeout`` is not a positive, finite number.
            RPCError: The daemon failed the delete for another reason.
            DeadlineExceededError: The process did not die within ``timeout``.
        """
        checked = validate_timeout(timeout, what="force_delete timeout", allow_none=False, positive=True)
        timeout = cast(float, checked)
        if self._deleted is not None:
            return self._deleted
        deadline = time.monotonic() + timeout
        self._arm_wait()
        try:
            self._kill_for_cleanup()
        except NotFoundError:
            pass  # already gone: the delete below reports what it can
        except FailedPreconditionError:
            pass  # already stopped
        try:
            self._exit.wait(max(0.0, deadline - time.monotonic()))
        except ClosedError:
            raise
        except ContainerdError:
            logger.debug("wait during force delete failed", exc_info=True)
        return self._delete(timeout=max(1.0, deadline - time.monotonic()), missing_ok=True)

    def _kill_for_cleanup(self) -> None:
        raise NotImplementedError

    def delete(self) -> ExitStatus:
        """Delete the stopped process and return its exit status; closes its stdio.

        Raises:
            FailedPreconditionError: It is still running (kill it first, or
                use :meth:`force_delete`).
            NotFoundError: It was already deleted.
            RPCError: The call failed.
        """
        if self._deleted is not None:
            if self._auto_deleted:
                return self._deleted
            raise NotFoundError(f"{self._kind} {self._ident()} was already deleted", StatusCode.NOT_FOUND)
        if not self._exit.done:
            # containerd answers UNKNOWN for this; say what it means, as the Go client does.
            state = self._get()
            if state.status not in (TaskStatus.STOPPED, TaskStatus.UNKNOWN) and not (
                state.status is TaskStatus.CREATED and state.pid == 0
            ):
                raise FailedPreconditionError(
                    f"{self._kind} {self._ident()} must be stopped before deletion: {state.status.value}",
                    StatusCode.FAILED_PRECONDITION,
                )
            if state.status is TaskStatus.STOPPED:
                # Complete the exit record before the delete takes the facts away.
                self._offer_exit(ExitStatus(state.exit_status, state.exited_at), inline=True)
        self._settle_exit()
        return self._delete(timeout=None, missing_ok=False)

    def _settle_exit(self) -> None:
        """Let an exit record that another source is completing finish (bounded)."""
        if self._exit._claimed and not self._exit.done:
            with contextlib.suppress(ContainerdError):
                self._exit.wait(_EXIT_CHECK_TIMEOUT)

    def _ident(self) -> str:
        return self._exec_id or self._container_id

    def _delete(self, *, timeout: float | None, missing_ok: bool, wait_for_others: bool = True) -> ExitStatus:
        """Delete once: concurrent callers share one DeleteProcess/Delete and its status.

        A caller arriving while another deletes waits for it and returns its
        status. With ``wait_for_others`` false (the auto-delete after an
        exit) it raises ``_DeleteInProgress`` instead: that delete is left to
        the caller running it, who gets the status.
        """
        with self._delete_cond:
            while self._deleting:
                if not wait_for_others:
                    raise _DeleteInProgress
                self._delete_cond.wait()
            if self._deleted is not None:
                return self._deleted
            self._deleting = True
            # Set before the status is published: a user's delete() seeing it
            # returns the status instead of "already deleted".
            self._auto_deleted = not wait_for_others
        try:
            return self._delete_rpc(timeout=timeout, missing_ok=missing_ok)
        finally:
            with self._delete_cond:
                self._deleting = False
                self._delete_cond.notify_all()

    def _delete_rpc(self, *, timeout: float | None, missing_ok: bool) -> ExitStatus:
        raise NotImplementedError

    def _mark_deleted(self, status: ExitStatus) -> ExitStatus:
        self._exit.set(status)
        final = self._exit.value or status
        self._deleted = final
        self._cancel_wait()
        return final

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Kill and delete the process if still there, and close its stdio. Never raises."""
        if self._deleted is None:
            try:
                self.force_delete()
            except ClosedError:
                self._abort_io()
            except ContainerdError:
                logger.warning("cleanup of %s %s failed", self._kind, self._ident(), exc_info=True)
                self._abort_io()
        elif self._io is not None:
            self._io.close()

    # -- display -------------------------------------------------------------------

    def _glance(self) -> tuple[str, int, int | None]:
        """``(status, pid, exit code)`` for a repr: what is known, else one short ``Tasks.Get``.

        Never raises and never waits longer than :data:`REPR_TIMEOUT`; when
        the daemon does not answer in time, what this object last knew, marked
        ``(last known)``.
        """
        known = self.exit_status
        if known is not None:
            return ("deleted" if self._deleted is not None else "stopped"), self._pid, known.exit_code
        status, pid, code = quick_state(self._client, self._container_id, self._exec_id, pid=self._pid)
        if status == "unknown":
            # No answer in time (a busy or absent daemon): what this object last knew.
            return ("running" if self._started else "created") + " (last known)", self._pid, None
        return status, pid, code

    def _glance_rows(self) -> list[tuple[str, str]]:
        return state_rows(*self._glance())


@attrs.frozen
class _ProcessState:
    status: TaskStatus
    pid: int
    exit_status: int
    exited_at: _dt.datetime | None
    stdin: str
    stdout: str
    stderr: str
    terminal: bool


def get_process_state(client: Client, container_id: str, exec_id: str = "") -> _ProcessState:
    """One ``Tasks.Get`` of a task (``exec_id=""``) or exec, as a value.

    Raises:
        NotFoundError: No such task or exec.
        RPCError: The call failed.
    """
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    req = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
    p = client.call(api.Tasks.Get, req, idempotent=True).process
    return _ProcessState(
        status=_STATUS_BY_NUMBER.get(p.status, TaskStatus.UNKNOWN),
        pid=p.pid,
        exit_status=p.exit_status,
        exited_at=from_timestamp(p.exited_at),
        stdin=p.stdin,
        stdout=p.stdout,
        stderr=p.stderr,
        terminal=p.terminal,
    )


#: The deadline of the one call a notebook repr may make (then it shows "unknown").
REPR_TIMEOUT = 1.0


def quick_state(
    client: Client, container_id: str, exec_id: str = "", *, pid: int = 0
) -> tuple[str, int, int | None]:
    """``(status, pid, exit code)`` of a task or exec for a repr; never raises.

    One ``Tasks.Get`` with a :data:`REPR_TIMEOUT` deadline and no retry: a
    closed client, an absent daemon or any error gives ``"unknown"``, a
    missing task ``"no task"``. ``pid`` is shown when the daemon gives none.
    """
    from containerd_client._html import UNKNOWN
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    if client.closed:
        return UNKNOWN, pid, None
    req = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
    try:
        p = client._caller.call(api.Tasks.Get, req, timeout=REPR_TIMEOUT).process
    except NotFoundError:
        return "no task", pid, None
    except Exception:  # a repr must not raise, whatever went wrong
        return UNKNOWN, pid, None
    status = _STATUS_BY_NUMBER.get(p.status, TaskStatus.UNKNOWN)
    code = int(p.exit_status) if status is TaskStatus.STOPPED else None
    return status.value, int(p.pid) or pid, code


def state_rows(status: str, pid: int, code: int | None) -> list[tuple[str, str]]:
    """The status, pid and exit rows of a repr card (see :func:`containerd_client._html.card`)."""
    from containerd_client import _html

    rows = [("status", _html.badge(status)), ("pid", _html.esc(pid or "-"))]
    if code is not None:
        rows.append(("exit", _html.exit_badge(code)))
    return rows


class Process(_ProcessBase):
    """An exec process inside a running task.

    Created by :meth:`Task.exec`; call :meth:`start`, then :meth:`wait`.
    Leaving a ``with`` block kills and deletes it and removes its FIFOs.
    """

    _kind = "exec"

    def __init__(self, task: Task, exec_id: str, io: cio.ProcessIO | None) -> None:
        super().__init__(task._client, task.container_id, exec_id, 0, io)
        self._task = task
        self._starting_done = False
        self._delete_deferred = False
        self._start_failed = False

    @property
    def id(self) -> str:
        """The exec id."""
        return self._exec_id

    def __repr__(self) -> str:
        return f"<Process {self._exec_id!r} of {self._container_id!r} pid={self._pid}>"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        rows = [("container", _html.code(self._container_id)), *self._glance_rows()]
        return _html.card("Process", self._exec_id, rows)

    def start(self) -> None:
        """Start the exec'd process.

        If the start fails, the process is deleted and its FIFOs removed
        under a deadline of their own, then the error is raised.

        Raises:
            FailedPreconditionError: It was already started.
            RPCError: The daemon could not start it (e.g. the binary is missing).
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        with self._lock:
            if self._started:
                raise FailedPreconditionError(f"exec {self._exec_id} was already started")
            self._started = True
        req = tasks_pb2.StartRequest(container_id=self._container_id, exec_id=self._exec_id)
        try:
            resp = self._client.call(api.Tasks.Start, req)
        except ContainerdError:
            self._stdin.abandon()
            self._start_returned()
            self._cleanup_failed_start()
            raise
        self._pid = resp.pid
        # The shim opens an exec's stdin FIFO during Start: only now may CloseIO go out.
        self._stdin.ready()
        if self._start_returned():
            self._auto_delete()

    def _start_returned(self) -> bool:
        """Mark Start as answered; True if an exit-time delete waited for that."""
        with self._lock:
            self._starting_done = True
            deferred, self._delete_deferred = self._delete_deferred, False
        return deferred

    def _auto_delete(self) -> None:
        """Delete after the exit event (event dispatcher), with a bounded deadline."""
        from containerd_client.events import EXEC_DELETE_TIMEOUT

        with self._lock:
            if not self._starting_done:
                # containerd reads the process's state after the shim started it
                # (to answer Start with its pid); deleting before Start has
                # answered makes that Start fail with NOT_FOUND.
                self._delete_deferred = True
                return
        if self._deleted is not None:
            return
        try:
            self._delete(timeout=EXEC_DELETE_TIMEOUT, missing_ok=True, wait_for_others=False)
        except _DeleteInProgress:
            return  # the user deletes it: they get the status
        except ContainerdError:
            logger.warning("could not delete exec %s after its exit", self._exec_id, exc_info=True)
            self._abort_io()

    def _cleanup_failed_start(self) -> None:
        # The process never ran: no output will come, so do not wait for any.
        self._start_failed = True
        try:
            self._delete(timeout=EXEC_START_CLEANUP_TIMEOUT, missing_ok=True)
        except ContainerdError:
            logger.warning("could not delete exec %s after its start failed", self._exec_id, exc_info=True)
            self._abort_io()

    def _kill_for_cleanup(self) -> None:
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if not self._started:
            return  # never started: nothing runs, delete directly
        req = tasks_pb2.KillRequest(
            container_id=self._container_id, exec_id=self._exec_id, signal=int(_signal.SIGKILL)
        )
        self._client._caller.call(api.Tasks.Kill, req, timeout=CLEANUP_TIMEOUT)

    def force_delete(self, *, timeout: float = CLEANUP_TIMEOUT) -> ExitStatus:
        """Kill the exec if it runs and delete it (see :meth:`Task.force_delete`)."""
        if self._deleted is not None:
            return self._deleted
        if not self._started:
            return self._delete(timeout=timeout, missing_ok=True)
        return super().force_delete(timeout=timeout)

    def _delete_rpc(self, *, timeout: float | None, missing_ok: bool) -> ExitStatus:
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if self._io is not None:
            self._io.wait(IO_DRAIN_TIMEOUT if self._started and not self._start_failed else 0.0)
        req = tasks_pb2.DeleteProcessRequest(container_id=self._container_id, exec_id=self._exec_id)
        call_timeout = timeout if timeout is not None else -1.0
        try:
            resp = self._client._caller.call(api.Tasks.DeleteProcess, req, timeout=call_timeout)
        except NotFoundError:
            if not missing_ok:
                raise
            status = self._exit.value or ExitStatus(UNKNOWN_EXIT_CODE)
        else:
            status = ExitStatus(resp.exit_status, from_timestamp(resp.exited_at))
        if self._io is not None:
            self._io.close()
        self._task._forget_exec(self._exec_id)
        return self._mark_deleted(status)


def _log_streams(stdout: bool, stderr: bool, tail: int | None) -> frozenset[int]:
    """The log's stream numbers for ``logs()``; checks ``tail`` too."""
    from containerd_client.cio import _logs

    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise InvalidArgumentError(f"tail must be None or a count >= 0, not {tail!r}")
    streams = frozenset(n for n, on in ((_logs.STDOUT, stdout), (_logs.STDERR, stderr)) if on)
    if not streams:
        raise InvalidArgumentError("logs(): choose stdout, stderr or both")
    return streams


def _oom_kills(cgroup_version: int, raw: Any) -> int:
    """The OOM kill counter of a cgroup metrics message (v1 ``memory.oom_control``, v2 ``memory.events``)."""
    if cgroup_version == 1 and raw.HasField("memory_oom_control"):
        return int(raw.memory_oom_control.oom_kill)
    if cgroup_version == 2 and raw.HasField("memory_events"):
        return int(raw.memory_events.oom_kill)
    return 0


#: How long stop() waits for runc's init to exec the container's command.
_EXEC_WAIT = 2.0


def _await_exec(pid: int, proc: str = "/proc", timeout: float = _EXEC_WAIT) -> None:
    """Wait (bounded) until ``pid`` is no longer runc's init (``runc:[2:INIT]``).

    ``Tasks.Start`` answers once runc has let its init go, a moment before
    that execs the container's command. A signal sent in between reaches
    runc's init, which loses it (as a pid namespace's init it cannot even
    die of it), so a graceful stop would wait out its whole timeout; and the
    handlers read from ``status`` would be runc's, not the command's.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"{proc}/{pid}/comm", encoding="ascii", errors="replace") as f:
                if not f.read().startswith("runc:["):
                    return
        except OSError:
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)  # the exec is a moment away; nothing to wait on but its result


def _signal_discarded(pid: int, signum: int, proc: str = "/proc") -> bool:
    """Whether the kernel drops ``signum`` sent to ``pid``: an init without a handler for it.

    A pid namespace's init (``NSpid`` ending in 1) gets from outside only the
    signals it catches (and SIGKILL/SIGSTOP); a server run as a container's
    PID 1 that never installed a SIGTERM handler (busybox httpd) would make a
    graceful stop wait out its whole timeout. False whenever unsure.
    """
    if pid <= 0:
        return False
    try:
        with open(f"{proc}/{pid}/status", encoding="ascii", errors="replace") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        is_init = fields["NSpid"].split()[-1] == "1"
        caught = int(fields["SigCgt"].strip(), 16)
    except (OSError, KeyError, ValueError, IndexError):
        return False
    return is_init and not caught & (1 << (signum - 1))


class Task(_ProcessBase):
    """A container's running (or created) init process.

    Get one from :meth:`Container.new_task` (created, not started),
    :meth:`Container.task` (load, no stdio) or :meth:`Container.attach_task`
    (load and re-open its FIFOs after a restart).
    """

    _kind = "task"

    def __init__(
        self,
        container: Container,
        pid: int,
        io: cio.ProcessIO | None,
        *,
        started: bool = False,
    ) -> None:
        super().__init__(container._client, container.id, "", pid, io)
        self._container = container
        self._log: cio.LogFile | None = getattr(io, "log", None)
        self._started = started
        self._execs: dict[str, Process] = {}
        self._oom = False
        # Created from a checkpoint: runc restores at start, so start maps criu failures.
        self._restoring = False
        # A CRIU image unpacked for this task's restore: removed once start answered.
        self._restore_plan: RestorePlan | None = None

    def _discard_restore_image(self) -> None:
        plan, self._restore_plan = self._restore_plan, None
        if plan is not None:
            plan.discard()

    def _mark_deleted(self, status: ExitStatus) -> ExitStatus:
        # A task deleted without a start no longer needs its unpacked CRIU image either.
        self._discard_restore_image()
        return super()._mark_deleted(status)

    @property
    def id(self) -> str:
        """The task id: the container id."""
        return self._container_id

    @property
    def container(self) -> Container:
        """The container this task runs in."""
        return self._container

    @property
    def oom_killed(self) -> bool:
        """Whether an OOM kill was seen for this run.

        Set by the event dispatcher's ``/tasks/oom`` event, and, without the
        dispatcher, found when the exit is recorded: an init process killed
        by SIGKILL has its cgroup's OOM kill counter checked (one
        Tasks.Metrics call, made only for such exits). The exit status
        (``wait()``, ``exit_status``, ``delete()``, ``on_exit``) carries the flag.
        """
        value = self._exit.value
        return self._oom or (value is not None and value.oom_killed)

    def __repr__(self) -> str:
        return f"<Task {self._container_id!r} pid={self._pid}>"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        return _html.card("Task", self._container_id, self._container._glance_rows(self))

    def _exit_check_needed(self, status: ExitStatus) -> bool:
        # An OOM kill is a SIGKILL: only then can the flag be unknown, and only
        # then is the cgroup asked (no RPC on the ordinary exit path).
        return status.exit_code == _SIGKILL_EXIT and not status.oom_killed and not self._oom

    def _exit_check(self, status: ExitStatus) -> bool:
        """Whether the task's cgroup counted an OOM kill (Tasks.Metrics, before delete)."""
        from containerd_client import metrics
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        req = tasks_pb2.MetricsRequest(filters=[f"id=={self._container_id}"])
        try:
            resp = self._client._caller.call(api.Tasks.Metrics, req, timeout=_EXIT_CHECK_TIMEOUT)
        except ContainerdError:
            logger.debug("OOM check of task %s failed", self._container_id, exc_info=True)
            return self._oom
        for m in resp.metrics:
            if m.id != self._container_id:
                continue
            try:
                sample = metrics.from_proto(m)
            except ContainerdError:
                return self._oom
            return self._oom or _oom_kills(sample.cgroup_version, sample.raw) > 0
        return self._oom

    def _complete(self, status: ExitStatus, checked: bool) -> ExitStatus:
        if (checked or self._oom) and not status.oom_killed:
            return attrs.evolve(status, oom_killed=True)
        return status

    # -- logs, readiness, stop ---------------------------------------------------------

    @property
    def has_logs(self) -> bool:
        """Whether the output is kept (``new_task(logs=True)``), so :meth:`logs` works."""
        return self._log is not None

    @overload
    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        tail: int | None = None,
        follow: Literal[False] = False,
    ) -> bytes: ...

    @overload
    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        tail: int | None = None,
        follow: Literal[True],
    ) -> Iterator[bytes]: ...

    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        tail: int | None = None,
        follow: bool = False,
    ) -> bytes | Iterator[bytes]:
        """The output kept so far, or an iterator over it that ends when the task exits.

        Needs ``new_task(logs=True)``. Output is kept line by line (a line
        longer than 16 KiB in pieces), the two streams interleaved in the
        order their lines arrived; a line still open (no newline yet) shows
        once it completes or the stream ends. The log is bounded
        (``cio.LOG_MAX_BYTES``, oldest lines dropped) and stays readable after
        the task exited, until the container is deleted.

        Args:
            stdout: Include stdout.
            stderr: Include stderr.
            tail: Only the last ``tail`` lines (None: all kept).
            follow: Return an iterator of lines (bytes, line ending included):
                the kept ones (the last ``tail``), then new ones as they
                arrive. It ends once the task exited and its output was read
                (at most ``IO_DRAIN_TIMEOUT`` after the exit, even if a
                grandchild holds the streams open).

        Returns:
            The bytes (lines concatenated), or with ``follow`` the iterator.

        Raises:
            FailedPreconditionError: The task was created without ``logs=True``.
            InvalidArgumentError: Neither stream chosen, or a bad ``tail``.
        """
        streams = _log_streams(stdout, stderr, tail)
        log = self._log
        if log is None:
            raise FailedPreconditionError(
                f"task {self._container_id} keeps no logs: create it with new_task(logs=True)",
                StatusCode.FAILED_PRECONDITION,
            )
        if not follow:
            return b"".join(log.read(streams, tail))
        return log.follow(streams, tail, self._follow_stop())

    def _follow_stop(self) -> Callable[[], bool]:
        """True once the exit is known and the output had IO_DRAIN_TIMEOUT to arrive."""
        seen: list[float] = []

        def stop() -> bool:
            if not self._exit.done and self._deleted is None:
                return False
            now = time.monotonic()
            if not seen:
                seen.append(now)
            return now - seen[0] >= IO_DRAIN_TIMEOUT

        return stop

    def _last_log_lines(self, n: int = 20) -> tuple[str, ...]:
        """The last ``n`` kept lines, decoded, for error messages ((): no log)."""
        from containerd_client.cio import _logs

        if self._log is None:
            return ()
        try:
            records = self._log.read(frozenset({_logs.STDOUT, _logs.STDERR}), n)
        except OSError:
            return ()
        return tuple(r.decode("utf-8", "replace").rstrip("\r\n") for r in records)

    @property
    def stop_signal(self) -> int:
        """The signal :meth:`stop` sends: the image's ``StopSignal``, else SIGTERM.

        Read from the container's :data:`STOP_SIGNAL_LABEL` label, else the
        spec's ``org.opencontainers.image.stopSignal`` annotation (both set at
        create from the image config). A value this host does not know is
        logged and SIGTERM used.
        """
        info = self._container._info
        value = info.labels.get(STOP_SIGNAL_LABEL) or (info.spec.get("annotations") or {}).get(
            STOP_SIGNAL_ANNOTATION
        )
        if value:
            try:
                return signal_number(value)
            except ContainerdError:
                logger.warning(
                    "container %s: unknown stop signal %r; using SIGTERM", self._container_id, value
                )
        return int(_signal.SIGTERM)

    def stop(
        self, timeout: float = STOP_TIMEOUT, *, signal: int | str | _signal.Signals | None = None
    ) -> ExitStatus:
        """Stop the task gracefully: the stop signal, then SIGKILL after ``timeout``.

        Sends :attr:`stop_signal` (or ``signal``) to the init process, waits
        up to ``timeout`` seconds for the exit, then sends SIGKILL to every
        process of the task and waits for the exit. The task is not deleted.
        A task that already exited returns its status at once.

        Args:
            timeout: Seconds between the stop signal and SIGKILL (0 kills at once).
            signal: Send this instead of the image's stop signal.

        Returns:
            How the task ended (``exit_code`` 137 if it had to be killed).

        Raises:
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite (nothing is sent).
            UnknownSignalError: ``signal`` is not a signal here (nothing is sent).
            DeadlineExceededError: It did not die even after SIGKILL (within CLEANUP_TIMEOUT).
            RPCError: A kill failed for another reason than the task being gone.
        """
        grace = validate_timeout(timeout, what="stop timeout", allow_none=False)
        assert grace is not None
        sig = parse_signal(signal) if signal is not None else self.stop_signal
        done = self.exit_status
        if done is not None:
            return done
        if grace > 0 and self.pid > 0:
            _await_exec(self.pid)
        if grace > 0 and _signal_discarded(self.pid, sig):
            # The init of a pid namespace gets only the signals it has a handler
            # for: this one would be dropped, and waiting could only end in SIGKILL.
            logger.debug("task %s: pid 1 has no handler for signal %d; killing it", self._container_id, sig)
            grace = 0
        if grace > 0:
            with contextlib.suppress(NotFoundError):
                self.kill(sig)
            try:
                return self.wait(grace)
            except DeadlineExceededError:
                logger.debug("task %s ignored signal %d for %g s; killing it", self._container_id, sig, grace)
        with contextlib.suppress(NotFoundError):
            self.kill(_signal.SIGKILL, all=True)
        return self.wait(CLEANUP_TIMEOUT)

    def wait_for(self, *strategies: WaitStrategy, timeout: float = 60.0) -> None:
        """Block until every strategy is met (``wait.log(...)``, ``wait.port(...)``, ...).

        Example::

            task.wait_for(wait.log(r"ready"), wait.port(8080), timeout=10)

        Raises:
            WaitTimeoutError: Not met within ``timeout``, or the task exited
                first; carries the last log lines and the exit code.
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite.
            FailedPreconditionError: A log strategy on a task without ``logs=True``.
            InvalidArgumentError: No strategy given.
        """
        from containerd_client import wait as _wait

        if not strategies:
            raise InvalidArgumentError("wait_for() needs at least one strategy")
        strategy = strategies[0] if len(strategies) == 1 else _wait.all_of(*strategies)
        strategy.wait(self, timeout)

    def start(self) -> None:
        """Start the task's process (runc start).

        Raises:
            FailedPreconditionError: The task was already started.
            RPCError: The daemon failed to start it.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        with self._lock:
            if self._started:
                raise FailedPreconditionError(f"task {self._container_id} was already started")
            self._started = True
        self._oom = False
        try:
            resp = self._client.call(api.Tasks.Start, tasks_pb2.StartRequest(container_id=self._container_id))
        except RPCError as exc:
            if not self._restoring:
                raise
            from containerd_client.checkpoint import map_restore_error

            err = map_restore_error(exc, self._container_id)
            if err is exc:
                raise
            raise err from exc
        finally:
            self._discard_restore_image()
        self._pid = resp.pid or self._pid
        self._container._task_started()

    def checkpoint(
        self, path: str | os.PathLike[str] | None = None, *, exit: bool = False, rw: bool = False
    ) -> Checkpoint:
        """Checkpoint the task with CRIU (paused around the dump unless paused already).

        Args:
            path: A folder to write the checkpoint to (made; an existing one
                must be empty): CRIU's image files and ``containerd-client.json``
                (spec and runtime), restorable from any process. None keeps it
                as blobs in the daemon's content store under a lease of the
                checkpoint's own (:meth:`Checkpoint.delete` drops it).
            exit: Let the task exit once dumped (it is killed by runc).
            rw: Also keep the container's rw layer (a snapshot diff; needs
                ``path=None`` and a container with a snapshot).

        Returns:
            The checkpoint, for :meth:`Container.new_task` ``(checkpoint=...)``
            or :meth:`Client.restore`.

        Raises:
            CriuUnavailableError: The daemon's criu is missing, too old for
                the kernel, or failed (checked before the dump where the
                daemon runs on this host); nothing is left behind.
            CheckpointError: The daemon reported success but wrote no CRIU
                image (never reported as a success).
            InvalidArgumentError: ``path`` is not an empty folder, or ``rw``
                without a snapshot or with ``path``.
            RPCError: The daemon failed; the task is resumed, the folder or
                lease made here removed.
        """
        from containerd_client.checkpoint import checkpoint_task

        return checkpoint_task(self, path, exit=exit, rw=rw)

    def pause(self) -> None:
        """Freeze every process of the task.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        self._client.call(api.Tasks.Pause, tasks_pb2.PauseTaskRequest(container_id=self._container_id))

    def resume(self) -> None:
        """Thaw a paused task.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        self._client.call(api.Tasks.Resume, tasks_pb2.ResumeTaskRequest(container_id=self._container_id))

    def pids(self) -> list[ProcessInfo]:
        """The processes in the task, with runc's per-process details when given.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        resp = self._client.call(
            api.Tasks.ListPids, tasks_pb2.ListPidsRequest(container_id=self._container_id), idempotent=True
        )
        out = []
        for p in resp.processes:
            info = None
            if p.HasField("info") and p.info.type_url:
                try:
                    info = _typeurl.unpack(p.info)
                except ContainerdError:
                    info = None
            out.append(ProcessInfo(p.pid, info))
        return out

    def stats(self) -> Metrics:
        """The task's cgroup metrics as typed values (cgroup v1 or v2).

        Raises:
            NotFoundError: No metrics for this task.
            RPCError: The call failed.
        """
        from containerd_client import metrics
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        req = tasks_pb2.MetricsRequest(filters=[f"id=={self._container_id}"])
        resp = self._client.call(api.Tasks.Metrics, req, idempotent=True)
        for m in resp.metrics:
            if m.id == self._container_id:
                return metrics.from_proto(m)
        raise NotFoundError(f"no metrics for task {self._container_id}", StatusCode.NOT_FOUND)

    def update(self, resources: Mapping[str, Any]) -> None:
        """Change the task's resource limits (OCI ``LinuxResources`` as a dict).

        Example: ``task.update({"memory": {"limit": 128 << 20}})``.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        req = tasks_pb2.UpdateTaskRequest(
            container_id=self._container_id,
            resources=_typeurl.pack_json(_typeurl.OCI_RESOURCES, dict(resources)),
        )
        self._client.call(api.Tasks.Update, req)

    # -- exec ------------------------------------------------------------------------

    def exec(
        self,
        exec_id: str,
        args: Command | Mapping[str, Any],
        *,
        io: cio.IOCreator | None = None,
        stdin: cio.StdinSource | None = None,
        stdout: cio.OutputSink = None,
        stderr: cio.OutputSink = None,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: tuple[int, int] | None = None,
    ) -> Process:
        """Create an exec process in this task (start it with :meth:`Process.start`).

        Args:
            exec_id: A unique id for the exec (containerd identifier rules).
            args: The command line (a list, or a string split as a shell
                would: ``"sh -c 'echo hi'"``), or a full OCI process spec (a dict).
            io: How stdio is wired (see :mod:`containerd_client.cio`); by
                default built from ``stdin``/``stdout``/``stderr``.
            stdin: Bytes, text, a binary file or an iterable, or ``cio.PIPE``.
            stdout: A binary file, a callable, ``cio.Capture()`` or ``cio.Lines()``.
            stderr: Same as stdout; ignored with ``tty=True``.
            tty: Give the process a terminal.
            env: Extra environment variables.
            cwd: Working directory (default: the container's).
            user: ``(uid, gid)`` to run as (default: the container's).

        Raises:
            InvalidIdError: ``exec_id`` is not a valid identifier.
            InvalidSpecError: ``args``, ``env``, ``cwd`` or ``user`` would be refused by runc.
            ConflictError: ``exec_id`` is in use in this task.
            NotFoundError: The task is gone.
            RPCError: The daemon refused the exec.
        """
        from containerd_client import spec as _spec
        from containerd_client._ids import validate_id
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
        from containerd_client.errors import AlreadyExistsError, ConflictError

        validate_id(exec_id, what="exec id")
        if not isinstance(args, Mapping):
            _spec.check_exec_options(args, env, cwd, user)
        if self._exit.done or self._deleted is not None:
            # containerd would answer UNKNOWN ("cannot exec in a stopped state").
            raise FailedPreconditionError(
                f"cannot exec in task {self._container_id}: it has exited", StatusCode.FAILED_PRECONDITION
            )
        if isinstance(args, Mapping):
            process = dict(args)
        else:
            process = dict(self._container.spec().get("process", {}))
            process["args"] = _spec.command_args(args)
            process["terminal"] = tty
            if env:
                merged = [e for e in process.get("env", []) if e.split("=", 1)[0] not in env]
                process["env"] = merged + [f"{k}={v}" for k, v in env.items()]
            if cwd is not None:
                process["cwd"] = cwd
            if user is not None:
                process["user"] = {"uid": user[0], "gid": user[1]}
        terminal = bool(process.get("terminal", False))
        creator = io or _default_io(stdin, stdout, stderr, terminal)
        bundle = self._container._ensure_bundle()
        proc_io = creator(bundle, exec_id)
        cfg = proc_io.config
        req = tasks_pb2.ExecProcessRequest(
            container_id=self._container_id,
            exec_id=exec_id,
            stdin=cfg.stdin,
            stdout=cfg.stdout,
            stderr=cfg.stderr,
            terminal=cfg.terminal,
            spec=_typeurl.pack_json(_typeurl.OCI_PROCESS, process),
        )
        try:
            self._client.call(api.Tasks.Exec, req)
        except AlreadyExistsError as exc:
            proc_io.cancel()
            proc_io.close()
            raise ConflictError(f"exec id {exec_id!r} already in use: {exc.message}", exc.code) from exc
        except BaseException:
            proc_io.cancel()
            proc_io.close()
            raise
        proc = Process(self, exec_id, proc_io)
        proc_io.start()
        proc._arm_wait()
        self._execs[exec_id] = proc
        return proc

    def run(
        self,
        args: Command,
        *,
        stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        exec_id: str | None = None,
    ) -> ExecResult:
        """Exec a command, wait for it, and return its exit code and output.

        The exec is always deleted, also on timeout or error. ``args`` is a
        list, or a string split as a shell would (``"echo hi"``).

        Raises:
            InvalidSpecError: ``args`` is empty, or its quotes do not close.
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite (nothing is started).
            DeadlineExceededError: It ran longer than ``timeout`` (it is killed).
            RPCError: The exec could not be created or started.
        """
        import uuid

        from containerd_client import cio as _cio

        timeout = validate_timeout(timeout, what="run timeout")
        out, err = _cio.Capture(), _cio.Capture()
        eid = exec_id or f"run-{uuid.uuid4().hex[:12]}"
        with self.exec(eid, args, stdin=stdin, stdout=out, stderr=err, env=env, cwd=cwd) as proc:
            proc.start()
            status = proc.wait(timeout)
        return ExecResult(status.exit_code, out.getvalue(), err.getvalue())

    def _forget_exec(self, exec_id: str) -> None:
        self._execs.pop(exec_id, None)

    def load_process(self, exec_id: str) -> Process:
        """Attach to an existing exec process by id (without stdio).

        Raises:
            NotFoundError: No such exec.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        req = tasks_pb2.GetRequest(container_id=self._container_id, exec_id=exec_id)
        resp = self._client.call(api.Tasks.Get, req, idempotent=True)
        proc = Process(self, exec_id, None)
        proc._pid = resp.process.pid
        proc._started = resp.process.pid != 0
        proc._starting_done = True
        proc._arm_wait()
        return proc

    # -- deletion --------------------------------------------------------------------

    def _kill_for_cleanup(self) -> None:
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if self._exit.done and self._own_pid_namespace():
            return  # init is gone, and with it every process of its pid namespace
        req = tasks_pb2.KillRequest(container_id=self._container_id, signal=int(_signal.SIGKILL), all=True)
        self._client._caller.call(api.Tasks.Kill, req, timeout=CLEANUP_TIMEOUT)

    def _own_pid_namespace(self) -> bool:
        namespaces = self._container._info.spec.get("linux", {}).get("namespaces", []) or []
        return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)

    def force_delete(self, *, timeout: float = CLEANUP_TIMEOUT) -> ExitStatus:
        """Kill every process of the task (also a created, never started one) and delete it.

        This is the cleanup containerd needs for a created task, which cannot
        be deleted without a kill (moby#44399).

        Raises:
            DeadlineExceededError: The task did not die within ``timeout``.
            RPCError: The delete failed for another reason.
        """
        for proc in list(self._execs.values()):
            proc._abort_io()
            self._execs.pop(proc.id, None)
        return super().force_delete(timeout=timeout)

    def _delete_rpc(self, *, timeout: float | None, missing_ok: bool) -> ExitStatus:
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if self._io is not None:
            self._io.wait(IO_DRAIN_TIMEOUT if self._started else 0.0)
        call_timeout = timeout if timeout is not None else -1.0
        req = tasks_pb2.DeleteTaskRequest(container_id=self._container_id)
        try:
            resp = self._client._caller.call(api.Tasks.Delete, req, timeout=call_timeout)
        except NotFoundError:
            if not missing_ok:
                raise
            status = self._exit.value or ExitStatus(UNKNOWN_EXIT_CODE)
        except ClosedError:
            raise
        else:
            status = ExitStatus(resp.exit_status, from_timestamp(resp.exited_at), self._oom)
        self._stdin.abandon()
        if self._io is not None:
            self._io.close()
        self._container._forget_task(self)
        return self._mark_deleted(status)
