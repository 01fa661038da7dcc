"""Checkpoint and restore of tasks with CRIU (through runc).

:meth:`Task.checkpoint` dumps a running task and gives a :class:`Checkpoint`,
kept either

* in a **folder** (``path=``, libcontainerd's contract): the CRIU image
  files, plus ``containerd-client.json`` with the container's spec and runtime,
  so that any process can restore from it later; or
* in the daemon's **content store** (``path=None``): the CRIU image as a tar
  blob, the spec and the runtime options, and an OCI index over them, all
  held by a lease of the checkpoint's own (no ``gc.root`` label, no image
  record). :meth:`Checkpoint.delete` drops the lease and the blobs are
  collected.

Either way the task is paused around the dump as containerd's Go client does
(unless it was paused already) and resumed after it, and the result is
checked: a checkpoint without CRIU's ``inventory.img`` is an error
(:class:`~containerd_client.errors.CheckpointError`), never a success.

The daemon dumps straight into a folder (runc's ``CheckpointOptions.image_path``)
and the SDK writes the blobs itself, with write refs of its own, so repeated
checkpoints of one container never meet containerd 1.6/1.7's "content ...
already exists" (their task service commits the spec blob without
tolerating an existing one).

Restore: :meth:`Container.new_task` with ``checkpoint=`` (a :class:`Checkpoint`,
a checkpoint folder, a checkpoint tar file, or a descriptor), or
:meth:`Client.restore` for a new container, under any id.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from containerd_client import _criu, _typeurl
from containerd_client._pb import api
from containerd_client.errors import (
    CheckpointError,
    ContainerdError,
    CriuUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RPCError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from containerd_client.client import Client
    from containerd_client.containers import Container, RuncOptions
    from containerd_client.tasks import Task
    from containerd_client.types import Descriptor

__all__ = [
    "CHECKPOINT_CONFIG",
    "CHECKPOINT_CRIU_TAR",
    "CHECKPOINT_RUNTIME_OPTIONS",
    "Checkpoint",
    "RestorePlan",
    "load_checkpoint",
    "plan_restore",
    "restore",
]

logger = logging.getLogger(__name__)

#: containerd's media types of a checkpoint's parts (``core/images/mediatypes.go``).
CHECKPOINT_CRIU_TAR = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
CHECKPOINT_CONFIG = "application/vnd.containerd.container.checkpoint.config.v1+proto"
CHECKPOINT_RUNTIME_OPTIONS = "application/vnd.containerd.container.checkpoint.runtime.options+proto"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: The SDK's record of the container in a checkpoint folder.
META_FILE = "containerd-client.json"
#: Index annotations containerd's Go client also writes.
_RUNTIME_ANNOTATION = "runtime.name"
_SNAPSHOTTER_ANNOTATION = "snapshotter.name"
_IMAGE_ANNOTATION = "image.name"
#: The OCI annotation naming a criu configuration file for runc.
CRIU_CONFIG_ANNOTATION = "org.criu.config"


@attrs.define(eq=False)
class Checkpoint:
    """A checkpoint of a task: a CRIU image and what is needed to restore it.

    Attributes:
        container_id: The container that was checkpointed.
        spec: Its OCI spec.
        runtime: Its runtime name.
        runtime_options: Its runc options, if any.
        image: Its image name, if it had one.
        snapshotter: Its snapshotter, if it had a snapshot.
        path: The checkpoint folder (folder checkpoints), else None.
        lease_id: The lease holding the blobs (content-store checkpoints), else None.
        index: The OCI index descriptor (content-store checkpoints), else None.
        criu: The CRIU tar's descriptor (content-store checkpoints), else None.
        rw_layer: The container's rw layer (``rw=True``), else None.
    """

    container_id: str
    spec: Mapping[str, Any]
    runtime: str
    runtime_options: RuncOptions | None = None
    image: str = ""
    snapshotter: str = ""
    path: str | None = None
    lease_id: str | None = None
    index: Descriptor | None = None
    criu: Descriptor | None = None
    rw_layer: Descriptor | None = None
    _client: Client | None = attrs.field(default=None, repr=False)
    _deleted: bool = attrs.field(default=False, repr=False)

    @property
    def in_content_store(self) -> bool:
        """True when the CRIU image is a blob in the daemon's content store."""
        return self.criu is not None

    def _meta(self) -> dict[str, Any]:
        return {
            "version": 1,
            "container_id": self.container_id,
            "spec": dict(self.spec),
            "runtime": self.runtime,
            "runtime_options": None
            if self.runtime_options is None
            else _typeurl.pack(self.runtime_options.to_proto()).SerializeToString().hex(),
            "image": self.image,
            "snapshotter": self.snapshotter,
        }

    def export(self, path: str | os.PathLike[str]) -> Checkpoint:
        """Write a content-store checkpoint out to the folder ``path`` (made; must not exist or be empty).

        The CRIU tar is checked before anything is written (no absolute
        names, ``..`` or links leaving the folder) and unpacked confined to
        the folder.

        Returns:
            The folder checkpoint.

        Raises:
            InvalidArgumentError: This is a folder checkpoint already, or ``path`` is not empty.
            UnsafeArchiveError: The tar has a member escaping the folder (nothing written).
            CheckpointError: The tar holds no CRIU image, or the checkpoint was deleted.
            RPCError: Reading the blob failed.
        """
        if self.criu is None or self._client is None:
            raise InvalidArgumentError("export(): this checkpoint is a folder already")
        if self._deleted:
            raise CheckpointError(f"checkpoint of {self.container_id} was deleted")
        target = os.fspath(path)
        made = _make_target(target)
        try:
            _extract_blob(self._client, self.criu, target)
            _write_meta(target, self._meta())
        except BaseException:
            if made:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return attrs.evolve(self, path=target, lease_id=None, index=None, criu=None, client=None)

    def delete(self) -> None:
        """Drop a content-store checkpoint: its lease goes and its blobs are collected. Idempotent.

        A folder checkpoint is left alone (the folder is the caller's).

        Raises:
            RPCError: The lease could not be deleted.
        """
        if self.lease_id is None or self._client is None or self._deleted:
            return
        self._client.leases.delete(self.lease_id, sync=True, missing_ok=True)
        self._deleted = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.delete()
        except ContainerdError:
            logger.warning("could not delete checkpoint of %s", self.container_id, exc_info=True)


