"""A private containerd daemon for tests.

:class:`ContainerdDaemon` runs a containerd of its own: its own root, state,
socket and default namespace, so that several daemons (and the machine's own
containerd, if any) can run side by side. It starts in the background, is
ready once its gRPC health service answers SERVING, and ``stop()`` leaves
nothing behind: no daemon, shim or container process, no mount, no folder.

Two daemons on one machine still share ``/run/containerd``: runc keeps its
state in ``/run/containerd/runc/<namespace>`` and the shims their sockets in
``/run/containerd/s``. A unique default namespace per daemon keeps container
ids apart there; :attr:`ContainerdDaemon.runc_root` is a private runc root
for tests that set runc's ``Options.root``.

Fault tests can :meth:`~ContainerdDaemon.kill` the daemon alone (its shims
and containers go on running) and :meth:`~ContainerdDaemon.start` it again on
the same root, state and socket.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from containerd_client import Client
from containerd_client.errors import DaemonStartError
from containerd_client.network import NetworkConfig
from containerd_client.testing._netslot import NetSlot
from containerd_client.testing._netslot import claim as claim_netslot
from containerd_client.testing._reaper import _Resources, reap_stale, write_owner

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["ContainerdDaemon", "DaemonStartError"]

logger = logging.getLogger(__name__)

# sun_path holds 108 bytes with its NUL; containerd also listens on
# "<address>.ttrpc", so leave room for that suffix.
_MAX_SOCKET_PATH = 107 - len(".ttrpc")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LOG_TAIL_LINES = 40
#: Where scripts/build_criu puts the criu builds that work on new kernels
#: (``criu-<version>/bin``).
CRIU_CACHE_ROOT = "/var/cache/containerd-client"
#: A folder with ``criu``, put on the daemon's ``PATH`` (the default is the
#: newest build under :data:`CRIU_CACHE_ROOT`).
CRIU_DIR_ENV = "CONTAINERD_CRIU_DIR"


def default_criu_dir(cache_root: str = CRIU_CACHE_ROOT) -> str:
    """``$CONTAINERD_CRIU_DIR``, else the newest ``criu-<version>/bin`` of the cache, else ``""``."""
    given = os.environ.get(CRIU_DIR_ENV)
    if given is not None:
        return given
    found: list[tuple[tuple[int, ...], str]] = []
    with contextlib.suppress(OSError):
        for name in os.listdir(cache_root):
            m = re.fullmatch(r"criu-(\d+(?:\.\d+)*)", name)
            folder = os.path.join(cache_root, name, "bin")
            if m and os.path.isfile(os.path.join(folder, "criu")):
                found.append((tuple(int(p) for p in m[1].split(".")), folder))
    return max(found)[1] if found else ""


def _health_check(address: str, timeout: float) -> bool:
    """Ask the daemon's gRPC health service whether it is serving.

    A fresh client per check, as a fresh channel: one made before the socket
    existed would wait out grpc's reconnect backoff.
    """
    with Client(address, "default") as client:
        return client.is_serving(timeout=timeout)


_LOGFMT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _logfmt(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a containerd log line (values unquoted)."""
    fields = {}
    for key, raw in _LOGFMT_FIELD.findall(line):
        value = raw
        if raw.startswith('"'):
            try:
                value = str(json.loads(raw))
            except ValueError:
                value = raw[1:-1]
        fields[key] = value
    return fields


def _cause(lines: list[str]) -> str:
    """The line of a failed start's log that says why, made short; "" for an empty log.

    By preference: the error containerd's command line printed as it exited
    (``containerd: ...``), else the last ``level=fatal`` (or ``panic``) line,
    else the last ``level=error`` line, else the last line. A log line is
    given as its message and error fields.
    """
    lines = [line.strip() for line in lines if line.strip()]
    by_level: dict[str, str] = {}
    for line in reversed(lines):
        if line.startswith("containerd: "):
            return line[len("containerd: ") :]
        level = _logfmt(line).get("level", "") if "level=" in line else ""
        if level in ("fatal", "panic", "error"):
            by_level.setdefault("error" if level == "error" else "fatal", line)
    line = by_level.get("fatal") or by_level.get("error") or (lines[-1] if lines else "")
    if "level=" not in line:
        return line
    fields = _logfmt(line)
    message = fields.get("msg", "")
    if fields.get("error"):
        message = f"{message}: {fields['error']}" if message else fields["error"]
    return message or line


