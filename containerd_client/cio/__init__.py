"""Process stdio for containerd tasks and execs: FIFOs, log files, log drivers.

containerd's shim does not talk stdio over gRPC. ``Tasks.Create`` and
``Tasks.Exec`` carry three strings (and a terminal flag), :class:`IOConfig`,
and the shim opens what they name:

* paths of FIFOs that this module creates and copies to and from
  (:func:`stdio`, :func:`attach`);
* ``file:///abs/path``: the shim appends stdout and stderr to a file
  (:func:`log_file`);
* ``binary:///abs/path?k=v``: the shim starts a logging binary
  (:func:`binary_io`);
* nothing at all (:func:`null_io`).

The objects layer asks an :class:`IOCreator` for a :class:`ProcessIO` before
the create/exec RPC, puts ``io.config`` into the request, calls
:meth:`ProcessIO.start` once the RPC succeeded (or :meth:`ProcessIO.close` if
it failed) and :meth:`ProcessIO.close` after the process was deleted::

    creator = cio.stdio(stdin=b"hello\\n", stdout=out, stderr=err)
    io = creator(bundle_dir, process_id)   # FIFOs exist, nothing blocks
    ... Tasks.Create(stdin=io.config.stdin, ...) ...
    io.start()                             # copy threads run
    io.on_stdin_eof(send_close_io)         # CloseIO once our write end closed
    ... wait for exit ...
    io.wait(2.0)                           # output fully copied
    io.close()                             # threads joined, FIFOs removed

Nothing in here makes an RPC and nothing blocks the caller on a FIFO peer:
opening a FIFO normally waits for the other side, and the shim may never
come (the create failed). Read ends are opened non-blocking and polled
together with a cancel eventfd; the stdin write end is opened from the copy
thread once the shim has its reader (see ``_fifo.open_writer``). Linux
only.
"""

from __future__ import annotations

import codecs
import enum
import io as _io
import logging
import os
import posixpath
import threading
import time
import urllib.parse
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Literal, Protocol, TypeAlias, runtime_checkable

import attrs

from containerd_client.cio import _fifo
from containerd_client.errors import ClosedError, ContainerdError, InvalidIdError

__all__ = [
    "PIPE",
    "Capture",
    "FifoIO",
    "IOConfig",
    "IOCreator",
    "IOSetupError",
    "Lines",
    "OutputSink",
    "ProcessIO",
    "StaticIO",
    "StdinSource",
    "StdioCreator",
    "attach",
    "binary_io",
    "log_file",
    "null_io",
    "stdio",
]

logger = logging.getLogger(__name__)

#: How many bytes :meth:`FifoIO.stdin_write` queues before it blocks.
STDIN_QUEUE_LIMIT = 4 << 20

#: Default bound for joining the copy threads in :meth:`FifoIO.close`.
CLOSE_TIMEOUT = 5.0


class IOSetupError(ContainerdError):
    """The FIFOs (or their folder) could not be created or opened.

    Attributes:
        path: The path that failed.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path))


class _Pipe(enum.Enum):
    PIPE = "PIPE"

    def __repr__(self) -> str:
        return "cio.PIPE"


#: Stdin source meaning "I will call ``io.stdin_write()`` and ``io.close_stdin()``".
PIPE: Literal[_Pipe.PIPE] = _Pipe.PIPE


@attrs.frozen
class IOConfig:
    """The stdio fields of containerd's Tasks.Create / Tasks.Exec requests.

    Attributes:
        stdin: Path of the stdin FIFO, or "" for none.
        stdout: Path of the stdout FIFO, a ``file://`` or ``binary://`` URI, or "".
        stderr: Same as ``stdout``; "" with a terminal (it merges into stdout).
        terminal: Whether the process gets a TTY.
    """

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


# -- sinks -----------------------------------------------------------------------------------------


class _Feed(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Capture:
    """A thread-safe in-memory sink: collects everything a stream wrote.

    One Capture may serve stdout and stderr together (chunks interleave as
    they arrive).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []

    def __repr__(self) -> str:
        with self._lock:
            size = sum(len(c) for c in self._chunks)
        return f"<Capture {size} bytes>"

    def getvalue(self) -> bytes:
        """Everything received so far."""
        with self._lock:
            if len(self._chunks) > 1:
                self._chunks = [b"".join(self._chunks)]
            return self._chunks[0] if self._chunks else b""

    def text(self, encoding: str = "utf-8", errors: str = "replace") -> str:
        """Everything received so far, decoded."""
        return self.getvalue().decode(encoding, errors)

    def _open_feed(self) -> _Feed:
        return _CaptureFeed(self)

    def _append(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)


