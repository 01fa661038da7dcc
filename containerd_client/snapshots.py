"""Snapshots: the layered file systems containers run on (``containerd.services.snapshots.v1``).

A snapshot is *active* (writable, made by :meth:`SnapshotStore.prepare`),
a *view* (read-only, :meth:`SnapshotStore.view`) or *committed* (immutable,
usable as a parent). The store answers with mounts to apply; this module
never mounts anything itself.

containerd's garbage collector removes snapshots nothing references. Prepare
and use a snapshot inside ``with client.lease():`` (or label it with a gc
root) so it is not collected before a container or image refers to it.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import enum
import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from containerd_client._convert import from_timestamp
from containerd_client._pb import api
from containerd_client.types import Mount

if TYPE_CHECKING:
    from containerd_client.client import Client

__all__ = [
    "DEFAULT_SNAPSHOTTER",
    "Mount",
    "SnapshotInfo",
    "SnapshotKind",
    "SnapshotStore",
    "Usage",
]

logger = logging.getLogger(__name__)

DEFAULT_SNAPSHOTTER = "overlayfs"


class SnapshotKind(enum.Enum):
    """What a snapshot is for."""

    UNKNOWN = "unknown"
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


_KINDS = {0: SnapshotKind.UNKNOWN, 1: SnapshotKind.VIEW, 2: SnapshotKind.ACTIVE, 3: SnapshotKind.COMMITTED}


@attrs.frozen
class SnapshotInfo:
    """A snapshot's record: its name (key), parent, kind and labels."""

    name: str
    parent: str
    kind: SnapshotKind
    created_at: _dt.datetime | None
    updated_at: _dt.datetime | None
    labels: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def _from_proto(cls, msg: Any) -> SnapshotInfo:
        return cls(
            msg.name,
            msg.parent,
            _KINDS.get(int(msg.kind), SnapshotKind.UNKNOWN),
            from_timestamp(msg.created_at),
            from_timestamp(msg.updated_at),
            dict(msg.labels),
        )


@attrs.frozen
class Usage:
    """Disk use of a snapshot: bytes and inodes of its own layer."""

    size: int
    inodes: int


class SnapshotStore:
    """The snapshots of one snapshotter, in the client's namespace.

    Args:
        client: The client whose namespace (and active lease) calls use.
        snapshotter: The snapshotter's name (``"overlayfs"``, ``"native"``...).
    """

    def __init__(self, client: Client, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        self._client = client
        self.snapshotter = snapshotter

    def __repr__(self) -> str:
        return f"<SnapshotStore {self.snapshotter} namespace={self._client.namespace_name!r}>"

    def _labels(self, labels: Mapping[str, str] | None) -> dict[str, str]:
        """The labels of a new snapshot: the session label, then the caller's."""
        return {**self._client._session_labels, **(labels or {})}

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create an active (writable) snapshot on top of ``parent``; return its mounts.

        It carries the session label (see :meth:`Client.sweep`), then ``labels``.

        Raises:
            AlreadyExistsError: A snapshot with that key exists.
            NotFoundError: ``parent`` does not exist.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=self.snapshotter, key=key, parent=parent, labels=self._labels(labels)
        )
        resp = self._client.call(api.Snapshots.Prepare, req)
        return [Mount.from_proto(m) for m in resp.mounts]

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create a read-only view of ``parent``; return its mounts.

        Raises:
            AlreadyExistsError: A snapshot with that key exists.
            NotFoundError: ``parent`` does not exist.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=self.snapshotter, key=key, parent=parent, labels=self._labels(labels)
        )
        resp = self._client.call(api.Snapshots.View, req)
        return [Mount.from_proto(m) for m in resp.mounts]

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or view.

        Raises:
            NotFoundError: No such snapshot.
            FailedPreconditionError: The snapshot is committed (it has no mounts).
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.MountsRequest(snapshotter=self.snapshotter, key=key)
        resp = self._client.call(api.Snapshots.Mounts, req, idempotent=True)
        return [Mount.from_proto(m) for m in resp.mounts]

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``.

        Raises:
            NotFoundError: No active snapshot ``key``.
            AlreadyExistsError: A snapshot named ``name`` exists.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=self.snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        self._client.call(api.Snapshots.Commit, req)

    def remove(self, key: str) -> None:
        """Remove a snapshot (committed ones only when no child uses them).

        Raises:
            NotFoundError: No such snapshot.
            FailedPreconditionError: Other snapshots have it as parent.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key)
        self._client.call(api.Snapshots.Remove, req)

    def stat(self, key: str) -> SnapshotInfo:
        """The record of one snapshot.

        Raises:
            NotFoundError: No such snapshot.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.StatSnapshotRequest(snapshotter=self.snapshotter, key=key)
        resp = self._client.call(api.Snapshots.Stat, req, idempotent=True)
        return SnapshotInfo._from_proto(resp.info)

    def exists(self, key: str) -> bool:
        """Whether a snapshot with that key (or name) exists.

        Raises:
            RPCError: The call failed for another reason than NOT_FOUND.
        """
        from containerd_client.errors import NotFoundError

        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def set_labels(self, key: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Set labels on a snapshot (an empty value removes one; others stay); return all its labels.

        Raises:
            InvalidArgumentError: A key is empty, or a key or value is not a string.
            NotFoundError: No such snapshot.
            RPCError: The call failed.
        """
        return dict(self._set_labels(key, labels).labels)

    def update_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotInfo:
        """Deprecated: use :meth:`set_labels`, which returns the labels."""
        warnings.warn(
            "SnapshotStore.update_labels is deprecated; use set_labels", DeprecationWarning, stacklevel=2
        )
        return self._set_labels(key, labels)

    def _set_labels(self, key: str, labels: Mapping[str, str]) -> SnapshotInfo:
        from containerd_client._convert import label_update
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        if not labels:
            return self.stat(key)
        values, mask = label_update(labels)
        req = snapshots_pb2.UpdateSnapshotRequest(
            snapshotter=self.snapshotter, info=snapshots_pb2.Info(name=key, labels=values), update_mask=mask
        )
        resp = self._client.call(api.Snapshots.Update, req)
        return SnapshotInfo._from_proto(resp.info)

    def list(self, *filters: str) -> builtins.list[SnapshotInfo]:
        """All snapshots of this snapshotter, optionally filtered (``"parent==sha256:..."``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        self._client._check_open()
        # A server stream in every containerd version (1.6 onwards).
        stream = self._client._caller.stream(
            api.Snapshots.List,
            snapshots_pb2.ListSnapshotsRequest(snapshotter=self.snapshotter, filters=list(filters)),
        )
        return [SnapshotInfo._from_proto(info) for resp in stream for info in resp.info]

    def usage(self, key: str) -> Usage:
        """Disk use of a snapshot's own layer (the snapshotter may walk it: can be slow).

        Raises:
            NotFoundError: No such snapshot.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

        req = snapshots_pb2.UsageRequest(snapshotter=self.snapshotter, key=key)
        resp = self._client.call(api.Snapshots.Usage, req, idempotent=True)
        return Usage(int(resp.size), int(resp.inodes))
