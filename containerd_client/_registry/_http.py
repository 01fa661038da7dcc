"""HTTP for the registry client: deadline-guarded reads, bounded bodies, proxies."""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Callable
from typing import Any

from containerd_client._registry._errors import RegistryError
from containerd_client.errors import DeadlineExceededError

#: Most bytes read of an answer that is not wanted (401, redirect, error).
_SMALL_BODY = 64 << 10


class _Deadline:
    """The one deadline of a pull: every connect, request and read checks it."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def remaining(self, what: str) -> float | None:
        """Seconds left (None: no deadline).

        Raises:
            DeadlineExceededError: None are left.
        """
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError(f"{what}: the pull deadline passed")
        return left

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


class _GuardedRaw(io.RawIOBase):
    """A socket's reading side that re-arms the socket timeout to the deadline before each read.

    ``http.client`` reads status line, headers and body through this, so a
    server sending one byte a second cannot stretch any read past the
    deadline (the per-read socket timeout alone restarts with every byte).
    """

    def __init__(
        self, sock: socket.socket, guard: Callable[[socket.socket], None], on_timeout: Callable[[], None]
    ):
        super().__init__()
        # makefile() holds a reference on the socket, as http.client's own reader does.
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._guard = guard
        self._on_timeout = on_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._guard(self._sock)
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            self._on_timeout()
            raise

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _GuardedResponse(http.client.HTTPResponse):
    def __init__(
        self,
        sock: socket.socket,
        *args: Any,
        guard: Callable[[socket.socket], None],
        on_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()
        self.fp = io.BufferedReader(_GuardedRaw(sock, guard, on_timeout), 1 << 16)


class _Response:
    """An open HTTP response and the connection it must be read from."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self.conn = conn
        self.resp = resp
        self.url = url

    @property
    def status(self) -> int:
        return self.resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    @property
    def length(self) -> int | None:
        """The announced body length; None when chunked or unknown."""
        return self.resp.length

    def read(self, limit: int) -> bytes:
        """The whole body, refused (unread) when it is announced, or turns out, larger than ``limit``."""
        announced = self.length
        if announced is not None and announced > limit:
            self.close()
            raise RegistryError(f"{self.url}: the answer ({announced} bytes) is larger than {limit} bytes")
        data = self._read(limit + 1)
        if len(data) > limit:
            self.close()
            raise RegistryError(f"{self.url}: the answer is larger than {limit} bytes")
        return data

    def read_some(self, limit: int = _SMALL_BODY) -> bytes:
        """At most ``limit`` bytes of the body; the connection is dropped when more remain."""
        data = self._read(limit)
        if not self.resp.isclosed():
            self.close()
        return data

    def discard(self) -> None:
        """Finish with an unwanted body: read a small one (to keep the connection), else drop it."""
        if self.resp.isclosed():
            return
        announced = self.length
        if announced is not None and announced <= _SMALL_BODY:
            self._read(announced)
            if self.resp.isclosed():
                return
        self.close()

    def _read(self, amount: int) -> bytes:
        try:
            return self.resp.read(amount)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RegistryError(f"{self.url}: the answer broke off: {exc}", transient=True) from exc

    def close(self) -> None:
        # A half-read response leaves the connection unusable: drop it.
        self.resp.close()
        self.conn.close()


class _ConnectionFailed(Exception):
    """Internal: no HTTP answer at all (refused, reset, TLS failure)."""

    def __init__(self, scheme: str, netloc: str, cause: BaseException) -> None:
        super().__init__(f"{scheme}://{netloc}: {cause}")
        self.scheme = scheme
        self.netloc = netloc
        self.cause = cause


def _transient(status: int) -> bool:
    return status == 429 or (500 <= status < 600 and status != 501)
