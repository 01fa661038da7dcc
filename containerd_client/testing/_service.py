"""A service for tests: a container started, waited for, reachable, then thrown away.

:func:`start_service` is the context manager behind the pytest plugin's
``containerd_service`` fixture; use it directly for services of another scope
(one per session, per module)::

    with start_service(client, image, ["httpd", "-f", "-p", "80"], ports=[80], wait=wait.http(80)) as web:
        urllib.request.urlopen(web.url(80))

``warm=True`` starts the service cold once, checkpoints it when ready (CRIU,
see :mod:`containerd_client.checkpoint`) and restores a fresh copy for every
later call with the same arguments: a service that needs seconds to become
ready (a database, a JVM) is ready in the time of a restore. Each copy is a
new container with its own network namespace, IP and host ports; a server
listening on the wildcard address answers there as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from containerd_client import spec as spec_opts
from containerd_client.errors import ContainerdError, InvalidArgumentError

if TYPE_CHECKING:
    from containerd_client.checkpoint import Checkpoint
    from containerd_client.client import Client
    from containerd_client.containers import Container
    from containerd_client.images import Image
    from containerd_client.spec import Command, SpecOpt
    from containerd_client.tasks import ExitStatus, Task
    from containerd_client.wait import WaitStrategy

logger = logging.getLogger(__name__)

#: How long a service's task gets to stop on its stop signal before SIGKILL. Short,
#: not Docker's 10 s: a test service's data is thrown away, and a server running as
#: PID 1 without a SIGTERM handler (busybox httpd) would make every teardown wait it out.
SERVICE_STOP_TIMEOUT = 1.0
#: How long a service's wait strategies get by default.
SERVICE_WAIT_TIMEOUT = 60.0


class Service:
    """A running container with its published ports; made by :func:`start_service`.

    Attributes:
        container: The container.
        task: Its running task (started with ``logs=True``).
        host: The address its published ports listen on (127.0.0.1).
    """

    def __init__(self, container: Container, task: Task, host: str = "127.0.0.1") -> None:
        self.container = container
        self.task = task
        self.host = host

    def __repr__(self) -> str:
        ports = [(p.container_port, p.host_port) for p in self.container.ports]
        return f"<Service {self.container.id} ports={ports}>"

    @property
    def id(self) -> str:
        """The container's id."""
        return self.container.id

    def host_port(self, port: int, protocol: str = "tcp") -> int:
        """The host port a container port is published on.

        Raises:
            NotFoundError: The port is not published.
        """
        return self.container.host_port(port, protocol)

    def address(self, port: int) -> tuple[str, int]:
        """``(host, host_port)`` to dial a published TCP port."""
        return (self.host, self.host_port(port))

    def url(self, port: int, path: str = "/", *, scheme: str = "http") -> str:
        """``http://127.0.0.1:<host port><path>`` for a published port.

        Raises:
            NotFoundError: The port is not published.
            InvalidArgumentError: ``path`` does not start with ``/``.
        """
        if not path.startswith("/"):
            raise InvalidArgumentError(f"Service.url(): path must start with '/', not {path!r}")
        return f"{scheme}://{self.host}:{self.host_port(port)}{path}"

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None) -> bytes:
        """What the service wrote so far (see :meth:`Task.logs`)."""
        return self.task.logs(stdout=stdout, stderr=stderr, tail=tail)


