"""Published TCP ports forwarded in this process: ``NetworkConfig(port_forwarding="proxy")``.

A userland forwarder, like Docker's ``docker-proxy``: a socket listening on
the host port, each accepted connection paired with one to the container's
address on the bridge, bytes pumped both ways by one thread with a selector
for every published port of the process. What it buys over the ``portmap``
plugin (iptables DNAT) for test services:

* no iptables rule per port and no plugin runs to add and remove them
  (portmap's DEL alone is ~100 ms of ``iptables`` calls per container);
* the host port is held by a bound socket from the moment it is picked, so
  nothing else can take it, and nothing can outlive the process: a crashed
  process leaves no DNAT rule that captures the port later;
* no ``route_localnet`` on the bridge.

What it costs: the ports answer only while this process runs (a container
meant to outlive it, such as the CLI's ``run -d``, wants ``portmap``), and
UDP is not forwarded (UDP ports still go through ``portmap``).

A published port is *bound* (reserved, not listening) when the container is
created and starts *listening* only once the container's own port accepts a
connection (probed with back-off). Before that a client gets "connection
refused", as it would from the server itself: a TCP wait strategy is not
fooled by a proxy that accepts for a server not yet up.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Hashable

__all__ = ["Forwarder", "forwarder", "nudge", "release"]

logger = logging.getLogger(__name__)

# Per direction, bytes read but not yet written; reading stops while full.
_BUFFER = 256 * 1024
_BACKLOG = 128
# Probing the container's port before listening: first retry, back-off cap.
_PROBE_FIRST = 0.002
_PROBE_MAX = 0.05
# A container that never listens is probed this long at most.
_PROBE_GIVE_UP = 3600.0


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees the failure, not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Pipe:
    """One direction of a connection: reads ``src``, writes ``dst``."""

    __slots__ = ("buf", "dst", "eof", "shut", "src")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.buf = bytearray()
        self.eof = False  # src said EOF
        self.shut = False  # dst got SHUT_WR

    @property
    def done(self) -> bool:
        return self.shut


class _Conn:
    """An accepted connection and its upstream one."""

    __slots__ = ("down", "listener", "reg", "up", "up_ready", "ways")

    def __init__(self, listener: _Listener, down: socket.socket, up: socket.socket) -> None:
        self.listener = listener
        self.down = down
        self.up = up
        self.up_ready = False
        self.ways = (_Pipe(down, up), _Pipe(up, down))
        # What each socket is registered for in the selector (absent: not registered).
        self.reg: dict[socket.socket, int] = {}


class _Listener:
    __slots__ = ("conns", "key", "next_probe", "pause", "probe", "since", "sock", "target")

    def __init__(self, key: Hashable, sock: socket.socket, target: tuple[str, int]) -> None:
        self.key = key
        self.sock = sock
        self.target = target
        self.conns: set[_Conn] = set()
        self.probe: socket.socket | None = None
        self.next_probe = 0.0
        self.pause = _PROBE_FIRST
        self.since = time.monotonic()


class Forwarder:
    """Every published port of this process, served by one thread (started on demand).

    The thread ends when the last port is released, so a process with no
    published port has no thread. Calls are thread-safe; :meth:`release`
    returns once the port's sockets are closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._commands: list[tuple[str, Hashable, list[_Listener], threading.Event | None]] = []
        # Wakes the thread up for a command; exists while the thread does.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._listeners: dict[Hashable, list[_Listener]] = {}
        self._reserved: dict[Hashable, list[socket.socket]] = {}
        # Keys handed to the thread (by activate) and not yet removed.
        self._active: set[Hashable] = set()

    # -- public ------------------------------------------------------------------

    def reserve(self, key: Hashable, host_ip: str, host_port: int) -> int:
        """Bind (not listen on) ``host_ip:host_port`` for ``key``; 0 picks a free port.

        Returns:
            The port bound.

        Raises:
            OSError: The bind failed (``EADDRINUSE``: the port is taken).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if host_port:
                # An explicit port may have connections of an earlier user in
                # TIME_WAIT; without SO_REUSEADDR they would keep it for a minute.
                # Two sockets bound that way do not exclude each other until one
                # listens, so this process's own ports are checked here.
                if host_port in self._held():
                    raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # A picked port (0) is bound without it: the kernel then hands out a
            # port no other socket holds. Set afterwards, so that connections
            # this socket accepts leave TIME_WAIT entries that do not keep the
            # port from being bound again.
            sock.bind((host_ip, host_port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        with self._lock:
            self._reserved.setdefault(key, []).append(sock)
        return int(sock.getsockname()[1])

    def _held(self) -> set[int]:
        with self._lock:
            socks = [s for held in self._reserved.values() for s in held]
            socks += [item.sock for items in self._listeners.values() for item in items]
            socks += [item.sock for _, _, items, _ in self._commands for item in items]
            ports = set()
            for sock in socks:
                with contextlib.suppress(OSError):
                    ports.add(int(sock.getsockname()[1]))
            return ports

    def activate(self, key: Hashable, targets: dict[int, tuple[str, int]]) -> None:
        """Forward ``key``'s reserved ports: ``{host port: (container ip, container port)}``.

        Each starts listening once its target accepts a connection.
        """
        with self._lock:
            socks = self._reserved.pop(key, [])
            listeners = []
            for sock in socks:
                target = targets.get(int(sock.getsockname()[1]))
                if target is None:
                    sock.close()
                    continue
                listeners.append(_Listener(key, sock, target))
            if not listeners:
                return
            self._active.add(key)
            self._commands.append(("add", key, listeners, None))
            self._ensure_thread()
        self._wake()

    def release(self, key: Hashable, timeout: float = 5.0) -> None:
        """Close ``key``'s ports and their connections (reserved or forwarding). Idempotent."""
        done = threading.Event()
        with self._lock:
            for sock in self._reserved.pop(key, []):
                sock.close()
            if key not in self._active:
                return
            self._active.discard(key)
            self._commands.append(("remove", key, [], done))
            self._ensure_thread()
        self._wake()
        if threading.current_thread() is not self._thread and not done.wait(timeout):
            logger.warning("closing the forwarded ports of %s took longer than %s s", key, timeout)

    def nudge(self, key: Hashable) -> None:
        """Probe ``key``'s targets that do not listen yet now, and restart their back-off."""
        with self._lock:
            if key not in self._active:
                return
            self._commands.append(("nudge", key, [], None))
            self._ensure_thread()
        self._wake()

    def ports(self, key: Hashable) -> list[int]:
        """The host ports held for ``key`` (reserved or forwarding); for tests and reprs."""
        with self._lock:
            held = [int(s.getsockname()[1]) for s in self._reserved.get(key, [])]
            held += [int(item.sock.getsockname()[1]) for item in self._listeners.get(key, [])]
        return held

    @property
    def running(self) -> bool:
        """Whether the forwarding thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the thread --------------------------------------------------------------

    def _ensure_thread(self) -> None:  # under the lock
        if self._thread is None or not self._thread.is_alive():
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._thread = threading.Thread(
                target=self._loop, name="containerd-client-port-proxy", daemon=True
            )
            self._thread.start()

    def _wake(self) -> None:
        with self._lock:
            if self._wake_w is not None:
                with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                    self._wake_w.send(b"x")

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        wake = self._wake_r
        assert wake is not None
        sel.register(wake, selectors.EVENT_READ, None)
        try:
            while True:
                if not self._apply(sel):
                    return
                timeout = self._probe_due(sel)
                for key, mask in sel.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            while wake.recv(4096):
                                pass
                        continue
                    kind, obj = key.data
                    try:
                        if kind == "listen":
                            self._accept(sel, obj)
                        elif kind == "probe":
                            self._probed(sel, obj)
                        else:
                            self._io(sel, obj, key.fileobj, mask)
                    except Exception:  # a bug must not kill every published port
                        logger.exception("port forwarding failed")
        finally:
            sel.close()

    def _apply(self, sel: selectors.BaseSelector) -> bool:
        """Run queued commands; False when the thread should end (nothing left)."""
        with self._lock:
            commands, self._commands = self._commands, []
            for name, key, items, done in commands:
                if name == "add":
                    self._listeners.setdefault(key, []).extend(items)
                elif name == "nudge":
                    for item in self._listeners.get(key, []):
                        if item.probe is None and item.next_probe >= 0:
                            item.next_probe = 0.0
                            item.pause = _PROBE_FIRST
                else:
                    for item in self._listeners.pop(key, []):
                        self._close_listener(sel, item)
                    assert done is not None
                    done.set()
            if not self._listeners and not self._commands:
                self._thread = None
                for sock in (self._wake_r, self._wake_w):
                    if sock is not None:
                        sock.close()
                self._wake_r = self._wake_w = None
                return False
            return True

    def _probe_due(self, sel: selectors.BaseSelector) -> float | None:
        """Start the probes that are due; the seconds until the next one (None: none pending)."""
        now = time.monotonic()
        wait: float | None = None
        for items in list(self._listeners.values()):
            for item in items:
                if item.probe is not None or item.next_probe < 0:
                    continue  # probing now, or listening
                if now - item.since > _PROBE_GIVE_UP:
                    continue
                if item.next_probe > now:
                    left = item.next_probe - now
                    wait = left if wait is None else min(wait, left)
                    continue
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probe.setblocking(False)
                code = probe.connect_ex(item.target)
                if code not in (0, errno.EINPROGRESS):
                    probe.close()
                    self._retry(item, now)
                    wait = item.pause if wait is None else min(wait, item.pause)
                    continue
                item.probe = probe
                sel.register(probe, selectors.EVENT_WRITE, ("probe", item))
        return wait

    @staticmethod
    def _retry(item: _Listener, now: float) -> None:
        item.next_probe = now + item.pause
        item.pause = min(item.pause * 2, _PROBE_MAX)

    def _probed(self, sel: selectors.BaseSelector, item: _Listener) -> None:
        probe = item.probe
        assert probe is not None
        sel.unregister(probe)
        item.probe = None
        code = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        probe.close()
        if code != 0:
            self._retry(item, time.monotonic())
            return
        item.next_probe = -1.0  # listening from now on (or given up)
        try:
            item.sock.listen(_BACKLOG)
        except OSError as exc:  # another process's socket, bound alike, listened first
            logger.error("cannot forward host port %s: %s", item.sock.getsockname(), exc.strerror)
            return
        sel.register(item.sock, selectors.EVENT_READ, ("listen", item))

    def _accept(self, sel: selectors.BaseSelector, item: _Listener) -> None:
        for _ in range(64):
            try:
                down, _addr = item.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("port proxy cannot accept: %s", exc.strerror)
                    return
                raise
            down.setblocking(False)
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            for s in (down, up):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = up.connect_ex(item.target)
            if code not in (0, errno.EINPROGRESS):
                up.close()
                _reset(down)
                continue
            conn = _Conn(item, down, up)
            item.conns.add(conn)
            self._want(sel, conn, up, selectors.EVENT_WRITE)

    def _io(self, sel: selectors.BaseSelector, conn: _Conn, fileobj: object, mask: int) -> None:
        if not conn.up_ready:
            code = conn.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self._drop(sel, conn)  # the server went away: the client sees a reset
                return
            conn.up_ready = True
            self._interest(sel, conn)
            return
        try:
            for way in conn.ways:
                if way.src is fileobj and mask & selectors.EVENT_READ and not way.eof:
                    self._read(way)
                if way.dst is fileobj and mask & selectors.EVENT_WRITE:
                    self._flush(way)
            for way in conn.ways:  # write (or pass on EOF) right away what reading brought
                if (way.buf or way.eof) and not way.shut:
                    self._flush(way)
        except OSError:
            self._drop(sel, conn)
            return
        if all(way.done for way in conn.ways):
            self._close(sel, conn)
            return
        self._interest(sel, conn)

    @staticmethod
    def _read(way: _Pipe) -> None:
        room = _BUFFER - len(way.buf)
        if room <= 0:
            return
        try:
            data = way.src.recv(min(room, 65536))
        except (BlockingIOError, InterruptedError):
            return
        if data:
            way.buf += data
        else:
            way.eof = True

    @staticmethod
    def _flush(way: _Pipe) -> None:
        if way.buf:
            try:
                sent = way.dst.send(way.buf)
            except (BlockingIOError, InterruptedError):
                return
            del way.buf[:sent]
        if not way.buf and way.eof and not way.shut:
            way.shut = True
            with contextlib.suppress(OSError):
                way.dst.shutdown(socket.SHUT_WR)

    @staticmethod
    def _want(sel: selectors.BaseSelector, conn: _Conn, sock: socket.socket, events: int) -> None:
        """Register ``sock`` for ``events`` (none: unregister), only when that changes."""
        now = conn.reg.get(sock, 0)
        if events == now:
            return
        if not events:
            sel.unregister(sock)
            del conn.reg[sock]
        elif not now:
            sel.register(sock, events, ("conn", conn))
            conn.reg[sock] = events
        else:
            sel.modify(sock, events, ("conn", conn))
            conn.reg[sock] = events

    def _interest(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        for sock in (conn.down, conn.up):
            events = 0
            for way in conn.ways:
                if way.src is sock and not way.eof and len(way.buf) < _BUFFER:
                    events |= selectors.EVENT_READ
                if way.dst is sock and way.buf:
                    events |= selectors.EVENT_WRITE
            # A socket with nothing to do now is left out (a readable EOF would spin).
            self._want(sel, conn, sock, events)

    def _drop(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        """End a connection on an error: both sides see a reset."""
        self._close(sel, conn, reset=True)

    @staticmethod
    def _close(sel: selectors.BaseSelector, conn: _Conn, *, reset: bool = False) -> None:
        for sock in (conn.down, conn.up):
            if sock in conn.reg:
                sel.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()
        conn.reg.clear()
        conn.listener.conns.discard(conn)

    def _close_listener(self, sel: selectors.BaseSelector, item: _Listener) -> None:
        for conn in list(item.conns):
            self._drop(sel, conn)
        for sock in (item.probe, item.sock):
            if sock is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(sock)
            sock.close()
        item.probe = None


class _Process:
    """The process's forwarder (a holder, so a fork can drop the parent's)."""

    lock = threading.Lock()
    forwarder: Forwarder | None = None


def forwarder() -> Forwarder:
    """The process's :class:`Forwarder` (made on first use; a new one after a fork)."""
    with _Process.lock:
        if _Process.forwarder is None:
            _Process.forwarder = Forwarder()
        return _Process.forwarder


def nudge(key: Hashable) -> None:
    """See :meth:`Forwarder.nudge`; nothing when this process forwards no port."""
    fwd = _Process.forwarder
    if fwd is not None:
        fwd.nudge(key)


def release(key: Hashable) -> None:
    """Close ``key``'s forwarded ports, if this process has any (no thread or socket is made)."""
    fwd = _Process.forwarder
    if fwd is not None:
        fwd.release(key)


def _after_fork() -> None:
    # The child has none of the parent's threads: its ports are the parent's,
    # not its own to serve or close.
    _Process.lock = threading.Lock()
    _Process.forwarder = None


os.register_at_fork(after_in_child=_after_fork)
