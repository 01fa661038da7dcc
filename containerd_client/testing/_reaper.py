"""What a private daemon puts on the machine, and how to take it all away.

:class:`_Resources` holds the paths and the process of one
:class:`~containerd_client.testing.ContainerdDaemon`; its ``cleanup`` is the
reaper: it stops the daemon, finds the shims serving its socket and their
container processes (from ``/proc``), force-deletes runc containers whose
bundle lies in the daemon's folder, kills what is left, detaches mounts
below the daemon's folders, and removes sockets, empty runc and cgroup
folders and the daemon's files.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import Iterable, Iterator

from containerd_client._watchdog import Watchdog
from containerd_client.containers import _default_state_dir

# The daemon's logger, as before the reaper had its own module.
logger = logging.getLogger("containerd_client.testing._daemon")

# containerd's shims and runc keep per-namespace state here whatever the
# daemon's own state folder is.
_RUNC_STATE = "/run/containerd/runc"
_CGROUP_ROOT = "/sys/fs/cgroup"
_TASK_PLUGIN = "io.containerd.runtime.v2.task"
_MNT_DETACH = 2


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    if len(fields) < 2:
        return None
    return int(fields[1]), fields[0]


def _alive(pid: int) -> bool:
    info = _ppid_and_state(pid)
    # A zombie has let go of everything; its reaper is not us.
    return info is not None and info[1] not in ("Z", "X")


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg in (flag, "-" + flag) and i + 1 < len(args):
            return args[i + 1]
        for prefix in (flag + "=", "-" + flag + "="):
            if arg.startswith(prefix):
                return arg[len(prefix) :]
    return None


def _find_shims(address: str) -> list[tuple[int, str, str]]:
    """Return ``(pid, namespace, id)`` of every shim serving the daemon at ``address``."""
    shims = []
    for pid in _pids():
        args = _cmdline(pid)
        if not args or not os.path.basename(args[0]).startswith("containerd-shim"):
            continue
        if _flag_value(args, "-address") != address:
            continue
        shims.append((pid, _flag_value(args, "-namespace") or "", _flag_value(args, "-id") or ""))
    return shims


def _descendants(roots: Iterable[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        info = _ppid_and_state(pid)
        if info is not None:
            children.setdefault(info[0], []).append(pid)
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _kill_pids(pids: Iterable[int], what: str, timeout: float = 5.0) -> None:
    pending = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            pending.append(pid)
        except ProcessLookupError:
            pass
        except OSError as exc:
            logger.warning("could not kill %s %d: %s", what, pid, exc)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if _alive(pid)]
        if pending:
            time.sleep(0.02)
    if pending:
        logger.warning("%s processes %s still alive after SIGKILL", what, pending)


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts_under(paths: Iterable[str]) -> list[str]:
    prefixes = [os.path.realpath(p) for p in paths]
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                point = _unescape_mountinfo(fields[4])
                if any(point == p or point.startswith(p + "/") for p in prefixes):
                    found.append(point)
    except OSError:
        return []
    # Deepest first, so that no mount is hidden beneath another when it goes.
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _umount_detach(path: str) -> None:
    if _libc().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, os.strerror(err), path)


def _rmtree(path: str) -> None:
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except OSError as exc:
        logger.warning("could not remove %s (%s); removing what can be removed", path, exc)
        shutil.rmtree(path, ignore_errors=True)


def _rmdir_tree_if_empty(path: str) -> None:
    """Remove ``path`` and folders below it bottom-up; stop at anything in use."""
    if not os.path.isdir(path):
        return
    for dirpath, _dirnames, _files in os.walk(path, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


class _Resources:
    """What a started daemon put on the machine, and how to take it away.

    Kept apart from :class:`ContainerdDaemon` so that ``atexit`` and
    ``weakref.finalize`` hold only this, never the daemon object itself.
    """

    def __init__(self, *, namespace: str, stop_timeout: float) -> None:
        self.lock = threading.RLock()
        self.namespace = namespace
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.prepared = False
        self.base_dir = ""
        self.owns_base_dir = False
        self.socket_dir = ""
        self.owns_socket_dir = False
        #: The namespace was made for this daemon (``cctest-`` and random):
        #: nothing but its containers ever used it, so its SDK state goes whole.
        self.owns_namespace = False
        self.address = ""
        self.root_dir = ""
        self.state_dir = ""
        self.runc_root = ""
        self.tmp_dir = ""
        self.log_path = ""
        self.config_path = ""
        self.runc = "runc"
        self.final_log: str | None = None
        # Kills the daemon when this process dies, however (see _watchdog).
        self.watchdog: Watchdog | None = None

    def arm_watchdog(self, pid: int) -> None:
        """Start a watchdog that SIGKILLs daemon ``pid`` once this process is
        gone, even by SIGKILL (:class:`~containerd_client._watchdog.Watchdog`).
        :meth:`disarm_watchdog` ends it without a kill."""
        self.disarm_watchdog()
        self.watchdog = Watchdog.start(pid)

    def disarm_watchdog(self) -> None:
        """Let the watchdog exit without killing anything, and reap it."""
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.disarm()

    def stop_daemon(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "containerd %d did not stop within %.1fs of SIGTERM; killing it",
                    proc.pid,
                    self.stop_timeout,
                )
                proc.kill()
                proc.wait(timeout=10)
        self.proc = None

    def _our_namespaces(self, shims: list[tuple[int, str, str]]) -> set[str]:
        namespaces = {self.namespace}
        namespaces.update(ns for _pid, ns, _id in shims if ns)
        with contextlib.suppress(OSError):
            namespaces.update(os.listdir(os.path.join(self.state_dir, _TASK_PLUGIN)))
        return namespaces

    def _shim_sockets(self) -> list[str]:
        """Socket paths of our shims, read from the task bundles before they go."""
        sockets = []
        task_dir = os.path.join(self.state_dir, _TASK_PLUGIN)
        with contextlib.suppress(OSError):
            for ns in os.listdir(task_dir):
                with contextlib.suppress(OSError):
                    for cid in os.listdir(os.path.join(task_dir, ns)):
                        bundle = os.path.join(task_dir, ns, cid)
                        address = ""
                        # 1.x writes the shim's address to "address", 2.x to "bootstrap.json".
                        with (
                            contextlib.suppress(OSError, ValueError),
                            open(os.path.join(bundle, "address"), encoding="utf-8") as f,
                        ):
                            address = f.read().strip()
                        if not address:
                            with (
                                contextlib.suppress(OSError, ValueError),
                                open(os.path.join(bundle, "bootstrap.json"), encoding="utf-8") as f,
                            ):
                                address = str(json.load(f).get("address", ""))
                        if address.startswith("unix://"):
                            sockets.append(address[len("unix://") :])
        return sockets

    def _delete_runc_containers(self, namespaces: set[str]) -> None:
        """Force-delete runc containers whose bundle lies in our state folder."""
        roots = [os.path.join(_RUNC_STATE, ns) for ns in sorted(namespaces)]
        with contextlib.suppress(OSError):
            roots += [os.path.join(self.runc_root, ns) for ns in sorted(os.listdir(self.runc_root))]
        bundle_prefix = os.path.realpath(self.base_dir) + "/"
        for root in roots:
            if not os.path.isdir(root):
                continue
            try:
                listing = subprocess.run(
                    [self.runc, "--root", root, "list", "--format", "json"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                containers = json.loads(listing.stdout or "null") or []
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                logger.warning("runc list in %s failed: %s", root, exc)
                continue
            for container in containers:
                bundle = os.path.realpath(str(container.get("bundle", "")))
                if not (bundle + "/").startswith(bundle_prefix):
                    continue
                cid = str(container.get("id", ""))
                try:
                    subprocess.run(
                        [self.runc, "--root", root, "delete", "--force", cid],
                        capture_output=True,
                        text=True,
                        timeout=20,
                        check=True,
                        stdin=subprocess.DEVNULL,
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    logger.warning("runc delete --force %s in %s failed: %s", cid, root, exc)

    def cleanup(self) -> None:
        """Stop everything and remove every trace; never raises ``Exception``."""
        with self.lock:
            if not self.prepared:
                return
            try:
                self.stop_daemon()
            except Exception:
                logger.warning("stopping containerd failed", exc_info=True)
            try:
                self.disarm_watchdog()
            except Exception:
                logger.warning("stopping the daemon's watchdog failed", exc_info=True)
            try:
                self.final_log = self.read_log()
            except Exception:
                logger.debug("could not keep the daemon log", exc_info=True)
            shims: list[tuple[int, str, str]] = []
            namespaces = {self.namespace}
            shim_sockets: list[str] = []
            try:
                shims = _find_shims(self.address)
                namespaces = self._our_namespaces(shims)
                shim_sockets = self._shim_sockets()
                # Before any shim dies: once it does, its containers re-parent
                # and can no longer be told apart from anyone else's.
                leftovers = _descendants(pid for pid, _ns, _id in shims)
                self._delete_runc_containers(namespaces)
                _kill_pids([p for p in leftovers if _alive(p)], "container")
                _kill_pids([pid for pid, _ns, _id in shims], "shim")
            except Exception:
                logger.warning("killing shims and containers failed", exc_info=True)
            for point in _mounts_under([p for p in (self.base_dir, self.socket_dir) if p]):
                try:
                    _umount_detach(point)
                except OSError as exc:
                    logger.warning("could not unmount %s: %s", point, exc)
            for path in shim_sockets:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
            for ns in sorted(namespaces):
                # Empty folders only: another daemon may be using the same namespace.
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(_RUNC_STATE, ns))
                # The SDK's own state folder of the namespace (FIFOs, hosts files
                # and logs of containers never deleted): whole when the namespace
                # was this daemon's alone, else when it holds only empty folders.
                sdk_state = os.path.join(_default_state_dir(), ns)
                if ns == self.namespace and self.owns_namespace and not os.path.islink(sdk_state):
                    _rmtree(sdk_state)
                else:
                    _rmdir_tree_if_empty(sdk_state)
                for cgroup in self._cgroup_dirs(ns):
                    _rmdir_tree_if_empty(cgroup)
            try:
                self._remove_files()
            except Exception:
                logger.warning("removing %s failed", self.base_dir, exc_info=True)
            self.prepared = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.cleanup)

    @staticmethod
    def _cgroup_dirs(ns: str) -> list[str]:
        dirs: list[str] = []
        if ns in ("", ".", "..") or "/" in ns:
            return dirs
        with contextlib.suppress(OSError):
            for controller in os.listdir(_CGROUP_ROOT):
                path = os.path.join(_CGROUP_ROOT, controller, ns)
                if os.path.isdir(path):
                    dirs.append(path)
        # On cgroup v2 (unified) hosts the namespace sits right under the root.
        direct = os.path.join(_CGROUP_ROOT, ns)
        if os.path.isdir(direct) and os.path.exists(os.path.join(direct, "cgroup.procs")):
            dirs.append(direct)
        return dirs

    def _remove_files(self) -> None:
        if self.owns_socket_dir:
            _rmtree(self.socket_dir)
        if self.owns_base_dir:
            _rmtree(self.base_dir)
            return
        # A caller's folder stays, with the config and log for a post-mortem.
        for path in (self.root_dir, self.state_dir, self.runc_root, self.tmp_dir):
            if path:
                _rmtree(path)
        for path in (self.address, self.address + ".ttrpc"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def read_log(self) -> str:
        if self.log_path:
            try:
                with open(self.log_path, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except FileNotFoundError:
                pass
        return self.final_log or ""

    def collect(self) -> None:
        """``weakref.finalize`` callback: the daemon object was dropped while running."""
        if not self.prepared:
            return
        pid = self.proc.pid if self.proc is not None else None
        self.cleanup()
        warnings.warn(
            f"ContainerdDaemon (pid {pid}) was garbage-collected without stop(); cleaned up",
            ResourceWarning,
            stacklevel=2,
        )


#: File in a daemon's base folder naming the session that owns the daemon.
OWNER_FILE = "owner.json"
_OWN_NAMESPACE = re.compile(r"cctest-[0-9a-f]{8}")

_OWNER_FIELDS = (
    "namespace",
    "base_dir",
    "socket_dir",
    "owns_socket_dir",
    "owns_namespace",
    "address",
    "root_dir",
    "state_dir",
    "runc_root",
    "tmp_dir",
    "log_path",
    "config_path",
    "runc",
)


def write_owner(res: _Resources) -> None:
    """Record in the daemon's folder which session owns it and where its parts are.

    A later start reads it (:func:`reap_stale`) to clean up after a test
    process that was killed before it could.
    """
    from containerd_client.client import session_id

    record = {"session": session_id(), **{name: getattr(res, name) for name in _OWNER_FIELDS}}
    path = os.path.join(res.base_dir, OWNER_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


def reap_stale(parent: str) -> list[str]:
    """Clean up the daemon folders in ``parent`` whose owning test process is dead.

    Only folders this module made (``cctest-*`` holding an :data:`OWNER_FILE`)
    whose session is dead on this host (see
    :func:`containerd_client.sweep.session_state`); a live process's daemon
    is never touched. The daemon (if its watchdog could not kill it), its
    shims, container processes, mounts, cgroups and folders all go.

    Returns:
        The base folders that were reaped.
    """
    from containerd_client.sweep import DEAD, session_state

    reaped: list[str] = []
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return reaped
    for entry in entries:
        if not entry.startswith("cctest-"):
            continue
        base = os.path.join(parent, entry)
        owner = os.path.join(base, OWNER_FILE)
        try:
            if not _ours(base) or not _ours(owner, folder=False):
                continue
            with open(owner, encoding="utf-8") as f:
                record = json.load(f)
            if not isinstance(record, dict) or session_state(str(record.get("session", ""))) != DEAD:
                continue
            # Claim it: of two starts racing for the same leftovers, one reaps.
            os.rename(owner, f"{owner}.reaping-{os.getpid()}")
        except (OSError, ValueError):
            continue
        res = _resources_from(record, base)
        if res is None:
            logger.warning("not reaping %s: its %s does not describe that folder", base, OWNER_FILE)
            continue
        res.owns_base_dir = True
        res.prepared = True
        config = res.config_path
        daemons = [pid for pid in _pids() if config and config in _cmdline(pid)]
        _kill_pids(daemons, "stale containerd")
        logger.info("reaping the daemon folder %s of dead session %s", base, record.get("session"))
        res.cleanup()
        reaped.append(base)
    return reaped


def _ours(path: str, *, folder: bool = True) -> bool:
    """A real folder (or file), not a link, owned by this user."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR(info.st_mode) if folder else stat.S_ISREG(info.st_mode)
    return kind and info.st_uid == os.geteuid()


