"""Wait strategies: block until a service in a task is ready (testcontainers' set).

Each strategy is a reusable value, built once and used for any number of
tasks (say, at module level next to a pytest fixture)::

    from containerd_client import wait

    READY = wait.all_of(wait.log(r"listening on"), wait.http(8080, status=200))

    @pytest.fixture
    def service(containerd):
        ...
        task.start()
        task.wait_for(READY, timeout=10)     # or READY.wait(task, timeout=10)

The strategies: :func:`log` (a line of the kept log matches a pattern; needs
``new_task(logs=True)``), :func:`port` (a TCP address accepts connections),
:func:`http` (an HTTP request gets an expected status), :func:`command` (a
command exec'd in the task exits 0) and :func:`file` (a path exists in the
container); :func:`all_of` and :func:`any_of` compose them, as do ``a & b``
and ``a | b``.

A wait polls its strategies (every 5 ms at first, backing off to 50 ms;
a task's new output or exit ends a pause at once) and fails with
:class:`~containerd_client.errors.WaitTimeoutError` at its timeout, or as
soon as the task exits (it can never become ready then); the error carries
the last lines of the kept log and the exit code. Networking is the
caller's: :func:`port` and :func:`http` dial the address they are given
(127.0.0.1 by default), so the service must be reachable from here (a
published port, or the host's network namespace).
"""

from __future__ import annotations

