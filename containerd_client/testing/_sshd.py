"""A private OpenSSH server on 127.0.0.1, for testing ``ssh://`` addresses.

:class:`SSHServer` runs Debian's ``sshd`` (package ``openssh-server``) in the
foreground with a configuration, host key and user key of its own in a
temporary folder, on a free port of 127.0.0.1, and stops it by its PID::

    with SSHServer() as sshd:
        with Client(sshd.address(daemon.address), ssh_options=sshd.ssh_options) as client:
            client.version()

Only key logins for the user running it (root included, since CI runs as
root), no PAM, no passwords, local forwarding only (sshd allows socket
forwarding only where ``AllowTcpForwarding`` allows local forwards too).
The client side gets an ssh configuration file of its own
(:attr:`SSHServer.ssh_options` is ``["-F", <file>]``) naming the user key and
a ``known_hosts`` that holds the server's host key: the host key is checked
by ssh as usual, nothing turns the check off.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from containerd_client.errors import DaemonStartError

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["SSHServer", "find_sshd"]

#: Where Debian's openssh-server puts the daemon.
SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
START_TIMEOUT = 10.0


def find_sshd() -> str | None:
    """The path of ``sshd``, or None when openssh-server is not installed."""
    for path in SSHD_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("sshd")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "containerd-client-test", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )


class SSHServer:
    """An ``sshd`` of its own on 127.0.0.1, with throwaway keys; stopped by PID.

    Args:
        base_dir: Folder for keys, configuration and log; a new temporary one
            (removed by :meth:`stop`) by default.
    """

    def __init__(self, base_dir: str | None = None) -> None:
        self._own_dir = base_dir is None
        self._base = base_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.user = getpass.getuser()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SSHServer 127.0.0.1:{self.port} pid={self.pid}>"

    @property
    def base_dir(self) -> str:
        if self._base is None:
            raise RuntimeError("the server was not started")
        return self._base

    @property
    def pid(self) -> int | None:
        """sshd's PID while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def key_path(self) -> str:
        """The user's private key (its public half is the only authorized key)."""
        return os.path.join(self.base_dir, "user_key")

    @property
    def host_key_path(self) -> str:
        return os.path.join(self.base_dir, "host_key")

    @property
    def known_hosts(self) -> str:
        """A known_hosts file holding this server's host key (and nothing else)."""
        return os.path.join(self.base_dir, "known_hosts")

    @property
    def ssh_config(self) -> str:
        """An ssh client configuration for this server: its key, its known_hosts."""
        return os.path.join(self.base_dir, "ssh_config")

    @property
    def ssh_options(self) -> list[str]:
        """Arguments for ssh (``Client(..., ssh_options=...)``): ``["-F", ssh_config]``."""
        return ["-F", self.ssh_config]

    @property
    def log_path(self) -> str:
        return os.path.join(self.base_dir, "sshd.log")

    def address(self, socket_path: str = "") -> str:
        """``ssh://<user>@127.0.0.1:<port><socket_path>``."""
        if socket_path and not socket_path.startswith("/"):
            raise ValueError(f"socket path {socket_path!r} must be absolute")
        return f"ssh://{self.user}@127.0.0.1:{self.port}{socket_path}"

    def logs(self) -> str:
        """What sshd logged so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _prepare(self) -> None:
        if self._base is None:
            self._base = tempfile.mkdtemp(prefix="containerd-sshd-")
        os.makedirs(self._base, mode=0o700, exist_ok=True)
        if not os.path.exists(self.host_key_path):
            _keygen(self.host_key_path)
        if not os.path.exists(self.key_path):
            _keygen(self.key_path)
        shutil.copyfile(self.key_path + ".pub", os.path.join(self._base, "authorized_keys"))
        # sshd's privilege separation folder (Debian's build wants it; the service makes it).
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    def _write_configs(self) -> None:
        base = self.base_dir
        with open(os.path.join(base, "sshd_config"), "w", encoding="utf-8") as f:
            f.write(
                f"Port {self.port}\n"
                "ListenAddress 127.0.0.1\n"
                f"HostKey {self.host_key_path}\n"
                f"PidFile {os.path.join(base, 'sshd.pid')}\n"
                f"AuthorizedKeysFile {os.path.join(base, 'authorized_keys')}\n"
                f"AllowUsers {self.user}\n"
                "PermitRootLogin prohibit-password\n"
                "PubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                # The key files live in a temporary folder, not in a home.
                "StrictModes no\n"
                "AllowStreamLocalForwarding local\n"
                # sshd gates local socket forwarding on this too ("the request was denied").
                "AllowTcpForwarding local\n"
                "X11Forwarding no\n"
                "PrintMotd no\n"
                "LogLevel INFO\n"
            )
        with open(self.host_key_path + ".pub", encoding="utf-8") as pub:
            kind, key = pub.read().split()[:2]
        with open(self.known_hosts, "w", encoding="utf-8") as f:
            f.write(f"[127.0.0.1]:{self.port} {kind} {key}\n")
        with open(self.ssh_config, "w", encoding="utf-8") as f:
            f.write(
                "Host 127.0.0.1\n"
                f"  IdentityFile {self.key_path}\n"
                "  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n"
            )

    def start(self) -> None:
        """Start sshd on a free port and wait until it accepts connections.

        Raises:
            DaemonStartError: sshd is not installed, exited, or did not listen in time
                (its log is in the message); nothing is left running.
        """
        sshd = find_sshd()
        if sshd is None:
            raise DaemonStartError("sshd is not installed (apt-get install openssh-server)")
        try:
            self._prepare()
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise DaemonStartError(f"cannot prepare sshd's keys and folder: {exc}") from exc
        for _ in range(3):  # another process may take the free port first
            self.port = _free_port()
            self._write_configs()
            with open(self.log_path, "wb") as log:
                proc = subprocess.Popen(
                    [sshd, "-D", "-e", "-f", os.path.join(self.base_dir, "sshd_config")],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._proc = proc
            try:
                if self._wait_listening(proc):
                    return
            except BaseException:
                self.stop()
                raise
            if "Address already in use" not in self.logs():
                break
        logs = self.logs().strip()
        self.stop()
        raise DaemonStartError(f"sshd did not start: {logs or 'no output'}")

    def _wait_listening(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.02)
        return False

    def kill(self) -> None:
        """Stop sshd by its PID (SIGTERM, then SIGKILL), keeping its keys and configuration.

        Connections already open stay up (sshd's per-connection processes
        carry on); new ones are refused.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop sshd by its PID and remove the folder if it was ours. Idempotent."""
        self.kill()
        if self._own_dir and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