def _resources_from(record: dict[str, object], base: str) -> _Resources | None:
    """The resources an owner record describes, if every path in it lies where this module puts it.

    ``/tmp`` is writable by anyone: a planted record must not make the
    reaper remove or unmount anything outside the daemon's own folders.
    """
    real_base = os.path.realpath(base)
    if os.path.realpath(str(record.get("base_dir", ""))) != real_base:
        return None
    namespace = str(record.get("namespace", ""))
    if not namespace or "/" in namespace or namespace in (".", ".."):
        return None
    res = _Resources(namespace=namespace, stop_timeout=5.0)
    res.base_dir = base
    # Only a name of the kind the daemon makes (absent in records of earlier versions).
    owned = record.get("owns_namespace") is True
    res.owns_namespace = owned and _OWN_NAMESPACE.fullmatch(namespace) is not None
    for name in ("root_dir", "state_dir", "runc_root", "log_path", "config_path"):
        value = str(record.get(name, ""))
        if os.path.dirname(os.path.realpath(value)) != real_base:
            return None
        setattr(res, name, value)
    tmp_dir = str(record.get("tmp_dir", ""))  # absent in records of earlier versions
    if tmp_dir:
        if os.path.dirname(os.path.realpath(tmp_dir)) != real_base:
            return None
        res.tmp_dir = tmp_dir
    socket_dir = os.path.realpath(str(record.get("socket_dir", "")))
    owns_socket_dir = record.get("owns_socket_dir") is True
    if owns_socket_dir:
        if not (os.path.basename(socket_dir).startswith("cctest-") and os.path.dirname(socket_dir) == "/tmp"):
            return None
        if os.path.lexists(socket_dir) and not _ours(socket_dir):
            return None
    elif socket_dir != real_base:
        return None
    address = str(record.get("address", ""))
    if os.path.dirname(os.path.realpath(address)) != socket_dir:
        return None
    res.socket_dir, res.owns_socket_dir, res.address = socket_dir, owns_socket_dir, address
    # Never a binary named by the record.
    res.runc = shutil.which("runc") or "runc"
    res.owns_base_dir = True
    return res
