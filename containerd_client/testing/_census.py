"""Count what a process and a containerd namespace hold, to prove nothing leaked.

Two views, both plain dicts so tests can compare and print them:

- :func:`inventory` names what a namespace holds in containerd (containers,
  tasks, images, leases, snapshots, content) and the bundle folders the SDK
  keeps for it under its state folder. The plugin's leak check uses it.
- :func:`census` counts that, plus this process's file descriptors, Python
  and OS threads, resident memory and FIFOs under the namespace's state
  folder. Take one before and one after, then :func:`format_table`::

      before = census(client)
      ...  # the work under test
      after = census(client)
      print(format_table(before, after))
      assert differences(before, after, ignore={"rss_kib", "os_threads"}) == {}
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from containerd_client import network
from containerd_client._pb import api
from containerd_client.containers import _default_state_dir
from containerd_client.errors import ContainerdError

if TYPE_CHECKING:
    from containerd_client import Client

__all__ = [
    "INVENTORY_KINDS",
    "census",
    "collect_garbage",
    "differences",
    "format_table",
    "inventory",
    "process_counts",
    "state_folder",
]

#: The keys of :func:`inventory`, in the order they are reported.
INVENTORY_KINDS = (
    "containers",
    "tasks",
    "images",
    "leases",
    "snapshots",
    "content",
    "ingests",
    "bundles",
    "networks",
)

#: Snapshotters looked at when none are named.
DEFAULT_SNAPSHOTTERS = ("overlayfs", "native")


def state_folder(client: Client) -> str:
    """The folder holding the client's bundle folders for its namespace."""
    base = client._state_dir or _default_state_dir()
    return os.path.join(base, client.namespace_name)


def inventory(client: Client, *, snapshotters: Iterable[str] = DEFAULT_SNAPSHOTTERS) -> dict[str, list[str]]:
    """Name everything the client's namespace holds, by kind (see :data:`INVENTORY_KINDS`).

    Snapshots are named ``"<snapshotter>/<key>"``. A kind that cannot be
    listed (a snapshotter this daemon lacks) counts as empty.

    Raises:
        RPCError: Containers, tasks, images, leases or content could not be listed.
    """
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    tasks = client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks
    out: dict[str, list[str]] = {
        "containers": sorted(c.id for c in client.containers()),
        "tasks": sorted(t.id for t in tasks),
        "images": sorted(i.name for i in client.images.list()),
        "leases": sorted(lease.id for lease in client.leases.list()),
        "snapshots": [],
        "content": sorted(info.digest for info in client.content.list()),
        "ingests": sorted(status.ref for status in client.content.statuses()),
        "bundles": [],
    }
    for name in snapshotters:
        try:
            out["snapshots"].extend(f"{name}/{s.name}" for s in client.snapshots(name).list())
        except ContainerdError:
            continue
    out["snapshots"].sort()
    folder = state_folder(client)
    if os.path.isdir(folder):
        out["bundles"] = sorted(os.listdir(folder))
    # CNI attachments (a record or a pinned network namespace) of the namespace's containers.
    root = os.path.dirname(folder)
    out["networks"] = [cid for _ns, cid in network.attachments(root, client.namespace_name)]
    return out


def collect_garbage(client: Client) -> None:
    """Run containerd's garbage collector now, and wait for it to finish.

    containerd has no "collect" call, but deleting a lease with ``sync``
    runs a full collection before the delete returns; this creates and
    deletes an empty one. Snapshots and content that nothing references
    are gone afterwards.

    Raises:
        RPCError: The lease could not be created or deleted.
    """
    lease = client.leases.create(expire=60)
    client.leases.delete(lease.id, sync=True, missing_ok=True)


def process_counts() -> dict[str, int]:
    """This process's file descriptors, Python threads, OS threads and resident memory (KiB)."""
    counts = {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "os_threads": 0,
        "rss_kib": 0,
    }
    with open("/proc/self/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Threads":
                counts["os_threads"] = int(value.split()[0])
            elif key == "VmRSS":
                counts["rss_kib"] = int(value.split()[0])
    return counts


def count_fifos(folder: str) -> int:
    """FIFOs anywhere under ``folder`` (0 when it does not exist)."""
    found = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                if stat.S_ISFIFO(os.lstat(os.path.join(dirpath, name)).st_mode):
                    found += 1
            except FileNotFoundError:
                continue
    return found


def census(
    client: Client | None = None, *, snapshotters: Iterable[str] = DEFAULT_SNAPSHOTTERS
) -> dict[str, int]:
    """Counts of :func:`process_counts`, and with a client, of its namespace.

    With a client the keys add ``fifos`` (under :func:`state_folder`) and
    one count per kind of :func:`inventory`.

    Raises:
        RPCError: The namespace could not be listed.
    """
    counts = process_counts()
    if client is not None:
        counts["fifos"] = count_fifos(state_folder(client))
        for kind, names in inventory(client, snapshotters=snapshotters).items():
            counts[kind] = len(names)
    return counts


def differences(
    before: Mapping[str, int], after: Mapping[str, int], *, ignore: Iterable[str] = ()
) -> dict[str, tuple[int, int]]:
    """The keys whose counts changed, as ``{key: (before, after)}``, skipping ``ignore``."""
    skip = set(ignore)
    return {
        key: (before.get(key, 0), after.get(key, 0))
        for key in sorted(set(before) | set(after))
        if key not in skip and before.get(key, 0) != after.get(key, 0)
    }


def format_table(before: Mapping[str, int], after: Mapping[str, int], *, title: str = "") -> str:
    """A fixed-width table of before, after and the change for every key."""
    keys = list(before) + [k for k in after if k not in before]
    width = max([len(k) for k in keys] + [8])
    lines = [title] if title else []
    lines.append(f"{'':<{width}}  {'before':>10}  {'after':>10}  {'change':>8}")
    for key in keys:
        b, a = before.get(key, 0), after.get(key, 0)
        lines.append(f"{key:<{width}}  {b:>10}  {a:>10}  {a - b:>+8}")
    return "\n".join(lines)