def _make_target(target: str) -> bool:
    """Make the checkpoint folder; True if made here. Refuse a non-empty one."""
    try:
        os.mkdir(target, 0o700)
        return True
    except FileExistsError:
        if not os.path.isdir(target) or os.path.islink(target):
            raise InvalidArgumentError(f"checkpoint path {target} exists and is not a folder") from None
        if os.listdir(target):
            raise InvalidArgumentError(f"checkpoint path {target} is not empty") from None
        return False


def _write_meta(folder: str, meta: Mapping[str, Any]) -> None:
    tmp = os.path.join(folder, META_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f)
    os.replace(tmp, os.path.join(folder, META_FILE))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """A folder checkpoint written by :meth:`Task.checkpoint` (in any process).

    Raises:
        CheckpointError: The folder holds no CRIU image, or no readable record.
    """
    from containerd_client._pb.containerd.runc.options import oci_pb2
    from containerd_client.containers import RuncOptions

    folder = os.path.abspath(os.fspath(path))
    if not _criu.is_checkpoint_folder(folder):
        raise CheckpointError(f"{folder} holds no CRIU image (no {_criu.INVENTORY})")
    try:
        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        options = None
        if meta.get("runtime_options"):
            from google.protobuf import any_pb2

            packed = any_pb2.Any.FromString(bytes.fromhex(meta["runtime_options"]))
            options = RuncOptions.from_proto(oci_pb2.Options.FromString(packed.value))
        return Checkpoint(
            container_id=str(meta["container_id"]),
            spec=dict(meta["spec"]),
            runtime=str(meta["runtime"]),
            runtime_options=options,
            image=str(meta.get("image") or ""),
            snapshotter=str(meta.get("snapshotter") or ""),
            path=folder,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}: no readable {META_FILE} ({exc})") from exc