def _parse_version(output: str) -> tuple[str, tuple[int, int, int]] | None:
    """Find the version in ``containerd --version`` output.

    Debian prints ``containerd github.com/containerd/containerd 1.6.20~ds1
    1.6.20~ds1-1+deb12u3``, upstream ``... v1.7.24 <commit>``.
    """
    tokens = output.split()
    for token in tokens[2:] + tokens[:2]:
        m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", token)
        if m:
            info = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            return "{}.{}.{}".format(*info), info
    return None


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def _read_tail(path: str, max_lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-max_lines:])


class ContainerdDaemon:
    """A private containerd, started and stopped by the test process.

    Use it as a context manager::

        with ContainerdDaemon() as daemon:
            subprocess.run(["ctr", "-a", daemon.address, "-n", daemon.namespace, "version"])

    Args:
        binary: The containerd binary. Defaults to ``<bin_dir>/containerd``
            when ``bin_dir`` holds one, else ``$CONTAINERD_BIN``, else
            ``containerd`` on ``PATH``.
        bin_dir: A folder with containerd and its shims (an unpacked newer
            version); put first on the daemon's ``PATH`` so the matching
            ``containerd-shim-runc-v2`` runs. Defaults to the binary's folder.
        base_dir: Where root, state, config and log go. Defaults to a new
            temporary folder, removed on stop; a given folder is kept, with
            the config and log, but emptied of the daemon's data.
        namespace: The namespace tests should use; defaults to a unique
            ``cctest-<hex>``, because runc state under
            ``/run/containerd/runc/<namespace>`` is shared by all daemons.
        start_timeout: Seconds to wait for the daemon to serve.
        stop_timeout: Seconds between SIGTERM and SIGKILL on stop.
        env: Variables added to the daemon's environment (``SSL_CERT_FILE``...).
        extra_config: TOML appended to the generated config. The generated
            part sets only top-level keys (``root``, ``state``,
            ``disabled_plugins``), so any table may be given here; the gRPC
            address is passed on the command line.
        log_level: containerd's ``--log-level`` (``"debug"``...); its default if ``None``.
        criu_dir: A folder holding the ``criu`` that runc should use for
            checkpoint and restore, put on the daemon's ``PATH`` right after
            ``bin_dir`` (runc finds criu on its ``PATH``, inherited from the
            daemon through the shim). ``None``: :func:`default_criu_dir`;
            ``""``: none added.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        bin_dir: str | None = None,
        base_dir: str | None = None,
        namespace: str | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        extra_config: str = "",
        log_level: str | None = None,
        criu_dir: str | None = None,
    ) -> None:
        self._criu_dir = default_criu_dir() if criu_dir is None else criu_dir
        self._binary_arg = binary
        self._bin_dir_arg = bin_dir
        self._base_dir_arg = base_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._env = dict(env or {})
        self._extra_config = extra_config
        self._log_level = log_level
        self._lock = threading.RLock()
        self._binary: str | None = None
        self._bin_dir: str | None = None
        self._version: tuple[str, tuple[int, int, int]] | None = None
        self._res = _Resources(
            namespace=namespace or "cctest-" + secrets.token_hex(4), stop_timeout=stop_timeout
        )
        self._res.owns_namespace = namespace is None
        # Claimed on first use of network_config, released by stop().
        self._netslot: NetSlot | None = None
        # On the resources, not on self: the callback must not keep self alive.
        self._finalizer = weakref.finalize(self, self._res.collect)
        self._finalizer.atexit = False

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<ContainerdDaemon {self._res.namespace} {state} address={self._res.address or '-'}>"

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

    # -- binary and version -------------------------------------------------

    def _resolve_binary(self) -> tuple[str, str]:
        if self._binary is not None and self._bin_dir is not None:
            return self._binary, self._bin_dir
        candidate = self._binary_arg
        if candidate is None and self._bin_dir_arg is not None:
            in_dir = os.path.join(self._bin_dir_arg, "containerd")
            if os.path.isfile(in_dir):
                candidate = in_dir
        if candidate is None:
            candidate = os.environ.get("CONTAINERD_BIN") or "containerd"
        if os.sep in candidate:
            binary = os.path.abspath(candidate)
            if not os.path.isfile(binary):
                raise DaemonStartError(f"containerd binary {binary} does not exist")
        else:
            path = os.environ.get("PATH", _DEFAULT_PATH)
            search = os.pathsep.join(p for p in (self._bin_dir_arg, path) if p)
            found = shutil.which(candidate, path=search)
            if found is None:
                raise DaemonStartError(
                    f"{candidate!r} not found on PATH; install containerd or set CONTAINERD_BIN"
                )
            binary = os.path.abspath(found)
        self._binary = binary
        self._bin_dir = os.path.abspath(self._bin_dir_arg) if self._bin_dir_arg else os.path.dirname(binary)
        return binary, self._bin_dir

    def _detect_version(self) -> tuple[str, tuple[int, int, int]]:
        if self._version is not None:
            return self._version
        binary, _ = self._resolve_binary()
        try:
            result = subprocess.run(
                [binary, "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise DaemonStartError(f"cannot run {binary} --version: {exc}") from exc
        output = (result.stdout + result.stderr).strip()
        parsed = _parse_version(result.stdout) if result.returncode == 0 else None
        if parsed is None:
            raise DaemonStartError(
                f"{binary} --version gave no containerd version (exit {result.returncode}): {output[-2000:]}"
            )
        self._version = parsed
        return parsed

    @property
    def binary(self) -> str:
        """Absolute path of the containerd binary.

        Raises:
            DaemonStartError: No binary was found.
        """
        return self._resolve_binary()[0]

    @property
    def bin_dir(self) -> str:
        """The folder put first on the daemon's ``PATH``."""
        return self._resolve_binary()[1]

    @property
    def version(self) -> str:
        """The daemon's version, e.g. ``"1.6.20"`` (asks the binary once).

        Raises:
            DaemonStartError: The binary does not run or prints no version.
        """
        return self._detect_version()[0]

    @property
    def version_info(self) -> tuple[int, int, int]:
        """The version as numbers, e.g. ``(1, 6, 20)``."""
        return self._detect_version()[1]

    @property
    def major(self) -> int:
        """The major version: 1 or 2."""
        return self._detect_version()[1][0]

    # -- paths and state ----------------------------------------------------

    def _require_prepared(self, what: str) -> str:
        value: str = getattr(self._res, what)
        if not value:
            raise RuntimeError(f"ContainerdDaemon.{what} is known once start() has run")
        return value

    @property
    def namespace(self) -> str:
        """This daemon's own namespace, unique per daemon unless one was given."""
        return self._res.namespace

    @property
    def network_config(self) -> NetworkConfig:
        """A CNI bridge network of this daemon's own (bridge and subnet), claimed on first use.

        Give it to the clients of this daemon (``Client(..., network_config=...)``)
        so that two private daemons on one host (parallel test runs, xdist
        workers) never hand out the same addresses on one bridge. Released,
        and its bridge deleted, by :meth:`stop`.
        """
        with self._lock:
            if self._netslot is None:
                self._netslot = claim_netslot()
            return self._netslot.config

    @property
    def address(self) -> str:
        """Path of the daemon's gRPC socket (without ``unix://``)."""
        return self._require_prepared("address")

    @property
    def base_dir(self) -> str:
        """The folder holding root, state, runc root, config and log."""
        return self._require_prepared("base_dir")

    @property
    def root_dir(self) -> str:
        """The daemon's ``root`` (persistent data: content, snapshots, metadata)."""
        return self._require_prepared("root_dir")

    @property
    def state_dir(self) -> str:
        """The daemon's ``state`` (task bundles, sockets)."""
        return self._require_prepared("state_dir")

    @property
    def runc_root(self) -> str:
        """A private folder to give runc as ``Options.root``, so ids cannot collide."""
        return self._require_prepared("runc_root")

    @property
    def tmp_dir(self) -> str:
        """The daemon's ``TMPDIR``, a folder of its own inside :attr:`base_dir`
        (unless ``TMPDIR`` was given in ``env``)."""
        return self._require_prepared("tmp_dir")

    @property
    def log_path(self) -> str:
        """The daemon's log file (stdout and stderr)."""
        return self._require_prepared("log_path")

    @property
    def config_path(self) -> str:
        """The generated ``config.toml``."""
        return self._require_prepared("config_path")

    @property
    def pid(self) -> int | None:
        """PID of the running daemon, else ``None``."""
        proc = self._res.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the daemon process is alive."""
        return self.pid is not None

    def logs(self) -> str:
        """Return the daemon's log so far (kept in memory after :meth:`stop`)."""
        return self._res.read_log()

    def ctr(
        self, *args: str, namespace: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this daemon, in its namespace unless told otherwise.

        The ``ctr`` from :attr:`bin_dir` is preferred, so a newer daemon is
        driven by its own client.

        Raises:
            subprocess.CalledProcessError: ``check`` is true and ctr failed.
            subprocess.TimeoutExpired: ctr ran longer than ``timeout``.
        """
        ctr = os.path.join(self.bin_dir, "ctr")
        if not os.path.isfile(ctr):
            ctr = shutil.which("ctr") or "ctr"
        return subprocess.run(
            [ctr, "--address", self.address, "--namespace", namespace or self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    # -- lifecycle ----------------------------------------------------------

    def _config_text(self) -> str:
        res = self._res
        major = self.major
        disabled = ["io.containerd.grpc.v1.cri"]
        if major >= 2:
            disabled += ["io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
        # opt would create /opt/containerd and NRI (on by default in 2.x)
        # listens on one fixed socket for the whole machine.
        disabled += ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]
        lines = [
            "# Written by containerd_client.testing; the gRPC address is given with --address.",
            f"version = {3 if major >= 2 else 2}",
            f"root = {_toml_string(res.root_dir)}",
            f"state = {_toml_string(res.state_dir)}",
            "disabled_plugins = [" + ", ".join(_toml_string(p) for p in disabled) + "]",
            "",
        ]
        text = "\n".join(lines)
        if self._extra_config:
            text += "\n" + self._extra_config.strip("\n") + "\n"
        return text

    def _prepare(self) -> None:
        res = self._res
        if self._base_dir_arg:
            base = os.path.abspath(self._base_dir_arg)
            res.owns_base_dir = False
            os.makedirs(base, exist_ok=True)
        else:
            base = tempfile.mkdtemp(prefix="cctest-")
            res.owns_base_dir = True
        res.base_dir = base
        res.prepared = True
        atexit.register(res.cleanup)
        socket_dir = base
        res.owns_socket_dir = False
        if len(os.path.join(base, "containerd.sock")) > _MAX_SOCKET_PATH:
            socket_dir = tempfile.mkdtemp(prefix="cctest-", dir="/tmp")
            res.owns_socket_dir = True
        res.socket_dir = socket_dir
        res.address = os.path.join(socket_dir, "containerd.sock")
        res.root_dir = os.path.join(base, "root")
        res.state_dir = os.path.join(base, "state")
        res.runc_root = os.path.join(base, "runc")
        res.tmp_dir = os.path.join(base, "tmp")
        res.log_path = os.path.join(base, "containerd.log")
        res.config_path = os.path.join(base, "config.toml")
        res.final_log = None
        for path in (res.root_dir, res.state_dir, res.runc_root):
            os.makedirs(path, mode=0o711, exist_ok=True)
        os.makedirs(res.tmp_dir, mode=0o700, exist_ok=True)
        with open(res.config_path, "w", encoding="utf-8") as f:
            f.write(self._config_text())

    def _daemon_env(self, bin_dir: str) -> dict[str, str]:
        env = {**os.environ, **self._env}
        if "TMPDIR" not in self._env and self._res.tmp_dir:
            # The daemon's and its shims' temp folders go inside its own folder,
            # removed with it: containerd leaves one /tmp/ctrd-checkpoint* (the
            # unpacked CRIU image) per restore from the content store.
            env["TMPDIR"] = self._res.tmp_dir
        parts = [bin_dir, self._criu_dir, env.get("PATH") or _DEFAULT_PATH]
        env["PATH"] = os.pathsep.join(p for p in parts if p)
        return env

    @property
    def criu_dir(self) -> str:
        """The folder with ``criu`` on the daemon's ``PATH`` (``""``: none added)."""
        return self._criu_dir

    @property
    def path(self) -> str:
        """The daemon's ``PATH`` (which its shims and runc inherit)."""
        return self._daemon_env(self.bin_dir)["PATH"]

    def start(self) -> None:
        """Start the daemon, or start it again after :meth:`kill` on the same root.

        Returns once the daemon's gRPC health service answers SERVING.

        Raises:
            DaemonStartError: The binary is missing or prints no version, or
                the daemon exited or did not serve within ``start_timeout``;
                the message's first line gives containerd's reason (its
                last fatal or error log line) and the tail of its log follows. Whatever
                was started is stopped and removed first.
            RuntimeError: The daemon is already running.
        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"containerd {self.pid} is already running")
            binary, bin_dir = self._resolve_binary()
            version = self.version
            res = self._res
            try:
                if not res.prepared:
                    # What test processes killed before their cleanup left (their
                    # daemons died with them: see _Resources.arm_watchdog).
                    reap_stale(tempfile.gettempdir())
                    self._prepare()
                env = self._daemon_env(bin_dir)
                res.runc = shutil.which("runc", path=env["PATH"]) or "runc"
                if res.owns_base_dir:
                    write_owner(res)
                # A socket left by a killed daemon would pass the existence check.
                for path in (res.address, res.address + ".ttrpc"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                cmd = [binary, "--config", res.config_path, "--address", res.address]
                if self._log_level:
                    cmd += ["--log-level", self._log_level]
                with open(res.log_path, "ab") as log:
                    res.proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=res.base_dir,
                        close_fds=True,
                        # Own session: a Ctrl-C in the terminal must not kill
                        # the daemon before the test process cleans up.
                        start_new_session=True,
                    )
                # The daemon dies with this process, whichever thread started it.
                res.arm_watchdog(res.proc.pid)
            except BaseException:
                self.stop()
                raise
            logger.debug("started containerd %s (pid %d) at %s", version, res.proc.pid, res.address)
            try:
                self._wait_serving(res.proc)
            except BaseException:
                self.stop()
                raise
            logger.info("containerd %s (pid %d) serving at %s", version, res.proc.pid, res.address)

    def _wait_serving(self, proc: subprocess.Popen[bytes]) -> None:
        res = self._res
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            code = proc.poll()
            if code is not None:
                self._fail(f"containerd exited with code {code} before serving")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"containerd did not serve within {self.start_timeout:.1f}s")
            if os.path.exists(res.address) and _health_check(res.address, timeout=min(1.0, remaining)):
                return
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)

    def _fail(self, reason: str) -> None:
        res = self._res
        tail = _read_tail(res.log_path)
        self.stop()
        cause = _cause(tail.splitlines())
        raise DaemonStartError(
            f"{reason}{': ' + cause if cause else ''}\n"
            f"binary {self._binary}, config {res.config_path}; last log lines:\n{tail}"
        )

    def kill(self, sig: int = signal.SIGKILL, *, wait: bool = True) -> None:
        """Signal the daemon process only; shims and containers keep running.

        For fault tests: a later :meth:`start` brings the daemon back on the
        same root, state and socket, and it finds its running tasks again.

        Args:
            sig: The signal (``SIGKILL`` by default).
            wait: Wait (up to ``stop_timeout``) for the daemon to exit; pass
                ``False`` for signals that do not end it.

        Raises:
            TimeoutError: ``wait`` is true and the daemon outlived ``stop_timeout``.
        """
        with self._lock:
            proc = self._res.proc
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(sig)
            if wait:
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired as exc:
                    raise TimeoutError(f"containerd {proc.pid} still runs after signal {sig}") from exc
                self._res.disarm_watchdog()

    def restart(self) -> None:
        """Stop the daemon gracefully (shims stay) and start it again on the same root.

        Raises:
            DaemonStartError: The daemon did not come back.
        """
        self.kill(signal.SIGTERM)
        self.start()

    def stop(self) -> None:
        """Stop the daemon and remove everything it left.

        SIGTERM, then SIGKILL after ``stop_timeout``; then the shims serving
        this daemon and their containers are killed, mounts below the base
        folder detached, and the folders removed. Idempotent; failures are
        logged, never raised.
        """
        with self._lock:
            self._res.cleanup()
            slot, self._netslot = self._netslot, None
        if slot is not None:
            slot.release()
