"""``ssh://`` addresses: containerd on another machine, through OpenSSH's own socket forwarding.

``Client("ssh://user@host[:port][/path/containerd.sock]")`` starts one
``ssh -nNT -L <local.sock>:<remote.sock> user@host`` per client and points
the gRPC channel at ``<local.sock>``, a socket in a private temporary folder
(mode 0700). OpenSSH does the forwarding (one process, every gRPC connection
multiplexed over one SSH connection, no copy loop of ours); host keys,
agents, ``~/.ssh/config`` and ``known_hosts`` stay ssh's business: nothing
here turns a check off. ``BatchMode=yes`` makes ssh fail instead of
prompting, which a library cannot answer.

Why ``-L`` rather than docker-py's one ssh per connection (``-W`` style
stdio): gRPC wants a socket it can dial, not a pipe, so stdio forwarding
would need a listener and a copy thread of ours per connection; ``-L`` is
OpenSSH's listener, and grpc reconnects to it by path.

The tunnel is ready when ssh has bound ``<local.sock>``: ssh sets up local
forwards only after authentication, and ``ExitOnForwardFailure=yes`` makes
it exit if it cannot. A missing remote socket shows only when a connection
is forwarded (ssh stays up and closes that connection), so it is reported
at the first call (:meth:`Tunnel.explain`). If ssh dies later, the next
call that finds the daemon unavailable starts it again (a retried,
idempotent call then goes through); if it cannot be started,
:class:`~containerd_client.errors.SSHConnectError` says why.

The tunnel belongs to the connection: :meth:`Tunnel.close` stops ssh by its
PID and removes the folder; it runs at ``Client.close()``, after a failed
start, on Ctrl-C during the start, and from the client's finalizer (also at
interpreter exit). ssh runs in a session of its own, so a Ctrl-C at the
terminal interrupts Python only, and the cleanup that follows (deleting
containers over the tunnel) still reaches the daemon.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence

import attrs

from containerd_client._watchdog import Watchdog
from containerd_client.errors import (
    InvalidAddressError,
    InvalidArgumentError,
    RemoteSocketError,
    RPCError,
    SSHConnectError,
    SSHNotFoundError,
    StatusCode,
)

__all__ = [
    "DEFAULT_REMOTE_SOCKET",
    "START_TIMEOUT",
    "SSHAddress",
    "Tunnel",
    "is_ssh",
    "parse_address",
]

logger = logging.getLogger(__name__)

#: Where containerd listens when the address names no path.
DEFAULT_REMOTE_SOCKET = "/run/containerd/containerd.sock"
#: ssh's ConnectTimeout (TCP connect and banner), unless ssh_options set one first.
CONNECT_TIMEOUT = 10
#: The longest wait for the tunnel to come up (connect, authenticate, bind).
START_TIMEOUT = 20.0
#: How long ssh gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 2.0
#: How often the start checks for the bound socket or ssh's exit.
_POLL = 0.01
#: The watcher's waits between failed restarts: from the first, doubling to the last.
RESTART_BACKOFF = (0.5, 30.0)
#: A call that finds ssh down within this many seconds of a failed restart
#: gets that failure at once instead of waiting for another attempt.
FAILURE_REUSE = 2.0


def is_ssh(address: str) -> bool:
    """Whether ``address`` is an ``ssh://`` URL."""
    return address[:6].lower() == "ssh://"


