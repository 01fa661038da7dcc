"""Network namespaces kept attached for the next container: ``NetworkConfig(namespace_pool=N)``.

Attaching a container to the SDK's bridge runs the ``loopback``, ``bridge``
(with ``host-local``) and ``firewall`` plugins, and detaching runs them again:
about 90 ms of ADD and 120 ms of DEL here, most of it plugin processes and
``iptables`` calls. A test suite that gives every test a fresh service pays
that twice per test. With a pool, a client keeps up to ``N`` namespaces of
containers it deleted, still attached (``lo`` up, ``eth0`` on the bridge with
its address and firewall rules), and gives one to its next container instead
of attaching a new one; the CNI DEL of the kept ones runs when the client
closes (or when the pool is full).

A namespace is kept only from a container that could not have changed it:
no ``CAP_NET_ADMIN`` or ``CAP_SYS_ADMIN`` (so no address, route, firewall or
interface change of its own) and no ``net.*`` sysctl in its spec. What a
kept namespace may still hold of its last user is ordinary socket state:
connections in TIME_WAIT (a server binding the same port without
``SO_REUSEADDR`` could fail for up to a minute; servers set it) and the same
IP address. Only the SDK's ``bridge`` network with every published port
forwarded by the in-process proxy is pooled (a ``portmap`` rule is tied to
one container).

Each kept namespace is an ordinary attachment (record and pinned namespace
under the container's namespace, id ``ccnet-<hex>``) carrying the client's
session: a sweep after a crash removes it like any other. The container's
own record points at it (``"slot"``), so deleting the container from another
process detaches the namespace rather than leaking it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["NamespacePool", "Slot", "new_slot_id", "reusable"]

logger = logging.getLogger(__name__)

_SLOT_PREFIX = "ccnet-"
# Capabilities that let a container change its network namespace.
_NET_CAPS = frozenset({"CAP_NET_ADMIN", "CAP_SYS_ADMIN"})


def new_slot_id() -> str:
    """A fresh id for a pooled attachment (a valid containerd id, never a container's)."""
    return _SLOT_PREFIX + uuid.uuid4().hex[:16]


@attrs.frozen
class Slot:
    """An attached network namespace that a pool hands out.

    Attributes:
        state_root: The state folder holding its record.
        namespace: The containerd namespace its record is filed under.
        slot_id: Its attachment id.
        netns: The pinned namespace.
        address: Its ``eth0`` address on the bridge.
        result: The CNI ADD result.
    """

    state_root: str
    namespace: str
    slot_id: str
    netns: str
    address: str
    result: Mapping[str, Any]


def reusable(spec: Mapping[str, Any]) -> bool:
    """Whether a namespace a container with this OCI ``spec`` used can serve another one."""
    process = spec.get("process") or {}
    caps = process.get("capabilities") or {}
    for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
        if _NET_CAPS.intersection(caps.get(kind) or ()):
            return False
    sysctl = (spec.get("linux") or {}).get("sysctl") or {}
    return not any(str(key).startswith("net.") for key in sysctl)


class NamespacePool:
    """Up to ``size`` idle attached namespaces per ``(state root, containerd namespace)``; thread-safe.

    Owned by a root :class:`~containerd_client.client.Client`, closed with it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, str], list[Slot]] = {}
        self._closed = False

    def take(self, state_root: str, namespace: str, network: str) -> Slot | None:
        """An idle slot for this state folder, namespace and network, if any."""
        with self._lock:
            idle = self._idle.get((state_root, namespace, network))
            return idle.pop() if idle else None

    def put(self, network: str, slot: Slot) -> bool:
        """Keep ``slot`` for the next container; False when full or closed (detach it then)."""
        with self._lock:
            if self._closed:
                return False
            idle = self._idle.setdefault((slot.state_root, slot.namespace, network), [])
            if len(idle) >= self.size:
                return False
            idle.append(slot)
            return True

    def idle(self) -> list[Slot]:
        """The slots kept now (for tests and reprs)."""
        with self._lock:
            return [slot for slots in self._idle.values() for slot in slots]

    def close(self) -> None:
        """Detach every idle slot (CNI DEL); later :meth:`put` calls return False. Never raises."""
        from containerd_client.network import detach

        with self._lock:
            self._closed = True
            slots = [slot for items in self._idle.values() for slot in items]
            self._idle.clear()
        for slot in slots:
            try:
                detach(slot.state_root, slot.namespace, slot.slot_id)
            except Exception:  # logged; a sweep removes what is left
                logger.warning("detaching pooled network namespace %s failed", slot.slot_id, exc_info=True)
