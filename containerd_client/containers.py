"""Containers: containerd's metadata records that tasks run from.

:meth:`Client.create_container` makes one (and owns it: leaving its ``with``
block deletes it, its snapshot and its FIFO folder); :meth:`Client.load_container`
attaches to an existing one without owning it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from containerd_client import _typeurl
from containerd_client import network as _network
from containerd_client._convert import from_timestamp
from containerd_client._ids import validate_id
from containerd_client._pb import api
from containerd_client.client import OPERATION_LABEL
from containerd_client.errors import (
    AlreadyExistsError,
    ClosedError,
    ConflictError,
    ContainerdError,
    FailedPreconditionError,
    NotFoundError,
    StatusCode,
    UnavailableError,
)
from containerd_client.tasks import (
    CLEANUP_TIMEOUT,
    STOP_SIGNAL_LABEL,
    STOP_TIMEOUT,
    ExitStatus,
    Task,
    TaskStatus,
    _default_io,
    _log_streams,
    _ProcessState,
    get_process_state,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from containerd_client import cio
    from containerd_client._copy import PathStat
    from containerd_client._pb.containerd.runc.options import oci_pb2
    from containerd_client.checkpoint import Checkpoint
    from containerd_client.client import Client
    from containerd_client.content import Descriptor, Platform
    from containerd_client.events import Event
    from containerd_client.images import Image
    from containerd_client.network import PortMapping
    from containerd_client.spec import Command, SpecOpt

__all__ = [
    "BUNDLE_LABEL",
    "DEFAULT_RUNTIME",
    "Container",
    "ContainerInfo",
    "RuncOptions",
    "create_container",
    "list_containers",
    "load_container",
]

logger = logging.getLogger(__name__)

DEFAULT_RUNTIME = "io.containerd.runc.v2"
#: Label recording the folder that holds a container's FIFOs (like Docker's
#: ``com.docker/engine.bundle.path``), for people and tools looking at the
#: record. The SDK never trusts it: any client of the daemon can change it.
#: The folder is always ``<state_dir>/<namespace>/<id>``, and cleanup removes
#: that folder only when the label (if any) agrees.
BUNDLE_LABEL = "containerd-client/bundle.path"
#: Set to 1 to keep FIFO folders after delete, for debugging.
NOCLEAN_ENV = "CONTAINERD_CLIENT_NOCLEAN"
#: The ``/etc/hosts`` of a container on a CNI network, in its state folder.
HOSTS_FILE = "etc-hosts"


@attrs.frozen
class RuncOptions:
    """Options of the runc shim (``containerd.runc.v1.Options``).

    containerd 2.x dropped the ``criu_path`` option: to use another criu, put
    its folder first on the daemon's PATH.

    Attributes:
        binary_name: The runc binary to use.
        root: runc's state root (``--root``); keeps ids of two daemons apart.
        systemd_cgroup: Let systemd manage cgroups.
        no_pivot_root: Use chroot instead of pivot_root (ramdisks).
        no_new_keyring: Do not create a new session keyring.
        shim_cgroup: Cgroup to put the shim in.
        io_uid: Owner of the shim's IO pipes (user namespaces).
        io_gid: Group of the shim's IO pipes.
        criu_image_path: Where criu writes images.
        criu_work_path: criu's work folder.
    """

    binary_name: str = ""
    root: str = ""
    systemd_cgroup: bool = False
    no_pivot_root: bool = False
    no_new_keyring: bool = False
    shim_cgroup: str = ""
    io_uid: int = 0
    io_gid: int = 0
    criu_image_path: str = ""
    criu_work_path: str = ""

    def to_proto(self) -> oci_pb2.Options:
        """The protobuf message."""
        from containerd_client._pb.containerd.runc.options import oci_pb2

        return oci_pb2.Options(
            binary_name=self.binary_name,
            root=self.root,
            systemd_cgroup=self.systemd_cgroup,
            no_pivot_root=self.no_pivot_root,
            no_new_keyring=self.no_new_keyring,
            shim_cgroup=self.shim_cgroup,
            io_uid=self.io_uid,
            io_gid=self.io_gid,
            criu_image_path=self.criu_image_path,
            criu_work_path=self.criu_work_path,
        )

    @classmethod
    def from_proto(cls, msg: oci_pb2.Options) -> RuncOptions:
        """Build from a ``containerd.runc.v1.Options`` message."""
        return cls(
            binary_name=msg.binary_name,
            root=msg.root,
            systemd_cgroup=msg.systemd_cgroup,
            no_pivot_root=msg.no_pivot_root,
            no_new_keyring=msg.no_new_keyring,
            shim_cgroup=msg.shim_cgroup,
            io_uid=msg.io_uid,
            io_gid=msg.io_gid,
            criu_image_path=msg.criu_image_path,
            criu_work_path=msg.criu_work_path,
        )


@attrs.frozen
class ContainerInfo:
    """A container record as containerd stores it."""

    id: str
    labels: Mapping[str, str]
    image: str
    runtime: str
    runtime_options: RuncOptions | None
    snapshotter: str
    snapshot_key: str
    created_at: _dt.datetime | None
    updated_at: _dt.datetime | None
    spec: Mapping[str, Any]

    @classmethod
    def from_proto(cls, c: Any, *, spec: Mapping[str, Any] | None = None) -> ContainerInfo:
        """Decode a ``containerd.services.containers.v1.Container``.

        ``spec`` skips decoding the spec JSON when the caller already has it
        (the record it just created).
        """
        options: RuncOptions | None = None
        if c.runtime.HasField("options") and c.runtime.options.type_url:
            try:
                msg = _typeurl.unpack(c.runtime.options)
            except ContainerdError:
                msg = None
            if msg is not None and msg.DESCRIPTOR.full_name == "containerd.runc.v1.Options":
                options = RuncOptions.from_proto(msg)
        if spec is None:
            spec = _typeurl.unpack(c.spec) if c.HasField("spec") and c.spec.value else {}
        return cls(
            id=c.id,
            labels=dict(c.labels),
            image=c.image,
            runtime=c.runtime.name,
            runtime_options=options,
            snapshotter=c.snapshotter,
            snapshot_key=c.snapshot_key,
            created_at=from_timestamp(c.created_at),
            updated_at=from_timestamp(c.updated_at),
            spec=spec,
        )

    def __repr__(self) -> str:
        # The spec and labels can run to pages: a repr names the record only.
        return (
            f"<ContainerInfo {self.id!r} image={self.image[:100]!r} runtime={self.runtime!r} "
            f"labels={len(self.labels)}>"
        )


#: How deep cleanup descends into a FIFO folder (they hold FIFOs, not trees).
_MAX_BUNDLE_DEPTH = 4
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _remove_state_folder(state_root: str, namespace: str, name: str) -> bool:
    """Remove ``<state_root>/<namespace>/<name>``, a folder the SDK made, following no link.

    The state root is opened as configured (it may itself be a link, such as
    ``/var/run``); below it each level is opened relative to the one above
    with ``O_NOFOLLOW``, so a symlink planted at the namespace or container
    level, or swapped in while this runs, is refused instead of followed.
    The folder must be a real folder owned by this user. Refusals are
    logged, never raised: cleanup goes on.

    Returns:
        Whether the folder is gone (or never existed).
    """
    where = os.path.join(state_root, namespace, name)
    try:
        root_fd = os.open(state_root, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    except OSError as exc:
        logger.warning("not removing FIFO folder %s: cannot open the state folder: %s", where, exc)
        return False
    try:
        try:
            ns_fd = os.open(namespace, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:  # ELOOP/ENOTDIR: a link or a file where a folder should be
            logger.warning("not removing FIFO folder %s: %s is no plain folder (%s)", where, namespace, exc)
            return False
        try:
            try:
                info = os.stat(name, dir_fd=ns_fd, follow_symlinks=False)
            except FileNotFoundError:
                return True
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                logger.warning("not removing %s: not a folder owned by this user (a link?)", where)
                return False
            return _remove_tree_at(ns_fd, name, where, 0)
        finally:
            os.close(ns_fd)
    finally:
        os.close(root_fd)


def _remove_empty_namespace_folder(state_root: str, namespace: str) -> None:
    """Remove ``<state_root>/<namespace>`` if it is an empty folder (one per namespace piled up).

    A folder that holds anything, or is a link, stays. A container being
    created in the namespace at the same moment recreates it (:func:`_make_bundle`).
    """
    try:
        root_fd = os.open(state_root, _DIR_FLAGS)
    except OSError:
        return
    try:
        info = os.stat(namespace, dir_fd=root_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            os.rmdir(namespace, dir_fd=root_fd)  # refuses a folder that is not empty
    except OSError:
        pass
    finally:
        os.close(root_fd)


def _make_bundle(path: str) -> None:
    """Make a container's FIFO folder (and its namespace folder).

    Another container's cleanup may remove the empty namespace folder
    between the two ``mkdir`` calls of :func:`os.makedirs`: then try again.
    """
    for attempt in range(5):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def _remove_tree_at(parent_fd: int, name: str, where: str, depth: int) -> bool:
    """Remove folder ``name`` of ``parent_fd`` and its entries; links are unlinked, never followed."""
    if depth > _MAX_BUNDLE_DEPTH:
        logger.warning("not removing %s: nested deeper than a FIFO folder ever is", where)
        return False
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        logger.warning("could not remove FIFO folder %s: %s", where, exc)
        return False
    ok = True
    try:
        with os.scandir(fd) as entries:
            for entry in list(entries):
                path = os.path.join(where, entry.name)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        ok = _remove_tree_at(fd, entry.name, path, depth + 1) and ok
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    logger.warning("could not remove %s: %s", path, exc)
                    ok = False
    finally:
        os.close(fd)
    if not ok:
        return False
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove FIFO folder %s: %s", where, exc)
        return False
    return True


def _default_state_dir() -> str:
    env = os.environ.get("CONTAINERD_CLIENT_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/containerd-client"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containerd-client")
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"containerd-client-{os.geteuid()}")


def _io_owner(spec: Mapping[str, Any]) -> tuple[int, int]:
    """Host uid/gid of the container's root, when the spec has a user namespace."""
    linux = spec.get("linux", {}) or {}
    if not any(ns.get("type") == "user" for ns in linux.get("namespaces", []) or []):
        return 0, 0

    def host_id(mappings: Sequence[Mapping[str, Any]]) -> int:
        for m in mappings or []:
            if int(m.get("containerID", 0)) == 0:
                return int(m.get("hostID", 0))
        return 0

    return host_id(linux.get("uidMappings", [])), host_id(linux.get("gidMappings", []))