# -- criu checks ---------------------------------------------------------------------

#: What :func:`fast_criu_config` writes. criu's network lock (iptables rules in
#: the container's namespace, set at the dump and removed at the restore) keeps
#: packets from established TCP connections away while they are restored. runc
#: dumps no established connection unless asked (``open_tcp``), so for the
#: SDK's checkpoints the lock only costs time: about 70 ms of every restore
#: and of every dump (measured with a published port).
FAST_CRIU_CONFIG = "network-lock skip\n"


def fast_criu_config(state_dir: str | None = None) -> str:
    """The path of a criu configuration file without the network lock, written if missing.

    Name it in a container's spec with the ``org.criu.config`` annotation
    (:data:`CRIU_CONFIG_ANNOTATION`) when creating it; runc passes it to criu
    at the dump and at the restore (criu ignores a missing file). Restores
    through :meth:`Client.restore` get it unless their spec names another.
    """
    from containerd_client.containers import _state_root

    root = _state_root(state_dir)
    path = os.path.join(root, "criu-fast.conf")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == FAST_CRIU_CONFIG:
                return path
    except OSError:
        pass
    os.makedirs(root, mode=0o711, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(FAST_CRIU_CONFIG)
    os.replace(tmp, path)
    return path


def check_criu(path: str | None = None) -> _criu.CriuInfo:
    """Find ``criu`` (on ``path``, a ``PATH``-style list, else on this process's ``PATH``) and judge it.

    Returns:
        The binary, its version and the kernel it was judged against.

    Raises:
        CriuUnavailableError: criu is missing, does not run, or is too old
            for the running kernel (criu < 4.0 on kernels >= 6.13); the
            message says which.
    """
    return _criu.detect(path)


_checked_lock = threading.Lock()
#: Daemon PATHs whose criu was found usable (checked once per PATH).
_checked_paths: set[str] = set()


def check_daemon_criu(client: Client) -> bool:
    """Check, before any RPC, that the daemon (when it runs on this host) has a usable criu.

    Returns:
        Whether the daemon runs on this host (a process whose environment
        this host can read), so that runc can read a folder of ours.

    Raises:
        CriuUnavailableError: criu is missing or too old where the daemon looks.
    """
    from containerd_client._socket import socket_path

    sock = socket_path(client.address)
    if sock is None:
        return False
    path = _criu.daemon_path(sock)
    if path is None:
        return False
    with _checked_lock:
        if path in _checked_paths:
            return True
    try:
        _criu.detect(path)
    except CriuUnavailableError as exc:
        raise CriuUnavailableError(
            f"the daemon at {client.address} cannot checkpoint or restore: {exc.message}",
            path=exc.path,
            version=exc.version,
            kernel=exc.kernel,
        ) from None
    with _checked_lock:
        _checked_paths.add(path)
    return True


def _criu_error(exc: RPCError, what: str, work: str | None) -> ContainerdError:
    """The typed error for a daemon failure that criu caused, else ``exc`` itself."""
    kind = _criu.explain_failure(exc.message)
    if kind is None:
        return exc
    log = ""
    logs = [os.path.join(work, name) for name in ("dump.log", "restore.log")] if work else []
    # runc names criu's log in its message ("log file: <path>"); on this host it can be read.
    logs += [m[1] for m in re.finditer(r"log file: (/[^\s:]+)", exc.message)]
    for path in dict.fromkeys(logs):
        name = os.path.basename(path)
        with contextlib.suppress(OSError), open(path, errors="replace") as f:
            lines = f.read().splitlines()
            # criu's own errors first (they name the cause), then the end.
            errs = [line for line in lines if "Error" in line or "Warn" in line][-10:]
            log += f"\n--- {name}: errors ---\n" + "\n".join(errs)
            log += f"\n--- {name}: last lines ---\n" + "\n".join(lines[-8:])
    if kind == "missing":
        return CriuUnavailableError(f"{what}: criu is not installed where the daemon looks: {exc.message}")
    if "Can't get 1:16 opt" in log:
        # SO_PASSCRED on a non-unix socket: refused since kernel 6.16, handled from criu 4.2.
        return CriuUnavailableError(
            f"{what}: this criu cannot dump sockets on kernel {os.uname().release} "
            f"(kernels 6.16 and newer need criu 4.2 or newer for TCP/UDP sockets): {exc.message}{log}"
        )
    if kind == "too_old":
        return CriuUnavailableError(f"{what}: criu is too old for this kernel: {exc.message}{log}")
    return CheckpointError(f"{what}: criu failed: {exc.message}{log}")


# -- checkpoint ------------------------------------------------------------------------


def checkpoint_task(task: Task, path: str | os.PathLike[str] | None, *, exit: bool, rw: bool) -> Checkpoint:
    """Implementation of :meth:`Task.checkpoint`."""
    from containerd_client._pb.containerd.runc.options import oci_pb2
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
    from containerd_client.tasks import TaskStatus

    container = task._container
    client = container.client
    info = container.info()
    if rw and path is not None:
        raise InvalidArgumentError("checkpoint(rw=True) keeps the rw layer as a blob: use path=None")
    if rw and not info.snapshot_key:
        raise InvalidArgumentError(
            f"checkpoint(rw=True): container {container.id} has no snapshot (it runs from a host rootfs)"
        )
    target = os.path.abspath(os.fspath(path)) if path is not None else None
    made = _make_target(target) if target is not None else False
    staging = target or tempfile.mkdtemp(prefix="containerd-client-ckpt-")
    work = tempfile.mkdtemp(prefix="containerd-client-criu-")
    try:
        check_daemon_criu(client)
        opts = oci_pb2.CheckpointOptions(exit=exit, image_path=staging, work_path=work)
        req = tasks_pb2.CheckpointTaskRequest(container_id=container.id, options=_typeurl.pack(opts))
        paused_here = False
        if task.status() is not TaskStatus.PAUSED:
            task.pause()
            paused_here = True
        try:
            try:
                client.call(api.Tasks.Checkpoint, req)
            except RPCError as exc:
                err = _criu_error(exc, f"checkpoint of {container.id}", work)
                if err is exc:
                    raise
                raise err from exc
        finally:
            if paused_here:
                try:
                    task.resume()
                except (NotFoundError, FailedPreconditionError):
                    pass  # exit=True: the task is gone
                except ContainerdError:
                    if not exit:
                        raise
        if not _criu.is_checkpoint_folder(staging):
            raise CheckpointError(
                f"the daemon reported a checkpoint of {container.id} but wrote no CRIU image "
                f"(no {_criu.INVENTORY} in {staging})"
            )
        cp = Checkpoint(
            container_id=container.id,
            spec=dict(info.spec),
            runtime=info.runtime,
            runtime_options=info.runtime_options,
            image=info.image,
            snapshotter=info.snapshotter if info.snapshot_key else "",
        )
        if target is not None:
            _write_meta(target, cp._meta())
            return attrs.evolve(cp, path=target)
        return _store(client, cp, staging, container.id, rw=rw, snapshot_key=info.snapshot_key)
    except BaseException:
        if made and target is not None:
            shutil.rmtree(target, ignore_errors=True)
        elif target is not None:
            for name in os.listdir(target):
                with contextlib.suppress(OSError):
                    full = os.path.join(target, name)
                    shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if target is None:
            shutil.rmtree(staging, ignore_errors=True)


def _digest_file(f: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
    f.seek(0)
    return "sha256:" + h.hexdigest(), size


def _store(
    client: Client, cp: Checkpoint, staging: str, cid: str, *, rw: bool, snapshot_key: str
) -> Checkpoint:
    """Write the folder, the spec and the index as blobs under a new lease of the checkpoint's own."""
    from containerd_client.types import Descriptor

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    lease = client.leases.create(expire=None, labels={"containerd-client/checkpoint": cid})
    content = client.content
    from containerd_client import _rpc

    token = _rpc.set_lease(client._connection, lease.id)
    try:
        manifests: list[dict[str, Any]] = []
        refs: dict[str, str] = {}
        with tempfile.TemporaryFile(prefix="containerd-client-ckpt-") as spool:
            _criu.pack_checkpoint_folder(staging, spool)
            digest, size = _digest_file(spool)
            # A write ref of this checkpoint's own: concurrent checkpoints never share one.
            content.write(
                f"checkpoint-{cid}-{uuid.uuid4().hex}", spool, expected_digest=digest, expected_size=size
            )
        criu = Descriptor(media_type=CHECKPOINT_CRIU_TAR, digest=digest, size=size)
        manifests.append({"mediaType": CHECKPOINT_CRIU_TAR, "digest": digest, "size": size})
        spec_any = _typeurl.pack_json(_typeurl.OCI_SPEC, dict(cp.spec)).SerializeToString()
        for media_type, data in (
            (CHECKPOINT_CONFIG, spec_any),
            *(
                (
                    (
                        CHECKPOINT_RUNTIME_OPTIONS,
                        _typeurl.pack(cp.runtime_options.to_proto()).SerializeToString(),
                    ),
                )
                if cp.runtime_options is not None
                else ()
            ),
        ):
            d = "sha256:" + hashlib.sha256(data).hexdigest()
            content.write(
                f"checkpoint-{cid}-{uuid.uuid4().hex}", data, expected_digest=d, expected_size=len(data)
            )
            manifests.append({"mediaType": media_type, "digest": d, "size": len(data)})
        rw_layer = None
        if rw:
            rw_layer = _rw_layer(client, cp.snapshotter, snapshot_key)
            manifests.append(
                {"mediaType": rw_layer.media_type, "digest": rw_layer.digest, "size": rw_layer.size}
            )
        annotations = {_RUNTIME_ANNOTATION: cp.runtime, "containerd-client/created": stamp}
        if cp.snapshotter:
            annotations[_SNAPSHOTTER_ANNOTATION] = cp.snapshotter
        if cp.image:
            annotations[_IMAGE_ANNOTATION] = cp.image
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests, "annotations": annotations},
            sort_keys=True,
        ).encode()
        for i, m in enumerate(manifests):
            refs[f"containerd.io/gc.ref.content.m.{i}"] = m["digest"]
        idx_digest = "sha256:" + hashlib.sha256(index).hexdigest()
        content.write(
            f"checkpoint-{cid}-{uuid.uuid4().hex}",
            index,
            expected_digest=idx_digest,
            expected_size=len(index),
            labels=refs,
        )
    except BaseException:
        _rpc.reset_lease(token)
        with contextlib.suppress(ContainerdError):
            client.leases.delete(lease.id, sync=True, missing_ok=True)
        raise
    _rpc.reset_lease(token)
    return attrs.evolve(
        cp,
        lease_id=lease.id,
        index=Descriptor(media_type=OCI_INDEX, digest=idx_digest, size=len(index)),
        criu=criu,
        rw_layer=rw_layer,
        client=client,
    )


