"""pytest plugin: a private containerd per session and a namespace per test.

Loaded automatically when containerd-client is installed (``pytest11`` entry
point). Nothing starts until a test asks for a fixture:

- ``containerd_daemon`` (session): a private daemon in a temp folder, stopped
  by PID at the end. ``CONTAINERD_BIN`` / ``CONTAINERD_BIN_DIR`` choose the binary.
- ``containerd`` (function): a :class:`~containerd_client.Client` bound to a
  fresh namespace; everything left in it is swept after the test.
- ``busybox_rootfs`` (session): a host folder with busybox, usable as a rootfs.

Example::

    def test_echo(containerd, busybox_rootfs):
        with containerd.create_container("c1", rootfs=busybox_rootfs, args=["echo", "hi"]) as c:
            ...
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from containerd_client import Client
from containerd_client.errors import ContainerdError, NotFoundError

if TYPE_CHECKING:
    from containerd_client.containers import Container
    from containerd_client.testing import ContainerdDaemon

logger = logging.getLogger(__name__)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real containerd started by the test session")


@pytest.fixture(scope="session")
def containerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdDaemon]:
    """A private containerd for the whole session, stopped by PID at the end."""
    from containerd_client.testing import ContainerdDaemon

    daemon = ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def containerd(containerd_daemon: ContainerdDaemon) -> Iterator[Client]:
    """A client on the session daemon, in a namespace of its own that is swept afterwards."""
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    client = Client(containerd_daemon.address, namespace)
    try:
        yield client
    finally:
        try:
            sweep_namespace(client)
        finally:
            client.close()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A host folder holding busybox and its applet links, for ``rootfs=``."""
    from containerd_client.testing import make_busybox_rootfs

    path = tmp_path_factory.mktemp("busybox-rootfs")
    make_busybox_rootfs(str(path))
    return str(path)


def sweep_namespace(client: Client) -> list[str]:
    """Remove everything in the client's namespace, then the namespace itself.

    Returns:
        What had to be removed (``"task:c1"``, ``"container:c1"``, ...), so
        tests can assert that nothing was left behind.
    """
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    removed: list[str] = []
    try:
        tasks = client.call("tasks", "List", tasks_pb2.ListTasksRequest()).tasks
    except ContainerdError:
        tasks = []
    containers = {c.id: c for c in _safe(client.containers)}
    for t in tasks:
        container = containers.get(t.id) or _safe_load(client, t.id)
        if container is None:
            continue
        try:
            container.task().force_delete(timeout=10)
            removed.append(f"task:{t.id}")
        except ContainerdError:
            logger.warning("sweep: task %s", t.id, exc_info=True)
    for cid, container in containers.items():
        try:
            container.delete(force=True)
            removed.append(f"container:{cid}")
        except NotFoundError:
            pass
        except ContainerdError:
            logger.warning("sweep: container %s", cid, exc_info=True)
    removed.extend(_sweep_rest(client))
    try:
        client.namespaces.delete(client.namespace_name)
    except NotFoundError:
        pass
    except ContainerdError:
        logger.warning("sweep: namespace %s", client.namespace_name, exc_info=True)
    return removed


def _sweep_rest(client: Client) -> list[str]:
    from containerd_client._pb.containerd.services.content.v1 import content_pb2
    from containerd_client._pb.containerd.services.images.v1 import images_pb2
    from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2

    removed: list[str] = []
    try:
        for img in client.call("images", "List", images_pb2.ListImagesRequest()).images:
            client.call("images", "Delete", images_pb2.DeleteImageRequest(name=img.name))
            removed.append(f"image:{img.name}")
    except ContainerdError:
        logger.warning("sweep: images", exc_info=True)
    for lease in _safe(client.leases.list):
        client.leases.delete(lease.id, missing_ok=True)
        removed.append(f"lease:{lease.id}")
    for snapshotter in ("overlayfs", "native"):
        try:
            stream = client._caller.stream(
                "snapshots", "List", snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter)
            )
            infos = [i for resp in stream for i in resp.info]
        except ContainerdError:
            continue
        # Children before parents: remove in repeated passes.
        pending = {i.name for i in infos}
        for _ in range(len(pending) + 1):
            if not pending:
                break
            for name in sorted(pending):
                try:
                    client.call(
                        "snapshots",
                        "Remove",
                        snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=name),
                    )
                    pending.discard(name)
                    removed.append(f"snapshot:{name}")
                except NotFoundError:
                    pending.discard(name)
                except ContainerdError:
                    continue
    try:
        stream = client._caller.stream("content", "List", content_pb2.ListContentRequest())
        for resp in stream:
            for info in resp.info:
                try:
                    client.call("content", "Delete", content_pb2.DeleteContentRequest(digest=info.digest))
                    removed.append(f"content:{info.digest}")
                except NotFoundError:
                    pass
    except ContainerdError:
        logger.warning("sweep: content", exc_info=True)
    return removed


def _safe(fn: object) -> list:  # type: ignore[type-arg]
    try:
        return list(fn())  # type: ignore[operator]
    except ContainerdError:
        return []


def _safe_load(client: Client, cid: str) -> Container | None:
    try:
        return client.load_container(cid)
    except ContainerdError:
        return None
