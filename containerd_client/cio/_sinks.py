"""Output sinks: where stdout and stderr go (Capture, Lines, files, callables) and their feeds."""

from __future__ import annotations

import codecs
import io as _io
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, TypeAlias

import attrs


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
    """A text stream written as text: StringIO, Jupyter's sys.stdout, look-alikes.

    Output is decoded as UTF-8 (undecodable bytes replaced) and each chunk is
    passed to ``write`` as it arrives.
    """

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
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()


#: Where a stdout/stderr stream goes: None (discard), a file object (its
#: descriptor is used directly when it has one), a callable taking each chunk,
#: a :class:`Capture` or a :class:`Lines`.
OutputSink: TypeAlias = "Capture | Lines | IO[Any] | Callable[[bytes], object] | None"


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


def _is_text(sink: object) -> bool:
    """Whether ``write`` takes str: a TextIOBase, or a look-alike with a text ``encoding``."""
    if isinstance(sink, _io.TextIOBase):
        return True
    if isinstance(sink, _io.RawIOBase | _io.BufferedIOBase):
        return False
    return isinstance(getattr(sink, "encoding", None), str)


def _plan_sink(sink: object) -> _SinkPlan:
    """Open the feed for a sink; called when the process IO is built."""
    if sink is None:
        return _SinkPlan()
    if isinstance(sink, Capture | Lines):
        return _SinkPlan(feed=sink._open_feed())
    if hasattr(sink, "write"):
        text = _is_text(sink)
        # A text stream's descriptor is its own only for a real file's text
        # layer. Jupyter's sys.stdout (ipykernel's OutStream) answers fileno()
        # with the kernel process's original stdout, the server's terminal:
        # writing there would bypass the cell. Other text streams get text.
        fd = _sink_fd(sink) if not text or isinstance(sink, _io.TextIOWrapper) else -1
        if fd >= 0:
            # We write beneath the object's buffer: flush it first so that
            # what the caller wrote earlier comes first.
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()
            return _SinkPlan(fd=fd, keep=sink)
        if text:
            return _SinkPlan(feed=_TextFeed(sink))  # type: ignore[arg-type]
        return _SinkPlan(feed=_WriteFeed(sink))  # type: ignore[arg-type]
    return _SinkPlan(feed=_CallFeed(sink))  # type: ignore[arg-type]
