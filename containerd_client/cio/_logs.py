"""A bounded, file-backed log of a process's output: what ``Task.logs()`` reads.

The file holds records, one per line of output (a line longer than
:data:`MAX_RECORD` is cut into pieces of that size): a 5-byte header (stream
number, then the length, little-endian) and the bytes, line ending included.
Records of stdout and stderr interleave in the order their lines completed,
so both streams can be read together or apart, and ``tail`` counts records.

The file is bounded: when it grows past ``max_bytes`` its oldest records are
dropped, keeping about half. It lives in the container's state folder and is
removed with it; it outlives the process and its FIFOs, so the output of a
task that exited stays readable until the container is deleted.

A line still open when the stream ends (no final newline) is recorded then;
until it completes, or reaches :data:`MAX_RECORD`, readers do not see it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger("containerd_client.cio")

_HEADER = struct.Struct("<BI")
#: Stream numbers in the records.
STDOUT = 1
STDERR = 2
_STREAMS = {"stdout": STDOUT, "stderr": STDERR}
#: Longest record: a longer line is cut (Docker cuts at 16 KiB as well).
MAX_RECORD = 16 << 10
#: How long a follower sleeps between looks at its stop condition when no output comes.
_FOLLOW_POLL = 0.25


def parse_records(data: bytes | memoryview, streams: frozenset[int]) -> tuple[list[bytes], int]:
    """The payloads of the complete records in ``data`` whose stream is in ``streams``.

    Returns:
        The payloads, and how many bytes of ``data`` the complete records used.
    """
    view = memoryview(data)
    out: list[bytes] = []
    pos = 0
    end = len(view)
    hsize = _HEADER.size
    while pos + hsize <= end:
        stream, length = _HEADER.unpack_from(view, pos)
        if pos + hsize + length > end:
            break
        if stream in streams:
            out.append(bytes(view[pos + hsize : pos + hsize + length]))
        pos += hsize + length
    return out, pos


def read_log(path: str, streams: frozenset[int], tail: int | None = None) -> list[bytes]:
    """The records of a log file (for a container whose task object is gone).

    Raises:
        FileNotFoundError: There is no log file.
    """
    with open(path, "rb") as f:
        data = f.read()
    records, _ = parse_records(data, streams)
    return _tail(records, tail)


def _tail(records: list[bytes], tail: int | None) -> list[bytes]:
    if tail is None:
        return records
    return records[-tail:] if tail > 0 else []


class LogFile:
    """The log file of one process, written by the copy threads, read by anyone.

    Args:
        path: Where the file goes (truncated if it exists).
        max_bytes: Bound of the file's size.
    """

    def __init__(self, path: str, max_bytes: int) -> None:
        self._path = path
        self._max = max(int(max_bytes), 4 * (MAX_RECORD + _HEADER.size))
        self._cond = threading.Condition(threading.Lock())
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = 0  # bytes in the file now
        self._dropped = 0  # bytes dropped from its start so far
        self._open_feeds = 0
        self._done = False
        self._failed = False

    def __repr__(self) -> str:
        return f"<LogFile {self._path!r} {self._size} bytes>"

    @property
    def path(self) -> str:
        """Where the log is kept."""
        return self._path

    @property
    def done(self) -> bool:
        """Whether every stream feeding the log has ended."""
        return self._done

    def feed(self, name: str) -> _LogFeed:
        """A feed for stream ``name`` ("stdout" or "stderr")."""
        with self._cond:
            self._open_feeds += 1
        return _LogFeed(self, _STREAMS[name])

    def finish(self) -> None:
        """End the log without any feed (nothing will write to it)."""
        with self._cond:
            self._end()

    def wake(self) -> None:
        """Wake followers so they look at their stop condition again."""
        with self._cond:
            self._cond.notify_all()

    # -- writing (copy threads) ---------------------------------------------------------

    def _append(self, stream: int, pieces: list[bytes]) -> None:
        blob = b"".join(_HEADER.pack(stream, len(p)) + p for p in pieces)
        with self._cond:
            if self._fd < 0:
                return
            try:
                view = memoryview(blob)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                self._size += len(blob)
                if self._size > self._max:
                    self._compact()
            except OSError as exc:
                # A full disk must not block the process: stop logging, keep copying.
                if not self._failed:
                    logger.error("log %s: writing failed, dropping further output: %s", self._path, exc)
                self._failed = True
                self._close_fd()
            self._cond.notify_all()

    def _compact(self) -> None:
        """Drop the oldest records so about half the bound is left (lock held)."""
        with open(self._path, "rb") as f:
            data = f.read()
        keep_from = 0
        hsize = _HEADER.size
        target = len(data) - self._max // 2
        while keep_from < target and keep_from + hsize <= len(data):
            _, length = _HEADER.unpack_from(data, keep_from)
            keep_from += hsize + length
        tmp = self._path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)[keep_from:]
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        self._close_fd()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._dropped += keep_from
        self._size = len(data) - keep_from

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _feed_closed(self) -> None:
        with self._cond:
            self._open_feeds -= 1
            if self._open_feeds <= 0:
                self._end()

    def _end(self) -> None:
        self._done = True
        self._close_fd()
        self._cond.notify_all()

    # -- reading ------------------------------------------------------------------------

    def read(self, streams: frozenset[int], tail: int | None = None) -> list[bytes]:
        """The records of ``streams`` kept so far (the last ``tail`` of them)."""
        with self._cond:
            data = self._read_from(0)
        records, _ = parse_records(data, streams)
        return _tail(records, tail)

    def _read_from(self, physical: int) -> bytes:
        try:
            with open(self._path, "rb") as f:
                f.seek(physical)
                return f.read(max(0, self._size - physical))
        except FileNotFoundError:
            return b""

    @property
    def end(self) -> int:
        """The position after the last record (bytes ever written)."""
        with self._cond:
            return self._dropped + self._size

    def wait_change(self, end: int, timeout: float) -> None:
        """Sleep until something is written past position ``end``, the log ends, or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._done or self._dropped + self._size != end, timeout)

    def read_since(self, pos: int, streams: frozenset[int]) -> tuple[list[bytes], int]:
        """The records of ``streams`` written after position ``pos`` (0: the start), and the new position.

        Positions count every byte ever written, so they stay valid when old
        records are dropped (those are skipped).
        """
        with self._cond:
            pos = max(pos, self._dropped)
            data = self._read_from(pos - self._dropped)
        records, used = parse_records(data, streams)
        return records, pos + used

    def follow(self, streams: frozenset[int], tail: int | None, stop: Callable[[], bool]) -> Iterator[bytes]:
        """Yield the kept records (the last ``tail``), then new ones as they come.

        Ends once every feed ended, or once ``stop()`` is true and what was
        written until then was yielded.
        """
        with self._cond:
            data = self._read_from(0)
            pos = self._dropped
        records, used = parse_records(data, streams)
        pos += used
        yield from _tail(records, tail)
        while True:
            with self._cond:
                while self._dropped + self._size <= pos and not self._done:
                    if stop():
                        break
                    self._cond.wait(_FOLLOW_POLL)
                if self._dropped > pos:
                    logger.debug("log %s: a follower fell behind; records were dropped", self._path)
                    pos = self._dropped
                data = self._read_from(pos - self._dropped)
                finished = self._done or stop()
            records, used = parse_records(data, streams)
            pos += used
            yield from records
            if finished and used >= len(data):
                return