class WarmCache:
    """Checkpoints of ready services, one per set of arguments, for ``start_service(warm=True)``.

    The pytest plugin keeps one per session; :func:`start_service` uses a
    default one per client when given none. :meth:`close` deletes the
    checkpoints (their leases; the blobs are then collected).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checkpoints: dict[tuple[Any, ...], Checkpoint] = {}
        self._making: dict[tuple[Any, ...], threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._checkpoints)

    def get(self, key: tuple[Any, ...], make: Callable[[], Checkpoint]) -> tuple[Checkpoint, bool]:
        """The checkpoint for ``key``, made by ``make()`` on first use; and whether it was made now."""
        with self._lock:
            cp = self._checkpoints.get(key)
            if cp is not None:
                return cp, False
            making = self._making.setdefault(key, threading.Lock())
        with making:  # one maker per key; others wait for its checkpoint
            with self._lock:
                cp = self._checkpoints.get(key)
            if cp is not None:
                return cp, False
            cp = make()
            with self._lock:
                self._checkpoints[key] = cp
            return cp, True

    def close(self) -> None:
        """Delete every checkpoint kept; failures are logged. Idempotent."""
        with self._lock:
            kept, self._checkpoints = list(self._checkpoints.values()), {}
        for cp in kept:
            try:
                cp.delete()
            except ContainerdError:
                logger.warning("could not delete warm checkpoint of %s", cp.container_id, exc_info=True)


_default_caches: weakref.WeakKeyDictionary[Client, WarmCache] = weakref.WeakKeyDictionary()
_default_caches_lock = threading.Lock()


def _default_cache(client: Client) -> WarmCache:
    with _default_caches_lock:
        cache = _default_caches.get(client)
        if cache is None:
            cache = _default_caches[client] = WarmCache()
        return cache


def _ports(ports: Iterable[int | str] | Mapping[int | str, int | None] | None) -> dict[int | str, int | None]:
    if ports is None:
        return {}
    if isinstance(ports, Mapping):
        return dict(ports)
    if isinstance(ports, (str, bytes, int)):
        raise InvalidArgumentError(f"ports: a list of container ports or a mapping, not {ports!r}")
    return dict.fromkeys(ports)


@contextlib.contextmanager
def start_service(
    client: Client,
    image: str | Image,
    args: Command | None = None,
    *,
    ports: Iterable[int | str] | Mapping[int | str, int | None] | None = None,
    wait: WaitStrategy | Sequence[WaitStrategy] | None = None,
    env: Mapping[str, str] | None = None,
    mounts: Mapping[str, str] | None = None,
    spec: Iterable[SpecOpt] = (),
    network: str | None = None,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = SERVICE_WAIT_TIMEOUT,
    stop_timeout: float = SERVICE_STOP_TIMEOUT,
    warm: bool = False,
    warm_cache: WarmCache | None = None,
) -> Iterator[Service]:
    """Start a container, wait until it is ready, yield it, then stop and delete it.

    Args:
        client: The client (and namespace) to work in; ``image`` must be there.
        image: An image name in that namespace, or an :class:`Image`.
        args: The command; the image's entrypoint and command when None.
        ports: Container ports to publish on 127.0.0.1 (``[80]`` picks free
            host ports, ``{80: 8080}`` asks for one); they imply
            ``network="bridge"``.
        wait: A strategy, or several (all must be met). ``wait.port(80)`` and
            ``wait.http(80)`` name *container* ports: they dial the published ones.
        env: Environment variables added to the image's.
        mounts: Bind mounts, ``{host_path: container_path}`` (read-write).
        spec: More spec options (``spec.with_bind_mount(..., readonly=True)``...).
        network: ``"bridge"``, ``"host"``, ``"none"`` or a CNI network name;
            ``"bridge"`` when ports are given, else the private ``lo``-only one.
        name: The container id (a fresh ``svc-...`` one by default).
        labels: Container labels.
        timeout: Seconds the wait strategies get.
        stop_timeout: Seconds between the stop signal and SIGKILL at the end
            (0 kills at once).
        warm: Restore the service from a checkpoint taken when a first copy
            with the same arguments was ready (that first call starts cold,
            checkpoints with CRIU and throws the template away). The wait
            strategies are checked again on every copy.
        warm_cache: Where the checkpoints are kept (the plugin passes its
            session's); by default one per client, kept until the client goes.

    Yields:
        The ready :class:`Service`.

    Raises:
        WaitTimeoutError: Not ready in time, or the task exited first (the
            container is deleted before this is raised; the error holds the
            last log lines and the exit code).
        InvalidArgumentError: Bad ports, mounts, wait strategies or arguments, before anything is made.
        CriuUnavailableError: ``warm`` and the daemon's criu is missing or too old.
        ContainerdError: Creating or starting failed (nothing is left behind),
            or stopping/deleting failed at the end (raised after the rest of
            the teardown was done).
    """
    published = _ports(ports)
    if network is None and published:
        network = "bridge"
    from containerd_client.wait import WaitStrategy

    given: object = wait
    strategies: list[WaitStrategy]
    if given is None:
        strategies = []
    elif isinstance(given, WaitStrategy):
        strategies = [given]
    elif isinstance(given, (list, tuple)) and given and all(isinstance(s, WaitStrategy) for s in given):
        strategies = list(given)
    else:
        raise InvalidArgumentError(
            f"wait: a strategy from containerd_client.wait or a list of them, not {wait!r}"
        )
    opts: list[SpecOpt] = list(spec)
    if env:
        opts.append(spec_opts.with_env(dict(env)))
    for source, destination in (mounts or {}).items():
        opts.append(spec_opts.with_bind_mount(source, destination))
    container_id = name or f"svc-{uuid.uuid4().hex[:12]}"

    def cold(cid: str, extra: Sequence[SpecOpt] = ()) -> tuple[Container, Task]:
        container = client.create_container(
            cid,
            image=image,
            args=args,
            spec=[*opts, *extra] or None,
            network=network,
            ports=published or None,
            labels=labels,
        )
        try:
            task = container.new_task(logs=True)
            task.start()
            if strategies:
                task.wait_for(*(s.published(container.host_port) for s in strategies), timeout=timeout)
        except BaseException:
            container.cleanup()
            raise
        return container, task

    if warm:
        cache = warm_cache if warm_cache is not None else _default_cache(client)
        image_name = image if isinstance(image, str) else image.name
        key = (
            client.namespace_name,
            image_name,
            repr(args),
            tuple(sorted(map(str, published))),
            tuple(sorted((env or {}).items())),
            tuple(sorted((mounts or {}).items())),
            tuple(map(id, spec)),
            network,
        )

        def make() -> Checkpoint:
            from containerd_client.checkpoint import CRIU_CONFIG_ANNOTATION, fast_criu_config

            # criu without its network lock, at the dump and so at every restore.
            fast = spec_opts.with_annotations({CRIU_CONFIG_ANNOTATION: fast_criu_config(client._state_dir)})
            template, task = cold(f"{container_id}-template", [fast])
            try:
                return task.checkpoint(exit=True, rw=bool(template.info().snapshot_key))
            finally:
                template.cleanup()

        cp, _made = cache.get(key, make)
        container = client.restore(
            container_id, cp, network=network, ports=published or None, labels=labels, logs=True
        )
        try:
            task = container.task()
            if strategies:
                task.wait_for(*(s.published(container.host_port) for s in strategies), timeout=timeout)
        except BaseException:
            container.cleanup()
            raise
    else:
        container, task = cold(container_id)
    service = Service(container, task)
    try:
        yield service
    finally:
        stop_service(service, timeout=stop_timeout)


def stop_service(
    service: Service, *, timeout: float = SERVICE_STOP_TIMEOUT, wait: bool | None = None
) -> ExitStatus | None:
    """Stop a service gracefully (stop signal, SIGKILL after ``timeout``), then delete it.

    A task whose init process is its pid namespace's PID 1 and has no handler
    for the stop signal is killed at once: the kernel drops that signal, so
    waiting could only end in SIGKILL.

    The deletion runs even when stopping failed; the first error is raised
    after it.

    Args:
        service: The service.
        timeout: Seconds between the stop signal and SIGKILL.
        wait: False hands the whole teardown (stop, delete, network) to the
            client's background teardown pool and returns at once; its
            failure is then reported by :meth:`Client.join_teardowns` and
            :meth:`Client.close`. None (the default) follows the client's
            ``background_teardown``.

    Returns:
        The task's exit status; None when it could not be stopped, or when
        the teardown went to the background.

    Raises:
        ContainerdError: Stopping or deleting failed (waited for only).
    """
    client = service.container.client
    background = client.background_teardown if wait is None else not wait
    if not background:
        return _stop_and_delete(service, timeout)

    def job() -> None:
        _stop_and_delete(service, timeout)

    if client._submit_teardown(service.id, f"stop and delete service {service.id}", job):
        return None
    return _stop_and_delete(service, timeout)  # the client is closing: do it here


def _stop_and_delete(service: Service, timeout: float) -> ExitStatus | None:
    status: ExitStatus | None = None
    error: ContainerdError | None = None
    try:
        status = service.task.stop(timeout)
    except ContainerdError as exc:
        logger.warning("stopping service %s failed", service.id, exc_info=True)
        error = exc
    try:
        service.container.delete(force=True)
    except ContainerdError as exc:
        logger.warning("deleting service %s failed", service.id, exc_info=True)
        error = error or exc
    finally:
        service.container.cleanup()
    if error is not None:
        raise error
    return status
