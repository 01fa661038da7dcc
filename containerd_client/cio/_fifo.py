"""Low-level FIFO copying for :mod:`containerd_client.cio` (Linux only).

Everything here works on raw file descriptors and never waits for a FIFO
peer without also watching a cancel flag, so that a peer that never opens
its end, or opens it and never writes or reads, cannot hang a copy thread.

Two kernel facts carry the design (``fs/pipe.c``):

* ``open(O_RDONLY | O_NONBLOCK)`` on a FIFO returns at once, and ``poll()``
  reports ``POLLHUP`` on that read end only once a writer has connected and
  gone again (the pipe's writer counter moved since our open). So "no data,
  no hang-up" means "no writer yet" and a copy thread can simply poll.
* ``open(O_WRONLY | O_NONBLOCK)`` fails with ``ENXIO`` while the FIFO has no
  reader, and succeeds at once when it has one.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import select
import stat
import time
from collections.abc import Callable

#: Bytes asked for per read/splice. Reads on a pipe return what is buffered,
#: so a large request costs nothing and lets one call empty a grown pipe.
CHUNK = 1 << 20

#: Pipe buffer we ask the kernel for on each FIFO we read (default 64 KiB): a
#: writer that can queue more before blocking means fewer wake-ups on both
#: sides, while a buffer that still fits in the CPU caches copies faster than
#: 1 MiB did (benchmarks/bench_fifo.py). The kernel may refuse (non-root over
#: ``pipe-user-pages-soft``), which only costs speed.
PIPE_SIZE = 256 << 10

#: Longest sleep between attempts to open a stdin FIFO that has no reader yet.
OPEN_RETRY_MAX = 0.05

_POLL_IN = select.POLLIN | select.POLLPRI
_POLL_ANY_IN = _POLL_IN | select.POLLHUP | select.POLLERR | select.POLLNVAL
UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV})


class Outcome(enum.Enum):
    """How a copy ended."""

    EOF = "eof"
    CANCELLED = "cancelled"
    BROKEN = "broken"  # the reader of a stdin FIFO went away
    FAILED = "failed"


class Flag:
    """A one-shot flag that ``poll()`` can wait on (an eventfd).

    The owner serialises :meth:`set` against :meth:`close`: writing to a
    closed, possibly reused descriptor would poke someone else's file.
    """

    __slots__ = ("fd", "is_set")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.is_set = False

    def set(self) -> None:
        if not self.is_set:
            self.is_set = True
            os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Waiter:
    """Waits for one descriptor to become ready unless a flag fires first."""

    __slots__ = ("_flags", "_poll")

    def __init__(self, *flags: Flag) -> None:
        self._flags = flags
        self._poll = select.poll()
        for flag in flags:
            self._poll.register(flag.fd, select.POLLIN)

    def interrupted(self) -> bool:
        return any(flag.is_set for flag in self._flags)

    def wait(self, fd: int, events: int) -> bool:
        """Return True when ``fd`` is ready for ``events``, False if a flag fired."""
        if self.interrupted():
            return False
        self._poll.register(fd, events)
        try:
            while True:
                ready = self._poll.poll()
                if self.interrupted():
                    return False
                if ready:
                    return True
        finally:
            self._poll.unregister(fd)

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return False if a flag fired."""
        if self.interrupted():
            return False
        self._poll.poll(max(1, int(seconds * 1000)))
        return not self.interrupted()


# -- opening ---------------------------------------------------------------------------------------