class _CaptureFeed:
    def __init__(self, capture: Capture) -> None:
        self._capture = capture

    def write(self, data: bytes) -> None:
        self._capture._append(data)

    def close(self) -> None:
        pass


class Lines:
    """A sink that yields decoded lines as they arrive; iteration ends at EOF.

    Iterate from any thread while the process runs. Lines are split on
    ``"\\n"`` (a ``"\\r"`` before it is dropped too unless ``keepends``); a
    last line without a newline is yielded at EOF. Lines pile up in memory
    until consumed. Use one Lines per process (it may serve both of its
    output streams, then iteration ends when both reached EOF).

    Args:
        encoding: Text encoding of the stream.
        errors: Decoding error handler.
        keepends: Keep the line endings.
    """

    def __init__(self, *, encoding: str = "utf-8", errors: str = "replace", keepends: bool = False) -> None:
        self._encoding = encoding
        self._errors = errors
        self._keepends = keepends
        self._cond = threading.Condition()
        self._lines: deque[str] = deque()
        self._open_feeds = 0
        self._done = False

    def __repr__(self) -> str:
        return f"<Lines pending={len(self._lines)} done={self._done}>"

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        with self._cond:
            while not self._lines and not self._done:
                self._cond.wait()
            if self._lines:
                return self._lines.popleft()
        raise StopIteration

    def _open_feed(self) -> _Feed:
        with self._cond:
            self._open_feeds += 1
        return _LinesFeed(self, codecs.getincrementaldecoder(self._encoding)(self._errors))

    def _push(self, lines: list[str], last: bool) -> None:
        with self._cond:
            self._lines.extend(lines)
            if last:
                self._open_feeds -= 1
                self._done = self._open_feeds <= 0
            self._cond.notify_all()