def _rw_layer(client: Client, snapshotter: str, key: str) -> Descriptor:
    """The diff of the container's rw snapshot against its parent, as a stored layer (``CreateDiff``)."""
    from containerd_client._pb.containerd.services.diff.v1 import diff_pb2
    from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

    snap = client.call(
        api.Snapshots.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
    )
    parent = snap.info.parent
    view = f"checkpoint-rw-view-{uuid.uuid4().hex}"
    lower = client.call(
        api.Snapshots.View,
        snapshots_pb2.ViewSnapshotRequest(snapshotter=snapshotter, key=view, parent=parent),
    ).mounts
    try:
        upper = client.call(
            api.Snapshots.Mounts, snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        ).mounts
        resp = client.call(
            api.Diff.Diff,
            diff_pb2.DiffRequest(
                left=lower,
                right=upper,
                media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                ref=f"checkpoint-rw-{key}-{uuid.uuid4().hex}",
            ),
        )
    finally:
        with contextlib.suppress(ContainerdError):
            client.call(
                api.Snapshots.Remove, snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=view)
            )
    from containerd_client.types import Descriptor

    return Descriptor.from_proto(resp.diff)


# -- restore ---------------------------------------------------------------------------


@attrs.define
class RestorePlan:
    """How :meth:`Container.new_task` restores: a blob, or a folder for runc, and what to drop after."""

    descriptor: Descriptor | None = None
    image_path: str | None = None
    lease_id: str | None = None
    #: A folder this plan unpacked the CRIU image into; runc reads it at
    #: ``Task.start``, and :meth:`discard` removes it after that.
    temp_folder: str | None = None

    def finish(self, client: Client) -> None:
        """Drop the lease of blobs written for this restore only (they are collected). Never raises."""
        if self.lease_id is None:
            return
        lease_id, self.lease_id = self.lease_id, None
        client._delete_lease(lease_id, True)

    def discard(self) -> None:
        """Remove the unpacked CRIU image, if this plan made one. Never raises."""
        folder, self.temp_folder = self.temp_folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _extract_blob(client: Client, descriptor: Descriptor, target: str) -> None:
    """Unpack a CRIU tar blob of the content store into ``target``, checked first
    (spooled to an unlinked temp file: the check reads it twice)."""
    with tempfile.TemporaryFile(prefix="containerd-client-ckpt-") as spool:
        for chunk in client.content.read(descriptor.digest):
            spool.write(chunk)
        spool.seek(0)
        _criu.extract_checkpoint_tar(spool, target)