class _LogFeed:
    """Cuts one stream into line records for a :class:`LogFile`."""

    def __init__(self, log: LogFile, stream: int) -> None:
        self._log = log
        self._stream = stream
        self._partial = b""
        self._closed = False

    def write(self, data: bytes) -> None:
        buf = self._partial + bytes(data) if self._partial else bytes(data)
        pieces: list[bytes] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + MAX_RECORD)
            if nl >= 0:
                pieces.append(buf[start : nl + 1])
                start = nl + 1
            elif len(buf) - start >= MAX_RECORD:
                pieces.append(buf[start : start + MAX_RECORD])
                start += MAX_RECORD
            else:
                break
        self._partial = buf[start:]
        if pieces:
            self._log._append(self._stream, pieces)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._partial:
            self._log._append(self._stream, [self._partial])
            self._partial = b""
        self._log._feed_closed()


class TeeFeed:
    """Writes each chunk to the log, then to the caller's sink.

    A failing caller's sink is logged and dropped; the log goes on.
    """

    def __init__(self, log: _LogFeed, other: object) -> None:
        self._log = log
        self._other = other

    def write(self, data: bytes) -> None:
        self._log.write(data)
        other = self._other
        if other is None:
            return
        try:
            other.write(data)  # type: ignore[attr-defined]
        except Exception:
            logger.exception("an output sink failed; the rest goes to the log only")
            self._other = None

    def close(self) -> None:
        try:
            self._log.close()
        finally:
            other = self._other
            if other is not None:
                other.close()  # type: ignore[attr-defined]


class FdFeed:
    """Writes to a descriptor (the caller's file when a log is kept too)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        pass