class _LinesFeed:
    def __init__(self, owner: Lines, decoder: codecs.IncrementalDecoder) -> None:
        self._owner = owner
        self._decoder = decoder
        self._partial = ""
        self._closed = False

    def _split(self, text: str) -> list[str]:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        if self._owner._keepends:
            return [p + "\n" for p in parts]
        return [p[:-1] if p.endswith("\r") else p for p in parts]

    def write(self, data: bytes) -> None:
        lines = self._split(self._decoder.decode(data))
        if lines:
            self._owner._push(lines, last=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        lines = self._split(self._decoder.decode(b"", final=True))
        if self._partial:
            lines.append(self._partial)
            self._partial = ""
        self._owner._push(lines, last=True)


class _CallFeed:
    def __init__(self, fn: Callable[[bytes], object]) -> None:
        self._fn = fn

    def write(self, data: bytes) -> None:
        self._fn(data)

    def close(self) -> None:
        pass


class _WriteFeed:
    """A file object without a usable descriptor (BytesIO, wrappers)."""

    def __init__(self, file: IO[Any]) -> None:
        self._file = file
        self._raw = isinstance(file, _io.RawIOBase)

    def write(self, data: bytes) -> None:
        if not self._raw:
            self._file.write(data)
            return
        view = memoryview(data)
        while view:  # raw files may write less than asked
            n = self._file.write(view)
            view = view[n or 0 :]

    def close(self) -> None:
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()


class _TextFeed:
    """A text file without a descriptor (StringIO, a captured sys.stdout)."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._file.write(text)

    def close(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            self._file.write(text)
        self._file.flush()


#: Where a stdout/stderr stream goes: None (discard), a file object (its
#: descriptor is used directly when it has one), a callable taking each chunk,
#: a :class:`Capture` or a :class:`Lines`.
OutputSink: TypeAlias = "Capture | Lines | IO[Any] | Callable[[bytes], object] | None"

#: What feeds stdin: bytes, text (UTF-8), a readable file object, an iterable
#: of bytes or str chunks, or :data:`PIPE`.
StdinSource: TypeAlias = "bytes | bytearray | memoryview | str | IO[Any] | Iterable[bytes | str] | _Pipe"


@attrs.frozen
class _SinkPlan:
    """How one output stream is delivered: to an fd, to a feed, or discarded."""

    fd: int = -1
    feed: _Feed | None = None
    # The file object whose descriptor we use: holding it keeps the garbage
    # collector from closing the descriptor under the copy thread.
    keep: object = None


def _check_sink(sink: object, name: str) -> None:
    if sink is None or isinstance(sink, Capture | Lines) or hasattr(sink, "write") or callable(sink):
        return
    raise TypeError(f"{name} must be a file, a callable, Capture, Lines or None, not {type(sink).__name__}")


def _sink_fd(sink: object) -> int:
    fileno = getattr(sink, "fileno", None)
    if fileno is None:
        return -1
    try:
        fd = fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return -1
    return fd if isinstance(fd, int) and fd >= 0 else -1


def _plan_sink(sink: object) -> _SinkPlan:
    """Open the feed for a sink; called when the process IO is built."""
    if sink is None:
        return _SinkPlan()
    if isinstance(sink, Capture | Lines):
        return _SinkPlan(feed=sink._open_feed())
    if hasattr(sink, "write"):
        fd = _sink_fd(sink)
        if fd >= 0:
            # We write beneath the object's buffer: flush it first so that
            # what the caller wrote earlier comes first.
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()
            return _SinkPlan(fd=fd, keep=sink)
        if isinstance(sink, _io.TextIOBase):
            return _SinkPlan(feed=_TextFeed(sink))  # type: ignore[arg-type]
        return _SinkPlan(feed=_WriteFeed(sink))  # type: ignore[arg-type]
    return _SinkPlan(feed=_CallFeed(sink))  # type: ignore[arg-type]


# -- stdin sources ---------------------------------------------------------------------------------


class _SourceKind(enum.Enum):
    DATA = "data"
    FD = "fd"
    FILE = "file"
    ITER = "iter"
    PIPE = "pipe"


def _check_source(source: object) -> None:
    if source is PIPE or isinstance(source, bytes | bytearray | memoryview | str):
        return
    if hasattr(source, "read") or isinstance(source, Iterable):
        return
    raise TypeError(f"stdin must be bytes, str, a file, an iterable or cio.PIPE, not {type(source).__name__}")


def _classify_source(source: object) -> tuple[_SourceKind, Any]:
    if source is PIPE:
        return _SourceKind.PIPE, None
    if isinstance(source, str):
        return _SourceKind.DATA, source.encode()
    if isinstance(source, bytes | bytearray | memoryview):
        return _SourceKind.DATA, bytes(source)
    if isinstance(source, _io.TextIOBase):
        # Line by line: read(n) on a text file waits for n characters, which
        # an interactive stdin may never send; readline() returns each line.
        return _SourceKind.ITER, source
    if hasattr(source, "read"):
        fd = _source_fd(source)
        return (_SourceKind.FD, fd) if fd >= 0 else (_SourceKind.FILE, source)
    return _SourceKind.ITER, source


def _source_fd(source: Any) -> int:
    """The descriptor to splice from, or -1 when reads must go through the object."""
    fd = _sink_fd(source)
    if fd < 0 or not isinstance(source, _io.BufferedIOBase):
        return fd
    # A buffered reader may hold read-ahead that the descriptor no longer
    # has; on a seekable file, move the descriptor back to the logical spot.
    try:
        if source.seekable():
            os.lseek(fd, source.tell(), os.SEEK_SET)
            return fd
    except (OSError, ValueError):
        pass
    return -1


class _StdinQueue:
    """Bytes handed over by :meth:`FifoIO.stdin_write`, bounded for backpressure."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._eof = False
        self._dead = ""

    def put(self, data: bytes) -> None:
        with self._cond:
            while True:
                if self._dead:
                    raise ClosedError(self._dead)
                if self._eof:
                    raise ClosedError("stdin was closed")
                if self._size < self._limit:
                    break
                self._cond.wait()
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def get(self) -> bytes | None:
        """Up to CHUNK bytes, or None at EOF or once killed."""
        with self._cond:
            while not self._chunks and not self._eof and not self._dead:
                self._cond.wait()
            if self._dead or not self._chunks:
                return None
            out = [self._chunks.popleft()]
            size = len(out[0])
            while self._chunks and size + len(self._chunks[0]) <= _fifo.CHUNK:
                out.append(self._chunks.popleft())
                size += len(out[-1])
            self._size -= size
            self._cond.notify_all()
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def kill(self, reason: str) -> None:
        with self._cond:
            if not self._dead:
                self._dead = reason
            self._cond.notify_all()


# -- the ProcessIO protocol ------------------------------------------------------------------------


@runtime_checkable
class ProcessIO(Protocol):
    """The stdio of one process, as the objects layer drives it.

    Lifecycle: built by an :class:`IOCreator` before the create/exec RPC,
    :meth:`start` after it succeeded, :meth:`close` at the end (also when the
    RPC failed). Every method is safe to call from any thread.
    """

    @property
    def config(self) -> IOConfig:
        """What goes into the create/exec request."""
        ...

    def start(self) -> None:
        """Begin copying; never blocks."""
        ...

    def on_stdin_eof(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, when our stdin write end was closed after its source ended.

        Runs at once if that already happened. Never runs if there is no stdin,
        if the copy was cancelled, or if the reader went away first. This is
        the moment to send containerd's CloseIO (the shim keeps a writer of
        its own on the FIFO, so the process sees EOF only after CloseIO).
        """
        ...

    def close_stdin(self) -> None:
        """End stdin early (or, with :data:`PIPE`, after what was written)."""
        ...

    def stdin_write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue data for stdin (only with ``stdin=cio.PIPE``; else ValueError)."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stdout and stderr reached EOF and were copied; False on timeout or cancel."""
        ...

    def cancel(self) -> None:
        """Stop waiting for peers and stop copying, promptly; does not block."""
        ...

    def close(self) -> None:
        """Cancel what still runs, join threads, close fds, remove our FIFOs. Idempotent."""
        ...

    def __enter__(self) -> ProcessIO: ...

    def __exit__(self, *exc_info: object) -> None: ...


class IOCreator(Protocol):
    """Builds the :class:`ProcessIO` of one process.

    Called with the folder to put FIFOs in (the container's bundle folder)
    and the process id (the container id for the init process, the exec id
    for an exec).
    """

    def __call__(self, fifo_dir: str, process_id: str) -> ProcessIO: ...


# -- static IO: the shim does everything ----------------------------------------------------------


@attrs.define(eq=False)
class StaticIO:
    """A ProcessIO with nothing on our side: no stdio, a log file or a log binary."""

    config: IOConfig

    def start(self) -> None:
        """Nothing to copy."""

    def on_stdin_eof(self, callback: Callable[[], object]) -> None:
        """Never runs ``callback``: there is no stdin."""

    def close_stdin(self) -> None:
        """Nothing to close."""

    def stdin_write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Refuse: there is no stdin.

        Raises:
            ValueError: Always.
        """
        raise ValueError("stdin_write() needs stdin=cio.PIPE")

    def wait(self, timeout: float | None = None) -> bool:
        """Return True: nothing to copy."""
        return True

    def cancel(self) -> None:
        """Nothing to cancel."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> StaticIO:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.frozen
class _StaticCreator:
    config: IOConfig

    def __call__(self, fifo_dir: str, process_id: str) -> StaticIO:
        return StaticIO(self.config)


def null_io() -> IOCreator:
    """No stdio at all: the shim connects the process to /dev/null.

    All three fields are empty; a FIFO for stdout without one for stderr
    would make the shim fail ("opening file \\"\\" failed").
    """
    return _StaticCreator(IOConfig())


def _abs_uri_path(path: str) -> str:
    path = os.fspath(path)
    if not posixpath.isabs(path):
        raise ValueError(f"{path!r} must be absolute")
    return urllib.parse.quote(posixpath.normpath(path))


def log_file(path: str | os.PathLike[str]) -> IOCreator:
    """Have the shim append stdout and stderr to a file on the host.

    The shim creates the file and its folder.

    Raises:
        ValueError: ``path`` is not absolute.
    """
    uri = "file://" + _abs_uri_path(os.fspath(path))
    return _StaticCreator(IOConfig(stdout=uri, stderr=uri))


def binary_io(path: str | os.PathLike[str], **args: str) -> IOCreator:
    """Have the shim start a logging binary that receives stdout and stderr.

    The URI is ``binary:///abs/path?k=v`` with the arguments sorted by key,
    as containerd's Go client builds it.

    Raises:
        ValueError: ``path`` is not absolute.
    """
    uri = "binary://" + _abs_uri_path(os.fspath(path))
    if args:
        uri += "?" + urllib.parse.urlencode(sorted(args.items()))
    return _StaticCreator(IOConfig(stdout=uri, stderr=uri))


# -- FIFO-backed IO --------------------------------------------------------------------------------


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
    ) -> None:
        self._config = config
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


