"""containerd-client: a synchronous, thread-based Python SDK for containerd.

Start with :class:`Client`::

    from containerd_client import Client

    with Client() as client:
        print(client.version())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from containerd_client import errors
from containerd_client._retry import RetryPolicy
from containerd_client.client import (
    Client,
    Lease,
    Namespace,
    Plugin,
    ServerInfo,
    UnclosedClientWarning,
    Version,
)
from containerd_client.errors import ContainerdError

if TYPE_CHECKING:
    from containerd_client._teardown import TeardownFailure
    from containerd_client.checkpoint import Checkpoint, check_criu
    from containerd_client.containers import Container, ContainerInfo, RuncOptions
    from containerd_client.content import ContentInfo, ContentStore, Descriptor, Platform
    from containerd_client.events import Event, EventDispatcher, EventKind, Subscription
    from containerd_client.images import Image, ImageStore
    from containerd_client.metrics import Metrics
    from containerd_client.network import NetworkConfig, PortMapping
    from containerd_client.pull import ProgressEvent, PullOptions, PullResult
    from containerd_client.snapshots import Mount, SnapshotInfo, SnapshotStore
    from containerd_client.sweep import SweepReport
    from containerd_client.tasks import ExecResult, ExitStatus, Process, Task, TaskStatus
    from containerd_client.wait import WaitStrategy

# Imported on first use, so that `import containerd_client` stays cheap
# (these modules define many classes; a script that only makes a Client
# should not pay for them).
_LAZY = {
    "Checkpoint": "containerd_client.checkpoint",
    "check_criu": "containerd_client.checkpoint",
    "Container": "containerd_client.containers",
    "ContainerInfo": "containerd_client.containers",
    "RuncOptions": "containerd_client.containers",
    "ContentInfo": "containerd_client.content",
    "ContentStore": "containerd_client.content",
    "Descriptor": "containerd_client.content",
    "Platform": "containerd_client.content",
    "Event": "containerd_client.events",
    "EventDispatcher": "containerd_client.events",
    "EventKind": "containerd_client.events",
    "Subscription": "containerd_client.events",
    "Image": "containerd_client.images",
    "ImageStore": "containerd_client.images",
    "Metrics": "containerd_client.metrics",
    "ProgressEvent": "containerd_client.pull",
    "PullOptions": "containerd_client.pull",
    "PullResult": "containerd_client.pull",
    "Mount": "containerd_client.snapshots",
    "SnapshotInfo": "containerd_client.snapshots",
    "SnapshotStore": "containerd_client.snapshots",
    "ExecResult": "containerd_client.tasks",
    "ExitStatus": "containerd_client.tasks",
    "Process": "containerd_client.tasks",
    "Task": "containerd_client.tasks",
    "TaskStatus": "containerd_client.tasks",
    "NetworkConfig": "containerd_client.network",
    "PortMapping": "containerd_client.network",
    "SweepReport": "containerd_client.sweep",
    "TeardownFailure": "containerd_client._teardown",
    "WaitStrategy": "containerd_client.wait",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'containerd_client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "Checkpoint",
    "Client",
    "Container",
    "ContainerInfo",
    "ContainerdError",
    "ContentInfo",
    "ContentStore",
    "Descriptor",
    "Event",
    "EventDispatcher",
    "EventKind",
    "ExecResult",
    "ExitStatus",
    "Image",
    "ImageStore",
    "Lease",
    "Metrics",
    "Mount",
    "Namespace",
    "NetworkConfig",
    "Platform",
    "Plugin",
    "PortMapping",
    "Process",
    "ProgressEvent",
    "PullOptions",
    "PullResult",
    "RetryPolicy",
    "RuncOptions",
    "ServerInfo",
    "SnapshotInfo",
    "SnapshotStore",
    "Subscription",
    "SweepReport",
    "Task",
    "TaskStatus",
    "TeardownFailure",
    "UnclosedClientWarning",
    "Version",
    "WaitStrategy",
    "__version__",
    "check_criu",
    "errors",
]
