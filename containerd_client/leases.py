"""Leases: what they reference survives containerd's garbage collector.

``containerd.services.leases.v1``; reached as ``client.leases``. The usual way
in is ``with client.lease():``, which attaches a lease to every call made in
the block.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import attrs

from containerd_client._convert import from_timestamp
from containerd_client._pb import api
from containerd_client.errors import NotFoundError

if TYPE_CHECKING:
    from containerd_client.client import Client

__all__ = ["Lease", "LeaseStore"]


@attrs.frozen
class Lease:
    """A containerd lease: resources referenced by it survive garbage collection."""

    id: str
    created_at: _dt.datetime | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)


class LeaseStore:
    """Lease management (``containerd.services.leases.v1``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        lease_id: str | None = None,
        expire: float | _dt.timedelta | None = 3600.0,
        labels: Mapping[str, str] | None = None,
    ) -> Lease:
        """Create a lease labelled with this client's session.

        Raises:
            InvalidIdError: ``lease_id`` breaks containerd's identifier rules.
            InvalidTimeoutError: ``expire`` is not a positive, finite duration.
            AlreadyExistsError: ``lease_id`` is taken.
            RPCError: The call failed.
        """
        from containerd_client._ids import validate_id, validate_timeout
        from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

        if lease_id is not None:
            validate_id(lease_id, what="lease id")
        all_labels = {**self._client._session_labels, **(labels or {})}
        if expire is not None:
            raw = expire.total_seconds() if isinstance(expire, _dt.timedelta) else expire
            seconds = cast(float, validate_timeout(raw, what="lease expiry", allow_none=False, positive=True))
            until = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
            # containerd's GC reads this label (RFC 3339) and drops the lease after it.
            all_labels["containerd.io/gc.expire"] = until.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        req = leases_pb2.CreateRequest(id=lease_id or f"cc-{uuid.uuid4().hex}", labels=all_labels)
        resp = self._client.call(api.Leases.Create, req)
        return Lease(resp.lease.id, from_timestamp(resp.lease.created_at), dict(resp.lease.labels))

    def list(self, *filters: str) -> builtins.list[Lease]:
        """Leases in this namespace, optionally filtered (``"labels.\\"k\\"==v"``).

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

        resp = self._client.call(
            api.Leases.List, leases_pb2.ListRequest(filters=list(filters)), idempotent=True
        )
        return [Lease(le.id, from_timestamp(le.created_at), dict(le.labels)) for le in resp.leases]

    def delete(self, lease_id: str, *, sync: bool = False, missing_ok: bool = False) -> None:
        """Delete a lease; what only it referenced becomes garbage.

        Raises:
            NotFoundError: No such lease (unless ``missing_ok``).
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

        try:
            self._client.call(api.Leases.Delete, leases_pb2.DeleteRequest(id=lease_id, sync=sync))
        except NotFoundError:
            if not missing_ok:
                raise

    def add_resource(self, lease_id: str, resource_id: str, resource_type: str) -> None:
        """Reference a resource (``"content"``, ``"snapshots/overlayfs"``, ...) from a lease.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

        req = leases_pb2.AddResourceRequest(
            id=lease_id, resource=leases_pb2.Resource(id=resource_id, type=resource_type)
        )
        self._client.call(api.Leases.AddResource, req)

    def resources(self, lease_id: str) -> builtins.list[tuple[str, str]]:
        """The ``(type, id)`` resources a lease references.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.leases.v1 import leases_pb2

        resp = self._client.call(
            api.Leases.ListResources, leases_pb2.ListResourcesRequest(id=lease_id), idempotent=True
        )
        return [(r.type, r.id) for r in resp.resources]