def _unpacked(parent: str, unpack: Callable[[str], None]) -> RestorePlan:
    """A plan restoring from a new folder under ``parent`` that ``unpack`` fills.

    containerd unpacks a CRIU blob itself into ``$TMPDIR/ctrd-checkpoint*``
    for runc and never removes it (containerd/containerd#10166): every
    restore from the content store would leave a copy of the process's
    memory in the daemon's ``/tmp``, often a tmpfs. A daemon on this host
    gets this folder instead, which :meth:`RestorePlan.discard` removes once
    runc has read it.
    """
    folder = tempfile.mkdtemp(prefix="restore-", dir=parent)
    try:
        unpack(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return RestorePlan(image_path=folder, temp_folder=folder)


def plan_restore(
    client: Client, checkpoint: Any, container_id: str, *, unpack_in: str | None = None
) -> RestorePlan:
    """Turn ``new_task``'s ``checkpoint=`` into a :class:`RestorePlan`, checking it first.

    Args:
        client: The container's client.
        checkpoint: What ``new_task`` was given.
        container_id: The container being restored.
        unpack_in: A folder of the container's own (its bundle). When the
            daemon runs on this host, a CRIU tar (a blob or a file) is
            unpacked under it for runc, and the plan's :meth:`~RestorePlan.discard`
            removes it, rather than have containerd unpack it into its
            ``/tmp`` and leave it there.

    Raises:
        CheckpointError: Not a checkpoint (no CRIU image), or a deleted one.
        UnsafeArchiveError: A checkpoint tar with a member escaping it (nothing written).
        InvalidArgumentError: Of an unknown kind.
        CriuUnavailableError: The daemon has no usable criu.
        NotFoundError: A blob that is not in the content store.
    """
    from containerd_client.types import Descriptor

    if isinstance(checkpoint, Descriptor):
        blob = checkpoint
        if unpack_in is not None and blob.media_type == CHECKPOINT_CRIU_TAR and check_daemon_criu(client):
            return _unpacked(unpack_in, lambda folder: _extract_blob(client, blob, folder))
        return RestorePlan(descriptor=checkpoint)
    if isinstance(checkpoint, Checkpoint):
        if checkpoint._deleted:
            raise CheckpointError(f"checkpoint of {checkpoint.container_id} was deleted")
        local = check_daemon_criu(client)
        stored = checkpoint.criu
        if stored is not None:
            if unpack_in is not None and local:
                return _unpacked(unpack_in, lambda folder: _extract_blob(client, stored, folder))
            return RestorePlan(descriptor=stored)
        assert checkpoint.path is not None
        if not _criu.is_checkpoint_folder(checkpoint.path):
            raise CheckpointError(f"{checkpoint.path} holds no CRIU image (no {_criu.INVENTORY})")
        return RestorePlan(image_path=checkpoint.path)
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(checkpoint))
        if os.path.isdir(path):
            if not _criu.is_checkpoint_folder(path):
                raise CheckpointError(f"{path} holds no CRIU image (no {_criu.INVENTORY})")
            check_daemon_criu(client)
            return RestorePlan(image_path=path)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc.strerror}") from None
        with f:
            # Checked whole before anything is written anywhere.
            _criu.check_checkpoint_tar(f)
            if check_daemon_criu(client) and unpack_in is not None:
                return _unpacked(unpack_in, functools.partial(_criu.extract_checkpoint_tar, f, checked=True))
            digest, size = _digest_file(f)
            from containerd_client import _rpc

            lease = client.leases.create(expire=3600, labels={"containerd-client/restore": container_id})
            token = _rpc.set_lease(client._connection, lease.id)
            try:
                client.content.write(
                    f"restore-{container_id}-{uuid.uuid4().hex}",
                    f,
                    expected_digest=digest,
                    expected_size=size,
                )
            except BaseException:
                _rpc.reset_lease(token)
                client._delete_lease(lease.id, True)
                raise
            _rpc.reset_lease(token)
        return RestorePlan(
            descriptor=Descriptor(media_type=CHECKPOINT_CRIU_TAR, digest=digest, size=size), lease_id=lease.id
        )
    raise InvalidArgumentError(
        "checkpoint= must be a Checkpoint, a checkpoint folder or tar, or a Descriptor, "
        f"not {type(checkpoint).__name__}"
    )