@attrs.frozen
class SSHAddress:
    """A parsed ``ssh://[user@]host[:port][/socket]`` address."""

    host: str
    user: str | None = None
    port: int | None = None
    socket: str = DEFAULT_REMOTE_SOCKET

    @property
    def destination(self) -> str:
        """``user@host:port`` as given, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        who = f"{self.user}@{host}" if self.user else host
        return f"{who}:{self.port}" if self.port else who


def parse_address(address: str) -> SSHAddress:
    """Read an ``ssh://`` address.

    The path is the remote socket (``/run/containerd/containerd.sock`` when
    absent). A password is refused: ssh takes none on its command line (use
    a key or an agent), and it would end up in reprs and logs.

    Raises:
        InvalidAddressError: No host, a bad port, a password, a query or
            fragment, or a host or user that ssh would read as an option.
    """
    if not is_ssh(address):
        raise InvalidAddressError(f"not an ssh:// address: {address!r}")
    try:
        parts = urllib.parse.urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise InvalidAddressError(f"bad ssh address {_redact(address)!r}: {exc}") from None
    if parts.password is not None:
        raise InvalidAddressError(
            f"ssh address {_redact(address)!r} holds a password: use a key or ssh-agent instead"
        )
    host = parts.hostname or ""
    user = urllib.parse.unquote(parts.username) if parts.username else None
    if not host:
        raise InvalidAddressError(f"ssh address {address!r} names no host (ssh://user@host[:port][/socket])")
    if parts.query or parts.fragment:
        raise InvalidAddressError(f"ssh address {address!r}: a query or fragment means nothing here")
    for what, value in (("host", host), ("user", user or "")):
        # "-oProxyCommand=..." as a host would be an option to ssh; "--" guards too.
        if value.startswith("-") or any(c.isspace() or c in "\0" for c in value):
            raise InvalidAddressError(f"ssh address {address!r}: {what} {value!r} is not valid")
    path = urllib.parse.unquote(parts.path) or DEFAULT_REMOTE_SOCKET
    if path == "/":
        path = DEFAULT_REMOTE_SOCKET
    if ":" in path or "\0" in path:
        # ssh's -L splits its argument at colons.
        raise InvalidAddressError(f"ssh address {address!r}: remote socket path {path!r} holds a ':'")
    return SSHAddress(host=host, user=user, port=port, socket=path)


def _redact(address: str) -> str:
    head, sep, tail = address.rpartition("@")
    if not sep:
        return address
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{tail}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Tunnel:
    """One ssh process forwarding a private local socket to containerd's remote socket.

    Args:
        address: Where to go.
        options: Extra ssh arguments, put before the ones the tunnel needs
            (ssh keeps the first value of an ``-o`` option, so these win):
            ``["-i", key, "-o", "UserKnownHostsFile=..."]`` or ``["-F", config]``.
        start_timeout: The longest wait for the tunnel to come up.

    Raises:
        InvalidArgumentError: ``options`` is a string, or holds something else than strings.
    """

    def __init__(
        self, address: SSHAddress, options: Sequence[str] = (), *, start_timeout: float = START_TIMEOUT
    ) -> None:
        if isinstance(options, (str, bytes)) or not all(isinstance(o, str) for o in options):
            raise InvalidArgumentError(
                f"ssh_options must be a list of ssh arguments such as ['-i', '/path/key'], not {options!r}"
            )
        self.address = address
        self._options = list(options)
        self._start_timeout = start_timeout
        # Reentrant: the client's finalizer may run close() from a garbage
        # collection in the watcher's own thread while it restarts ssh.
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        # Ends ssh (and removes the folder) if Python dies without closing, even by SIGKILL.
        self._watchdog: Watchdog | None = None
        self._closed = False
        # Set first by close(): a start or restart in progress gives up at once.
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._failure: tuple[float, SSHConnectError] | None = None
        self._dir: str | None = None
        self._log: str = ""
        self.local_path = ""
        #: How many times ssh was started (1 after :meth:`start`, more after restarts).
        self.starts = 0

    @classmethod
    def open(
        cls, address: str, options: Sequence[str] = (), *, start_timeout: float = START_TIMEOUT
    ) -> Tunnel:
        """Parse ``address`` and start the tunnel; on any failure nothing is left behind.

        Raises:
            InvalidAddressError: ``address`` is malformed (nothing was started).
            InvalidArgumentError: ``options`` is no list of strings (nothing was started).
            SSHNotFoundError: No ``ssh`` on PATH.
            SSHConnectError: ssh exited, or did not come up within ``start_timeout``.
        """
        tunnel = cls(parse_address(address), options, start_timeout=start_timeout)
        tunnel.start()
        return tunnel

    def __repr__(self) -> str:
        return f"<Tunnel {self.address.destination} -> {self.address.socket} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        """The running ssh's PID, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def command(self, ssh: str = "ssh") -> list[str]:
        """The ssh command line (``ssh`` is the program's path)."""
        addr = self.address
        settings = [
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            # A restart binds the same path again; the folder is ours alone.
            "StreamLocalBindUnlink=yes",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
            # A dead network ends ssh (and so shows) in about 45 s.
            "ServerAliveInterval=15",
            # This process owns the forward: no hand-over to a shared master connection.
            "ControlPath=none",
        ]
        cmd = [ssh, *self._options]
        for setting in settings:
            cmd += ["-o", setting]
        cmd += ["-nNT", "-L", f"{self.local_path}:{addr.socket}"]
        if addr.port is not None:
            cmd += ["-p", str(addr.port)]
        if addr.user:
            cmd += ["-l", addr.user]
        return [*cmd, "--", addr.host]

    def start(self) -> None:
        """Start ssh and wait until it listens on :attr:`local_path`.

        Raises:
            SSHNotFoundError: No ``ssh`` on PATH (nothing is left behind).
            SSHConnectError: ssh exited before the tunnel was up (refused,
                unreachable, authentication or host key failed), or it did not
                come up within the start timeout; ssh is stopped and the folder removed.
        """
        ssh = shutil.which("ssh")
        if ssh is None:
            raise SSHNotFoundError(
                f"cannot reach containerd at ssh://{self.address.destination}: no ssh program on PATH "
                "(install OpenSSH's client: apt-get install openssh-client)",
                destination=self.address.destination,
            )
        with self._lock:
            try:
                self._dir = tempfile.mkdtemp(prefix="containerd-ssh-")
                # Short: a unix socket path holds at most 107 bytes.
                self.local_path = os.path.join(self._dir, "sock")
                self._log = os.path.join(self._dir, "ssh.log")
                self._spawn(ssh)
                self._watcher = threading.Thread(
                    target=self._watch, name=f"containerd-ssh-{self.address.host}", daemon=True
                )
                self._watcher.start()
            except BaseException:
                self._close_locked()
                raise

    def _watch(self) -> None:
        """Start ssh again whenever it exits, until :meth:`close`; back off while that fails.

        Calls that fail while ssh is down start it too (:meth:`explain`); this
        thread is for what waits without calling, such as a gRPC call queued
        until the channel is ready (``Task.wait``).
        """
        delay = RESTART_BACKOFF[0]
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None:
                proc.wait()
            if self._stopping.is_set():
                return
            try:
                self.ensure()
            except SSHConnectError:
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, RESTART_BACKOFF[1])
            except Exception:  # never let the watcher die with the tunnel still wanted
                logger.exception("ssh tunnel watcher of %s failed", self.address.destination)
                if self._stopping.wait(RESTART_BACKOFF[1]):
                    return
            else:
                delay = RESTART_BACKOFF[0]

    def _spawn(self, ssh: str) -> None:
        """Start ssh (lock held) and wait for the socket; raises with ssh stopped."""
        if os.path.lexists(self.local_path):
            os.unlink(self.local_path)
        with open(self._log, "ab") as log:
            proc = subprocess.Popen(
                self.command(ssh),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                close_fds=True,
                # Out of the terminal's process group: Ctrl-C interrupts Python,
                # whose cleanup (deleting containers) still needs the tunnel;
                # close() ends ssh afterwards.
                start_new_session=True,
            )
        self._proc = proc
        self._set_watchdog(Watchdog.start(proc.pid, sig=signal.SIGTERM, folder=self._dir or ""))
        self.starts += 1
        deadline = time.monotonic() + self._start_timeout
        try:
            while True:
                try:
                    code = proc.wait(_POLL)
                except subprocess.TimeoutExpired:
                    if self._stopping.is_set():
                        raise self._connect_error("the client was closed while ssh started", None) from None
                    if os.path.exists(self.local_path):
                        logger.debug("ssh tunnel %s up (pid %d)", self.address.destination, proc.pid)
                        return
                    if time.monotonic() >= deadline:
                        self._stop_proc()
                        raise self._connect_error(
                            f"ssh did not set up its tunnel within {self._start_timeout:g} s", None
                        ) from None
                    continue
                self._proc = None
                self._set_watchdog(None)
                raise self._connect_error("ssh exited", code)
        except BaseException:
            self._stop_proc()
            raise

    def _connect_error(self, what: str, code: int | None) -> SSHConnectError:
        line = self.stderr_line()
        status = "" if code is None else f" (status {code})"
        why = f": {line}" if line else ""
        return SSHConnectError(
            f"cannot reach containerd at ssh://{self.address.destination}: {what}{status}{why}",
            destination=self.address.destination,
            stderr=line,
            returncode=code,
        )

    def stderr_line(self) -> str:
        """The last line ssh wrote to its stderr ("" if none)."""
        if not self._log:
            return ""
        try:
            with open(self._log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                return _last_line(f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether ssh runs."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def ensure(self, *, reuse_failure: bool = False) -> bool:
        """Start ssh again if it exited; True if it was restarted.

        A closed tunnel stays closed (False).

        Args:
            reuse_failure: Raise the last failed restart's error again, without
                a new attempt, when it is less than :data:`FAILURE_REUSE` s old.

        Raises:
            SSHNotFoundError: ssh exited and the program is gone from PATH.
            SSHConnectError: ssh exited and could not be started again.
        """
        with self._lock:
            if self._closed or self._stopping.is_set() or self.alive():
                return False
            failure = self._failure
            if reuse_failure and failure is not None and time.monotonic() - failure[0] < FAILURE_REUSE:
                raise failure[1]
            proc = self._proc
            code = None if proc is None else proc.returncode
            line = self.stderr_line()
            logger.warning(
                "ssh tunnel to %s exited (status %s%s); starting it again",
                self.address.destination,
                code,
                f": {line}" if line else "",
            )
            ssh = shutil.which("ssh")
            if ssh is None:
                raise SSHNotFoundError(
                    f"the ssh tunnel to {self.address.destination} exited and no ssh program is on PATH",
                    destination=self.address.destination,
                    returncode=code,
                )
            try:
                self._spawn(ssh)
            except SSHConnectError as exc:
                exc.message = f"the ssh tunnel exited (status {code}) and could not be started again: " + (
                    exc.message
                )
                self._failure = (time.monotonic(), exc)
                raise
            self._failure = None
            return True

    def explain(self, err: RPCError, *, answered: bool) -> RPCError:
        """What an UNAVAILABLE on the tunnel's socket means; restarts a dead ssh.

        Returns ``err`` unchanged when it is no UNAVAILABLE, when ssh had died
        and was started again (a retried call then goes through), or when the
        daemon answered before (a restart on the far side, ridden out like a
        local one); a :class:`RemoteSocketError` when ssh is up but no call
        ever got through: containerd's socket on the host cannot be opened.

        Raises:
            SSHConnectError: ssh died and could not be started again.
        """
        if err.code is not StatusCode.UNAVAILABLE:
            return err
        starts = self.starts
        # Restarted here or by the watcher since this call's connection broke.
        if self.ensure(reuse_failure=True) or self.starts != starts or answered or self._closed:
            return err
        line = self.stderr_line()
        better = RemoteSocketError(
            f"ssh to {self.address.destination} is up, but containerd's socket {self.address.socket} "
            "there cannot be opened (is containerd running there, at that path, and may this user "
            f"open it?){f': ssh says: {line}' if line else ''}",
            destination=self.address.destination,
            stderr=line,
        )
        better.__cause__ = err.__cause__
        return better

    def close(self) -> None:
        """Stop ssh (SIGTERM, then SIGKILL) and its watcher, and remove the folder.

        Idempotent; never raises.
        """
        self._stopping.set()
        with self._lock:
            self._close_locked()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(STOP_TIMEOUT)

    def _close_locked(self) -> None:
        self._closed = True
        self._stopping.set()
        self._stop_proc()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _set_watchdog(self, watchdog: Watchdog | None) -> None:
        old, self._watchdog = self._watchdog, watchdog
        if old is not None:
            old.disarm()

    def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._set_watchdog(None)
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except OSError:  # already reaped
                pass
