"""The :class:`Client`: one connection to containerd, bound to a namespace.

A client owns a gRPC channel. ``client.namespace("x")`` returns a view that
shares the channel but sends another namespace; closing a view leaves the
channel open, closing the root client closes it for every view.

When containerd dies mid-operation, cleanup that needs it (deleting the
operation's lease, removing a snapshot or container it made) is queued on the
channel and done once the daemon answers again: after the next successful
call, from :meth:`Client.is_serving` / :meth:`Client.wait_ready`, or at
:meth:`Client.close`. The SDK's own leases expire on the scale of their
operation (minutes), and everything it creates carries
:data:`SESSION_LABEL` (see :func:`session_id`), so a later sweep can tell
what a dead process left.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import datetime as _dt
import enum
import logging
import os
import socket as _socket
import sys
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from containerd_client import _rpc
from containerd_client._pb import api
from containerd_client._retry import NO_RETRY, RetryPolicy, poll
from containerd_client._socket import diagnose_socket, socket_path
from containerd_client.errors import (
    ClosedError,
    ContainerdError,
    DeadlineExceededError,
    RPCError,
    SSHError,
    UnavailableError,
)
from containerd_client.leases import Lease, LeaseStore
from containerd_client.namespaces import Namespace, NamespaceStore

if TYPE_CHECKING:
    from types import TracebackType

    from google.protobuf.message import Message
    from typing_extensions import Self

    from containerd_client._features import Features
    from containerd_client._pb.api import Unary
    from containerd_client._registry import CredentialsSource
    from containerd_client._teardown import TeardownFailure, TeardownPool
    from containerd_client.checkpoint import Checkpoint
    from containerd_client.containers import Container, RuncOptions
    from containerd_client.content import ContentStore, Platform
    from containerd_client.events import EventDispatcher, Subscription
    from containerd_client.images import Image, ImageStore
    from containerd_client.network import NetworkConfig
    from containerd_client.network._pool import NamespacePool
    from containerd_client.pull import ProgressCallback, PullOptions, Via
    from containerd_client.snapshots import SnapshotStore
    from containerd_client.spec import Command, SpecOpt
    from containerd_client.sweep import SweepReport
    from containerd_client.tasks import ExecResult, _ProcessBase

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_NAMESPACE",
    "Client",
    "Lease",
    "Namespace",
    "Plugin",
    "ServerInfo",
    "UnclosedClientWarning",
    "Version",
]

logger = logging.getLogger(__name__)


class UnclosedClientWarning(ResourceWarning):
    """A :class:`Client` was garbage-collected, or the interpreter exited, without ``close()``."""


# Python ignores ResourceWarning outside __main__ by default (so a library's
# user, or a notebook, never saw it) and shows a warning once per place at
# most. This one says that a channel (and maybe containers) leaked: shown
# every time. A filter added after this import (``warnings.filterwarnings(
# "ignore", category=UnclosedClientWarning)``, pytest's ``filterwarnings``)
# comes first and wins.
warnings.filterwarnings("always", category=UnclosedClientWarning)

Req = TypeVar("Req", bound="Message")
Resp = TypeVar("Resp", bound="Message")

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "default"
#: The deadline of a whole pull, in seconds, when the caller gives none.
DEFAULT_PULL_TIMEOUT = 1800.0
#: Label on what the SDK creates (leases, containers, the snapshots it
#: prepares), naming the process that made them: see :func:`session_id`.
SESSION_LABEL = "containerd-client/session"
#: Label tying what one operation created to that operation (its lease id), so
#: a cleanup that runs late removes only what that very attempt made.
OPERATION_LABEL = "containerd-client/operation"
# Lease expiry of the SDK's own multi-step operations: what the steps' own
# deadlines add up to, never a day. The floor covers the small calls; the
# rate is the slowest layer throughput the SDK's own deadlines accept
# (``Diff.Apply`` gets 120 s + 1 s per 8 MiB).
_LEASE_FLOOR = 300.0
_LEASE_BYTES_PER_SECOND = float(8 << 20)
# Deadline of each call a deferred cleanup makes: it runs on someone else's call.
_DEFERRED_TIMEOUT = 10.0
#: How long :meth:`Client.close` waits for background teardown (see ``background_teardown``).
TEARDOWN_JOIN_TIMEOUT = 60.0

# Set while a background teardown job runs: its calls go through while the
# root's close() waits for it (the channel closes only after that wait).
_in_teardown: contextvars.ContextVar[bool] = contextvars.ContextVar("_in_teardown", default=False)

# (pid, session) of this process; a list so a fork's child recomputes without `global`.
_session_cache: list[tuple[int, str]] = []


def session_id() -> str:
    """This process's session: ``"<pid>-<start time>@<hostname>:<pid namespace>"``.

    Written as :data:`SESSION_LABEL` on what the SDK creates, so that a sweep
    can find the leftovers of a process that died mid-operation and tell a
    dead process from a live one (the pid alone may be reused; pid and start
    time in clock ticks since boot, as ``/proc/<pid>/stat`` gives them, are
    not). The pid namespace (the inode number of ``/proc/self/ns/pid``; left
    out, with its colon, where it cannot be read) tells apart processes that
    share a host name but not pids, such as a container on the host's
    network. Computed once per process (again after a fork).
    """
    pid = os.getpid()
    if _session_cache and _session_cache[0][0] == pid:
        return _session_cache[0][1]
    pidns = pid_namespace()
    value = f"{pid}-{_process_start(pid)}@{_socket.gethostname()}" + (f":{pidns}" if pidns else "")
    _session_cache[:] = [(pid, value)]
    return value


def pid_namespace() -> str:
    """The inode number of this process's pid namespace (``"4026531836"``), "" if unknown."""
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    digits = link.partition("[")[2].rstrip("]")
    return digits if digits.isdigit() else ""


def _process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        # Field 22 (starttime); the command name before it may hold spaces.
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


@attrs.frozen
class Version:
    """The daemon's version (``Version.Version``)."""

    version: str
    revision: str

    @property
    def major(self) -> int:
        """The major version number, 0 when it cannot be parsed."""
        head = self.version.lstrip("v").split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    @property
    def tuple(self) -> tuple[int, ...]:
        """The numeric part of the version, e.g. ``(1, 6, 20)``."""
        out: list[int] = []
        for part in self.version.lstrip("v").split("~")[0].split("-")[0].split(".")[:3]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)


