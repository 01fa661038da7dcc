"""Stdin sources: what feeds stdin (bytes, text, files, iterables, PIPE) and the PIPE queue."""

from __future__ import annotations

import enum
import io as _io
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeAlias

from containerd_client.cio import _fifo
from containerd_client.cio._protocol import PIPE, _Pipe
from containerd_client.cio._sinks import _sink_fd
from containerd_client.errors import ClosedError

#: What feeds stdin: bytes, text (UTF-8), a readable file object, an iterable
#: of bytes or str chunks, or :data:`PIPE`.
StdinSource: TypeAlias = "bytes | bytearray | memoryview | str | IO[Any] | Iterable[bytes | str] | _Pipe"


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


def _read_chunks(source: Any) -> Iterator[bytes | str]:
    # read1() returns what is there instead of waiting for a full chunk.
    read = getattr(source, "read1", None) or source.read
    while chunk := read(_fifo.CHUNK):
        yield chunk
