"""Namespaces: containerd's separate worlds of containers, images and leases.

``containerd.services.namespaces.v1``; reached as ``client.namespaces``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from containerd_client._pb import api
from containerd_client.errors import NotFoundError, StatusCode

if TYPE_CHECKING:
    from containerd_client.client import Client

__all__ = ["Namespace", "NamespaceStore"]


@attrs.frozen
class Namespace:
    """A containerd namespace and its labels."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)


class NamespaceStore:
    """Namespace management (``containerd.services.namespaces.v1``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[Namespace]:
        """All namespaces with their labels.

        Raises:
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.namespaces.v1 import namespace_pb2

        resp = self._client.call(api.Namespaces.List, namespace_pb2.ListNamespacesRequest(), idempotent=True)
        return [Namespace(n.name, dict(n.labels)) for n in resp.namespaces]

    def get(self, name: str) -> Namespace:
        """One namespace.

        Raises:
            NotFoundError: No such namespace.
            RPCError: The call failed.
        """
        # Namespaces.Get answers for any name, existing or not (containerd
        # 1.6-2.x), so existence is read from the list.
        for ns in self.list():
            if ns.name == name:
                return ns
        raise NotFoundError(f"namespace {name!r}: not found", StatusCode.NOT_FOUND)

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create a namespace.

        Raises:
            InvalidIdError: ``name`` breaks containerd's identifier rules.
            AlreadyExistsError: It exists already.
            RPCError: The call failed.
        """
        from containerd_client._ids import validate_id
        from containerd_client._pb.containerd.services.namespaces.v1 import namespace_pb2

        validate_id(name, what="namespace")
        req = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=dict(labels or {}))
        )
        resp = self._client.call(api.Namespaces.Create, req)
        return Namespace(resp.namespace.name, dict(resp.namespace.labels))

    def set_labels(self, name: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Set labels on a namespace (an empty value removes one; others stay); return all its labels.

        Raises:
            InvalidArgumentError: A key is empty, or a key or value is not a string.
            NotFoundError: No such namespace.
            RPCError: The call failed.
        """
        from containerd_client._convert import label_update
        from containerd_client._pb.containerd.services.namespaces.v1 import namespace_pb2

        if labels:
            values, mask = label_update(labels)
            req = namespace_pb2.UpdateNamespaceRequest(
                namespace=namespace_pb2.Namespace(name=name, labels=values), update_mask=mask
            )
            self._client.call(api.Namespaces.Update, req)
        # containerd answers with the request's record, not the stored one.
        return dict(self.get(name).labels)

    def delete(self, name: str) -> None:
        """Delete an empty namespace.

        Raises:
            NotFoundError: No such namespace.
            FailedPreconditionError: It still holds containers, images, etc.
            RPCError: The call failed.
        """
        from containerd_client._pb.containerd.services.namespaces.v1 import namespace_pb2

        self._client.call(api.Namespaces.Delete, namespace_pb2.DeleteNamespaceRequest(name=name))