@attrs.frozen
class ServerInfo:
    """What ``Introspection.Server`` says about the daemon."""

    uuid: str
    pid: int
    pidns: int
    deprecations: tuple[str, ...] = ()


@attrs.frozen
class Plugin:
    """One plugin of the daemon (``Introspection.Plugins``)."""

    type: str
    id: str
    requires: tuple[str, ...]
    capabilities: tuple[str, ...]
    exports: Mapping[str, str]
    init_error: str | None

    @property
    def ok(self) -> bool:
        """Whether the plugin loaded without error."""
        return self.init_error is None


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen
class _Created:
    """A container a client created and has not deleted (see ``Client.close(cleanup=)``)."""

    container: weakref.ref[Container]
    info: Any  # ContainerInfo: the record as created, to rebuild a collected Container
    state_root: str


class Client:
    """A synchronous, thread-safe connection to containerd.

    Args:
        address: Path of containerd's socket (or a gRPC target). Defaults to
            ``$CONTAINERD_ADDRESS``, else ``/run/containerd/containerd.sock``.
            ``ssh://[user@]host[:port][/socket]`` reaches containerd on another
            machine through an ssh tunnel of this client (the socket defaults to
            ``/run/containerd/containerd.sock``); host keys, keys and
            ``~/.ssh/config`` are ssh's own. Over ssh, what the SDK does on this
            machine's filesystem (FIFO stdio such as :meth:`run`'s captured
            output, CNI networks, ``rootfs=`` folders) needs the same paths on
            the remote host; tasks without stdio or with ``cio.log_file`` work anywhere.
        namespace: Namespace for every call. Defaults to
            ``$CONTAINERD_NAMESPACE``, else ``default``.
        timeout: Default deadline of unary calls, in seconds.
        retry: How idempotent calls are retried while the daemon is
            unavailable: by default with backoff until each call's deadline,
            so a daemon restart is ridden out; other calls fail at once.
        channel_options: Extra gRPC channel options.
        state_dir: Folder for containers' FIFO folders (``<state_dir>/<namespace>/<id>``).
            Defaults to ``$CONTAINERD_CLIENT_STATE_DIR``, else ``/run/containerd-client``
            for root.
        network_config: How CNI networks are set up (subnet and bridge of the
            ``"bridge"`` network, plugin and configuration folders); see
            :class:`~containerd_client.network.NetworkConfig`.
        background_teardown: Take deleting containers off the caller's critical
            path: :meth:`run` and the end of a created container's ``with``
            block hand the teardown (kill, task and container deletion,
            snapshot and FIFO folder removal) to a small bounded thread pool
            and return. :meth:`close` (or :meth:`join_teardowns`) waits for
            it and reports failures; creating a container whose id is still
            being torn down waits for that first. Off by default, so that
            scripts see a container gone when its block ends.
        ssh_options: Extra arguments for the ``ssh`` of an ``ssh://`` address,
            before the ones the tunnel needs (so their ``-o`` values win):
            ``["-i", key, "-o", "UserKnownHostsFile=/path"]`` or ``["-F", config]``.
            Ignored for other addresses.
        session_label: Label what this client creates (containers, their
            snapshots and CNI records, leases, images it creates) with this
            process's :attr:`session`, so that :meth:`sweep` removes it once
            the process is gone. False for objects meant to outlive the
            process, such as the command line's detached containers.

    Raises:
        InvalidIdError: The namespace breaks containerd's identifier rules
            (checked here, as :meth:`namespace` checks it, not at the first call).
        InvalidTimeoutError: ``timeout`` is not a positive, finite number of seconds.
        InvalidAddressError: A malformed ``ssh://`` address (nothing is started).
        InvalidArgumentError: ``ssh_options`` is a string or holds non-strings (nothing is started).
        SSHNotFoundError: An ``ssh://`` address, and no ``ssh`` on PATH.
        SSHConnectError: ssh exited before its tunnel was up (refused, unreachable,
            authentication or host key failed; ssh's last stderr line is kept),
            or it was not up within 20 s. Nothing is left behind.

    A missing socket on the remote host shows at the first call, as a
    :class:`RemoteSocketError` (an ``UnavailableError``).

    Example::

        with Client() as client:
            print(client.version().version)
    """

    def __init__(
        self,
        address: str | None = None,
        namespace: str | None = None,
        *,
        timeout: float = _rpc.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        channel_options: list[tuple[str, Any]] | None = None,
        state_dir: str | None = None,
        network_config: NetworkConfig | None = None,
        background_teardown: bool = False,
        ssh_options: Sequence[str] = (),
        session_label: bool = True,
    ) -> None:
        from containerd_client._ids import validate_id, validate_timeout

        address = address or os.environ.get("CONTAINERD_ADDRESS") or DEFAULT_ADDRESS
        namespace = namespace or os.environ.get("CONTAINERD_NAMESPACE") or DEFAULT_NAMESPACE
        # Before the channel exists: a refused argument leaves nothing to close.
        validate_id(namespace, what="namespace")
        checked = validate_timeout(timeout, what="client timeout", allow_none=False, positive=True)
        timeout = cast(float, checked)
        self._connection = _rpc.Connection(address, options=channel_options, ssh_options=ssh_options)
        self._caller = _rpc.Caller(self._connection, namespace, timeout, retry or RetryPolicy())
        self._root: Client | None = None
        self._state = _State.OPEN
        self._lock = threading.Lock()
        self._state_dir = state_dir
        self._network_config = network_config
        self._background_teardown = background_teardown
        self._label_session = session_label
        # Created on the first background teardown (no thread before that).
        self._teardown: TeardownPool | None = None
        # Attached network namespaces kept for reuse (NetworkConfig.namespace_pool).
        self._netpool: NamespacePool | None = None
        self._teardown_failures: builtins.list[TeardownFailure] = []
        # Live task/exec objects of this client (and its views), for the event
        # dispatcher: exits complete their waits, reconciliation asks about them.
        self._processes: weakref.WeakValueDictionary[tuple[str, str, str], _ProcessBase] = (
            weakref.WeakValueDictionary()
        )
        self._dispatcher: EventDispatcher | None = None
        self._features: Features | None = None
        # The daemon's version as last seen by version() or a repr (display only).
        self._seen_version: str | None = None
        # Parsed manifests/configs by digest, and (config, snapshotter, chain)
        # unpacks already labelled: content-addressed, so never stale.
        self._json_cache: dict[str, Any] = {}
        self._unpacked: set[tuple[str, str, str]] = set()
        # Containers this client (or a view) created and has not deleted, by
        # (namespace, id): named by close() and by the finalizer below.
        self._created: dict[tuple[str, str], _Created] = {}
        # Not on self: the finalizer holds only the connection and that dict,
        # so it never keeps the client alive, and it does no I/O beyond
        # closing the channel. It also runs at interpreter (kernel) exit.
        self._finalizer = weakref.finalize(self, _close_unclosed, self._connection, address, self._created)
        _watch_exit(self)

    @classmethod
    def _view(cls, root: Client, namespace: str) -> Client:
        view = cls.__new__(cls)
        view._connection = root._connection
        view._caller = _rpc.Caller(root._connection, namespace, root._caller.timeout, root._caller.retry)
        view._root = root._root or root
        view._state = _State.OPEN
        view._lock = threading.Lock()
        view._state_dir = root._state_dir
        view._network_config = root._network_config
        view._background_teardown = root._background_teardown
        view._label_session = root._label_session
        return view

    @property
    def _base(self) -> Client:
        return self._root or self

    def _track(self, proc: _ProcessBase) -> None:
        key = (self.namespace_name, proc.container_id, proc._exec_id)
        with self._base._lock:
            self._base._processes[key] = proc

    def _tracked(self, namespace: str, container_id: str, exec_id: str) -> _ProcessBase | None:
        return self._base._processes.get((namespace, container_id, exec_id))

    def _tracked_items(self) -> list[tuple[tuple[str, str, str], _ProcessBase]]:
        with self._base._lock:
            return list(self._base._processes.items())

    def _note_created(self, container: Container) -> None:
        """Remember a container this client created, until :meth:`_forget_created`.

        Not for a client made with ``session_label=False``: what it creates is
        meant to outlive it (the command line's ``run -d``), so closing it with
        those containers running is no leftover to warn about.
        """
        if not self._label_session:
            return
        base = self._base
        entry = _Created(weakref.ref(container), container.info(), container._state_root)
        with base._lock:
            base._created[(self.namespace_name, container.id)] = entry

    def _forget_created(self, container: Container) -> None:
        """Drop ``container`` (deleted) from :attr:`created_containers`, not a newer one of its id."""
        base = self._base
        key = (self.namespace_name, container.id)
        with base._lock:
            entry = base._created.get(key)
            if entry is not None and entry.container() in (container, None):
                del base._created[key]

    @property
    def created_containers(self) -> builtins.list[str]:
        """``namespace/id`` of each container this client created and has not deleted (no RPC)."""
        with self._base._lock:
            return [f"{ns}/{cid}" for ns, cid in self._base._created]

    # -- events -----------------------------------------------------------------

    @property
    def events(self) -> EventDispatcher:
        """The client's event dispatcher (one subscription, handlers per container).

        Created on first use and started by the first handler; stopped by
        :meth:`close`. Shared by every namespace view of this client.
        """
        from containerd_client.events import EventDispatcher

        base = self._base
        self._check_open()
        with base._lock:
            if base._dispatcher is None:
                base._dispatcher = EventDispatcher(base)
            return base._dispatcher

    def subscribe(self, *filters: str) -> Subscription:
        """Subscribe to containerd's events; iterate the result, ``close()`` it when done.

        Args:
            *filters: containerd filters, OR'd; within one string, comma-joined
                parts are AND'd (``'namespace==default,topic~="^/tasks/"'``).
                Without filters every event of every namespace arrives.

        Raises:
            ClosedError: The client was closed.
        """
        from containerd_client.events import Subscription

        self._check_open()
        return Subscription(self, filters)

    # -- identity ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """The socket path or target this client talks to."""
        return self._connection.address

    @property
    def namespace_name(self) -> str:
        """The namespace sent with every call."""
        return self._caller.namespace

    @property
    def session(self) -> str:
        """This process's :func:`session_id`, labelled on what this client creates."""
        return session_id()

    @property
    def _session_labels(self) -> dict[str, str]:
        """``{SESSION_LABEL: session}`` for what this client creates; empty without ``session_label``."""
        return {SESSION_LABEL: session_id()} if self._label_session else {}

    @property
    def services(self) -> _rpc.Services:
        """The raw generated stubs (escape hatch); pass ``metadata=client.metadata``."""
        self._check_open()
        return _rpc.Services(self._connection)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata this client sends (namespace, and lease inside ``lease()``)."""
        return self._caller.metadata

    @property
    def closed(self) -> bool:
        """Whether this client (or the root it is a view of) was closed."""
        return self._state is _State.CLOSED or self._connection.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Client address={self.address!r} namespace={self.namespace_name!r} {state}>"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        base = self._base
        version = base._seen_version or _html.UNKNOWN
        if base._seen_version is None and not self.closed:
            from google.protobuf import empty_pb2

            from containerd_client.tasks import REPR_TIMEOUT

            try:  # one short call, no retry: a repr never hangs or raises
                version = base._seen_version = self._caller.call(
                    api.Version.Version, empty_pb2.Empty(), timeout=REPR_TIMEOUT
                ).version
            except Exception:
                version = _html.UNKNOWN
        created = self.created_containers
        shown = ", ".join(_html.code(name) for name in created[:8]) + (" …" if len(created) > 8 else "")
        rows = [
            ("namespace", _html.code(self.namespace_name)),
            ("state", _html.badge("closed" if self.closed else "open")),
            ("containerd", _html.esc(version)),
            ("created here", f"{len(created)}: {shown}" if created else "0"),
        ]
        pending = self.pending_teardowns
        if pending:
            rows.append(("tearing down", _html.esc(len(pending))))
        return _html.card("Client", self.address, rows)

    # -- lifecycle --------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed and (self._connection.closed or not _in_teardown.get()):
            raise ClosedError("the client is closed")

    def close(self, *, cleanup: bool | None = None) -> None:
        """Close the client. Idempotent; never raises.

        Closing the root client closes the shared channel: every view of it
        is closed too. Closing a view only marks that view closed. The root
        first waits (at most :data:`TEARDOWN_JOIN_TIMEOUT` seconds) for the
        background teardowns (see ``background_teardown``); their failures
        are logged and returned by a later :meth:`join_teardowns`.

        Args:
            cleanup: What the root does with containers it (or a view)
                created and did not delete (:attr:`created_containers`):
                None logs a warning naming them (with their state: one
                ``Tasks.List`` per namespace, short deadline), True tears
                them down (task, container, snapshot, FIFO folder, network)
                as :meth:`Container.cleanup` does, False leaves them quietly.
                A view ignores it.
        """
        with self._lock:
            if self._state is _State.CLOSED:
                return
            self._state = _State.CLOSED
        if self._root is None:
            self._close_root(cleanup=cleanup)

    def _close_root(self, timeout: float | None = 10.0, *, cleanup: bool | None = None) -> None:
        self._finalizer.detach()
        # Teardown first: it still needs the event dispatcher and the channel;
        # what meets an absent daemon lands in the deferred queue drained below.
        pool = self._teardown
        try:
            if pool is not None:
                self._report_teardown(pool.shutdown(TEARDOWN_JOIN_TIMEOUT))
            if cleanup is not False and self._created:
                token = _in_teardown.set(True)  # calls go through on the closing client
                try:
                    if cleanup:
                        self._remove_created()
                    else:
                        self._warn_created()
                finally:
                    _in_teardown.reset(token)
        finally:
            # After the teardowns, which give namespaces back: detach the kept ones.
            with self._lock:
                netpool, self._netpool = self._netpool, None
            if netpool is not None:
                netpool.close()
            # Also when the wait is interrupted (Ctrl-C): the channel still closes,
            # and a job still running fails with ClosedError (left to a sweep).
            dispatcher = self._dispatcher
            if dispatcher is not None:
                dispatcher.close(timeout)
            deferred = self._connection.deferred
            if deferred and deferred.drain():
                logger.warning(
                    "containerd is unavailable; cleanup left to lease expiry: %s",
                    "; ".join(deferred.describe()),
                )
            self._connection.close()

    def _remove_created(self) -> None:
        """Tear down every container created here and not deleted (``close(cleanup=True)``)."""
        from containerd_client.containers import Container

        with self._lock:
            left = list(self._created.items())
        for (namespace, cid), entry in left:
            container = entry.container()
            if container is None:
                view = Client._view(self, namespace)
                container = Container(view, entry.info, owned=True, state_root=entry.state_root)
            logger.info("close(cleanup=True): removing container %s/%s", namespace, cid)
            container.cleanup()

    def _warn_created(self) -> None:
        """Log the containers created here that still exist, with their tasks' state.

        Two short calls per namespace (Containers.List, Tasks.List); when they
        fail, every container not known to be deleted is named, without state.
        """
        from containerd_client._pb.containerd.services.containers.v1 import containers_pb2
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
        from containerd_client.tasks import _STATUS_BY_NUMBER

        with self._lock:
            left = list(self._created)
        states: dict[tuple[str, str], str] = {}
        gone: set[tuple[str, str]] = set()
        for namespace in sorted({ns for ns, _ in left}):
            view = Client._view(self, namespace)
            try:
                listed = view._caller.call(
                    api.Containers.List, containers_pb2.ListContainersRequest(), timeout=2.0
                )
                resp = view._caller.call(api.Tasks.List, tasks_pb2.ListTasksRequest(), timeout=2.0)
            except Exception:  # the warning goes out anyway, without states
                continue
            present = {c.id for c in listed.containers}
            gone.update(key for key in left if key[0] == namespace and key[1] not in present)
            for task in resp.tasks:
                status = _STATUS_BY_NUMBER.get(task.status)
                word = status.value if status is not None else "unknown"
                states[(namespace, task.id)] = f"{word}, pid {task.pid}" if task.pid else word
        left = [key for key in left if key not in gone]
        if not left:
            return
        names = "; ".join(
            f"{ns}/{cid} ({states.get((ns, cid), 'no task or state unknown')})" for ns, cid in left
        )
        logger.warning(
            "containerd Client for %s closed while %d container(s) it created were not deleted: %s. "
            "They stay in containerd (running ones keep running): remove them with "
            "client.close(cleanup=True) or container.cleanup(), keep them quietly with "
            "close(cleanup=False); a later client.sweep() removes them once this process is gone.",
            self.address,
            len(left),
            names,
        )

    # -- background teardown --------------------------------------------------------

    @property
    def network_config(self) -> NetworkConfig:
        """How this client's CNI networks are set up (the default when none was given)."""
        from containerd_client import network as _network

        return self._network_config or _network.NetworkConfig()

    def _netns_pool(self, *, create: bool = True) -> NamespacePool | None:
        """The root's pool of attached network namespaces, if its config asks for one."""
        base = self._base
        size = base.network_config.namespace_pool
        if size <= 0:
            return None
        with base._lock:
            if base._netpool is None and create and base._state is not _State.CLOSED:
                from containerd_client.network._pool import NamespacePool

                base._netpool = NamespacePool(size)
            return base._netpool

    @property
    def background_teardown(self) -> bool:
        """Whether :meth:`run` and containers' ``with`` blocks tear down in the background."""
        return self._background_teardown

    def _submit_teardown(self, key: str, what: str, job: Callable[[], None]) -> bool:
        """Run ``job`` on the client's teardown pool; False when the client is closing (run it yourself)."""
        base = self._base
        if self.closed:
            return False
        with base._lock:
            pool = base._teardown
            if pool is None:
                if base._state is _State.CLOSED:
                    return False
                from containerd_client._teardown import TeardownPool

                pool = base._teardown = TeardownPool()

        def run() -> None:
            _in_teardown.set(True)  # the pool runs each job in a context of its own
            job()

        return pool.submit((self.namespace_name, key), what, run)

    def _wait_teardown(self, key: str) -> None:
        """Wait for a pending background teardown of container ``key`` in this namespace."""
        pool = self._base._teardown
        if pool is not None and not pool.wait_for((self.namespace_name, key), TEARDOWN_JOIN_TIMEOUT):
            logger.warning("teardown of container %s still running after %s s", key, TEARDOWN_JOIN_TIMEOUT)

    def join_teardowns(self, timeout: float | None = TEARDOWN_JOIN_TIMEOUT) -> builtins.list[TeardownFailure]:
        """Wait for the background teardowns handed off so far; return the failures since the last join.

        Each failure (a :class:`~containerd_client._teardown.TeardownFailure`:
        what, and the error it raised) was also logged when it happened. A
        teardown still running at ``timeout`` is returned as a failure with a
        :class:`TimeoutError` (it keeps running). Never raises; on a closed
        client returns what :meth:`close` collected.
        """
        base = self._base
        pool = base._teardown
        if pool is None or base.closed:
            failures, base._teardown_failures = base._teardown_failures, []
            return failures
        return pool.join(timeout)

    @property
    def pending_teardowns(self) -> builtins.list[str]:
        """What the background teardown pool still has queued or running."""
        pool = self._base._teardown
        return [] if pool is None else pool.pending()

    def _report_teardown(self, failures: builtins.list[TeardownFailure]) -> None:
        if failures:
            logger.warning(
                "%d background teardown(s) failed: %s", len(failures), "; ".join(map(str, failures))
            )
        self._teardown_failures.extend(failures)

    # -- deferred cleanup ---------------------------------------------------------

    def _defer(self, what: str, job: Callable[[Client], None]) -> None:
        """Queue cleanup that failed because the daemon was away (see ``_rpc.DeferredCleanup``).

        ``job`` gets a client for this namespace with a short deadline; it
        runs after the next successful call, from :meth:`is_serving` and at
        :meth:`close`, and must be safe to run late and twice.
        """
        base = self._base
        namespace = self.namespace_name

        def run() -> None:
            # A fresh view: the one that queued the job may be closed by now;
            # the shared channel stays open until the root's close() has drained.
            view = Client._view(base, namespace)
            view._caller.timeout = _DEFERRED_TIMEOUT
            # The daemon just answered: a job that meets UNAVAILABLE again
            # stays queued at once instead of holding up the caller's thread.
            view._caller.retry = NO_RETRY
            job(view)

        self._connection.deferred.add(f"{what} (namespace {namespace})", run)

    @property
    def deferred_cleanups(self) -> builtins.list[str]:
        """Cleanup still waiting for the daemon to come back (see :meth:`lease`)."""
        return self._connection.deferred.describe()

    def _operation_expiry(self, nbytes: int = 0) -> float:
        """Lease expiry for an SDK operation moving ``nbytes``: its deadlines added up."""
        timeout = self._caller.timeout or _rpc.DEFAULT_TIMEOUT
        return max(_LEASE_FLOOR, 3 * timeout) + nbytes / _LEASE_BYTES_PER_SECOND

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(
        self,
        method: Unary[Req, Resp],
        request: Req,
        *,
        timeout: float | None = -1.0,
        idempotent: bool = False,
    ) -> Resp:
        """Make a raw unary call with this client's namespace, deadline and errors.

        ``method`` is a descriptor from the generated ``containerd_client._pb.api``
        (``api.Tasks.List``); mypy checks ``request`` against it and types the
        response. ``timeout`` and ``idempotent`` are as in
        :meth:`containerd_client._rpc.Caller.call`.

        Raises:
            RPCError: The daemon answered with a non-OK status.
            ClosedError: The client was closed.
        """
        self._check_open()
        return self._caller.call(method, request, timeout=timeout, idempotent=idempotent)

    # -- server -----------------------------------------------------------------

    def version(self) -> Version:
        """The daemon's version.

        Raises:
            RPCError: The call failed (``UnavailableError`` when nothing listens).
        """
        from google.protobuf import empty_pb2

        self._check_open()
        resp = self._caller.call(api.Version.Version, empty_pb2.Empty(), idempotent=True)
        self._base._seen_version = resp.version
        return Version(resp.version, resp.revision)

    def server(self) -> ServerInfo:
        """The daemon's identity (UUID, pid) and deprecation warnings.

        Raises:
            RPCError: The call failed.
        """
        from google.protobuf import empty_pb2

        self._check_open()
        resp = self._caller.call(api.Introspection.Server, empty_pb2.Empty(), idempotent=True)
        deprecations = tuple(d.id for d in getattr(resp, "deprecations", ()))
        return ServerInfo(resp.uuid, resp.pid, resp.pidns, deprecations)

    def plugins(self, *filters: str) -> list[Plugin]:
        """The daemon's plugins, optionally filtered (``"type==io.containerd.snapshotter.v1"``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.introspection.v1 import introspection_pb2

        self._check_open()
        req = introspection_pb2.PluginsRequest(filters=list(filters))
        resp = self._caller.call(api.Introspection.Plugins, req, idempotent=True)
        return [
            Plugin(
                type=p.type,
                id=p.id,
                requires=tuple(p.requires),
                capabilities=tuple(p.capabilities),
                exports=dict(p.exports),
                init_error=p.init_err.message if p.HasField("init_err") else None,
            )
            for p in resp.plugins
        ]

    def features(self, *, refresh: bool = False) -> Features:
        """What the daemon can do (version and plugins, asked once and cached).

        Use ``client.features().has("transfer")`` or ``.require("transfer")``
        (raises :class:`~containerd_client.errors.NotSupportedError` naming the
        version needed).

        Raises:
            RPCError: The daemon could not be asked.
        """
        from containerd_client._features import Features

        base = self._base
        cached = base._features
        if cached is None or refresh:
            version = self.version()
            plugins = [(p.type, p.id) for p in self.plugins() if p.ok]
            cached = base._features = Features.build(version.tuple, version.version, plugins)
        return cached

    def is_serving(self, timeout: float = 1.0) -> bool:
        """Whether the daemon answers its gRPC health check with SERVING.

        Never raises for an unreachable daemon; returns False instead.
        """
        from grpc_health.v1 import health_pb2

        self._check_open()
        try:
            resp = self._caller.call(api.Health.Check, health_pb2.HealthCheckRequest(), timeout=timeout)
        except (RPCError, SSHError):  # an ssh tunnel that cannot come back is unreachable too
            return False
        serving = bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
        if serving and self._connection.deferred:
            self._connection.deferred.drain()
        return serving

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the daemon is serving, backing off between checks.

        Raises:
            DeadlineExceededError: The daemon did not serve within ``timeout``.
        """
        self._check_open()

        def check() -> bool:
            return self.is_serving(timeout=min(1.0, max(timeout, 0.01)))

        if not poll(check, timeout, initial=0.02, maximum=0.5):
            message = f"containerd at {self.address} did not serve within {timeout} s"
            path = None if self._connection.answered else socket_path(self.address)
            why = None if path is None else diagnose_socket(path)
            tunnel = self._connection.tunnel
            if tunnel is not None and tunnel.stderr_line():
                why = f"ssh says: {tunnel.stderr_line()}"
            raise DeadlineExceededError(message if why is None else f"{message}: {why}")

    # -- namespaces -------------------------------------------------------------

    def namespace(self, name: str) -> Client:
        """A view of this client that sends ``name`` as its namespace.

        The view shares this client's channel; use it as a context manager or
        just drop it. Closing it does not close this client.
        """
        from containerd_client._ids import validate_id

        self._check_open()
        validate_id(name, what="namespace")
        return Client._view(self, name)

    @property
    def namespaces(self) -> NamespaceStore:
        """List, create, label and delete namespaces."""
        return NamespaceStore(self)

    # -- leases -----------------------------------------------------------------

    @property
    def leases(self) -> LeaseStore:
        """Create, list and delete leases, and their resources."""
        return LeaseStore(self)

    @contextlib.contextmanager
    def lease(
        self,
        *,
        expire: float | _dt.timedelta | None = 3600.0,
        labels: Mapping[str, str] | None = None,
        lease_id: str | None = None,
        sync_delete: bool = False,
    ) -> Iterator[Lease]:
        """Create a lease and attach it to every call this client makes in the block.

        Resources created inside the block (snapshots, content, containers'
        rootfs) are protected from garbage collection until the block ends
        and the lease is deleted. The lease applies to calls made from the
        current thread (it is kept in a context variable).

        Args:
            expire: Seconds (or a timedelta) after which containerd drops the
                lease by itself even if this process dies; None for no expiry.
            labels: Extra labels for the lease.
            lease_id: Use this id instead of a random one.
            sync_delete: Ask containerd to collect garbage before the delete returns.

        Raises:
            InvalidIdError: ``lease_id`` breaks containerd's identifier rules.
            InvalidTimeoutError: ``expire`` is not a positive, finite duration.
            RPCError: Creating the lease failed. Deleting it at the end is
                best effort: a failure is logged, never raised over another
                error. When the daemon is unavailable (it crashed mid-block),
                the deletion is queued and done once the daemon answers again
                (after the next successful call, :meth:`is_serving` or
                :meth:`close`; see :attr:`deferred_cleanups`), so a retry of
                the operation does not find this attempt's leftovers.
        """
        lease = self.leases.create(lease_id=lease_id, expire=expire, labels=labels)
        token = _rpc.set_lease(self._connection, lease.id)
        try:
            yield lease
        finally:
            _rpc.reset_lease(token)
            self._delete_lease(lease.id, sync_delete)

    def _delete_lease(self, lease_id: str, sync: bool) -> None:
        try:
            self.leases.delete(lease_id, sync=sync, missing_ok=True)
        except UnavailableError:
            # sync: what only this lease held is collected before the job
            # counts as done, so a retry that runs after it finds nothing.
            self._defer(
                f"delete lease {lease_id}", lambda c: c.leases.delete(lease_id, sync=True, missing_ok=True)
            )
        except ClosedError:
            logger.warning("client closed before lease %s could be deleted", lease_id)
        except ContainerdError:
            logger.warning("could not delete lease %s", lease_id, exc_info=True)

    # -- content, snapshots, images ---------------------------------------------

    @property
    def content(self) -> ContentStore:
        """Blobs by digest: read, write (resumable), label, delete."""
        from containerd_client.content import ContentStore

        self._check_open()
        return ContentStore(self)

    def snapshots(self, snapshotter: str = "overlayfs") -> SnapshotStore:
        """The snapshots of one snapshotter: prepare, view, commit, remove, usage."""
        from containerd_client.snapshots import SnapshotStore

        self._check_open()
        return SnapshotStore(self, snapshotter)

    @property
    def images(self) -> ImageStore:
        """Image records; reading files from images; unpack, import and export."""
        from containerd_client.images import ImageStore

        self._check_open()
        return ImageStore(self)

    def pull(
        self,
        ref: str,
        *,
        platform: Platform | str | None = None,
        auth: CredentialsSource = None,
        plain_http: bool | None = None,
        ca_file: str | None = None,
        unpack: bool = True,
        snapshotter: str = "overlayfs",
        progress: ProgressCallback | None = None,
        via: Via = "auto",
        default_host: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_PULL_TIMEOUT,
        retry: RetryPolicy | None = None,
        docker_config: str | None = None,
    ) -> Image:
        """Pull an image from a registry into this namespace and unpack it.

        The daemon fetches it through its transfer service where it can
        (containerd 2.x; 1.7 with an HTTPS registry), the SDK fetches it
        otherwise. The keyword arguments are the fields of
        :class:`containerd_client.pull.PullOptions`, which documents them
        (``timeout`` is the whole pull's one deadline, 30 minutes by
        default). A failed pull leaves no image, blob, ingest or lease behind.
        :func:`containerd_client.pull.pull_detailed` takes a ``PullOptions``
        and also says which path ran.

        Raises:
            InvalidReferenceError: ``ref`` is malformed.
            DeadlineExceededError: The pull did not finish within ``timeout``.
            NotFoundError: Unknown repository or tag.
            UnauthenticatedError: Missing or refused credentials.
            PlatformNotFoundError: The image has no manifest for the platform.
            RPCError: The daemon failed.
        """
        from containerd_client.pull import PullOptions, pull

        self._check_open()
        options = PullOptions(
            platform=platform,
            auth=auth,
            plain_http=plain_http,
            ca_file=ca_file,
            unpack=unpack,
            snapshotter=snapshotter,
            progress=progress,
            via=via,
            default_host=default_host,
            labels=labels,
            timeout=timeout,
            retry=retry,
            docker_config=docker_config,
        )
        return pull(self, ref, options)

    def run(
        self,
        image: str | Image,
        args: Command | None = None,
        *,
        container_id: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        spec: Iterable[SpecOpt] = (),
        timeout: float | None = None,
        pull: bool = True,
        platform: Platform | str | None = None,
        snapshotter: str = "overlayfs",
        runtime_options: RuncOptions | None = None,
        pull_options: PullOptions | None = None,
        network: str | None = None,
        detach_cleanup: bool | None = None,
    ) -> ExecResult:
        """Run a command in a new container from ``image`` and return its exit code and output.

        Pulls the image if it is missing (unless ``pull=False``), creates the
        container, starts it, waits, and deletes it with its snapshot, also
        on error, timeout or Ctrl-C. With ``detach_cleanup`` the deletion
        after a successful run goes to the background teardown pool (see
        ``background_teardown`` of :class:`Client`): the result comes back
        as soon as the output is read, and :meth:`close` or
        :meth:`join_teardowns` waits for the deletion. After an error the
        deletion is always done before the error is raised.

        Args:
            image: An image name (or :class:`Image`) in this namespace or a registry.
            args: Replace the image's command (its entrypoint stays): a list,
                or a string split as a shell would, as docker-py does
                (``"sh -c 'echo hi'"`` is ``["sh", "-c", "echo hi"]``; nothing
                is expanded).
            container_id: The container id; random by default.
            env: Extra environment variables.
            cwd: Working directory.
            stdin: Data for the process's stdin.
            spec: More spec options (see :mod:`containerd_client.spec`).
            timeout: Kill the container after this many seconds.
            pull: Pull a missing image.
            platform: The image platform; the host's by default.
            snapshotter: The snapshotter for the rootfs.
            runtime_options: runc options.
            pull_options: How to pull a missing image (:class:`~containerd_client.pull.PullOptions`);
                ``platform`` and ``snapshotter`` above replace its own.
            network: As for :meth:`create_container` (``"bridge"`` gives it an
                address and a route out; the network is removed with the container).
            detach_cleanup: Delete the container in the background; None
                follows the client's ``background_teardown``.

        Raises:
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite (nothing is done).
            InvalidIdError: ``container_id`` breaks containerd's rules (nothing is done).
            InvalidSpecError: ``args``, ``env`` or ``cwd`` would be refused by runc, or
                ``args`` is a string that is empty or whose quotes do not close (nothing is done).
            InvalidNetworkError: An unknown network (nothing is done).
            CNIError: A CNI plugin failed; nothing is left behind.
            DeadlineExceededError: It ran longer than ``timeout`` (it was killed).
            NotFoundError: The image is not here and ``pull`` is False.
            RPCError: A step failed; nothing is left behind.
        """
        from containerd_client import cio
        from containerd_client import spec as _spec
        from containerd_client._ids import validate_id, validate_timeout
        from containerd_client.errors import NotFoundError as _NotFound
        from containerd_client.tasks import ExecResult as _ExecResult

        self._check_open()
        timeout = validate_timeout(timeout, what="run timeout")
        # Every argument is checked before the image is looked up or pulled.
        opts = list(spec)
        if env:
            opts.append(_spec.with_env(env))
        if cwd:
            opts.append(_spec.with_cwd(cwd))
        if args is not None:
            args = _spec.command_args(args)
        if container_id is not None:
            validate_id(container_id, what="container id")
        if network is not None:
            from containerd_client import network as _network
            from containerd_client.containers import _state_root

            # Checked (no side effects) before any pull; create_container checks again.
            _network.plan(
                network,
                None,
                self._network_config or _network.NetworkConfig(),
                state_root=_state_root(self._state_dir),
                namespace=self.namespace_name,
                container_id=container_id or "run",
            )
        if isinstance(image, str):
            ref = image
            try:
                image = self.images.get(ref)
            except _NotFound:
                if not pull:
                    raise
                from containerd_client.pull import PullOptions as _PullOptions
                from containerd_client.pull import pull as _pull

                options = attrs.evolve(
                    pull_options or _PullOptions(), platform=platform, snapshotter=snapshotter
                )
                image = _pull(self, ref, options)
        cid = container_id or f"run-{uuid.uuid4().hex[:16]}"
        out, err = cio.Capture(), cio.Capture()
        container = self.create_container(
            cid,
            image=image,
            args=args,
            spec=opts,
            platform=platform,
            snapshotter=snapshotter,
            runtime_options=runtime_options,
            network=network,
        )
        try:
            task = container.new_task(stdin=stdin, stdout=out, stderr=err)
            task.start()
            status = task.wait(timeout)
        except BaseException:
            container.cleanup()
            raise
        # wait() drained stdout/stderr: the output is complete before the teardown.
        background = self._background_teardown if detach_cleanup is None else detach_cleanup
        container.cleanup(wait=not background)
        return _ExecResult(status.exit_code, out.getvalue(), err.getvalue())

    # -- containers -------------------------------------------------------------

    def create_container(
        self,
        container_id: str,
        *,
        spec: Mapping[str, Any] | Iterable[SpecOpt] | None = None,
        args: Command | None = None,
        rootfs: str | None = None,
        runtime: str = "io.containerd.runc.v2",
        runtime_options: RuncOptions | None = None,
        labels: Mapping[str, str] | None = None,
        image: str | Image = "",
        platform: Platform | str | None = None,
        snapshotter: str = "",
        snapshot_key: str = "",
        network: str | None = None,
        ports: Mapping[int | str, int | None] | None = None,
    ) -> Container:
        """Create a container record; use it in a ``with`` block to have it deleted.

        Args:
            container_id: The id (containerd rules: letters, digits, ``._-``; at most 76).
            spec: A full OCI spec dict, or spec options applied to containerd's
                default spec (see :mod:`containerd_client.spec`).
            args: The command line (sets ``process.args``): a list, or a string
                split as a shell would (``shlex.split``, as docker-py does).
            rootfs: A host folder to use as the root filesystem.
            runtime: The shim (``io.containerd.runc.v2``).
            runtime_options: runc options, stored on the record.
            labels: Container labels.
            image: An image in this namespace: it is unpacked, a writable
                snapshot keyed by the container id is prepared from it, and its
                config (entrypoint, cmd, env, workdir, user) shapes the spec;
                ``args`` then replaces its cmd. Leaving the ``with`` block
                removes that snapshot too.
            platform: The image platform (host's by default).
            snapshotter: The snapshotter for the rootfs (``overlayfs``).
            snapshot_key: An existing snapshot to use as rootfs instead.
            network: ``None`` or ``"none"`` (a private namespace with only
                ``lo``, the default), ``"host"`` (the host's network),
                ``"bridge"`` (the SDK's CNI bridge network, see
                :mod:`containerd_client.network`) or the name of a CNI network
                configured in the client's ``network_config.conf_dirs``.
                A CNI network's namespace is made now and removed with the container.
            ports: Ports to publish on 127.0.0.1 (needs a CNI network):
                ``{80: None}`` picks a free host port (one no nat rule of
                the host DNATs: Docker's, nerdctl's, another portmap's),
                ``{80: 8080}`` asks for 8080; ``"53/udp"`` keys publish UDP.
                See :attr:`Container.ports`.

        A background teardown of a container with this id (see
        ``background_teardown``) still pending is waited for first.

        Raises:
            InvalidIdError: ``container_id`` breaks containerd's rules (no RPC made).
            InvalidNetworkError: An unknown network, malformed ports, or ports
                without a CNI network (no RPC made).
            PortInUseError: An explicit host port is taken, published by
                another container or DNATed by a nat rule of the host (no RPC made).
            PluginNotFoundError: A CNI plugin the network needs is missing.
            CNIError: A CNI plugin failed (the namespace is removed again).
            ConflictError: The id is already in use.
            RPCError: The daemon refused the container.
        """
        from containerd_client import containers

        self._check_open()
        if self._base._teardown is not None:
            # A background teardown of the same id must finish first (else AlreadyExists).
            self._wait_teardown(container_id)
        return containers.create_container(
            self,
            container_id,
            spec=spec,
            args=args,
            rootfs=rootfs,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            image=image,
            platform=platform,
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
            state_dir=self._state_dir,
            network=network,
            ports=ports,
            network_config=self._network_config,
        )

    def restore(
        self,
        container_id: str,
        checkpoint: Checkpoint | str | os.PathLike[str],
        *,
        rootfs: str | None = None,
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
        ports: Mapping[Any, Any] | None = None,
        start: bool = True,
        **task_kwargs: Any,
    ) -> Container:
        """Create a container from a checkpoint and restore its task in it, under any id.

        The container gets the checkpointed spec, runtime and runtime
        options; its image's snapshot afresh (plus the rw layer if the
        checkpoint kept it) or the same host rootfs (or ``rootfs``); its own
        network namespace (``network``/``ports`` as in :meth:`create_container`).
        The task is created from the checkpoint with ``task_kwargs``
        (``stdout``, ``stdin``, ``tty``, ``logs``... as in
        :meth:`Container.new_task`) and started unless ``start`` is False:
        ``container.task()`` gives it. On failure everything made is removed.

        Args:
            container_id: The new container's id (may equal the checkpointed one once that is gone).
            checkpoint: A :class:`~containerd_client.checkpoint.Checkpoint` or a checkpoint folder.

        Raises:
            CheckpointError: Not a checkpoint, or a deleted one.
            CriuUnavailableError: The daemon's criu is missing, too old or failed.
            ConflictError: ``container_id`` is in use.
            RPCError: A call failed; nothing is left behind.
        """
        from containerd_client.checkpoint import restore

        return restore(
            self,
            container_id,
            checkpoint,
            rootfs=rootfs,
            labels=labels,
            network=network,
            ports=ports,
            start=start,
            **task_kwargs,
        )

    def load_container(self, container_id: str) -> Container:
        """Attach to an existing container (its ``with`` block does not delete it).

        Raises:
            InvalidIdError: ``container_id`` breaks containerd's rules.
            NotFoundError: No such container (containerd's message is kept).
            RPCError: The call failed.
        """
        from containerd_client import containers

        self._check_open()
        return containers.load_container(self, container_id, state_dir=self._state_dir)

    def containers(self, *filters: str) -> list[Container]:
        """The containers in this namespace, optionally filtered
        (``"labels.app==web"``, ``"image==busybox"``; several strings are OR'd,
        commas inside one string AND).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client import containers

        self._check_open()
        return containers.list_containers(self, *filters, state_dir=self._state_dir)

    # -- crash-safe cleanup -----------------------------------------------------

    def sweep(
        self, *, dry_run: bool = False, images: bool = False, all_namespaces: bool = False
    ) -> SweepReport:
        """Remove what SDK sessions that no longer exist left behind in this namespace.

        A session (:func:`session_id`, the :data:`SESSION_LABEL` on what the
        SDK creates) is dead when its host is this host and its process is
        gone or its pid now belongs to another process. For those sessions
        this kills and deletes tasks, deletes containers with their snapshots
        and FIFO (bundle) folders under this client's ``state_dir``, removes
        the other snapshots and the leases they made, and removes the
        namespace's state folder if it is empty then. What a live session
        owns, other hosts' sessions and anything without the label are never
        touched. See :mod:`containerd_client.sweep`.

        Args:
            dry_run: Only report what would be removed.
            images: Also delete images that carry a dead session's label
                (the user's images otherwise stay).
            all_namespaces: Sweep every namespace of the daemon, not just this one.

        Returns:
            A :class:`~containerd_client.sweep.SweepReport`: what was removed per
            kind; what could not be removed is listed in its ``failed``.

        Raises:
            RPCError: A namespace's containers, tasks, leases or images could
                not be listed (single removals that fail are reported, not raised).
        """
        from containerd_client.sweep import sweep as _sweep

        self._check_open()
        return _sweep(self, dry_run=dry_run, images=images, all_namespaces=all_namespaces)


# Root clients not yet closed, for the exit hook below.
_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_exit_hook: list[bool] = []


def _watch_exit(client: Client) -> None:
    """Have :func:`_at_exit` report ``client`` if it is still open when the interpreter exits."""
    _open_clients.add(client)
    if not _exit_hook:
        # Registered after the first finalizer (atexit runs last-in first): the
        # hook runs before weakref's own exit pass would run the finalizers.
        import atexit

        atexit.register(_at_exit)
        _exit_hook.append(True)


def _at_exit() -> None:
    """Run the finalizers of clients still open, where a person sees what they say.

    A Jupyter kernel's ``sys.stderr`` sends to the notebook, which is gone
    when the kernel shuts down: the warnings go to the process's own stderr
    (the kernel's log, the terminal that started it) instead.
    """
    clients = [c for c in list(_open_clients) if c._finalizer.alive]
    if not clients:
        return
    real = sys.__stderr__
    saved = sys.stderr
    if real is not None and saved is not real:
        sys.stderr = real
    try:
        for client in clients:
            client._finalizer()
    finally:
        sys.stderr = saved


def _close_unclosed(
    connection: _rpc.Connection, address: str, created: dict[tuple[str, str], _Created]
) -> None:
    """The finalizer of an unclosed Client (collected, or the interpreter exiting): no RPC."""
    if connection.closed:
        return
    warnings.warn(
        f"unclosed containerd Client for {address}; use `with Client(...)` or call close()",
        UnclosedClientWarning,
        stacklevel=2,
    )
    left = list(created)
    if left:
        logger.warning(
            "containerd Client for %s was not closed and %d container(s) it created were not deleted "
            "(they stay in containerd; running ones keep running): %s. Use `with` blocks or "
            "client.close(cleanup=True); a later client.sweep() removes them once this process is gone.",
            address,
            len(left),
            ", ".join(f"{ns}/{cid}" for ns, cid in left),
        )
    connection.close()
