"""The in-process port forwarder (``NetworkConfig(port_forwarding="proxy")``), on loopback sockets.

The "container" here is a server on 127.0.0.1; the SDK's integration tests
forward to real containers on the bridge.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from containerd_client.network import _proxy

DEADLINE = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes, shuts its side down after the peer's EOF."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    with contextlib.suppress(OSError):  # the peer may be gone already
                        conn.shutdown(socket.SHUT_WR)
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._acceptor.join(DEADLINE)
        for t in self._threads:
            t.join(DEADLINE)


@pytest.fixture
def fwd() -> Iterator[_proxy.Forwarder]:
    f = _proxy.Forwarder()
    yield f
    for key in list(f._active) + list(f._reserved):
        f.release(key)
    deadline = time.monotonic() + DEADLINE
    while f.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not f.running, "the forwarding thread outlived its last port"


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)


def _wait_listening(port: int) -> socket.socket:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return _connect(port)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _assert_reset(sock: socket.socket) -> None:
    """The peer reset (or closed) the connection: a write or read fails or reads EOF."""
    try:
        sock.sendall(b"x")
        data = sock.recv(1)
    except (ConnectionResetError, BrokenPipeError):
        return
    assert data == b"", f"the connection is still served: {data!r}"


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    received = bytearray()

    def reader() -> None:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)
    t.join(DEADLINE)
    assert not t.is_alive()
    return bytes(received)


def test_a_reserved_port_refuses_until_activated_and_its_target_listens(fwd: _proxy.Forwarder) -> None:
    port = fwd.reserve("c1", "127.0.0.1", 0)
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    target = _free_port()  # nothing listens there yet
    fwd.activate("c1", {port: ("127.0.0.1", target)})
    time.sleep(0.05)  # several probes of the target happen meanwhile
    with pytest.raises(ConnectionRefusedError):
        _connect(port)  # no server yet: refused, as the server itself would
    server = EchoServer(target)
    try:
        with _wait_listening(port) as sock:
            assert _roundtrip(sock, b"ping") == b"ping"
    finally:
        server.close()


def test_bytes_flow_both_ways_in_bulk_with_half_close(fwd: _proxy.Forwarder) -> None:
    server = EchoServer()
    try:
        port = fwd.reserve("c1", "127.0.0.1", 0)
        fwd.activate("c1", {port: ("127.0.0.1", server.port)})
        payload = os.urandom(8 * 1024 * 1024)  # more than the buffers: back-pressure both ways
        with _wait_listening(port) as sock:
            assert _roundtrip(sock, payload) == payload
    finally:
        server.close()


def test_many_connections_at_once(fwd: _proxy.Forwarder) -> None:
    server = EchoServer()
    try:
        port = fwd.reserve("c1", "127.0.0.1", 0)
        fwd.activate("c1", {port: ("127.0.0.1", server.port)})
        _wait_listening(port).close()
        results: list[bool] = []

        def one(i: int) -> None:
            with _connect(port) as sock:
                data = f"message {i} ".encode() * 1000
                results.append(_roundtrip(sock, data) == data)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert results == [True] * 20
    finally:
        server.close()


def test_a_server_gone_after_listening_resets_the_client(fwd: _proxy.Forwarder) -> None:
    server = EchoServer()
    port = fwd.reserve("c1", "127.0.0.1", 0)
    fwd.activate("c1", {port: ("127.0.0.1", server.port)})
    _wait_listening(port).close()
    server.close()
    try:
        sock = _connect(port)
    except ConnectionResetError:
        return  # reset before connect() returned: the same outcome
    with sock:  # accepted by the proxy, reset when the upstream connect fails
        _assert_reset(sock)


def test_release_closes_the_port_and_open_connections_and_ends_the_thread(fwd: _proxy.Forwarder) -> None:
    server = EchoServer()
    try:
        port = fwd.reserve("c1", "127.0.0.1", 0)
        fwd.activate("c1", {port: ("127.0.0.1", server.port)})
        sock = _wait_listening(port)
        assert fwd.running
        fwd.release("c1")
        with sock:
            _assert_reset(sock)
        with pytest.raises(ConnectionRefusedError):
            _connect(port)
        deadline = time.monotonic() + DEADLINE
        while fwd.running and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not fwd.running
        assert fwd.ports("c1") == []
        fwd.release("c1")  # idempotent
    finally:
        server.close()


def test_a_reserved_port_cannot_be_taken_by_another_socket(fwd: _proxy.Forwarder) -> None:
    port = fwd.reserve("c1", "127.0.0.1", 0)
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", port))
    with pytest.raises(OSError, match="in use"):
        fwd.reserve("c2", "127.0.0.1", port)
    fwd.release("c1")  # never activated: closes the reservation, no thread
    assert not fwd.running
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_ports_of_two_keys_are_independent(fwd: _proxy.Forwarder) -> None:
    a, b = EchoServer(), EchoServer()
    try:
        pa = fwd.reserve("a", "127.0.0.1", 0)
        pb = fwd.reserve("b", "127.0.0.1", 0)
        fwd.activate("a", {pa: ("127.0.0.1", a.port)})
        fwd.activate("b", {pb: ("127.0.0.1", b.port)})
        _wait_listening(pa).close()
        _wait_listening(pb).close()
        fwd.release("a")
        with pytest.raises(ConnectionRefusedError):
            _connect(pa)
        with _connect(pb) as sock:
            assert _roundtrip(sock, b"still here") == b"still here"
    finally:
        a.close()
        b.close()


def test_nudge_of_a_key_without_ports_starts_nothing(fwd: _proxy.Forwarder) -> None:
    fwd.nudge("nobody")
    assert not fwd.running
    port = fwd.reserve("c1", "127.0.0.1", 0)
    fwd.nudge("c1")  # reserved, not activated: nothing to probe yet
    assert not fwd.running
    assert fwd.ports("c1") == [port]