def map_restore_error(exc: RPCError, container_id: str) -> ContainerdError:
    """The typed error for a restore that criu failed, else ``exc``."""
    return _criu_error(exc, f"restore of {container_id}", None)


def _restore_spec(spec: Mapping[str, Any], *, bundle: str, state_root: str) -> dict[str, Any]:
    """The checkpointed spec for a new container whose state folder is ``bundle``.

    Its network namespace path goes (the new container gets its own). The
    files the SDK mounted for a CNI network stay mounted, as CRIU restores
    the same mounts, but from the new container's own: the ``/etc/hosts``
    of its state folder (written at ``new_task``, the hostname is the one
    CRIU restores) and a ``resolv.conf`` of this state root.
    """
    from containerd_client import network as _network
    from containerd_client.containers import HOSTS_FILE

    doc: dict[str, Any] = json.loads(json.dumps(dict(spec)))
    linux = doc.get("linux") or {}
    namespaces = linux.get("namespaces")
    if isinstance(namespaces, list):
        linux["namespaces"] = [
            {"type": "network"} if ns.get("type") == "network" and ns.get("path") else ns for ns in namespaces
        ]
    for mount in doc.get("mounts") or []:
        if not isinstance(mount, dict):
            continue
        source = str(mount.get("source") or "")
        if mount.get("destination") == "/etc/hosts" and os.path.basename(source) == HOSTS_FILE:
            mount["source"] = os.path.join(bundle, HOSTS_FILE)
        elif mount.get("destination") == "/etc/resolv.conf" and "/_cni/resolv/" in source:
            mount["source"] = _network.container_resolv_conf(state_root) or source
    return doc


