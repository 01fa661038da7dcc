"""containerd-client: a synchronous, thread-based Python SDK for containerd.

Start with :class:`Client`::

    from containerd_client import Client

    with Client() as client:
        print(client.version())
"""

from __future__ import annotations

from containerd_client import errors
from containerd_client._retry import RetryPolicy
from containerd_client.client import (
    Client,
    Lease,
    Namespace,
    Plugin,
    ServerInfo,
    Version,
)
from containerd_client.errors import ContainerdError

__version__ = "0.1.0.dev0"

__all__ = [
    "Client",
    "ContainerdError",
    "Lease",
    "Namespace",
    "Plugin",
    "RetryPolicy",
    "ServerInfo",
    "Version",
    "__version__",
    "errors",
]
