"""HTTP for the registry client: deadline-guarded reads, bounded bodies, proxies."""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import attrs

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
        except DeadlineExceededError:  # a TimeoutError, so an OSError: not a broken answer
            raise
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


# -- proxies ---------------------------------------------------------------------------------


@attrs.frozen
class Proxy:
    """The HTTP proxy a request goes through.

    Attributes:
        netloc: ``host:port`` of the proxy.
        authorization: The ``Proxy-Authorization`` value, from the proxy URL's
            user info (never shown in the repr).
    """

    netloc: str
    authorization: str | None = attrs.field(default=None, repr=False)

    @property
    def host(self) -> str:
        """The proxy's host, without brackets."""
        return self.netloc.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The proxy's port."""
        return int(self.netloc.rpartition(":")[2])


def proxy_for(scheme: str, netloc: str) -> Proxy | None:
    """The proxy the environment names for ``scheme://netloc``, or None to connect directly.

    Read as :mod:`urllib.request` and requests read it: ``https_proxy`` for
    HTTPS and ``http_proxy`` for HTTP, else ``all_proxy``, the lower-case
    name first, then the upper-case one (``HTTP_PROXY`` is ignored under CGI,
    where a client may set it); a proxy URL without a scheme is ``http://``.
    ``no_proxy``/``NO_PROXY`` lists hosts to reach directly: ``*`` for all,
    a name (``registry.example``, matching it and its subdomains; a leading
    dot is allowed), a ``host:port``, an IP address or an IP network
    (``10.0.0.0/8``).

    Raises:
        RegistryError: The proxy URL is malformed or not ``http://`` (HTTPS and
            SOCKS proxies are not supported).
    """
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or _bypass(netloc, proxies.get("no", "")):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or 80
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme != "http" or not host:
        shown = parts.scheme if host else "a malformed"
        raise RegistryError(
            f"the {scheme} proxy from the environment is not supported ({shown} proxy; "
            "only http:// proxies are)"
        )
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Proxy(netloc, authorization)


def _bypass(netloc: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` says to reach ``netloc`` (``host[:port]``) directly."""
    if not no_proxy.strip():
        return False
    if no_proxy.strip() == "*":
        return True
    host, port = netloc.lower(), ""
    if host.startswith("["):
        end = host.find("]")
        host, port = host[1:end], host[end + 2 :]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for item in no_proxy.lower().split(","):
        entry = item.strip().lstrip(".")
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        name = name.strip("[]")
        if entry_port and entry_port != port:
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def _has_port(entry: str) -> bool:
    """Whether a NO_PROXY entry ends in ``:port`` (``[::1]:5000``, ``host:5000``; not a bare IPv6 address)."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1 and entry.rpartition(":")[2].isdigit()
