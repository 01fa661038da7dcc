"""The FIFO creators: :func:`stdio` makes FIFOs for a new process, :func:`attach` re-opens them."""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs

from containerd_client.cio import _fifo
from containerd_client.cio._engine import FifoIO, _close_fd, _InStream, _OutStream, _remove
from containerd_client.cio._logs import FdFeed, LogFile, TeeFeed
from containerd_client.cio._protocol import IOConfig, IOSetupError
from containerd_client.cio._sinks import Lines, OutputSink, _check_sink, _Feed, _plan_sink, _SinkPlan
from containerd_client.cio._sources import (
    StdinSource,
    _check_source,
    _classify_source,
    _SourceKind,
    _StdinQueue,
)
from containerd_client.errors import InvalidIdError

# One logger for the whole of cio, as before the split.
logger = logging.getLogger("containerd_client.cio")


class _Builder:
    """Collects what a FifoIO owns and undoes it all if building fails."""

    def __init__(self, process_id: str) -> None:
        self.process_id = process_id
        self.canceller = _fifo.Flag()
        self.fds: list[int] = []
        self.feeds: list[_Feed] = []
        self.flags: list[_fifo.Flag] = [self.canceller]
        self.owned_paths: list[str] = []
        self.owned_dirs: list[str] = []
        self.outputs: list[_OutStream] = []
        self.stdin: _InStream | None = None
        self.fed: set[int] = set()  # ids of the sinks that got a feed
        self.log: LogFile | None = None

    def open_log(self, path: str) -> None:
        from containerd_client import cio

        try:
            self.log = LogFile(path, cio.LOG_MAX_BYTES)
        except OSError as exc:
            raise IOSetupError(f"cannot create log file {path}: {exc}", path) from exc

    def ensure_dir(self, folder: str) -> None:
        missing: list[str] = []
        head = folder
        while head and not os.path.isdir(head):
            missing.append(head)
            parent = os.path.dirname(head)
            if parent == head:
                break
            head = parent
        if not missing:
            return
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise IOSetupError(f"cannot create FIFO folder {folder}: {exc}", folder) from exc
        self.owned_dirs.extend(reversed(missing))

    def fifo(self, path: str) -> None:
        try:
            created = _fifo.make_fifo(path)
        except OSError as exc:
            raise IOSetupError(f"cannot create FIFO {path}: {exc}", path) from exc
        # An existing FIFO is reused and, like a new one, removed at close
        # (containerd's Go client does the same).
        self.owned_paths.append(path)
        if not created:
            logger.debug("reusing existing FIFO %s", path)

    def output(self, name: str, path: str, sink: object) -> None:
        try:
            fd = _fifo.open_reader(path)
        except OSError as exc:
            raise IOSetupError(f"cannot open FIFO {path}: {exc}", path) from exc
        self.fds.append(fd)
        self.fed.add(id(sink))
        plan = _plan_sink(sink)
        if self.log is not None:
            # Keep a copy in the log: the caller's sink gets each chunk after it.
            other: _Feed | None = plan.feed
            if plan.fd >= 0:
                other = FdFeed(plan.fd)
            plan = _SinkPlan(feed=TeeFeed(self.log.feed(name), other), keep=plan.keep)
        if plan.feed is not None:
            self.feeds.append(plan.feed)
        self.outputs.append(_OutStream(name, path, fd, plan))

    def input(self, path: str, source: object) -> None:
        kind, payload = _classify_source(source)
        stop = _fifo.Flag()
        self.flags.append(stop)
        # The package's attribute, read now, so that setting it takes effect.
        from containerd_client import cio

        queue = _StdinQueue(cio.STDIN_QUEUE_LIMIT) if kind is _SourceKind.PIPE else None
        self.stdin = _InStream(path, kind, payload, source, stop, queue)

    def build(self, config: IOConfig) -> FifoIO:
        return FifoIO(
            config,
            self.process_id,
            stdin=self.stdin,
            outputs=self.outputs,
            canceller=self.canceller,
            owned_paths=self.owned_paths,
            owned_dirs=self.owned_dirs,
            log=self.log,
        )

    def undo(self) -> None:
        for fd in self.fds:
            _close_fd(fd)
        for feed in self.feeds:
            try:
                feed.close()
            except Exception:
                logger.debug("closing a sink during cleanup failed", exc_info=True)
        for flag in self.flags:
            flag.close()
        if self.log is not None:
            self.log.finish()
            _remove(self.log.path)
        for path in self.owned_paths:
            _remove(path)
        for folder in reversed(self.owned_dirs):
            try:
                os.rmdir(folder)
            except OSError:
                logger.debug("left folder %s", folder, exc_info=True)


def _end_unfed(builder: _Builder, sinks: list[object]) -> None:
    """End Lines sinks that no stream feeds (absent stream, failed setup): iteration stops."""
    for sink in sinks:
        if isinstance(sink, Lines) and id(sink) not in builder.fed:
            sink._open_feed().close()
            builder.fed.add(id(sink))


def _check_process_id(process_id: str) -> None:
    if not process_id or "/" in process_id or process_id in (".", ".."):
        raise InvalidIdError(f"invalid process id for FIFO names: {process_id!r}")