class Container:
    """A containerd container record, and the parent of its task.

    Use :meth:`new_task` to create its task. As a context manager, a
    container created by this client is deleted at the end of the block,
    together with its task (killed if still running), its snapshot and its
    FIFO folder; a loaded container is left alone.
    """

    def __init__(self, client: Client, info: ContainerInfo, *, owned: bool, state_root: str) -> None:
        self._client = client
        self._info = info
        self._owned = owned
        self._state_root = state_root
        self._bundle_dir = os.path.join(state_root, client.namespace_name, info.id)
        self._task: Task | None = None
        self._deleted = False
        self._event_callbacks: list[Callable[[Event], None]] = []
        # True once this object deleted the task it created: delete() then
        # knows there is none without asking (one RPC less per lifecycle).
        self._task_deleted_here = False
        # CNI ADD still running for a container this object just created.
        self._pending_network: _network.PendingAttachment | None = None

    @property
    def id(self) -> str:
        """The container id."""
        return self._info.id

    @property
    def client(self) -> Client:
        """The client (namespace view) this container belongs to."""
        return self._client

    @property
    def bundle_dir(self) -> str:
        """The folder holding this container's FIFOs: ``<state_dir>/<namespace>/<id>``.

        Derived from the client's state folder, never from the record's
        :data:`BUNDLE_LABEL` (which any client of the daemon can change).
        """
        return self._bundle_dir

    def __repr__(self) -> str:
        return f"<Container {self.id!r} namespace={self._client.namespace_name!r}>"

    def _glance_rows(self, task: Task | None = None) -> list[tuple[str, str]]:
        """The rows of this container's (or its task's) notebook repr; at most one short RPC."""
        from containerd_client import _html
        from containerd_client.tasks import quick_state, state_rows

        task = task or self._task
        if self._deleted:
            rows = state_rows("deleted", 0, None)
        elif task is not None:
            rows = task._glance_rows()
        else:
            rows = state_rows(*quick_state(self._client, self.id))
        info = self._info
        ports = ", ".join(f"{p.host_ip}:{p.host_port}→{p.container_port}/{p.protocol}" for p in self.ports)
        rows += [
            ("image", _html.esc(_html.shorten(info.image, 80) or "-")),
            ("ports", _html.esc(ports) if ports else "-"),
            ("network", _html.esc(self.network or "none")),
            ("age", _html.esc(_html.age(info.created_at))),
            ("namespace", _html.code(self._client.namespace_name)),
        ]
        return rows

    def _repr_html_(self) -> str:
        from containerd_client import _html

        return _html.card("Container", self.id, self._glance_rows())

    # -- network ------------------------------------------------------------------

    @property
    def network(self) -> str | None:
        """The CNI network the SDK attached this container to (``"bridge"``...), else None."""
        return self._info.labels.get(_network.NETWORK_LABEL) or None

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        """The published ports (host ports picked), read from the record's labels."""
        return _network.parse_ports_label(self._info.labels.get(_network.PORTS_LABEL, ""))

    def host_port(self, container_port: int, protocol: str = "tcp") -> int:
        """The host port (on 127.0.0.1) that ``container_port`` is published on.

        Raises:
            NotFoundError: That port is not published.
        """
        for port in self.ports:
            if port.container_port == container_port and port.protocol == protocol:
                return port.host_port
        raise NotFoundError(f"port {container_port}/{protocol} of container {self.id} is not published")

    def _detach_network(self, *, reuse: bool = False) -> None:
        """Run CNI DEL and remove the namespace, if the SDK attached one here. Idempotent.

        Args:
            reuse: The container is deleted: a namespace from the client's pool
                (``NetworkConfig.namespace_pool``) goes back to it, if it may.

        Raises:
            NetworkError: DEL or the namespace's removal failed.
        """
        pending, self._pending_network = self._pending_network, None
        if pending is not None:
            pending.join()  # DEL must not race ADD
        if self.network is None:
            return
        root, ns = self._state_root, self._client.namespace_name
        pool = self._client._netns_pool(create=False) if reuse else None
        if pool is not None and _network.release_to_pool(pool, root, ns, self.id, self._info.spec):
            return
        _network.detach(root, ns, self.id)

    def _task_started(self) -> None:
        """Its task has just started: ports forwarded in process look for the server now."""
        if self.network is not None:
            _network.task_started(self._state_root, self._client.namespace_name, self.id)

    def wait_network(self, timeout: float | None = None) -> _network.Attachment | None:
        """Wait until CNI ADD has configured the container's interfaces (if it still runs).

        :meth:`new_task` calls it after creating the task, so a started task
        always has its network. Returns the attachment when this object made
        it, else None.

        Raises:
            CNIError: A plugin failed (deleting the container removes the rest).
            NetworkError: ADD did not finish within ``timeout``.
        """
        pending = self._pending_network
        return None if pending is None else pending.wait(timeout)

    # -- record ------------------------------------------------------------------

    def info(self, *, refresh: bool = False) -> ContainerInfo:
        """The container record; cached unless ``refresh`` (then one Containers.Get).

        Raises:
            NotFoundError: The container was deleted.
            RPCError: The call failed.
        """
        if refresh:
            self._info = _get_info(self._client, self.id)
        return self._info

    def spec(self) -> dict[str, Any]:
        """The OCI runtime spec, as a dict (from the cached record)."""
        return dict(self._info.spec)

    def labels(self) -> dict[str, str]:
        """The container's labels (fresh from the daemon).

        Raises:
            RPCError: The call failed.
        """
        return dict(self.info(refresh=True).labels)

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Set labels (an empty value removes a label; others stay) and return all labels.

        Raises:
            InvalidArgumentError: A key is empty, or a key or value is not a string.
            NotFoundError: The container is gone.
            RPCError: The call failed.
        """
        from containerd_client._convert import label_update
        from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

        if not labels:
            return self.labels()
        values, mask = label_update(labels)
        req = containers_pb2.UpdateContainerRequest(
            container=containers_pb2.Container(id=self.id, labels=values), update_mask=mask
        )
        resp = self._client.call(api.Containers.Update, req)
        self._info = ContainerInfo.from_proto(resp.container)
        return dict(self._info.labels)

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for each event about this container, in order.

        Starts the client's event dispatcher. The dispatcher holds this
        container only weakly: drop the container and its callbacks stop.
        """
        self._event_callbacks.append(callback)
        self._client.events._watch_container(self._client.namespace_name, self)

    # -- tasks -------------------------------------------------------------------

    def _ensure_bundle(self) -> str:
        _make_bundle(self._bundle_dir)
        return self._bundle_dir

    def new_task(
        self,
        *,
        io: cio.IOCreator | None = None,
        stdin: cio.StdinSource | None = None,
        stdout: cio.OutputSink = None,
        stderr: cio.OutputSink = None,
        tty: bool | None = None,
        checkpoint: Descriptor | Checkpoint | str | os.PathLike[str] | None = None,
        runtime_options: RuncOptions | None = None,
        logs: bool = False,
    ) -> Task:
        """Create the container's task: its process exists but is not started.

        Call :meth:`Task.start` next. Stdio is a set of FIFOs in the
        container's bundle folder unless ``io`` says otherwise.

        Args:
            io: How stdio is wired (``cio.null_io()``, ``cio.log_file(...)``, ...).
            stdin: Bytes, text, a binary file, an iterable, or ``cio.PIPE``.
            stdout: A binary file, a callable, ``cio.Capture()`` or ``cio.Lines()``;
                None discards output.
            stderr: Same as stdout (merged into stdout with a TTY).
            tty: Terminal or not; by default what the spec says.
            checkpoint: Restore from it instead of starting afresh: a
                :class:`~containerd_client.checkpoint.Checkpoint` (see
                :meth:`Task.checkpoint`), a checkpoint folder, a CRIU
                checkpoint tar file (checked first), or a descriptor of such
                a tar. The restore itself runs at :meth:`Task.start`. With a
                daemon on this host, a tar (a file or a blob) is unpacked
                into the container's state folder and removed after
                :meth:`Task.start`: containerd's own unpacking would leave a
                copy in its ``/tmp`` (containerd#10166). A remote daemon is
                sent the blob (a tar file is first written to its content
                store under a lease of this call's own, dropped once the
                task exists).
            runtime_options: Override the container's runc options for this task.
            logs: Also keep the output in a bounded log file in the container's
                state folder, for :meth:`Task.logs`, :meth:`logs` and the log
                wait strategy (FIFOs are then made even with no stream given;
                without it and without streams the task has no stdio at all,
                the fast path). Combines with ``stdout``/``stderr`` (each
                chunk goes to both).

        Raises:
            InvalidArgumentError: ``logs`` together with ``io`` (nothing is created).
            CheckpointError: ``checkpoint`` holds no CRIU image.
            UnsafeArchiveError: A checkpoint tar with a member escaping it.
            CriuUnavailableError: The daemon's criu is missing or too old.
            ConflictError: The container already has a task.
            CNIError: Its CNI network failed to come up (the task is deleted again).
            RPCError: The daemon failed to create it; nothing is left behind.
        """
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

        if self._deleted:
            raise NotFoundError(f"container {self.id} was deleted", StatusCode.NOT_FOUND)
        if logs and io is not None:
            from containerd_client.errors import InvalidArgumentError

            raise InvalidArgumentError(
                "new_task(): logs=True keeps output from the FIFOs; it cannot go with io="
            )
        spec = self._info.spec
        terminal = bool(spec.get("process", {}).get("terminal", False)) if tty is None else tty
        if logs:
            from containerd_client import cio as _cio

            creator: cio.IOCreator = _cio.stdio(stdin, stdout, stderr, terminal=terminal, logs=True)
        else:
            creator = io or _default_io(stdin, stdout, stderr, terminal)
        req = tasks_pb2.CreateTaskRequest(container_id=self.id)
        if self._info.snapshot_key:
            req.rootfs.extend(self._mounts())
        options = runtime_options or self._info.runtime_options
        if options is not None:
            uid, gid = _io_owner(spec)
            req.options.CopyFrom(_typeurl.pack(attrs.evolve(options, io_uid=uid, io_gid=gid).to_proto()))
        plan = None
        if checkpoint is not None:
            from containerd_client import checkpoint as _ckpt

            plan = _ckpt.plan_restore(self._client, checkpoint, self.id, unpack_in=self._ensure_bundle())
            if plan.descriptor is not None:
                req.checkpoint.CopyFrom(plan.descriptor.to_proto())
            if plan.image_path is not None:
                # runc restores from this folder (at start) instead of a blob.
                from containerd_client._pb.containerd.runc.options import oci_pb2

                msg = oci_pb2.Options()
                if req.HasField("options"):
                    msg.ParseFromString(req.options.value)
                msg.criu_image_path = plan.image_path
                req.options.CopyFrom(_typeurl.pack(msg))
        try:
            bundle = self._ensure_bundle()
            self._write_hosts()
            proc_io = creator(bundle, self.id)
        except BaseException:
            if plan is not None:
                plan.finish(self._client)
                plan.discard()
            raise
        cfg = proc_io.config
        req.stdin, req.stdout, req.stderr, req.terminal = cfg.stdin, cfg.stdout, cfg.stderr, cfg.terminal
        try:
            resp = self._client.call(api.Tasks.Create, req)
        except AlreadyExistsError as exc:
            proc_io.cancel()
            proc_io.close()
            if plan is not None:
                plan.discard()
            raise ConflictError(f"container {self.id} already has a task: {exc.message}", exc.code) from exc
        except BaseException:
            proc_io.cancel()
            proc_io.close()
            if plan is not None:
                plan.discard()
            raise
        finally:
            if plan is not None:
                # The daemon unpacked the blob during Create: this call's lease can go.
                plan.finish(self._client)
        task = Task(self, resp.pid, proc_io)
        task._restoring = checkpoint is not None
        # runc reads an unpacked CRIU image at start: the task removes it then.
        task._restore_plan = plan if plan is not None and plan.temp_folder is not None else None
        proc_io.start()
        task._arm_wait()
        # The shim opened the init process's stdin FIFO during Create.
        task._stdin.ready()
        self._task = task
        self._task_deleted_here = False
        if self._pending_network is not None:
            # runc only joins the namespace, so the task was made while CNI ADD
            # ran; it must not start before its interfaces are there.
            try:
                attachment = self.wait_network()
                if attachment is not None and attachment.ip_address:
                    self._write_hosts(attachment.ip_address)
            except BaseException:
                task.cleanup()
                try:
                    self._detach_network()
                except ContainerdError:
                    logger.warning("network teardown of container %s failed", self.id, exc_info=True)
                raise
        return task

    def _write_hosts(self, address: str | None = None) -> None:
        """(Re)write the ``/etc/hosts`` the SDK mounted into this container, if it did.

        Raises:
            NetworkError: The file could not be written.
        """
        spec = self._info.spec
        path = os.path.join(self._bundle_dir, HOSTS_FILE)
        if not any(
            m.get("destination") == "/etc/hosts" and m.get("source") == path for m in spec.get("mounts") or []
        ):
            return
        if address is None:
            address = _network.recorded_address(self._state_root, self._client.namespace_name, self.id)
        try:
            _network.write_hosts(path, str(spec.get("hostname") or ""), address)
        except OSError as exc:
            raise _network.NetworkError(
                f"cannot write /etc/hosts of container {self.id}: {exc.strerror or exc}"
            ) from exc

    def _mounts(self) -> list[Any]:
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.MountsRequest(snapshotter=self._info.snapshotter, key=self._info.snapshot_key)
        resp = self._client.call(api.Snapshots.Mounts, req, idempotent=True)
        return list(resp.mounts)

    # -- files -------------------------------------------------------------------

    def put_archive(
        self,
        path: str,
        data: bytes | IO[bytes] | Iterable[bytes],
        *,
        max_uncompressed: int | None = None,
    ) -> None:
        """Unpack a tar (plain, gzip or zstd) into the existing folder ``path`` of the container.

        Works on a running or stopped container; see :func:`containerd_client.files.put_archive`.
        Symlinks, in the container or in the tar, never lead a write outside
        the container's root.

        Raises:
            InvalidPathError: ``path`` is empty or not a folder.
            InvalidArgumentError: ``data`` is not bytes, a binary file or an iterable of bytes.
            UnsafeArchiveError: A member has an absolute name or ``..``, is a
                device or FIFO, or a hard link out of the archive (nothing written).
            ArchiveError: ``data`` is not a tar.
            DecompressionBombError: It expands too far or has too many members.
            NotFoundError: ``path`` does not exist in the container.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused a write.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        if max_uncompressed is None:
            files.put_archive(self, path, data)
        else:
            files.put_archive(self, path, data, max_uncompressed=max_uncompressed)

    def get_archive(self, path: str) -> tuple[Iterator[bytes], PathStat]:
        """A tar of ``path`` in the container (as chunks of bytes) and what ``path`` is.

        See :func:`containerd_client.files.get_archive`.

        Raises:
            InvalidPathError: ``path`` is empty, or a component on the way is not a folder.
            NotFoundError: Nothing at ``path``.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused a read.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        return files.get_archive(self, path)

    def read_file(self, path: str, *, max_size: int | None = None) -> bytes:
        """The bytes of a regular file of the container (16 MiB at most unless ``max_size``).

        Raises:
            InvalidPathError: ``path`` is empty, a folder or not a regular file.
            NotFoundError: No such file.
            BlobTooLargeError: It is larger than ``max_size``.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused the read.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        return files.read_file(self, path, max_size=files.DEFAULT_MAX_READ if max_size is None else max_size)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to the file ``path`` of the container, replacing what is there.

        The folder must exist; the file is owned by root.

        Raises:
            InvalidPathError: ``path`` is empty or names a folder.
            InvalidArgumentError: ``data`` is not bytes or ``mode`` no permission bits.
            NotFoundError: The folder of ``path`` does not exist.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused the write.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        files.write_file(self, path, data, mode=mode)

    def copy_in(self, local_path: str | os.PathLike[str], container_path: str) -> None:
        """Copy a host file or folder into the container, as ``docker cp SRC CONTAINER:DEST``.

        Raises:
            InvalidPathError: ``local_path`` does not exist, or a path is empty.
            NotFoundError: The folder of ``container_path`` does not exist.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused a write.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        files.copy_in(self, local_path, container_path)

    def copy_out(self, container_path: str, local_path: str | os.PathLike[str]) -> PathStat:
        """Copy a file or folder of the container to the host, as ``docker cp CONTAINER:SRC DEST``.

        Raises:
            InvalidPathError: A path is empty.
            NotFoundError: Nothing at ``container_path``, or no folder for ``local_path``.
            UnsafeArchiveError: The path holds a device or FIFO.
            PermissionDeniedError: The snapshot of a stopped container must
                be mounted and this process may not mount.
            FailedPreconditionError: The file system refused a read or write.
            RPCError: A call to containerd failed.
        """
        from containerd_client import files

        return files.copy_out(self, container_path, local_path)

    def task(self) -> Task:
        """Load the container's existing task, without stdio.

        Raises:
            NotFoundError: The container has no task.
            RPCError: The call failed.
        """
        current = self._task
        if current is not None and current.exit_status is None:
            return current
        state = self._get_task_state()
        if current is not None and current._deleted is None and state.pid == current.pid:
            # The same task, exited and not yet deleted: keep the object that holds
            # its stdio (a new one would leave that unclosed until collected).
            return current
        task = Task(self, state.pid, None, started=state.status is not TaskStatus.CREATED)
        task._arm_wait()
        if current is not None and current._io is not None:
            # A task made elsewhere replaced this one: the old stdio has nothing more to read.
            current._io.close()
        self._task = task
        return task

    def attach_task(
        self,
        *,
        stdin: cio.StdinSource | None = None,
        stdout: cio.OutputSink = None,
        stderr: cio.OutputSink = None,
    ) -> Task:
        """Load the existing task and re-open its FIFOs (after a client restart).

        Only one reader should be attached to a task at a time. A missing
        bundle folder is re-created.

        Raises:
            NotFoundError: The container has no task.
            RPCError: The call failed.
        """
        from containerd_client import cio as _cio

        state = self._get_task_state()
        io = None
        if state.status is not TaskStatus.UNKNOWN and (state.stdout or state.stdin or state.stderr):
            config = _cio.IOConfig(
                stdin=state.stdin, stdout=state.stdout, stderr=state.stderr, terminal=state.terminal
            )
            io = _cio.attach(config, stdin=stdin, stdout=stdout, stderr=stderr)
        task = Task(self, state.pid, io, started=state.status is not TaskStatus.CREATED)
        if io is not None:
            io.start()
        task._arm_wait()
        task._stdin.ready()
        self._task = task
        return task

    def _get_task_state(self) -> _ProcessState:
        # A plain Get: building a throw-away Task here would register it with
        # the client and displace the live task's entry in the event registry.
        return get_process_state(self._client, self.id)

    def _forget_task(self, task: Task) -> None:
        if self._task is task:
            self._task = None
            self._task_deleted_here = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> ExitStatus | None:
        """Stop the container's task gracefully (see :meth:`Task.stop`); None if it has none.

        Raises:
            InvalidTimeoutError: ``timeout`` is negative, NaN or infinite.
            DeadlineExceededError: It did not die even after SIGKILL.
            RPCError: A call failed.
        """
        from containerd_client._ids import validate_timeout

        validate_timeout(timeout, what="stop timeout", allow_none=False)
        try:
            task = self._task if self._task is not None else self.task()
        except NotFoundError:
            return None
        return task.stop(timeout)

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None) -> bytes:
        """The output kept of the container's last task created with ``logs=True``.

        Reads the log file in the state folder, so it works after the task was
        deleted and from another client (same state folder); for ``follow``
        use :meth:`Task.logs`.

        Raises:
            FailedPreconditionError: No log kept (no task made with ``logs=True``).
            InvalidArgumentError: Neither stream chosen, or a bad ``tail``.
        """
        from containerd_client.cio import _logs

        streams = _log_streams(stdout, stderr, tail)
        task = self._task
        if task is not None and task.has_logs:
            return task.logs(stdout=stdout, stderr=stderr, tail=tail)
        try:
            return b"".join(_logs.read_log(os.path.join(self._bundle_dir, f"{self.id}-log"), streams, tail))
        except FileNotFoundError:
            raise FailedPreconditionError(
                f"container {self.id} has no kept log: create its task with new_task(logs=True)",
                StatusCode.FAILED_PRECONDITION,
            ) from None

    # -- deletion -----------------------------------------------------------------

    def delete(self, *, snapshot: bool = True, force: bool = False) -> None:
        """Delete the container, its snapshot and its FIFO folder.

        First checks that no task exists (containerd itself would delete the
        record and leave the task running), except right after this object
        deleted the task it created, where that is already known.

        Args:
            snapshot: Also remove its rootfs snapshot.
            force: Kill and delete its task first if there is one.

        Raises:
            FailedPreconditionError: It still has a task (and not ``force``).
            NotFoundError: It does not exist.
            NetworkError: Its CNI network could not be torn down (the record is gone).
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

        state = None
        if self._task is not None or not self._task_deleted_here:
            try:
                state = self._get_task_state()
            except NotFoundError:
                state = None
        if state is not None:
            if not force:
                raise FailedPreconditionError(
                    f"cannot delete container {self.id}: its task is {state.status.value}; "
                    "delete the task first or pass force=True",
                    StatusCode.FAILED_PRECONDITION,
                )
            (self._task or self.task()).force_delete()
        self._client.call(api.Containers.Delete, containers_pb2.DeleteContainerRequest(id=self.id))
        self._mark_deleted()
        if snapshot and self._info.snapshot_key:
            self._remove_snapshot()
        self._remove_bundle()
        # Deleted (its processes gone): a pooled namespace may serve the next container.
        self._detach_network(reuse=True)

    def _mark_deleted(self) -> None:
        self._deleted = True
        if self._owned:
            self._client._forget_created(self)

    def _remove_snapshot(self) -> None:
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.RemoveSnapshotRequest(
            snapshotter=self._info.snapshotter, key=self._info.snapshot_key
        )
        try:
            self._client._caller.call(api.Snapshots.Remove, req, timeout=CLEANUP_TIMEOUT)
        except NotFoundError:
            pass  # garbage collection may have removed it first
        except ContainerdError:
            logger.warning("could not remove snapshot %s", self._info.snapshot_key, exc_info=True)

    def _remove_bundle(self) -> None:
        """Remove this container's FIFO folder if the SDK made it, else log and leave it.

        A container this object created removes the folder it made. A loaded
        one removes it only if the record's label is absent or names that
        same folder: a label that disagrees means the record was made
        elsewhere or tampered with, and either way the folder is not ours to judge.
        """
        if os.environ.get(NOCLEAN_ENV) == "1":
            return
        if not self._owned:
            label = self._info.labels.get(BUNDLE_LABEL)
            if label and os.path.normpath(label) != self._bundle_dir:
                logger.warning(
                    "not removing FIFO folder of container %s: its %s label names %r, not %s",
                    self.id,
                    BUNDLE_LABEL,
                    label[:200],
                    self._bundle_dir,
                )
                return
        if _remove_state_folder(self._state_root, self._client.namespace_name, self.id):
            _remove_empty_namespace_folder(self._state_root, self._client.namespace_name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A failing block is cleaned up before its error goes on; a normal
        # end follows the client's ``background_teardown``.
        self.cleanup(wait=exc_type is not None or not self._client.background_teardown)

    def cleanup(self, *, wait: bool = True) -> None:
        """Delete what this client created: task, container, snapshot, FIFOs. Never raises.

        A loaded (not created) container is left alone, except that a task
        this object created is still cleaned up.

        Args:
            wait: False hands the work to the client's background teardown
                pool and returns at once; :meth:`Client.close` and
                :meth:`Client.join_teardowns` wait for it and report a failure
                (here it is logged). Creating a container with the same id
                through this client waits for it.
        """
        if self._task is None and (not self._owned or self._deleted):
            return
        what = f"tear down container {self.id}"
        if not wait and self._client._submit_teardown(self.id, what, self._teardown):
            return
        try:
            self._teardown()
        except ClosedError:
            logger.warning("client closed before container %s could be deleted", self.id)
        except ContainerdError:
            logger.warning("cleanup of container %s failed", self.id, exc_info=True)

    def _teardown(self) -> None:
        """What :meth:`cleanup` does; raises what failed (but not a missing record or absent daemon).

        The one cleanup path, also of background teardown (a later step, e.g.
        network teardown, belongs here so that it runs off the critical path too).

        Raises:
            ClosedError: The client was closed.
            ContainerdError: Deleting failed (a task cleanup failure shows up
                here as the forced delete's own failure).
        """
        task = self._task
        if task is not None:
            task.cleanup()
        if not self._owned or self._deleted:
            return
        try:
            self.delete(force=True)
        except NotFoundError:
            self._mark_deleted()
            self._remove_bundle()
        except UnavailableError:
            self._defer_cleanup()
        finally:
            # Whatever happened to the record, the container is given up: its
            # network goes now (idempotent after a delete that did it).
            try:
                self._detach_network()
            except ContainerdError:
                logger.warning("network teardown of container %s failed", self.id, exc_info=True)

    def _defer_cleanup(self) -> None:
        """The daemon is away: delete this container (task, snapshot, FIFOs) once it is back.

        Only the very record this object created goes (same creation time), so
        a container created later under the same id is left alone.
        """
        info, state_root = self._info, self._state_root
        self._mark_deleted()  # from here on the deferred job owns the deletion

        def delete(view: Client) -> None:
            try:
                current = _get_info(view, info.id)
            except NotFoundError:
                current = None
            if current is not None and current.created_at == info.created_at:
                Container(view, current, owned=True, state_root=state_root).delete(force=True)
                return
            if current is None and info.snapshot_key:
                snapshots = view.snapshots(info.snapshotter)
                with contextlib.suppress(NotFoundError):
                    if snapshots.stat(info.snapshot_key).labels.get(OPERATION_LABEL) == info.labels.get(
                        OPERATION_LABEL, "-"
                    ):
                        snapshots.remove(info.snapshot_key)
            if current is None:
                Container(view, info, owned=True, state_root=state_root)._remove_bundle()

        self._client._defer(f"delete container {info.id}", delete)


def _get_info(client: Client, container_id: str) -> ContainerInfo:
    from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

    resp = client.call(
        api.Containers.Get, containers_pb2.GetContainerRequest(id=container_id), idempotent=True
    )
    return ContainerInfo.from_proto(resp.container)


def _state_root(state_dir: str | None) -> str:
    return os.path.abspath(state_dir or _default_state_dir())


def create_container(
    client: Client,
    container_id: str,
    *,
    spec: Mapping[str, Any] | Iterable[SpecOpt] | None = None,
    args: Command | None = None,
    rootfs: str | None = None,
    runtime: str = DEFAULT_RUNTIME,
    runtime_options: RuncOptions | None = None,
    labels: Mapping[str, str] | None = None,
    image: str | Image = "",
    platform: Platform | str | None = None,
    snapshotter: str = "",
    snapshot_key: str = "",
    state_dir: str | None = None,
    network: str | None = None,
    ports: Mapping[Any, Any] | None = None,
    network_config: _network.NetworkConfig | None = None,
) -> Container:
    """Create a container record (see :meth:`Client.create_container`)."""
    from containerd_client import spec as _spec

    validate_id(container_id, what="container id")
    argv = None if args is None else _spec.command_args(args)
    # The network request is checked before any RPC or namespace is made.
    net = _network.plan(
        network,
        ports,
        network_config or _network.NetworkConfig(),
        state_root=_state_root(state_dir),
        namespace=client.namespace_name,
        container_id=container_id,
        session=client.session if client._label_session else "",
    )
    net_opts: list[SpecOpt] = []
    net_labels: dict[str, str] = {}
    if net.kind == "host":
        net_opts.append(_spec.with_host_network())
    # The namespace exists from here; CNI ADD runs on a thread while the record
    # (and later the task) is created, and new_task waits for it.
    pending = _network.start_attach(net, client._netns_pool()) if net.kind == "cni" else None
    if pending is not None:
        net_opts.append(_spec.with_network_namespace(pending.netns))
        try:
            resolv = _network.container_resolv_conf(net.state_root)
        except OSError as exc:
            _give_up_network(pending)
            raise _network.NetworkError(f"cannot write the container's resolv.conf: {exc}") from exc
        if resolv is not None:
            net_opts.append(_spec.with_resolv_conf(resolv))
        # Written at new_task (and again once ADD gave an address), as Docker
        # does: localhost, and the hostname (the id unless the spec names one).
        hosts = os.path.join(net.state_root, client.namespace_name, container_id, HOSTS_FILE)
        net_opts.append(_spec.with_hosts_file(hosts, hostname=container_id[:63].rstrip("._-")))
        net_labels[_network.NETWORK_LABEL] = net.name
        if pending.ports:
            net_labels[_network.PORTS_LABEL] = _network.ports_label(pending.ports)
    try:
        container = _create_container(
            client,
            container_id,
            spec=spec,
            argv=argv,
            rootfs=rootfs,
            runtime=runtime,
            runtime_options=runtime_options,
            labels={**(labels or {}), **net_labels} if net_labels else labels,
            image=image,
            platform=platform,
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
            state_dir=state_dir,
            net_opts=net_opts,
        )
    except BaseException:
        if pending is not None:
            _give_up_network(pending)
        raise
    container._pending_network = pending
    client._note_created(container)
    return container


def _give_up_network(pending: _network.PendingAttachment) -> None:
    """Let ADD finish, then undo it (idempotent; logs, never raises)."""
    p = pending.plan
    pending.join()
    try:
        _network.detach(p.state_root, p.namespace, p.container_id)
    except ContainerdError:
        logger.warning("network teardown of %s failed", p.container_id, exc_info=True)


def _create_container(
    client: Client,
    container_id: str,
    *,
    spec: Mapping[str, Any] | Iterable[SpecOpt] | None,
    argv: list[str] | None,
    rootfs: str | None,
    runtime: str,
    runtime_options: RuncOptions | None,
    labels: Mapping[str, str] | None,
    image: str | Image,
    platform: Platform | str | None,
    snapshotter: str,
    snapshot_key: str,
    state_dir: str | None,
    net_opts: list[SpecOpt],
) -> Container:
    from containerd_client import spec as _spec

    if image and not snapshot_key and rootfs is None:
        return _create_from_image(
            client,
            container_id,
            image,
            spec=spec,
            args=argv,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            platform=platform,
            snapshotter=snapshotter or "overlayfs",
            state_dir=state_dir,
            net_opts=net_opts,
        )
    opts: list[SpecOpt] = []
    if rootfs is not None:
        opts.append(_spec.with_rootfs(rootfs))
    if argv is not None:
        opts.append(_spec.with_process_args(argv))
    spec_doc = _build_spec(client, container_id, spec, [*opts, *net_opts])
    image_name = image if isinstance(image, str) else getattr(image, "name", "")
    return _create_record(
        client,
        container_id,
        spec_doc,
        runtime=runtime,
        runtime_options=runtime_options,
        labels=labels,
        image=image_name,
        snapshotter=snapshotter,
        snapshot_key=snapshot_key,
        state_dir=state_dir,
    )


def _build_spec(
    client: Client,
    container_id: str,
    spec: Mapping[str, Any] | Iterable[SpecOpt] | None,
    opts: list[SpecOpt],
    *,
    first: Sequence[SpecOpt] = (),
) -> dict[str, Any]:
    """The spec document: a given dict (with opts applied on top), or the default with ``first`` + opts."""
    from containerd_client import spec as _spec

    if isinstance(spec, Mapping):
        return _spec.generate(container_id, client.namespace_name, *first, *opts, base=spec)
    return _spec.generate(container_id, client.namespace_name, *first, *(spec or ()), *opts)


def _create_record(
    client: Client,
    container_id: str,
    spec_doc: Mapping[str, Any],
    *,
    runtime: str,
    runtime_options: RuncOptions | None,
    labels: Mapping[str, str] | None,
    image: str,
    snapshotter: str,
    snapshot_key: str,
    state_dir: str | None,
) -> Container:
    from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

    root = _state_root(state_dir)
    bundle = os.path.join(root, client.namespace_name, container_id)
    # The session label names the process that made it, for a sweep after a crash.
    all_labels = {**client._session_labels, **(labels or {}), BUNDLE_LABEL: bundle}
    record = containers_pb2.Container(
        id=container_id,
        labels=all_labels,
        image=image,
        runtime=containers_pb2.Container.Runtime(name=runtime),
        spec=_typeurl.pack_json(_typeurl.OCI_SPEC, dict(spec_doc)),
        snapshotter=snapshotter,
        snapshot_key=snapshot_key,
    )
    if runtime_options is not None:
        record.runtime.options.CopyFrom(_typeurl.pack(runtime_options.to_proto()))
    try:
        resp = client.call(api.Containers.Create, containers_pb2.CreateContainerRequest(container=record))
    except AlreadyExistsError as exc:
        raise ConflictError(f"id already in use: {exc.message}", exc.code) from exc
    info = ContainerInfo.from_proto(resp.container, spec=spec_doc)
    # The folder is made now, not before the RPC, so a failed create leaves nothing.
    _make_bundle(bundle)
    return Container(client, info, owned=True, state_root=root)


def _create_from_image(
    client: Client,
    container_id: str,
    image: str | Image,
    *,
    spec: Mapping[str, Any] | Iterable[SpecOpt] | None,
    args: Sequence[str] | None,
    runtime: str,
    runtime_options: RuncOptions | None,
    labels: Mapping[str, str] | None,
    platform: Platform | str | None,
    snapshotter: str,
    state_dir: str | None,
    net_opts: Sequence[SpecOpt] = (),
) -> Container:
    """Unpack the image, prepare a writable snapshot keyed by the container id, create the record.

    All of it runs inside a lease, so garbage collection cannot remove the
    snapshot between its creation and the container that references it; a
    failure removes the snapshot again.
    """
    from containerd_client import spec as _spec
    from containerd_client.errors import NotFoundError as _NotFound

    images = client.images
    img = images.get(image) if isinstance(image, str) else image
    config = images.config(img, platform)
    user = str((config.get("config") or {}).get("User") or "")
    stop_signal = (config.get("config") or {}).get("StopSignal")
    passwd = group = None
    if user:
        # Names resolve through the image's own files, read from its layers.
        passwd = images.read_file(img, "/etc/passwd", platform)
        group = images.read_file(img, "/etc/group", platform)
    try:
        image_opt = _spec.with_image_config(config, args=args, passwd=passwd, group=group)
    except ValueError as exc:
        from containerd_client.errors import InvalidArgumentError

        raise InvalidArgumentError(f"image {img.name}: {exc}") from exc
    spec_doc = _build_spec(client, container_id, spec, list(net_opts), first=[image_opt])
    snapshots = client.snapshots(snapshotter)
    nbytes = sum(layer.size for layer in images.layers(img, platform))
    with client.lease(expire=client._operation_expiry(nbytes)) as lease:
        # This attempt's own snapshot and record carry its lease id, so a
        # cleanup that runs late (after the daemon came back) removes only
        # what this attempt made, never a retry's.
        mine = {**client._session_labels, OPERATION_LABEL: lease.id}
        chain_id = images.unpack(img, snapshotter=snapshotter, platform=platform)
        try:
            snapshots.prepare(container_id, chain_id, labels=mine)
        except AlreadyExistsError as exc:
            raise ConflictError(f"snapshot {container_id!r} already exists: {exc.message}", exc.code) from exc
        except UnavailableError:
            # The daemon may have made it before it went away.
            _defer_undo_create(client, container_id, snapshotter, lease.id)
            raise
        try:
            return _create_record(
                client,
                container_id,
                spec_doc,
                runtime=runtime,
                runtime_options=runtime_options,
                labels={
                    # The image's stop signal, where containerd's own client keeps it.
                    **(
                        {STOP_SIGNAL_LABEL: stop_signal}
                        if isinstance(stop_signal, str) and stop_signal
                        else {}
                    ),
                    **(labels or {}),
                    OPERATION_LABEL: lease.id,
                },
                image=img.name,
                snapshotter=snapshotter,
                snapshot_key=container_id,
                state_dir=state_dir,
            )
        except UnavailableError:
            # Unknown whether the record was made: undo both once the daemon is back.
            _defer_undo_create(client, container_id, snapshotter, lease.id)
            raise
        except BaseException:
            try:
                snapshots.remove(container_id)
            except _NotFound:
                pass
            except UnavailableError:
                _defer_undo_create(client, container_id, snapshotter, lease.id)
            except ContainerdError:
                logger.warning(
                    "could not remove snapshot %s after a failed create", container_id, exc_info=True
                )
            raise


def _defer_undo_create(client: Client, container_id: str, snapshotter: str, operation: str) -> None:
    """Once the daemon is back, remove the record and snapshot that this attempt made, if any.

    Only what carries this attempt's :data:`OPERATION_LABEL` goes: a retry of
    ``create_container`` that ran in between made its own, under another label.
    """
    from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

    def undo(view: Client) -> None:
        try:
            info = _get_info(view, container_id)
        except NotFoundError:
            pass
        else:
            if info.labels.get(OPERATION_LABEL) == operation:
                # Made by the lost Create: it never got a task from this client.
                with contextlib.suppress(NotFoundError):
                    view.call(api.Containers.Delete, containers_pb2.DeleteContainerRequest(id=container_id))
        snapshots = view.snapshots(snapshotter)
        try:
            if snapshots.stat(container_id).labels.get(OPERATION_LABEL) == operation:
                snapshots.remove(container_id)
        except NotFoundError:
            pass

    client._defer(f"undo create of container {container_id}", undo)


def load_container(client: Client, container_id: str, *, state_dir: str | None = None) -> Container:
    """Attach to an existing container (see :meth:`Client.load_container`)."""
    validate_id(container_id, what="container id")
    try:
        info = _get_info(client, container_id)
    except NotFoundError as exc:
        raise NotFoundError(f"no such container {container_id!r}: {exc.message}", exc.code) from exc
    return Container(client, info, owned=False, state_root=_state_root(state_dir))


def list_containers(client: Client, *filters: str, state_dir: str | None = None) -> list[Container]:
    """List containers (see :meth:`Client.containers`)."""
    from containerd_client._pb.containerd.services.containers.v1 import containers_pb2

    resp = client.call(
        api.Containers.List, containers_pb2.ListContainersRequest(filters=list(filters)), idempotent=True
    )
    root = _state_root(state_dir)
    infos = [ContainerInfo.from_proto(c) for c in resp.containers]
    return [Container(client, info, owned=False, state_root=root) for info in infos]