def restore(
    client: Client,
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
    """Implementation of :meth:`Client.restore`."""
    cp = checkpoint if isinstance(checkpoint, Checkpoint) else None
    if cp is None:
        if not isinstance(checkpoint, (str, os.PathLike)) or not os.path.isdir(os.fspath(checkpoint)):
            raise InvalidArgumentError(
                "restore(): checkpoint must be a Checkpoint or a checkpoint folder "
                "(a bare tar has no spec: use Container.new_task(checkpoint=...))"
            )
        cp = load_checkpoint(checkpoint)
    if cp._deleted:
        raise CheckpointError(f"checkpoint of {cp.container_id} was deleted")
    from containerd_client.containers import _state_root

    root = _state_root(client._state_dir)
    bundle = os.path.join(root, client.namespace_name, container_id)
    spec = _restore_spec(cp.spec, bundle=bundle, state_root=root)
    annotations = spec.setdefault("annotations", {})
    if CRIU_CONFIG_ANNOTATION not in annotations:
        annotations[CRIU_CONFIG_ANNOTATION] = fast_criu_config(client._state_dir)
    if rootfs is not None:
        from containerd_client.spec import with_rootfs

        with_rootfs(rootfs)(spec)
    check_daemon_criu(client)
    # The new snapshot is leased from its prepare until the record (and the
    # rw layer) hold it: a garbage collection in between would remove it.
    with client.lease(expire=600):
        kwargs: dict[str, Any] = {}
        if cp.image and cp.snapshotter and rootfs is None:
            kwargs = _prepare_snapshot(client, container_id, cp)
        try:
            # Through the client: its state folder and network configuration apply.
            container = client.create_container(
                container_id,
                spec=spec,
                runtime=cp.runtime,
                runtime_options=cp.runtime_options,
                labels=labels,
                network=network,
                ports=ports,
                **kwargs,
            )
        except BaseException:
            if kwargs:
                with contextlib.suppress(ContainerdError):
                    client.snapshots(cp.snapshotter).remove(container_id)
            raise
        try:
            if cp.rw_layer is not None and container.info().snapshot_key:
                from containerd_client._pb.containerd.services.diff.v1 import diff_pb2

                client.call(
                    api.Diff.Apply,
                    diff_pb2.ApplyRequest(diff=cp.rw_layer.to_proto(), mounts=container._mounts()),
                )
        except BaseException:
            container.cleanup()  # never raises; logs what failed
            raise
    try:
        task = container.new_task(checkpoint=cp, **task_kwargs)
        if start:
            task.start()
    except BaseException:
        container.cleanup()
        raise
    return container


def _prepare_snapshot(client: Client, container_id: str, cp: Checkpoint) -> dict[str, Any]:
    """A new snapshot of the checkpointed container's image, keyed by the new id (call inside a lease)."""
    from containerd_client.client import SESSION_LABEL
    from containerd_client.errors import AlreadyExistsError, ConflictError

    images = client.images
    img = images.get(cp.image)
    chain_id = images.unpack(img, snapshotter=cp.snapshotter)
    try:
        client.snapshots(cp.snapshotter).prepare(
            container_id, chain_id, labels={SESSION_LABEL: client.session}
        )
    except AlreadyExistsError as exc:
        raise ConflictError(f"snapshot {container_id!r} already exists: {exc.message}", exc.code) from exc
    return {"image": cp.image, "snapshotter": cp.snapshotter, "snapshot_key": container_id}