@attrs.define(eq=False)
class StdioCreator:
    """The :class:`IOCreator` made by :func:`stdio`; it returns a :class:`FifoIO`."""

    stdin: Any
    stdout: Any
    stderr: Any
    terminal: bool
    logs: bool = False

    def __call__(self, fifo_dir: str, process_id: str) -> FifoIO:
        _check_process_id(process_id)
        fifo_dir = os.fspath(fifo_dir)
        base = os.path.join(fifo_dir, process_id)
        builder = _Builder(process_id)
        try:
            builder.ensure_dir(fifo_dir)
            if self.logs:
                builder.open_log(base + "-log")
            stdin_path = ""
            if self.stdin is not None:
                stdin_path = base + "-stdin"
                builder.fifo(stdin_path)
                builder.input(stdin_path, self.stdin)
            stdout_path = base + "-stdout"
            builder.fifo(stdout_path)
            builder.output("stdout", stdout_path, self.stdout)
            stderr_path = ""
            if not self.terminal:
                stderr_path = base + "-stderr"
                builder.fifo(stderr_path)
                builder.output("stderr", stderr_path, self.stderr)
            config = IOConfig(stdin_path, stdout_path, stderr_path, self.terminal)
            return builder.build(config)
        except BaseException:
            builder.undo()
            raise
        finally:
            _end_unfed(builder, [self.stdout, self.stderr])


def stdio(
    stdin: StdinSource | None = None,
    stdout: OutputSink = None,
    stderr: OutputSink = None,
    *,
    terminal: bool = False,
    logs: bool = False,
) -> StdioCreator:
    """Stdio through FIFOs ``<fifo_dir>/<process_id>-stdin|-stdout|-stderr`` that we copy.

    The stdin FIFO exists only when ``stdin`` is given, the stderr FIFO only
    without ``terminal`` (a TTY merges stderr into stdout). stdout and stderr
    FIFOs always exist (the shim needs both); a stream whose sink is None is
    read and discarded so the process never blocks on it.

    Args:
        stdin: bytes, str (UTF-8), a readable file object (its descriptor is
            spliced when it has one), an iterable of bytes/str chunks, or
            :data:`PIPE` to write later with :meth:`FifoIO.stdin_write`. A file
            or iterator is consumed, so the creator then serves one process.
        stdout: A binary file (when it has a descriptor we write to that
            directly, splicing into pipes and sockets; the caller keeps it
            open and should not use it during the copy), a callable taking
            each chunk, :class:`Capture`, :class:`Lines` or None.
        stderr: Like ``stdout``; ignored with ``terminal`` (a Lines ends at once).
        terminal: Whether the process gets a TTY.
        logs: Also keep the output in a bounded log file
            ``<fifo_dir>/<process_id>-log`` (:class:`LogFile`, at most
            :data:`LOG_MAX_BYTES`), which outlives the FIFOs; the FifoIO's
            ``log`` attribute reads it.

    Raises:
        TypeError: A source or sink of an unsupported type.
    """
    if stdin is not None:
        _check_source(stdin)
    _check_sink(stdout, "stdout")
    _check_sink(stderr, "stderr")
    return StdioCreator(stdin, stdout, stderr, terminal, logs)


def _is_fifo_path(value: str) -> bool:
    # containerd takes a value without a URI scheme as a FIFO path.
    return bool(value) and "://" not in value


def attach(
    config: IOConfig,
    *,
    stdin: StdinSource | None = None,
    stdout: OutputSink = None,
    stderr: OutputSink = None,
    remove: bool = False,
) -> FifoIO:
    """Re-open the FIFOs of a running process (after a client restart).

    The shim still holds the other ends; what it buffered meanwhile is read.
    stdout/stderr FIFOs are always read (discarded when their sink is None);
    the stdin FIFO is opened only when ``stdin`` is given. A FIFO or folder
    that vanished is re-created and logged (docker/for-linux#1186): the
    process's output no longer reaches it, but nothing fails. ``file://`` and
    ``binary://`` streams are left to the shim.

    Args:
        config: The process's stdio as containerd reports it.
        stdin: As for :func:`stdio`.
        stdout: As for :func:`stdio`.
        stderr: As for :func:`stdio`.
        remove: Also remove the FIFOs we did not create when closing.

    Raises:
        IOSetupError: A FIFO could not be opened or re-created.
        TypeError: A source or sink of an unsupported type.
    """
    if stdin is not None:
        _check_source(stdin)
    _check_sink(stdout, "stdout")
    _check_sink(stderr, "stderr")
    label = os.path.basename(config.stdout or config.stderr or config.stdin).rsplit("-", 1)[0] or "attach"
    builder = _Builder(label)
    try:
        if stdin is not None and _is_fifo_path(config.stdin):
            _reopen(builder, config.stdin, remove)
            builder.input(config.stdin, stdin)
        for name, path, sink in (("stdout", config.stdout, stdout), ("stderr", config.stderr, stderr)):
            if not _is_fifo_path(path):
                continue
            if not _reopen(builder, path, remove):
                continue
            builder.output(name, path, sink)
        return builder.build(config)
    except BaseException:
        builder.undo()
        raise
    finally:
        _end_unfed(builder, [stdout, stderr])


def _reopen(builder: _Builder, path: str, remove: bool) -> bool:
    """Make sure ``path`` is a FIFO; False (logged) if something else is there."""
    if _fifo.is_fifo(path):
        if remove:
            builder.owned_paths.append(path)
        return True
    if os.path.lexists(path):
        logger.warning("%s is not a FIFO; not attaching to it", path)
        return False
    logger.warning("FIFO %s is missing; re-creating it (the process's output will not reach it)", path)
    builder.ensure_dir(os.path.dirname(path) or ".")
    builder.fifo(path)
    return True