import abc
import http.client as _httpclient
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from containerd_client._ids import validate_timeout
from containerd_client.errors import (
    ContainerdError,
    FailedPreconditionError,
    InvalidArgumentError,
    StatusCode,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from containerd_client.spec import Command
    from containerd_client.tasks import Task

__all__ = [
    "DEFAULT_TIMEOUT",
    "WaitStrategy",
    "all_of",
    "any_of",
    "command",
    "file",
    "http",
    "log",
    "port",
]

#: Default timeout of :meth:`WaitStrategy.wait`, in seconds.
DEFAULT_TIMEOUT = 60.0
#: How many log lines a WaitTimeoutError carries.
ERROR_LOG_LINES = 20
_FIRST_POLL = 0.005
_MAX_POLL = 0.05
#: Bound of one connection attempt or request (the wait's own timeout bounds it too).
_ATTEMPT_TIMEOUT = 2.0
_LOCALHOST = "127.0.0.1"

#: One wait's probe: called with the seconds left, True once the condition holds.
Probe = Callable[[float], bool]


class WaitStrategy(abc.ABC):
    """A readiness condition; see the module's documentation."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What is waited for, for error messages."""

    @abc.abstractmethod
    def _begin(self, task: Task) -> Probe:
        """Check what can be checked before waiting and return a fresh probe for ``task``."""

    def __repr__(self) -> str:
        return f"<wait {self.describe()}>"

    def __and__(self, other: WaitStrategy) -> WaitStrategy:
        return all_of(self, other)

    def __or__(self, other: WaitStrategy) -> WaitStrategy:
        return any_of(self, other)

    def published(self, host_port: Callable[[int], int]) -> WaitStrategy:
        """The same strategy with container ports swapped for their published host ports.

        :func:`port` and :func:`http` strategies given a port number (not a
        URL) and dialling 127.0.0.1 dial ``host_port(port)`` instead;
        compositions are mapped part by part; the others are returned as
        they are. The service helper of the pytest plugin uses it, so that
        ``wait.http(80)`` means the container's port 80.

        Args:
            host_port: Maps a container port to the host port it is published on
                (``container.host_port``).
        """
        return self

    def wait(self, task: Task, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Block until the condition holds for ``task``.

        Raises:
            WaitTimeoutError: Not met within ``timeout``, or the task exited first.
            InvalidTimeoutError: ``timeout`` is negative, NaN, infinite or None.
            FailedPreconditionError: A log strategy on a task without ``logs=True``.
        """
        limit = validate_timeout(timeout, what="wait timeout", allow_none=False)
        assert limit is not None
        probe = self._begin(task)
        deadline = time.monotonic() + limit
        pause = _FIRST_POLL
        log = task._log
        while True:
            exited = task.exit_status
            seen = log.end if log is not None else 0
            remaining = deadline - time.monotonic()
            if probe(max(remaining, 0.0)):
                return
            if exited is not None:
                raise self._error(
                    task, f"task {task.id} exited with code {exited.exit_code} before {self.describe()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(task, f"{self.describe()} not met within {limit:g} s")
            if log is not None and not log.done:
                # New output (or the streams' end, as at an exit) ends the pause at once.
                log.wait_change(seen, min(pause, remaining))
            else:
                # Sleeps on the task's exit record: an exit ends the pause at once.
                task._exit.wait_done(min(pause, remaining))
            pause = min(pause * 2, _MAX_POLL)

    def _error(self, task: Task, message: str) -> WaitTimeoutError:
        lines = task._last_log_lines(ERROR_LOG_LINES)
        status = task.exit_status
        if lines:
            message += "; last log lines:\n" + "\n".join(f"  {line}" for line in lines)
        elif not task.has_logs:
            message += " (no log kept: create the task with logs=True to see its output here)"
        return WaitTimeoutError(message, logs=lines, exit_code=None if status is None else status.exit_code)


class _Log(WaitStrategy):
    def __init__(self, pattern: re.Pattern[str], times: int, streams: frozenset[int]) -> None:
        self._pattern = pattern
        self._times = times
        self._streams = streams

    def describe(self) -> str:
        times = f" {self._times} times" if self._times != 1 else ""
        return f"a log line matching {self._pattern.pattern!r}{times}"

    def _begin(self, task: Task) -> Probe:
        log = task._log
        if log is None:
            raise FailedPreconditionError(
                f"wait.log() needs the task's output kept: create task {task.id} with new_task(logs=True)",
                StatusCode.FAILED_PRECONDITION,
            )
        state = {"pos": 0, "seen": 0}

        def probe(remaining: float) -> bool:
            records, state["pos"] = log.read_since(state["pos"], self._streams)
            for record in records:
                if self._pattern.search(record.decode("utf-8", "replace")):
                    state["seen"] += 1
            return state["seen"] >= self._times

        return probe


def log(pattern: str | re.Pattern[str], *, times: int = 1, stream: str = "both") -> WaitStrategy:
    """Wait for a line of the task's kept log that matches ``pattern`` (``re.search``).

    Lines are decoded as UTF-8 (bad bytes replaced) and matched one at a
    time, line ending included; lines logged before the wait began count.
    Needs ``new_task(logs=True)``.

    Args:
        pattern: A regular expression (text, or compiled).
        times: How many matching lines to wait for.
        stream: "stdout", "stderr" or "both".

    Raises:
        InvalidArgumentError: A pattern that does not compile, ``times`` < 1, an unknown stream.
    """
    from containerd_client.cio import _logs

    try:
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise InvalidArgumentError(f"wait.log(): bad pattern {pattern!r}: {exc}") from exc
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise InvalidArgumentError(f"wait.log(): times must be a count >= 1, not {times!r}")
    choices = {
        "stdout": frozenset({_logs.STDOUT}),
        "stderr": frozenset({_logs.STDERR}),
        "both": frozenset({_logs.STDOUT, _logs.STDERR}),
    }
    if stream not in choices:
        raise InvalidArgumentError(f"wait.log(): stream must be stdout, stderr or both, not {stream!r}")
    return _Log(compiled, times, choices[stream])


def _check_port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgumentError(f"{what}: port must be 1..65535, not {value!r}")
    return value


class _Port(WaitStrategy):
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port

    def describe(self) -> str:
        return f"TCP {self._host}:{self._port} accepting connections"

    def published(self, host_port: Callable[[int], int]) -> WaitStrategy:
        if self._host != _LOCALHOST:
            return self
        return _Port(self._host, host_port(self._port))

    def _begin(self, task: Task) -> Probe:
        def probe(remaining: float) -> bool:
            try:
                conn = socket.create_connection(
                    (self._host, self._port), timeout=max(0.05, min(_ATTEMPT_TIMEOUT, remaining))
                )
            except OSError:
                return False
            conn.close()
            return True

        return probe


def port(port: int, *, host: str = "127.0.0.1") -> WaitStrategy:
    """Wait until ``host:port`` accepts a TCP connection (dialled from this process).

    Raises:
        InvalidArgumentError: A port outside 1..65535 or an empty host.
    """
    _check_port(port, "wait.port()")
    if not host or not isinstance(host, str):
        raise InvalidArgumentError(f"wait.port(): bad host {host!r}")
    return _Port(host, port)


class _Http(WaitStrategy):
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        *,
        method: str,
        status: Callable[[int], bool],
        shown: str,
        by_port: bool = False,
    ) -> None:
        self._host, self._port, self._path, self._method = host, port, path, method
        self._status = status
        self._shown = shown
        self._by_port = by_port

    def published(self, host_port: Callable[[int], int]) -> WaitStrategy:
        if not self._by_port or self._host != _LOCALHOST:
            return self
        return _Http(
            self._host,
            host_port(self._port),
            self._path,
            method=self._method,
            status=self._status,
            shown=self._shown,
            by_port=False,
        )

    def describe(self) -> str:
        return f"HTTP {self._method} http://{self._host}:{self._port}{self._path} answering {self._shown}"

    def _begin(self, task: Task) -> Probe:
        def probe(remaining: float) -> bool:
            conn = _httpclient.HTTPConnection(
                self._host, self._port, timeout=max(0.05, min(_ATTEMPT_TIMEOUT, remaining))
            )
            try:
                conn.request(self._method, self._path)
                resp = conn.getresponse()
                resp.read()
                return self._status(resp.status)
            except (OSError, _httpclient.HTTPException):
                return False
            finally:
                conn.close()

        return probe


def http(
    target: int | str,
    *,
    path: str = "/",
    status: int | Collection[int] | Callable[[int], bool] = 200,
    host: str = "127.0.0.1",
    method: str = "GET",
) -> WaitStrategy:
    """Wait until an HTTP request gets an expected status.

    Args:
        target: A port on ``host``, or a URL ``http://host:port/path``.
        path: The path (when ``target`` is a port).
        status: The status wanted: one code, a collection of codes, or a predicate.
        host: The host dialled (when ``target`` is a port).
        method: The request method.

    Raises:
        InvalidArgumentError: A bad port or URL (only ``http://`` is spoken), a path without ``/``.
    """
    if isinstance(target, str):
        url = urllib.parse.urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise InvalidArgumentError(f"wait.http(): need an http://host:port/ URL, not {target!r}")
        try:
            port_number = url.port or 80
        except ValueError as exc:
            raise InvalidArgumentError(f"wait.http(): bad port in {target!r}") from exc
        host = url.hostname
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    else:
        port_number = _check_port(target, "wait.http()")
    if not path.startswith("/"):
        raise InvalidArgumentError(f"wait.http(): path must start with '/', not {path!r}")
    if callable(status):
        check, shown = status, "an accepted status"
    elif isinstance(status, int) and not isinstance(status, bool):
        code = status
        check, shown = (lambda s: s == code), str(code)
    elif isinstance(status, Collection) and status and all(isinstance(s, int) for s in status):
        codes = frozenset(status)
        check, shown = (lambda s: s in codes), "/".join(str(s) for s in sorted(codes))
    else:
        raise InvalidArgumentError(
            f"wait.http(): status must be a code, codes or a predicate, not {status!r}"
        )
    return _Http(
        host,
        port_number,
        path,
        method=method.upper(),
        status=check,
        shown=shown,
        by_port=not isinstance(target, str),
    )


class _Command(WaitStrategy):
    def __init__(self, args: Sequence[str], shown: str) -> None:
        self._args = list(args)
        self._shown = shown

    def describe(self) -> str:
        return self._shown

    def _begin(self, task: Task) -> Probe:
        def probe(remaining: float) -> bool:
            if task.exit_status is not None:
                return False
            try:
                result = task.run(self._args, timeout=max(0.1, remaining))
            except ContainerdError:
                return False  # the exec failed, timed out, or the task is going away
            return result.ok

        return probe


def command(args: Command) -> WaitStrategy:
    """Wait until ``args``, exec'd in the task, exits 0 (one exec at a time).

    Raises:
        InvalidSpecError: ``args`` is empty or its quotes do not close.
    """
    from containerd_client import spec as _spec

    argv = _spec.command_args(args)
    return _Command(argv, f"command {argv!r} succeeding")


def file(path: str) -> WaitStrategy:
    """Wait until ``path`` exists in the container (``test -e``; the image needs ``test``).

    Raises:
        InvalidArgumentError: ``path`` is not absolute.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError(f"wait.file(): path must be absolute, not {path!r}")
    return _Command(["test", "-e", path], f"file {path} existing")


class _AllOf(WaitStrategy):
    def __init__(self, parts: Sequence[WaitStrategy]) -> None:
        self._parts = list(parts)

    def describe(self) -> str:
        return "all of (" + "; ".join(p.describe() for p in self._parts) + ")"

    def published(self, host_port: Callable[[int], int]) -> WaitStrategy:
        return type(self)([p.published(host_port) for p in self._parts])

    def _begin(self, task: Task) -> Probe:
        probes = [p._begin(task) for p in self._parts]
        met = [False] * len(probes)

        def probe(remaining: float) -> bool:
            # In order; one met stays met (a port that answered once need not again).
            for i, p in enumerate(probes):
                if not met[i]:
                    if not p(remaining):
                        return False
                    met[i] = True
            return True

        return probe


class _AnyOf(_AllOf):
    def describe(self) -> str:
        return "any of (" + "; ".join(p.describe() for p in self._parts) + ")"

    def _begin(self, task: Task) -> Probe:
        probes = [p._begin(task) for p in self._parts]

        def probe(remaining: float) -> bool:
            return any(p(remaining) for p in probes)

        return probe


def _parts(name: str, strategies: tuple[WaitStrategy, ...]) -> list[WaitStrategy]:
    if not strategies:
        raise InvalidArgumentError(f"wait.{name}() needs at least one strategy")
    for s in strategies:
        if not isinstance(s, WaitStrategy):
            raise InvalidArgumentError(f"wait.{name}(): not a wait strategy: {s!r}")
    return list(strategies)


def all_of(*strategies: WaitStrategy) -> WaitStrategy:
    """Wait until every strategy was met (each is checked until met, in order).

    Raises:
        InvalidArgumentError: No strategy, or something that is not one.
    """
    return _AllOf(_parts("all_of", strategies))


def any_of(*strategies: WaitStrategy) -> WaitStrategy:
    """Wait until one of the strategies is met.

    Raises:
        InvalidArgumentError: No strategy, or something that is not one.
    """
    return _AnyOf(_parts("any_of", strategies))