def _read_chunks(source: Any) -> Iterator[bytes | str]:
    # read1() returns what is there instead of waiting for a full chunk.
    read = getattr(source, "read1", None) or source.read
    while chunk := read(_fifo.CHUNK):
        yield chunk


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


# -- building FifoIO -------------------------------------------------------------------------------


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
        if plan.feed is not None:
            self.feeds.append(plan.feed)
        self.outputs.append(_OutStream(name, path, fd, plan))

    def input(self, path: str, source: object) -> None:
        kind, payload = _classify_source(source)
        stop = _fifo.Flag()
        self.flags.append(stop)
        queue = _StdinQueue(STDIN_QUEUE_LIMIT) if kind is _SourceKind.PIPE else None
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

    def __call__(self, fifo_dir: str, process_id: str) -> FifoIO:
        _check_process_id(process_id)
        fifo_dir = os.fspath(fifo_dir)
        base = os.path.join(fifo_dir, process_id)
        builder = _Builder(process_id)
        try:
            builder.ensure_dir(fifo_dir)
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

    Raises:
        TypeError: A source or sink of an unsupported type.
    """
    if stdin is not None:
        _check_source(stdin)
    _check_sink(stdout, "stdout")
    _check_sink(stderr, "stderr")
    return StdioCreator(stdin, stdout, stderr, terminal)


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
