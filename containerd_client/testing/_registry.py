"""A private OCI registry for tests, and a push helper that uses containerd's ``ctr``.

:class:`LocalRegistry` runs the ``docker-registry`` binary (Debian's package
of distribution 2.8; ``apt-get install docker-registry apache2-utils``) on
``127.0.0.1:<free port>`` with its storage in a temporary folder. It can
require basic auth (an htpasswd file made with ``htpasswd -Bbn``) and serve
TLS with a self-signed certificate made with the ``openssl`` command::

    with LocalRegistry(users={"alice": "s3cret"}, tls=True) as registry:
        push_with_ctr(daemon, f"{registry.host}/test/busybox:1",
                      user="alice", password="s3cret", ca_file=registry.cert_path)

Passwords never appear in reprs, logs or exception messages; the process is
stopped by its PID and the folder removed on :meth:`LocalRegistry.stop`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from containerd_client.errors import ContainerdError

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from containerd_client.testing._daemon import ContainerdDaemon
    from containerd_client.testing._images import ImageArchive

__all__ = ["LocalRegistry", "LocalRegistryError", "push_with_ctr"]

logger = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 4096


class LocalRegistryError(ContainerdError):
    """The test registry (or a tool it needs) could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        package = {"docker-registry": "docker-registry", "htpasswd": "apache2-utils"}.get(name, name)
        raise LocalRegistryError(f"{name!r} not found on PATH (apt-get install {package})")
    return path


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class _Process:
    """The running registry, kept apart from LocalRegistry so a finalizer can stop it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_dir: str | None = None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        base, self.base_dir = self.base_dir, None
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


class LocalRegistry:
    """A distribution registry listening on 127.0.0.1 only, for tests.

    Args:
        users: ``{user: password}`` for basic auth (htpasswd); none means anonymous.
        tls: Serve HTTPS with a self-signed certificate for ``127.0.0.1`` and
            ``localhost`` (see :attr:`cert_path`).
        binary: The registry binary; ``docker-registry`` on ``PATH`` by default.
        start_timeout: Seconds to wait until ``/v2/`` answers.

    Raises (from :meth:`start`):
        LocalRegistryError: A tool is missing or the registry did not come up.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        tls: bool = False,
        binary: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self._users = dict(users or {})
        self.tls = tls
        self._binary = binary
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._lock = threading.Lock()
        self._state = _Process()
        self._finalizer = weakref.finalize(self, self._state.stop)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.pid is not None else "stopped"
        auth = f" users={sorted(self._users)}" if self._users else ""
        scheme = "https" if self.tls else "http"
        return f"<LocalRegistry {scheme}://{self.host if self._port else '-'} {state}{auth}>"

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

    # -- addresses ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (known after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("LocalRegistry.port is known once start() has run")
        return self._port

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``, the host part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` or ``https://...``."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def cert_path(self) -> str | None:
        """The self-signed certificate (PEM) when ``tls`` is set, to trust as a CA."""
        if not self.tls or self._state.base_dir is None:
            return None
        return os.path.join(self._state.base_dir, "cert.pem")

    @property
    def pid(self) -> int | None:
        """PID of the running registry, else None."""
        proc = self._state.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def log_path(self) -> str | None:
        """The registry's log file."""
        base = self._state.base_dir
        return os.path.join(base, "registry.log") if base else None

    def logs(self) -> str:
        """The end of the registry's log."""
        path = self.log_path
        return _tail(path) if path else ""

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Write the config (and htpasswd file, certificate), start, wait until ready.

        Raises:
            LocalRegistryError: A tool is missing, or the registry exited or
                did not answer within ``start_timeout``.
            RuntimeError: It is already running.
        """
        with self._lock:
            if self.pid is not None:
                raise RuntimeError("the registry is already running")
            binary = self._binary or _tool("docker-registry")
            base = tempfile.mkdtemp(prefix="ccregistry-")
            self._state.base_dir = base
            try:
                self._prepare(base)
                # A free port can be taken between the probe and the bind: try a few.
                last = ""
                for _ in range(3):
                    self._port = _free_port()
                    config = self._write_config(base)
                    self._spawn(binary, config, base)
                    if self._wait_ready():
                        logger.info("registry %s (pid %s) ready", self.url, self.pid)
                        return
                    last = self.logs()
                    self._kill_process()
                raise LocalRegistryError(f"docker-registry did not start on 127.0.0.1; log:\n{last}")
            except BaseException:
                self._state.stop()
                self._port = None
                raise

    def _prepare(self, base: str) -> None:
        os.makedirs(os.path.join(base, "storage"))
        if self._users:
            htpasswd = _tool("htpasswd")
            lines = []
            for user, password in self._users.items():
                # -B bcrypt: the only hash distribution's htpasswd accepts.
                res = subprocess.run(
                    [htpasswd, "-Bbn", user, password],
                    capture_output=True,
                    text=True,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
                if res.returncode != 0:
                    raise LocalRegistryError(f"htpasswd failed for user {user!r} (exit {res.returncode})")
                lines.append(res.stdout.strip())
            with open(os.path.join(base, "htpasswd"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        if self.tls:
            openssl = _tool("openssl")
            res = subprocess.run(
                [
                    openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", os.path.join(base, "key.pem"),
                    "-out", os.path.join(base, "cert.pem"),
                    "-subj", "/CN=127.0.0.1",
                    # Go ignores the CN: the names must be in subjectAltName.
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                ],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if res.returncode != 0:
                raise LocalRegistryError(f"openssl could not make a certificate: {res.stderr[-2000:]}")

    def _write_config(self, base: str) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {os.path.join(base, 'storage')}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self._port}",
            "  secret: containerd-client-test",
        ]
        if self.tls:
            lines += [
                "  tls:",
                f"    certificate: {os.path.join(base, 'cert.pem')}",
                f"    key: {os.path.join(base, 'key.pem')}",
            ]
        if self._users:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: containerd-client-test",
                f"    path: {os.path.join(base, 'htpasswd')}",
            ]
        path = os.path.join(base, "config.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _spawn(self, binary: str, config: str, base: str) -> None:
        with open(os.path.join(base, "registry.log"), "ab") as log:
            self._state.proc = subprocess.Popen(
                [binary, "serve", config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
                close_fds=True,
                start_new_session=True,
            )

    def _kill_process(self) -> None:
        proc, self._state.proc = self._state.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def _probe(self) -> int | None:
        conn: http.client.HTTPConnection
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cert_path)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=1.0, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.02
        while time.monotonic() < deadline:
            proc = self._state.proc
            if proc is None or proc.poll() is not None:
                return False
            if self._probe() in (200, 401):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    def stop(self) -> None:
        """Stop the registry by its PID and remove its folder. Idempotent."""
        with self._lock:
            self._state.stop()


def _redacted(args: list[str], secret: str | None) -> list[str]:
    if not secret:
        return list(args)
    return [a.replace(secret, "***") for a in args]


def push_with_ctr(
    daemon: ContainerdDaemon,
    ref: str,
    *,
    archive: ImageArchive | None = None,
    user: str | None = None,
    password: str | None = None,
    plain_http: bool | None = None,
    ca_file: str | None = None,
    namespace: str | None = None,
    timeout: float = 120.0,
) -> ImageArchive:
    """Push an image to a registry with containerd's own ``ctr``.

    Imports ``archive`` (a busybox image built on the spot when none is
    given) into ``daemon`` with ``ctr images import``, tags it as ``ref`` and
    runs ``ctr images push`` (client-side push, ``--local`` on containerd 2.x).

    Args:
        daemon: A running test daemon; its ``ctr`` is used.
        ref: The full reference to push to (``127.0.0.1:PORT/repo:tag``).
        archive: The image to push; see :func:`~containerd_client.testing.build_busybox_archive`.
        user: Registry user name, with ``password``.
        password: Registry password; never logged or put in an error message.
        plain_http: Push over HTTP; by default when ``ca_file`` is not given.
        ca_file: CA certificate for a TLS registry (``LocalRegistry.cert_path``).
        namespace: The daemon namespace to import into (the daemon's own by default).
        timeout: Seconds for each ctr command.

    Returns:
        The archive that was pushed (its digests are what a pull must find).

    Raises:
        LocalRegistryError: A ctr command failed (the message has the
            command, without the password, and ctr's output).
    """
    with contextlib.ExitStack() as stack:
        if archive is None:
            from containerd_client.testing._images import build_busybox_archive

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ccpush-"))
            archive = build_busybox_archive(os.path.join(tmp, "busybox.tar"))
        _push(
            daemon,
            ref=ref,
            archive=archive,
            user=user,
            password=password,
            plain_http=plain_http,
            ca_file=ca_file,
            namespace=namespace,
            timeout=timeout,
        )
    return archive


def _push(
    daemon: ContainerdDaemon,
    *,
    ref: str,
    archive: ImageArchive,
    user: str | None,
    password: str | None,
    plain_http: bool | None,
    ca_file: str | None,
    namespace: str | None,
    timeout: float,
) -> None:
    def ctr(*args: str) -> None:
        try:
            daemon.ctr(*args, namespace=namespace, timeout=timeout, check=True)
        except subprocess.CalledProcessError as exc:
            # The exception's own text holds the command line, and with it the password.
            output = (exc.stdout or "") + (exc.stderr or "")
            if password:
                output = output.replace(password, "***")
            shown = " ".join(_redacted(list(args), password))
            raise LocalRegistryError(
                f"ctr {shown} failed (exit {exc.returncode}): {output[-2000:]}"
            ) from None
        except subprocess.TimeoutExpired:
            shown = " ".join(_redacted(list(args), password))
            raise LocalRegistryError(f"ctr {shown} did not finish within {timeout} s") from None

    ctr("images", "import", archive.path)
    with contextlib.suppress(LocalRegistryError):
        ctr("images", "rm", ref)
    ctr("images", "tag", archive.name, ref)
    push = ["images", "push"]
    if daemon.major >= 2:
        # 2.x pushes through the transfer service by default; the client-side
        # push honours --plain-http and --tlscacert the same way on every version.
        push.append("--local")
    if plain_http if plain_http is not None else ca_file is None:
        push.append("--plain-http")
    if user is not None:
        push += ["-u", f"{user}:{password or ''}"]
    with tempfile.TemporaryDirectory(prefix="cchosts-") as hosts_dir:
        if ca_file:
            # ctr talks plain HTTP to 127.0.0.1 whatever --tlscacert says; a
            # hosts.toml naming the https server and its CA is what it honours.
            host = ref.split("/", 1)[0]
            os.makedirs(os.path.join(hosts_dir, host))
            with open(os.path.join(hosts_dir, host, "hosts.toml"), "w", encoding="utf-8") as f:
                f.write(
                    f'server = "https://{host}"\n'
                    f'[host."https://{host}"]\n'
                    '  capabilities = ["pull", "resolve", "push"]\n'
                    f"  ca = {json.dumps(ca_file)}\n"
                )
            push += ["--hosts-dir", hosts_dir]
        push.append(ref)
        for attempt in range(3):
            try:
                ctr(*push)
                break
            except LocalRegistryError as exc:
                # The registry cut a connection (seen once at load 10: "unexpected EOF");
                # a push is idempotent, so it is tried again, said in the log.
                if attempt == 2 or "unexpected EOF" not in str(exc):
                    raise
                logger.warning("pushing %s: the registry cut the connection; again", ref)
    logger.info("pushed %s with ctr (containerd %s)", ref, daemon.version)
