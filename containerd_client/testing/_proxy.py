"""A tiny HTTP forward proxy on 127.0.0.1 that records what it relays.

For tests of the client's ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
handling: ``CONNECT host:port`` opens a tunnel (bytes relayed both ways
until one side closes), an absolute-form request (``GET http://host/path``)
is sent on to the origin and its answer sent back. Every request line is
recorded in :attr:`ForwardProxy.requests`, with its ``Proxy-Authorization``
header; only 127.0.0.1 and localhost are relayed to, so a test can never
reach further::

    with ForwardProxy() as proxy:
        os.environ["HTTPS_PROXY"] = proxy.url
        ...
        assert ("CONNECT", registry.host) in [(r.method, r.target) for r in proxy.requests]
"""

from __future__ import annotations

import http.client
import io
import selectors
import socket
import socketserver
import threading
import urllib.parse
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["ForwardProxy", "ProxiedRequest"]

_ALLOWED_HOSTS = ("127.0.0.1", "localhost")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade"}
)
#: Seconds a relayed connection may stay silent before the proxy drops it.
_IDLE_SECONDS = 30.0


@attrs.frozen
class ProxiedRequest:
    """One request the proxy received.

    Attributes:
        method: ``CONNECT``, ``GET``, ``HEAD`` ...
        target: ``host:port`` for CONNECT, else the absolute URL.
        proxy_authorization: The ``Proxy-Authorization`` header, if any.
    """

    method: str
    target: str
    proxy_authorization: str | None = attrs.field(default=None, repr=False)


class ForwardProxy:
    """Serves on ``127.0.0.1:<free port>`` from a thread until :meth:`close`."""

    def __init__(self) -> None:
        self.requests: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.connection, self.rfile)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="forward-proxy",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``HTTP_PROXY``/``HTTPS_PROXY``."""
        return f"http://{self.address}"

    def seen(self) -> list[tuple[str, str]]:
        """``(method, target)`` of every request so far."""
        with self._lock:
            return [(r.method, r.target) for r in self.requests]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    # -- one client connection ----------------------------------------------------------

    def _serve(self, conn: socket.socket, rfile: io.BufferedIOBase) -> None:
        conn.settimeout(_IDLE_SECONDS)
        while True:
            line = rfile.readline(65537)
            if not line:
                return
            try:
                method, target, _version = line.decode("latin-1").strip().split(" ", 2)
            except ValueError:
                return
            headers = http.client.parse_headers(rfile)
            with self._lock:
                self.requests.append(ProxiedRequest(method, target, headers.get("Proxy-Authorization")))
            if method == "CONNECT":
                self._tunnel(conn, target)
                return
            if not self._forward(conn, method, target, headers):
                return

    def _tunnel(self, conn: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        if host.strip("[]") not in _ALLOWED_HOSTS or not port.isdigit():
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=_IDLE_SECONDS)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with selectors.DefaultSelector() as sel:
                sel.register(conn, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, conn)
                while True:
                    events = sel.select(_IDLE_SECONDS)
                    if not events:
                        return
                    for key, _ in events:
                        src = key.fileobj
                        assert isinstance(src, socket.socket)
                        try:
                            data = src.recv(1 << 16)
                        except OSError:
                            return
                        if not data:
                            return
                        key.data.sendall(data)

    def _forward(
        self, conn: socket.socket, method: str, target: str, headers: http.client.HTTPMessage
    ) -> bool:
        """Send an absolute-form request on; False when the client connection is done."""
        parts = urllib.parse.urlsplit(target)
        if parts.scheme != "http" or parts.hostname not in _ALLOWED_HOSTS:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return True
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        origin = http.client.HTTPConnection(parts.netloc, timeout=_IDLE_SECONDS)
        try:
            # Only GET and HEAD (no request bodies): what the registry client sends.
            origin.request(method, path, headers=sent)
            resp = origin.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return False
        finally:
            origin.close()
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() not in ("content-length", "transfer-encoding"):
                out.append(f"{key}: {value}\r\n")
        length = resp.getheader("Content-Length") if method == "HEAD" else str(len(body))
        if length is not None:
            out.append(f"Content-Length: {length}\r\n")
        out.append("\r\n")
        conn.sendall("".join(out).encode("latin-1") + (b"" if method == "HEAD" else body))
        return True
