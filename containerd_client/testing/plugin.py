"""pytest plugin: a private containerd per session and a namespace per test.

Loaded automatically when containerd-client is installed (``pytest11`` entry
point). Nothing starts until a test asks for a fixture:

- ``containerd_daemon`` (session): a private daemon in a temp folder, stopped
  by PID at the end. ``CONTAINERD_BIN`` / ``CONTAINERD_BIN_DIR`` choose the binary.
- ``containerd`` (function): a :class:`~containerd_client.Client` bound to a
  fresh namespace. With the ini option ``containerd_background_teardown = true``
  it has ``background_teardown=True`` (``client.run`` and the end of a
  container's ``with`` block do not wait for the deletion): the teardown is
  joined after the test, and a failed one fails the test. After the
  test, what is still in the namespace is a leak: the fixture sweeps it
  and fails the test at teardown, naming every container, task, image,
  lease, snapshot, blob, unfinished write and bundle folder left behind.
  Snapshots and content that nothing references any more are not leaks
  (containerd's garbage collector removes them; the check runs
  a collection first). A test that leaves things on purpose says so with
  ``@pytest.mark.containerd_leaks_ok(reason=...)`` (any kind) or
  ``@pytest.mark.containerd_leaks_ok("images", reason=...)`` (those kinds only;
  allowing images allows what only they hold: their blobs and snapshots).
  A test that failed is not also reported for leaks.
- ``busybox_rootfs`` (session): a host folder with busybox, usable as a rootfs.
- ``containerd_sshd`` (session): an :class:`~containerd_client.testing.SSHServer`,
  a private ``sshd`` on 127.0.0.1 with throwaway keys, for ``ssh://`` addresses:
  ``Client(containerd_sshd.address(containerd_daemon.address),
  ssh_options=containerd_sshd.ssh_options)``. Skips the test when
  openssh-server is not installed.

Example::

    def test_echo(containerd, busybox_rootfs):
        with containerd.create_container("c1", rootfs=busybox_rootfs, args=["echo", "hi"]) as c:
            ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import attrs
import pytest

from containerd_client import Client, network
from containerd_client._pb import api
from containerd_client.errors import ContainerdError, NotFoundError
from containerd_client.sweep import remove_snapshots
from containerd_client.testing._census import INVENTORY_KINDS, collect_garbage, inventory, state_folder
from containerd_client.testing._service import Service, WarmCache, start_service

if TYPE_CHECKING:
    from containerd_client._pb.containerd.types.task import task_pb2
    from containerd_client._teardown import TeardownFailure
    from containerd_client.containers import Container
    from containerd_client.images import Image
    from containerd_client.spec import Command
    from containerd_client.testing import ContainerdDaemon, ImageArchive
    from containerd_client.testing._sshd import SSHServer

logger = logging.getLogger(__name__)

#: Marker that lets a test leave things in its namespace (all kinds, or those named).
LEAKS_OK_MARKER = "containerd_leaks_ok"

_CALL_FAILED = pytest.StashKey[bool]()
_PREVIOUS_SIGTERM = pytest.StashKey[object]()
#: Attached network namespaces the session client keeps for the next services.
SESSION_NETNS_POOL = 4
#: ini option: the ``containerd`` fixture's client tears down in the background.
BACKGROUND_TEARDOWN_INI = "containerd_background_teardown"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        BACKGROUND_TEARDOWN_INI,
        "the containerd fixture's client deletes containers in the background "
        "(joined and checked after each test)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{LEAKS_OK_MARKER}(*kinds, reason): the test may leave these kinds "
        f"({', '.join(INVENTORY_KINDS)}; every kind when none is named) in the namespace of "
        "the containerd fixture; they are swept without failing the test",
    )
    _handle_sigterm(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS_SIGTERM, None)
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def _handle_sigterm(config: pytest.Config) -> None:
    """Make SIGTERM (``timeout``, a CI runner's cancel, ``kill``) end the run as Ctrl-C does.

    The default action kills the process at once, so no fixture teardown
    runs: the private daemon, its shims, the containers' processes, cgroups
    and mounts and the temp folder would stay. As a KeyboardInterrupt,
    pytest tears everything down and exits with "interrupted". Only when
    nobody else handles SIGTERM (the default action is set), and only from
    the main thread (where Python handles signals). A second SIGTERM during
    the teardown is ignored, so that it cannot cut the cleanup short
    (SIGKILL still ends the process; the daemon then dies with it, see
    :class:`~containerd_client.testing.ContainerdDaemon`).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    fired = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        if fired.is_set():
            logger.warning("SIGTERM again: ignored while the first one's teardown runs")
            return
        fired.set()
        raise KeyboardInterrupt("SIGTERM")

    config.stash[_PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, on_sigterm)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


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
def containerd(request: pytest.FixtureRequest, containerd_daemon: ContainerdDaemon) -> Iterator[Client]:
    """A client on the session daemon, in a namespace of its own that is checked for leaks and swept."""
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    # Teardown off the test's critical path if asked: joined below, before the leak check.
    background = bool(request.config.getini(BACKGROUND_TEARDOWN_INI))
    client = Client(
        containerd_daemon.address,
        namespace,
        background_teardown=background,
        network_config=containerd_daemon.network_config,
    )
    failures: list[TeardownFailure] = []
    try:
        yield client
    finally:
        failures = client.join_teardowns()
        # A client of our own: the test may have closed its client.
        checker = Client(containerd_daemon.address, namespace)
        try:
            leaks = find_leaks(checker, drop_images="images" in allowed_leaks(request.node))
            sweep_namespace(checker)
        finally:
            checker.close()
            client.close()
    if failures and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail("background teardown failed:\n" + "\n".join(f"  {f}" for f in failures), pytrace=False)
    allowed = allowed_leaks(request.node)
    leaks = {kind: names for kind, names in leaks.items() if kind not in allowed}
    if leaks and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail(format_leaks(namespace, leaks), pytrace=False)


def allowed_leaks(node: pytest.Item) -> frozenset[str]:
    """The kinds a test's ``containerd_leaks_ok`` marker allows.

    Every kind when it names none, even a namespace that could not be listed.
    """
    marker = node.get_closest_marker(LEAKS_OK_MARKER)
    if marker is None:
        return frozenset()
    if not marker.args:
        return frozenset(INVENTORY_KINDS) | {"unlisted"}
    kinds = frozenset(marker.args)
    unknown = kinds - set(INVENTORY_KINDS)
    if unknown:
        raise pytest.UsageError(
            f"{LEAKS_OK_MARKER} names unknown kinds {sorted(unknown)}; known: {', '.join(INVENTORY_KINDS)}"
        )
    return kinds


def find_leaks(client: Client, *, drop_images: bool = False) -> dict[str, list[str]]:
    """What the client's namespace still holds, by kind, after a garbage collection.

    Args:
        client: A client in the namespace to look at.
        drop_images: Delete the images first (they are still reported), so
            that the blobs and unpacked snapshots only they held are
            collected and not reported; whatever else holds on to them is.

    Returns:
        Only the kinds that are not empty: ``{"containers": ["c1"], "leases": [...]}``.
        A namespace that cannot be listed reports ``{"unlisted": [reason]}``.
    """
    try:
        found = inventory(client)
        images = found["images"]
        if drop_images:
            for name in images:
                with contextlib.suppress(NotFoundError):
                    client.images.delete(name)
        if found["snapshots"] or found["content"]:
            # A deleted container's snapshot, a deleted image's blobs: the
            # collector removes them asynchronously. Collect now, then look again.
            collect_garbage(client)
            found = inventory(client)
            found["images"] = images
    except ContainerdError as exc:
        logger.warning("leak check: namespace %s", client.namespace_name, exc_info=True)
        return {"unlisted": [f"{type(exc).__name__}: {exc}"]}
    return {kind: names for kind, names in found.items() if names}


def format_leaks(namespace: str, leaks: Mapping[str, Sequence[str]], *, limit: int = 10) -> str:
    """The message a leaking test fails with: every kind, and up to ``limit`` names of each."""
    lines = [f"the test left these behind in containerd namespace {namespace} (now swept):"]
    for kind, names in leaks.items():
        more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        shown = ", ".join(names[:limit]) + more
        lines.append(f"  {kind} ({len(names)}): {shown}")
    lines.append(
        f"Clean up in the test, or mark it @pytest.mark.{LEAKS_OK_MARKER}(<kinds>, reason=...) "
        "if it leaves them on purpose."
    )
    return "\n".join(lines)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A host folder holding busybox and its applet links, for ``rootfs=``."""
    from containerd_client.testing import make_busybox_rootfs

    path = tmp_path_factory.mktemp("busybox-rootfs")
    make_busybox_rootfs(str(path))
    return str(path)


@pytest.fixture(scope="session")
def containerd_sshd() -> Iterator[SSHServer]:
    """A private sshd on 127.0.0.1 with throwaway keys, stopped by PID at the end."""
    from containerd_client.testing._sshd import SSHServer, find_sshd

    if find_sshd() is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    server = SSHServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sweep_namespace(client: Client) -> list[str]:
    """Remove everything in the client's namespace, then the namespace itself.

    Returns:
        What had to be removed (``"task:c1"``, ``"container:c1"``, ...), so
        tests can assert that nothing was left behind.
    """
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    removed: list[str] = []
    tasks: Sequence[task_pb2.Process]
    try:
        tasks = client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks
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
    # Attachments no container owns any more (a crash between CNI ADD and the record).
    root = os.path.dirname(state_folder(client))
    for ns, cid in network.attachments(root, client.namespace_name):
        try:
            network.detach(root, ns, cid)
            removed.append(f"network:{cid}")
        except ContainerdError:
            logger.warning("sweep: network of %s", cid, exc_info=True)
    for status in _safe(client.content.statuses):
        try:
            client.content.abort(status.ref)
            removed.append(f"ingest:{status.ref}")
        except ContainerdError:
            logger.warning("sweep: ingest %s", status.ref, exc_info=True)
    # Only the folder the SDK computes for this namespace, never a path from a label.
    folder = state_folder(client)
    if os.path.isdir(folder):
        removed.extend(f"bundle:{name}" for name in sorted(os.listdir(folder)))
        shutil.rmtree(folder, ignore_errors=True)
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
        for img in client.call(api.Images.List, images_pb2.ListImagesRequest()).images:
            client.call(api.Images.Delete, images_pb2.DeleteImageRequest(name=img.name))
            removed.append(f"image:{img.name}")
    except ContainerdError:
        logger.warning("sweep: images", exc_info=True)
    for lease in _safe(client.leases.list):
        client.leases.delete(lease.id, missing_ok=True)
        removed.append(f"lease:{lease.id}")
    for snapshotter in ("overlayfs", "native"):
        try:
            stream = client._caller.stream(
                api.Snapshots.List, snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter)
            )
            infos = [i for resp in stream for i in resp.info]
        except ContainerdError:
            continue
        names = sorted(i.name for i in infos)
        failed = remove_snapshots(client, snapshotter, names)
        removed.extend(f"snapshot:{name}" for name in names if name not in failed)
    try:
        for resp in client._caller.stream(api.Content.List, content_pb2.ListContentRequest()):
            for info in resp.info:
                try:
                    client.call(api.Content.Delete, content_pb2.DeleteContentRequest(digest=info.digest))
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


# ---------------------------------------------------------------------------
# Fixtures for users' tests: session images, containers, services and the
# report header (issue 11, item 7). Kept in this one block, apart from the
# leak check and sweep above.
# ---------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str | None:
    """``containerd: 1.6.20~ds1 (/usr/bin/containerd)``: what the private daemon runs."""
    from containerd_client.testing import ContainerdDaemon

    try:
        daemon = ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None)
        return f"containerd: {daemon.version} ({daemon.binary})"
    except ContainerdError as exc:
        return f"containerd: unavailable ({exc})"


def _session_namespace() -> str:
    # Under pytest-xdist every worker has its own daemon and its own namespace.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"s-{worker + '-' if worker else ''}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def containerd_session(containerd_daemon: ContainerdDaemon) -> Iterator[Client]:
    """A client on the session daemon in a namespace kept for the whole session.

    Images from ``containerd_image`` and the containers of ``containerd_container``
    and ``containerd_service`` live there; it is swept at the end of the session.
    It tears down in the background (``background_teardown=True``): a test does
    not wait for its services to stop and be deleted; a teardown failure is
    reported as an error at the end of the session.
    """
    client = Client(
        containerd_daemon.address,
        _session_namespace(),
        # Services' network namespaces are kept attached for the next test's
        # services (NetworkConfig.namespace_pool): no CNI ADD and DEL per test.
        network_config=attrs.evolve(containerd_daemon.network_config, namespace_pool=SESSION_NETNS_POOL),
        background_teardown=True,
    )
    failures: list[TeardownFailure] = []
    try:
        yield client
    finally:
        try:
            failures = client.join_teardowns()
            sweep_namespace(client)
        finally:
            client.close()
    if failures:
        pytest.fail("background teardown failed:\n" + "\n".join(f"  {f}" for f in failures), pytrace=False)


ImageSource = Union[str, "os.PathLike[str]", "ImageArchive"]


class ImageFactory:
    """The ``containerd_image`` fixture: each image imported or pulled once per session."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._images: dict[str, Image] = {}
        self._lock = threading.Lock()

    def __call__(self, source: ImageSource, **pull_options: Any) -> Image:
        """An image in the session namespace, made on the first call, reused after.

        Args:
            source: An image archive (an :class:`ImageArchive` or the path of an
                OCI/``docker save`` tar) to import, or a reference to pull.
            pull_options: Passed to :meth:`Client.pull` (``plain_http=True``...).

        Raises:
            ContainerdError: The import or the pull failed.
        """
        from containerd_client.testing import ImageArchive

        # A path object or an existing file is an archive; any other string a reference
        # (``library/busybox:1.36`` holds a slash too).
        is_archive = not isinstance(source, str) or os.path.isfile(source)
        key = source.path if isinstance(source, ImageArchive) else os.fspath(source)
        with self._lock:
            image = self._images.get(key)
            if image is None:
                if is_archive:
                    images = self._client.images.import_archive(key)
                    if not images:
                        raise NotFoundError(f"archive {key} holds no image")
                    image = images[0]
                else:
                    image = self._client.pull(key, **pull_options)
                self._images[key] = image
            return image


@pytest.fixture(scope="session")
def containerd_image(containerd_session: Client) -> ImageFactory:
    """A factory ``containerd_image(archive_or_ref) -> Image``: imports or pulls once per session."""
    return ImageFactory(containerd_session)


class ContainerFactory:
    """The ``containerd_container`` fixture: containers deleted after the test."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._made: list[Container] = []

    def __call__(self, image: str | Image = "", args: Command | None = None, **options: Any) -> Container:
        """Create a container in the session namespace (``Client.create_container``'s options).

        ``name`` picks the id (a fresh ``c-...`` one by default).
        """
        name = options.pop("name", None) or f"c-{uuid.uuid4().hex[:12]}"
        container = self._client.create_container(name, image=image, args=args, **options)
        self._made.append(container)
        return container

    def close(self) -> None:
        """Delete every container made (task, snapshot, network too), in the background; never raises."""
        while self._made:
            self._made.pop().cleanup(wait=not self._client.background_teardown)


@pytest.fixture
def containerd_container(containerd_session: Client) -> Iterator[ContainerFactory]:
    """A factory ``containerd_container(image, args, **create_options) -> Container``, cleaned up after."""
    factory = ContainerFactory(containerd_session)
    try:
        yield factory
    finally:
        factory.close()


class ServiceFactory:
    """The ``containerd_service`` fixture: ready services, stopped and deleted after the test."""

    def __init__(self, client: Client, warm_cache: WarmCache | None = None) -> None:
        self._client = client
        self._stack = contextlib.ExitStack()
        self._warm_cache = warm_cache

    def __call__(self, image: str | Image, args: Command | None = None, **options: Any) -> Service:
        """Start a service and wait until it is ready (see :func:`start_service` for the options).

        ``warm=True`` checkpoints the first ready copy once per session and
        restores a fresh copy of it for each later call with the same arguments.

        Raises:
            WaitTimeoutError: It was not ready in time, or exited first.
        """
        if options.get("warm") and "warm_cache" not in options:
            options["warm_cache"] = self._warm_cache
        return self._stack.enter_context(start_service(self._client, image, args, **options))

    def close(self) -> None:
        """Stop (gracefully) and delete every service, last first.

        Raises:
            ContainerdError: A stop or delete failed (after all were tried).
        """
        self._stack.close()


@pytest.fixture(scope="session")
def containerd_warm_cache(containerd_session: Client) -> Iterator[WarmCache]:
    """The session's checkpoints of ready services (``containerd_service(..., warm=True)``)."""
    cache = WarmCache()
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def containerd_service(
    containerd_session: Client, containerd_warm_cache: WarmCache
) -> Iterator[ServiceFactory]:
    """A factory ``containerd_service(image, args, ports=[80], wait=wait.http(80)) -> Service``.

    Each service is running and ready when returned; after the test it gets
    its stop signal, SIGKILL after ``stop_timeout``, and is deleted with its
    network, on the session client's background teardown pool (the next test
    does not wait for it); a failing teardown is reported at the end of the
    session. ``warm=True`` restores it from a checkpoint taken once per session.
    """
    factory = ServiceFactory(containerd_session, containerd_warm_cache)
    try:
        yield factory
    finally:
        factory.close()