def make_fifo(path: str) -> bool:
    """Create a FIFO with mode 0700; return False if a FIFO was already there.

    Raises:
        OSError: The path exists and is not a FIFO, or mkfifo failed.
    """
    try:
        os.mkfifo(path, 0o700)
    except FileExistsError:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return False
        raise
    return True


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def open_reader(path: str) -> int:
    """Open the read end of a FIFO without blocking and grow its buffer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # a smaller pipe only costs speed
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return fd


def open_writer(path: str, waiter: Waiter) -> int | None:
    """Open the write end of a FIFO once a reader exists; None if interrupted.

    Raises:
        OSError: The FIFO cannot be opened (other than "no reader yet").
    """
    # O_RDWR would never block either, but it makes us a reader too, which
    # breaks both ends of the stream (both checked on Linux 6.18):
    # - data written, then our fd closed before the shim's reader arrived,
    #   is freed with the pipe; the reader then opens an empty FIFO and
    #   never sees that data;
    # - once the shim's reader is gone, writes get no EPIPE: they fill the
    #   pipe and stall until cancelled.
    # O_WRONLY connects only when a reader exists; closing it then gives the
    # reader EOF as soon as no other writer is left. (The runc shim holds a
    # writer of its own on the stdin FIFO, so there EOF needs CloseIO too.)
    delay = 0.001
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        # No inotify-like event tells us a reader arrived, so back off; the
        # init process's reader is there before we start, an exec's comes
        # with its Start RPC, so the wait is short either way.
        if not waiter.sleep(delay):
            return None
        delay = min(delay * 2, OPEN_RETRY_MAX)


# -- output: FIFO -> sink --------------------------------------------------------------------------


class SinkError(Exception):
    """The sink of an output copy failed; the FIFO itself is still fine."""


def wait_connected(src: int, waiter: Waiter) -> bool:
    """Wait until a writer has connected to the FIFO read end ``src``.

    Until then ``read()`` returns b"" (no writer), which must not be taken
    for EOF. POLLIN (data) or POLLHUP (a writer came and went) both prove a
    writer was there.
    """
    return waiter.wait(src, _POLL_IN)


def splice_out(src: int, dst: int, waiter: Waiter) -> Outcome:
    """Move bytes from the non-blocking FIFO ``src`` to ``dst`` with splice(2).

    Raises:
        SinkError: ``dst`` refused the data (chained to the OSError); if the
            splice is unsupported for ``dst`` the cause has errno in
            :data:`UNSUPPORTED` and nothing was lost.
    """
    # The kernel makes the whole splice non-blocking because src is, so EAGAIN
    # means either "src empty" or "dst (a pipe) full": after a wait for src
    # said it is readable, a second EAGAIN can only be dst.
    src_ready = False
    splice = os.splice
    while True:
        try:
            n = splice(src, dst, CHUNK)
        except BlockingIOError:
            if src_ready:
                if not waiter.wait(dst, select.POLLOUT):
                    return Outcome.CANCELLED
                src_ready = False
            else:
                if not waiter.wait(src, _POLL_IN):
                    return Outcome.CANCELLED
                src_ready = True
            continue
        except OSError as exc:
            raise SinkError(str(exc)) from exc
        if not n:
            return Outcome.EOF
        src_ready = False
        if waiter.interrupted():
            return Outcome.CANCELLED


def copy_out(src: int, dst: int, waiter: Waiter) -> Outcome:
    """Copy the non-blocking FIFO ``src`` to the descriptor ``dst``.

    Into a regular file: read(2) into one reused buffer, then write(2).
    splice(2) costs a little less CPU, but it holds the pipe's pages until
    they are copied into the page cache, so the writer cannot refill the
    pipe meanwhile; read(2) frees them at once and the two sides overlap.
    On a quiet machine splice was up to 10 % faster, with other processes
    busy (the normal case next to a running container) it was 15-45 %
    slower, while read+write stayed level with a raw read loop
    (benchmarks/bench_fifo.py). Into pipes and sockets splice moves page
    references without any copy, so it is used there.

    Raises:
        SinkError: As for :func:`splice_out`.
    """
    try:
        regular = stat.S_ISREG(os.fstat(dst).st_mode)
    except OSError as exc:
        raise SinkError(str(exc)) from exc
    if not regular:
        return splice_out(src, dst, waiter)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    readv = os.readv
    write = os.write
    while True:
        try:
            n = readv(src, [buf])
        except BlockingIOError:
            if not waiter.wait(src, _POLL_IN):
                return Outcome.CANCELLED
            continue
        if not n:
            return Outcome.EOF
        chunk = view[:n]
        try:
            while chunk:
                chunk = chunk[write(dst, chunk) :]
        except OSError as exc:
            raise SinkError(str(exc)) from exc
        if waiter.interrupted():
            return Outcome.CANCELLED


def read_out(src: int, write: Callable[[bytes], object], waiter: Waiter) -> Outcome:
    """Read the non-blocking FIFO ``src`` and hand each chunk to ``write``.

    Raises:
        SinkError: ``write`` raised (chained).
    """
    read = os.read
    while True:
        try:
            data = read(src, CHUNK)
        except BlockingIOError:
            if not waiter.wait(src, _POLL_IN):
                return Outcome.CANCELLED
            continue
        if not data:
            return Outcome.EOF
        try:
            write(data)
        except Exception as exc:
            raise SinkError(str(exc)) from exc
        if waiter.interrupted():
            return Outcome.CANCELLED


def drain(src: int, waiter: Waiter, devnull: int) -> Outcome:
    """Consume and discard everything from ``src`` until EOF or a flag fires."""
    if devnull >= 0:
        try:
            return splice_out(src, devnull, waiter)
        except SinkError:
            pass  # /dev/null refused splice: fall back to reading
    return read_out(src, _discard, waiter)


def _discard(_data: bytes) -> None:
    pass


def fd_writer(dst: int, waiter: Waiter) -> Callable[[bytes], None]:
    """A ``write`` for :func:`read_out` that writes all of each chunk to ``dst``."""

    def write(data: bytes) -> None:
        if not write_all(dst, data, waiter):
            raise InterruptedError("cancelled while writing")

    return write


# -- input: source -> FIFO -------------------------------------------------------------------------


def write_all(fd: int, data: bytes | bytearray | memoryview, waiter: Waiter) -> bool:
    """Write every byte of ``data`` to ``fd``; False if a flag fired first.

    Raises:
        BrokenPipeError: The reader went away.
        OSError: Another write error.
    """
    view = memoryview(data).cast("B")
    write = os.write
    while view:
        if waiter.interrupted():
            return False
        try:
            n = write(fd, view)
        except BlockingIOError:
            if not waiter.wait(fd, select.POLLOUT):
                return False
            continue
        view = view[n:]
    return True


def copy_in(src: int, dst: int, waiter: Waiter) -> Outcome:
    """Copy the file descriptor ``src`` into the non-blocking FIFO ``dst``.

    A regular file is spliced without polling; anything else (pipe, socket,
    terminal) is polled first so that a source with no data cannot block us
    past a flag.

    Raises:
        BrokenPipeError: The FIFO's reader went away.
        OSError: Reading the source failed.
    """
    regular = stat.S_ISREG(os.fstat(src).st_mode)
    use_splice = True
    while True:
        if waiter.interrupted():
            return Outcome.CANCELLED
        if not regular and not waiter.wait(src, _POLL_ANY_IN):
            return Outcome.CANCELLED
        if use_splice:
            try:
                n = os.splice(src, dst, CHUNK)
            except BlockingIOError:
                # The source was readable, so the FIFO is full (or a racing
                # reader emptied a pipe source: then this wait returns at once).
                if not waiter.wait(dst, select.POLLOUT):
                    return Outcome.CANCELLED
                continue
            except OSError as exc:
                if exc.errno not in UNSUPPORTED:
                    raise
                use_splice = False
                continue
            if not n:
                return Outcome.EOF
            continue
        try:
            data = os.read(src, CHUNK)
        except BlockingIOError:
            # A non-blocking source raced empty: give the poll another go.
            time.sleep(0)
            continue
        if not data:
            return Outcome.EOF
        if not write_all(dst, data, waiter):
            return Outcome.CANCELLED
