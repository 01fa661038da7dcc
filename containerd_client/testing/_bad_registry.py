"""A misbehaving OCI registry for tests: the standard library's HTTP server on 127.0.0.1.

:class:`BadRegistry` serves one small image (one uncompressed layer holding
``/hello.txt``, its config and an OCI manifest) as ``<host>/test/app:1``,
and misbehaves in the one way its ``mode`` names: wrong digests, redirect
and 401 loops, endless or huge bodies, a body or headers at 1 byte/s, a
server that never answers, malformed manifests. ``mode="ok"`` serves the
image correctly, so a test can check its harness.

Everything it does is bounded: an endless body stops after ``body_cap``
bytes or ``time_cap`` seconds, slow writers wait on an event (so
:meth:`BadRegistry.stop` ends them at once), and every connection is shut
down and every handler thread joined on stop::

    with BadRegistry("manifest-slow") as registry:
        pull(client, registry.ref, PullOptions(via="client", timeout=3))   # DeadlineExceededError
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import logging
import socket
import tarfile
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["MODES", "BadRegistry"]

logger = logging.getLogger(__name__)

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

#: Every mode :class:`BadRegistry` knows, with what it does.
MODES: dict[str, str] = {
    "ok": "serve the image correctly",
    "blob-wrong-digest": "the layer's bytes do not match its digest (same size)",
    "manifest-wrong-digest": "GET of the manifest by digest returns other bytes than HEAD announced",
    "redirect-loop": "manifest requests redirect to themselves forever",
    "redirect-huge-body": "manifest GETs redirect to themselves with a 10 GiB body each",
    "redirect-once-huge-body": "manifest requests redirect once, with a 10 GiB body, to the manifest",
    "auth-loop": "every request gets a bearer 401; the token service gives tokens that never work",
    "auth-huge-body": "every GET gets a basic 401 with a 10 GiB body (HEAD is answered)",
    "basic-auth": "basic auth (user alice, password PASSWORD) guards everything",
    "token-endless": "the bearer token service answers with an endless chunked body",
    "error-endless-body": "every request gets a 500 with an endless chunked body",
    "manifest-endless-chunked": "GET of the manifest streams an endless chunked body",
    "manifest-huge-length": "GET of the manifest announces 10 GiB",
    "blob-endless-chunked": "GET of the layer streams an endless chunked body",
    "blob-huge-length": "GET of the layer announces 10 GiB",
    "manifest-slow": "GET of the manifest sends its body at 1 byte per interval",
    "blob-slow": "GET of the layer sends its body at 1 byte per interval",
    "headers-slow": "every answer sends its status line and headers at 1 byte per interval",
    "stall": "reads the request and never answers",
    "manifest-malformed-json": "the manifest is not JSON",
    "manifest-wrong-types": "the manifest's config is a string and its layers an object",
    "manifest-missing-fields": "the manifest has no config",
    "manifest-bad-digest": "the manifest names its layer by a malformed digest",
    "manifest-wrong-media-type": "the manifest is of an unknown media type",
    "index-wrong-types": "the tag points at an index whose manifests are an object",
    "config-not-json": "the config blob is not JSON",
    "diffid-mismatch": "the config's diff id does not match the layer (found only when unpacking)",
}

#: The password of mode ``basic-auth`` (user ``alice``).
PASSWORD = "Bad-Registry-s3cret-5521"
USER = "alice"
REPOSITORY = "test/app"
TAG = "1"
HUGE = 10 << 30
_CHUNK = b"x" * (1 << 20)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"hello from a bad registry\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class _Image:
    """The bytes the registry serves for ``mode``."""

    def __init__(self, mode: str, architecture: str) -> None:
        self.layer = _layer_tar()
        diff_id = _sha(self.layer) if mode != "diffid-mismatch" else _sha(b"not the layer")
        config: dict[str, Any] = {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        self.config = _json(config) if mode != "config-not-json" else b"\x00not json at all{"
        layer_digest = _sha(self.layer) if mode != "manifest-bad-digest" else "sha256:../../etc/passwd"
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": _sha(self.config), "size": len(self.config)},
            "layers": [{"mediaType": MEDIA_OCI_LAYER, "digest": layer_digest, "size": len(self.layer)}],
            "annotations": {"note": "A"},
        }
        self.media_type = MEDIA_OCI_MANIFEST
        if mode == "manifest-wrong-types":
            manifest["config"] = "sha256:abc"
            manifest["layers"] = {"a": 1}
        elif mode == "manifest-missing-fields":
            del manifest["config"]
        elif mode == "manifest-wrong-media-type":
            manifest["mediaType"] = self.media_type = "application/vnd.example.unknown+json"
        self.manifest = _json(manifest)
        if mode == "manifest-malformed-json":
            self.manifest = b'{"schemaVersion": 2, "layers": [ {"digest": '
        if mode == "index-wrong-types":
            self.manifest = _json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": {"a": 1}})
            self.media_type = MEDIA_OCI_INDEX
        # Same length, other bytes: what a tampering mirror would send.
        manifest["annotations"] = {"note": "B"}
        self.tampered_manifest = _json(manifest)
        self.manifest_digest = _sha(self.manifest)
        self.config_digest = _sha(self.config)
        self.layer_digest = _sha(self.layer)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    registry: BadRegistry


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bad-registry"
    # A client that stops reading must not keep a handler thread for long.
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # The connection is tracked for its whole life, idle keep-alive time
    # included (a daemon keeps its connections open), so stop() can cut it.
    def setup(self) -> None:
        super().setup()
        self.server.registry._opened(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.registry._closed(self)

    def do_GET(self) -> None:
        self.server.registry._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.registry._handle(self, "HEAD")


class BadRegistry:
    """A registry on 127.0.0.1 that serves one image and misbehaves as ``mode`` says.

    Args:
        mode: One of :data:`MODES`.
        interval: Seconds between bytes in the slow modes.
        body_cap: Most bytes an endless or huge body sends before the
            connection is closed.
        time_cap: Most seconds any one answer takes.
        architecture: The image's architecture (the host's by default).

    Attributes:
        requests: ``(method, path)`` of each request received, in order.
    """

    def __init__(
        self,
        mode: str = "ok",
        *,
        interval: float = 1.0,
        body_cap: int = 300 << 20,
        time_cap: float = 30.0,
        architecture: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(sorted(MODES))}")
        if architecture is None:
            from containerd_client.types import Platform

            architecture = Platform.host().architecture
        self.mode = mode
        self.interval = interval
        self.body_cap = body_cap
        self.time_cap = time_cap
        self.image = _Image(mode, architecture)
        self.requests: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.host if self._server is not None else "stopped"
        return f"<BadRegistry {self.mode} {where}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("BadRegistry.host is known once start() has run")
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def ref(self) -> str:
        """The image's reference, ``127.0.0.1:PORT/test/app:1``."""
        return f"{self.host}/{REPOSITORY}:{TAG}"

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve on a thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.registry = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="bad-registry", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, cut every open connection, join every thread. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)
        if self._thread is not None:
            self._thread.join(10)

    # -- answering ---------------------------------------------------------------

    def _opened(self, h: _Handler) -> None:
        with self._lock:
            self._conns.add(h.connection)
            self._threads.add(threading.current_thread())

    def _closed(self, h: _Handler) -> None:
        with self._lock:
            self._conns.discard(h.connection)
            self._threads.discard(threading.current_thread())

    def _handle(self, h: _Handler, method: str) -> None:
        with self._lock:
            self.requests.append((method, h.path))
        try:
            self._answer(h, method)
        except OSError:
            # The client went away: what a misbehaving server is for.
            h.close_connection = True

    def _answer(self, h: _Handler, method: str) -> None:
        mode = self.mode
        path = urllib.parse.urlsplit(h.path).path
        head = method == "HEAD"
        if mode == "stall":
            self._stopping.wait(self.time_cap)
            h.close_connection = True
            return
        if mode == "headers-slow":
            self._dribble(h, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"y" * 4096)
            h.close_connection = True
            return
        if path == "/token":
            if mode == "token-endless":
                self._endless_chunked(h, 200, {"Content-Type": "application/json"})
            else:
                self._send(h, 200, _json({"token": "tok-never-works", "expires_in": 300}))
            return
        if mode == "auth-loop":
            realm = f"http://{self.host}/token"
            challenge = f'Bearer realm="{realm}",service="bad",scope="repository:{REPOSITORY}:pull"'
            self._send(h, 401, b'{"errors":[]}', {"WWW-Authenticate": challenge}, head=head)
            return
        if mode == "token-endless":
            realm = f"http://{self.host}/token"
            self._send(h, 401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}"'}, head=head)
            return
        if mode == "auth-huge-body" and not head:
            self._huge(h, 401, {"WWW-Authenticate": 'Basic realm="bad"'})
            return
        if mode == "basic-auth":
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if h.headers.get("Authorization") != expected:
                self._send(h, 401, b"", {"WWW-Authenticate": 'Basic realm="bad"'}, head=head)
                return
        if mode == "error-endless-body":
            self._endless_chunked(h, 500, {"Content-Type": "application/json"}, head=head)
            return
        prefix = f"/v2/{REPOSITORY}/"
        path = path.removeprefix("/moved")
        if not path.startswith(prefix):
            self._send(h, 404, b"", head=head)
            return
        kind, _, name = path[len(prefix) :].partition("/")
        if kind == "manifests":
            self._manifest(h, name, head)
        elif kind == "blobs":
            self._blob(h, name, head)
        else:
            self._send(h, 404, b"", head=head)

    def _manifest(self, h: _Handler, name: str, head: bool) -> None:
        mode, image = self.mode, self.image
        if mode == "redirect-loop":
            self._send(h, 307, b"", {"Location": h.path}, head=head)
            return
        if mode == "redirect-huge-body" and not head:
            self._huge(h, 307, {"Location": h.path})
            return
        if mode == "redirect-once-huge-body" and not h.path.startswith("/moved"):
            self._huge(h, 307, {"Location": "/moved" + h.path}, head=head)
            return
        if name not in (TAG, image.manifest_digest):
            body = _json({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
            self._send(h, 404, body, {"Content-Type": "application/json"}, head=head)
            return
        headers = {"Content-Type": image.media_type, "Docker-Content-Digest": image.manifest_digest}
        if head:
            self._send(h, 200, image.manifest, headers, head=True)
        elif mode == "manifest-wrong-digest":
            self._send(h, 200, image.tampered_manifest, headers)
        elif mode == "manifest-endless-chunked":
            self._endless_chunked(h, 200, headers)
        elif mode == "manifest-huge-length":
            self._huge(h, 200, headers)
        elif mode == "manifest-slow":
            h.send_response(200)
            for key, value in headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(image.manifest)))
            h.end_headers()
            h.wfile.flush()
            self._dribble(h, image.manifest)
            h.close_connection = True
        else:
            self._send(h, 200, image.manifest, headers)

    def _blob(self, h: _Handler, digest: str, head: bool) -> None:
        mode, image = self.mode, self.image
        if digest == image.config_digest:
            self._send(h, 200, image.config, {"Content-Type": MEDIA_OCI_CONFIG}, head=head)
            return
        if digest != image.layer_digest:
            self._send(h, 404, b"", head=head)
            return
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        if head:
            self._send(h, 200, image.layer, headers, head=True)
        elif mode == "blob-wrong-digest":
            tampered = image.layer[:-1] + bytes([image.layer[-1] ^ 1])
            self._send(h, 200, tampered, headers)
        elif mode == "blob-endless-chunked":
            self._endless_chunked(h, 200, headers)
        elif mode == "blob-huge-length":
            self._huge(h, 200, headers)
        elif mode == "blob-slow":
            h.send_response(200)
            for key, value in headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(image.layer)))
            h.end_headers()
            h.wfile.flush()
            self._dribble(h, image.layer)
            h.close_connection = True
        else:
            self._send(h, 200, image.layer, headers)

    # -- ways of sending ----------------------------------------------------------

    @staticmethod
    def _send(
        h: _Handler, status: int, body: bytes, headers: dict[str, str] | None = None, *, head: bool = False
    ) -> None:
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _within_caps(self, sent: int, started: float) -> bool:
        return (
            sent < self.body_cap
            and time.monotonic() - started < self.time_cap
            and not self._stopping.is_set()
        )

    def _huge(self, h: _Handler, status: int, headers: dict[str, str], *, head: bool = False) -> None:
        """Announce :data:`HUGE` bytes; send up to ``body_cap`` of them, then hang up."""
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(HUGE))
        h.end_headers()
        h.close_connection = True
        if head:
            return
        sent, started = 0, time.monotonic()
        while self._within_caps(sent, started):
            h.wfile.write(_CHUNK)
            sent += len(_CHUNK)

    def _endless_chunked(
        self, h: _Handler, status: int, headers: dict[str, str], *, head: bool = False
    ) -> None:
        """A chunked body with no last chunk, cut off at ``body_cap`` bytes."""
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        if head:
            return
        sent, started = 0, time.monotonic()
        frame = f"{len(_CHUNK):x}\r\n".encode() + _CHUNK + b"\r\n"
        while self._within_caps(sent, started):
            h.wfile.write(frame)
            sent += len(_CHUNK)

    def _dribble(self, h: _Handler, data: bytes) -> None:
        """Send ``data`` one byte per ``interval`` (raw, bypassing the header buffer)."""
        started = time.monotonic()
        for i in range(len(data)):
            if not self._within_caps(0, started):
                return
            h.wfile.write(data[i : i + 1])
            h.wfile.flush()
            if self._stopping.wait(self.interval):
                return
