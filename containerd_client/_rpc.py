"""The rpc layer: one channel, one thin wrapper per call, one error mapping.

Everything above this module speaks in :mod:`containerd_client.errors`;
``grpc.RpcError`` is caught here and nowhere else. A :class:`Caller` binds a
namespace (and, inside ``Client.lease()``, a lease) to calls, applies the
default deadline, and retries idempotent calls through the SDK's
:class:`~containerd_client._retry.RetryPolicy`.
"""

from __future__ import annotations

import collections
import contextvars
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

import grpc

from containerd_client import _socket, _ssh
from containerd_client._retry import RetryPolicy
from containerd_client.errors import (
    CancelledError,
    ClosedError,
    ContainerdError,
    RPCError,
    StatusCode,
    UnavailableError,
    error_for_status,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from grpc_health.v1 import health_pb2_grpc

    from containerd_client._pb.api import BidiStream, Method, ServerStream, Unary
    from containerd_client._pb.containerd.services.containers.v1 import containers_pb2_grpc
    from containerd_client._pb.containerd.services.content.v1 import content_pb2_grpc
    from containerd_client._pb.containerd.services.diff.v1 import diff_pb2_grpc
    from containerd_client._pb.containerd.services.events.v1 import events_pb2_grpc
    from containerd_client._pb.containerd.services.images.v1 import images_pb2_grpc
    from containerd_client._pb.containerd.services.introspection.v1 import introspection_pb2_grpc
    from containerd_client._pb.containerd.services.leases.v1 import leases_pb2_grpc
    from containerd_client._pb.containerd.services.namespaces.v1 import namespace_pb2_grpc
    from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2_grpc
    from containerd_client._pb.containerd.services.streaming.v1 import streaming_pb2_grpc
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2_grpc
    from containerd_client._pb.containerd.services.transfer.v1 import transfer_pb2_grpc
    from containerd_client._pb.containerd.services.version.v1 import version_pb2_grpc

__all__ = [
    "DEFAULT_TIMEOUT",
    "LEASE_HEADER",
    "MAX_MESSAGE_BYTES",
    "NAMESPACE_HEADER",
    "Caller",
    "Connection",
    "DeferredCleanup",
    "Pending",
    "Services",
    "map_rpc_error",
]

logger = logging.getLogger(__name__)

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
#: containerd's Go client raises both limits to 16 MiB; grpcio's 4 MiB receive
#: default is too small for Containers.List on a busy host.
MAX_MESSAGE_BYTES = 16 << 20
#: Deadline of a unary call when the caller gives none. Long enough for a
#: loaded daemon creating a task, short enough that a wedged daemon surfaces.
DEFAULT_TIMEOUT = 60.0
#: Cleanup jobs kept for a daemon that is away; past this the oldest is
#: dropped (its lease still expires by itself).
MAX_DEFERRED = 256

Req = TypeVar("Req", bound="Message")
Resp = TypeVar("Resp", bound="Message")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# The lease attached to calls made in the current context: (connection id, lease id).
_active_lease: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "containerd_client_lease", default=None
)


def _accepts_registered_method() -> bool:
    import inspect

    try:
        return "_registered_method" in inspect.signature(grpc.Channel.unary_unary).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C implementation without a signature
        return False


#: grpcio 1.62+ lets a channel register a method path once (generated stubs do).
_REGISTERED_METHODS = _accepts_registered_method()


def map_rpc_error(exc: grpc.RpcError) -> RPCError:
    """Translate a gRPC error into the SDK's exception (not raised, not chained).

    This is the only place that interprets gRPC errors.
    """
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = details_fn() if callable(details_fn) else str(exc)
    value = code.value[0] if isinstance(code, grpc.StatusCode) else StatusCode.UNKNOWN
    return error_for_status(value, details or "")


_SERVICES = {
    "containers": ("containerd.services.containers.v1.containers_pb2_grpc", "ContainersStub"),
    "content": ("containerd.services.content.v1.content_pb2_grpc", "ContentStub"),
    "diff": ("containerd.services.diff.v1.diff_pb2_grpc", "DiffStub"),
    "events": ("containerd.services.events.v1.events_pb2_grpc", "EventsStub"),
    "images": ("containerd.services.images.v1.images_pb2_grpc", "ImagesStub"),
    "introspection": ("containerd.services.introspection.v1.introspection_pb2_grpc", "IntrospectionStub"),
    "leases": ("containerd.services.leases.v1.leases_pb2_grpc", "LeasesStub"),
    "namespaces": ("containerd.services.namespaces.v1.namespace_pb2_grpc", "NamespacesStub"),
    "snapshots": ("containerd.services.snapshots.v1.snapshots_pb2_grpc", "SnapshotsStub"),
    "streaming": ("containerd.services.streaming.v1.streaming_pb2_grpc", "StreamingStub"),
    "tasks": ("containerd.services.tasks.v1.tasks_pb2_grpc", "TasksStub"),
    "transfer": ("containerd.services.transfer.v1.transfer_pb2_grpc", "TransferStub"),
    "version": ("containerd.services.version.v1.version_pb2_grpc", "VersionStub"),
    "health": ("grpc_health.v1.health_pb2_grpc", "HealthStub"),
}


class Connection:
    """A gRPC channel to one containerd socket, and its stubs.

    Thread-safe: grpc channels and stubs may be shared between threads.
    """

    def __init__(
        self,
        address: str,
        *,
        options: list[tuple[str, Any]] | None = None,
        ssh_options: Sequence[str] = (),
    ) -> None:
        self.address = address
        #: The ssh tunnel of an ``ssh://`` address (closed with the connection).
        self.tunnel: _ssh.Tunnel | None = None
        if _ssh.is_ssh(address):
            self.tunnel = _ssh.Tunnel.open(address, ssh_options)
            target = f"unix://{self.tunnel.local_path}"
        else:
            target = address if "://" in address else f"unix://{address}"
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # A local socket: no proxies, and keep the channel's own retry logic
            # out of the way of ours.
            ("grpc.enable_http_proxy", 0),
            ("grpc.enable_retries", 0),
            # grpc's reconnect backoff (1 s growing to 120 s) is made for
            # remote servers; a local daemon that restarts in well under a
            # second should be found again at once, for retried calls to see it.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        opts.extend(options or ())
        try:
            self.channel = grpc.insecure_channel(target, options=opts)
        except BaseException:
            if self.tunnel is not None:
                self.tunnel.close()
            raise
        self._stubs: dict[str, Any] = {}
        # gRPC multi-callables, one per method descriptor: what generated stubs
        # hold, made on first use.
        self._callables: dict[Method[Any, Any], Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: Cleanup that failed because the daemon was away, retried once it answers.
        self.deferred = DeferredCleanup()
        #: Whether the daemon ever answered a call on this channel: only then is
        #: UNAVAILABLE a restart worth riding out (see RetryPolicy.reconnecting).
        self.answered = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def callable(self, method: Method[Any, Any]) -> Any:
        """The gRPC multi-callable for ``method``, made once per connection.

        Raises:
            ClosedError: The connection was closed.
        """
        fn = self._callables.get(method)
        if fn is None:
            if self._closed:
                raise ClosedError("the client is closed")
            factory = getattr(self.channel, method.kind)
            request, response = method.request, method.response
            kwargs: dict[str, Any] = {
                "request_serializer": request.SerializeToString,
                "response_deserializer": response.FromString,
            }
            if _REGISTERED_METHODS:
                # What generated stubs pass: the path is registered with the
                # channel once instead of being looked up on every call.
                kwargs["_registered_method"] = True
            with self._lock:
                fn = self._callables.get(method)
                if fn is None:
                    fn = self._callables[method] = factory(method.path, **kwargs)
        return fn

    def stub(self, name: str) -> Any:
        """The generated stub for a service (see :class:`Services`), made once."""
        stub = self._stubs.get(name)
        if stub is None:
            if self._closed:
                raise ClosedError("the client is closed")
            module_name, cls_name = _SERVICES[name]
            package = "" if module_name.startswith("grpc_health.") else "containerd_client._pb."
            module = importlib.import_module(package + module_name)
            with self._lock:
                stub = self._stubs.get(name)
                if stub is None:
                    stub = self._stubs[name] = getattr(module, cls_name)(self.channel)
        return stub

    def close(self) -> None:
        """Close the channel; in-flight calls fail with CANCELLED. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stubs.clear()
            self._callables.clear()
        try:
            self.channel.close()
        finally:
            if self.tunnel is not None:
                self.tunnel.close()


class DeferredCleanup:
    """Cleanup jobs that failed with UNAVAILABLE, run again once the daemon answers.

    A job is a callable that undoes what a failed operation left (delete its
    lease, remove its snapshot); it must be safe to run late and more than
    once (NOT_FOUND counts as done). :meth:`drain` runs after the next
    successful call on the connection, from ``Client.is_serving`` and at
    ``close()``: a job that fails with UNAVAILABLE again stays queued, one
    that fails otherwise is logged and dropped. No thread of its own: the
    drain runs in the thread whose call just succeeded, one drain at a time.

    Its truth value says whether jobs wait (the only cost on a call's
    success path).
    """

    def __init__(self, limit: int = MAX_DEFERRED) -> None:
        self._jobs: collections.deque[tuple[str, Callable[[], None]]] = collections.deque()
        self._limit = limit
        self._lock = threading.Lock()
        self._draining = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def describe(self) -> list[str]:
        """What waits, in order (for logs and tests)."""
        with self._lock:
            return [what for what, _ in self._jobs]

    def add(self, what: str, job: Callable[[], None]) -> None:
        """Queue ``job`` (described by ``what``); the oldest is dropped past the limit."""
        with self._lock:
            if len(self._jobs) >= self._limit:
                dropped, _ = self._jobs.popleft()
                logger.warning("too many deferred cleanups; dropping %s", dropped)
            self._jobs.append((what, job))
        logger.info("containerd unavailable; will retry cleanup later: %s", what)

    def drain(self) -> int:
        """Run the queued jobs once each; return how many are still queued.

        A drain already running (in any thread, or further up this one's
        stack) makes this a no-op.
        """
        if not self._draining.acquire(blocking=False):
            return len(self._jobs)
        try:
            # Run outside any lease the caller has active: cleanup belongs to no operation.
            return contextvars.Context().run(self._drain)
        finally:
            self._draining.release()

    def _drain(self) -> int:
        with self._lock:
            pending = len(self._jobs)
        for _ in range(pending):
            with self._lock:
                if not self._jobs:
                    break
                what, job = self._jobs.popleft()
            try:
                job()
            except UnavailableError:
                with self._lock:
                    self._jobs.appendleft((what, job))
                break  # still away: keep the rest for the next drain
            except ClosedError:
                logger.warning("client closed before deferred cleanup ran: %s", what)
            except ContainerdError:
                logger.warning("deferred cleanup failed: %s", what, exc_info=True)
            else:
                logger.debug("deferred cleanup done: %s", what)
        return len(self._jobs)


class Services:
    """The raw generated stubs: the escape hatch for what the SDK does not wrap.

    Calls made through these stubs take gRPC metadata directly; pass
    ``metadata=client.metadata`` to send the client's namespace (and lease).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def containers(self) -> containers_pb2_grpc.ContainersStub:
        """containerd.services.containers.v1.Containers"""
        return cast("containers_pb2_grpc.ContainersStub", self._connection.stub("containers"))

    @property
    def content(self) -> content_pb2_grpc.ContentStub:
        """containerd.services.content.v1.Content"""
        return cast("content_pb2_grpc.ContentStub", self._connection.stub("content"))

    @property
    def diff(self) -> diff_pb2_grpc.DiffStub:
        """containerd.services.diff.v1.Diff"""
        return cast("diff_pb2_grpc.DiffStub", self._connection.stub("diff"))

    @property
    def events(self) -> events_pb2_grpc.EventsStub:
        """containerd.services.events.v1.Events"""
        return cast("events_pb2_grpc.EventsStub", self._connection.stub("events"))

    @property
    def images(self) -> images_pb2_grpc.ImagesStub:
        """containerd.services.images.v1.Images"""
        return cast("images_pb2_grpc.ImagesStub", self._connection.stub("images"))

    @property
    def introspection(self) -> introspection_pb2_grpc.IntrospectionStub:
        """containerd.services.introspection.v1.Introspection"""
        return cast("introspection_pb2_grpc.IntrospectionStub", self._connection.stub("introspection"))

    @property
    def leases(self) -> leases_pb2_grpc.LeasesStub:
        """containerd.services.leases.v1.Leases"""
        return cast("leases_pb2_grpc.LeasesStub", self._connection.stub("leases"))

    @property
    def namespaces(self) -> namespace_pb2_grpc.NamespacesStub:
        """containerd.services.namespaces.v1.Namespaces"""
        return cast("namespace_pb2_grpc.NamespacesStub", self._connection.stub("namespaces"))

    @property
    def snapshots(self) -> snapshots_pb2_grpc.SnapshotsStub:
        """containerd.services.snapshots.v1.Snapshots"""
        return cast("snapshots_pb2_grpc.SnapshotsStub", self._connection.stub("snapshots"))

    @property
    def streaming(self) -> streaming_pb2_grpc.StreamingStub:
        """containerd.services.streaming.v1.Streaming (containerd 1.7+)"""
        return cast("streaming_pb2_grpc.StreamingStub", self._connection.stub("streaming"))

    @property
    def tasks(self) -> tasks_pb2_grpc.TasksStub:
        """containerd.services.tasks.v1.Tasks"""
        return cast("tasks_pb2_grpc.TasksStub", self._connection.stub("tasks"))

    @property
    def transfer(self) -> transfer_pb2_grpc.TransferStub:
        """containerd.services.transfer.v1.Transfer (containerd 1.7+)"""
        return cast("transfer_pb2_grpc.TransferStub", self._connection.stub("transfer"))

    @property
    def version(self) -> version_pb2_grpc.VersionStub:
        """containerd.services.version.v1.Version"""
        return cast("version_pb2_grpc.VersionStub", self._connection.stub("version"))

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        """grpc.health.v1.Health"""
        return cast("health_pb2_grpc.HealthStub", self._connection.stub("health"))


class Caller:
    """Makes calls for one namespace on a shared :class:`Connection`.

    Args:
        connection: The shared channel.
        namespace: Sent as the ``containerd-namespace`` header on every call.
        timeout: Default deadline of unary calls, in seconds.
        retry: Policy for calls marked idempotent.
    """

    __slots__ = ("_metadata", "connection", "namespace", "retry", "timeout")

    def __init__(self, connection: Connection, namespace: str, timeout: float, retry: RetryPolicy) -> None:
        self.connection = connection
        self.namespace = namespace
        self.timeout = timeout
        self.retry = retry
        self._metadata: tuple[tuple[str, str], ...] = ((NAMESPACE_HEADER, namespace),)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata sent with calls in the current context."""
        lease = _active_lease.get()
        if lease is not None and lease[0] == id(self.connection):
            return (*self._metadata, (LEASE_HEADER, lease[1]))
        return self._metadata

    def call(
        self,
        method: Unary[Req, Resp],
        request: Req,
        *,
        timeout: float | None = -1.0,
        idempotent: bool = False,
    ) -> Resp:
        """Make a unary call and return the response message.

        Args:
            method: The RPC (``api.Tasks.Create``): mypy checks ``request``
                against it and types the response.
            request: The request message.
            timeout: Deadline in seconds; ``None`` waits forever; the default
                uses the caller's default deadline.
            idempotent: Whether the call may be retried on UNAVAILABLE: it
                then rides out a daemon restart, retrying with backoff until
                its deadline (see :class:`~containerd_client._retry.RetryPolicy`).
                Other calls fail at once.

        After a successful call, cleanup that was deferred while the daemon
        was away runs first (see :class:`DeferredCleanup`).

        Raises:
            RPCError: The daemon answered with a non-OK status (the subclass
                matches the code); over ``ssh://``, :class:`RemoteSocketError`
                when the remote socket cannot be opened.
            SSHConnectError: The ssh tunnel died and could not be started again.
            ClosedError: The client was closed.
        """
        fn = self.connection.callable(method)
        timeout = self.timeout if timeout is not None and timeout < 0 else timeout
        metadata = self.metadata
        started = time.monotonic()
        resp: Resp
        try:
            resp = fn(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            err = self._error(exc)
            if not idempotent:
                raise err from exc
        else:
            if not self.connection.answered:
                self.connection.answered = True
            if self.connection.deferred:
                self.connection.deferred.drain()
            return resp
        # The first attempt's time counts: retries end at the call's deadline.
        deadline = None if timeout is None else started + timeout

        def again(left: float | None) -> Resp:
            try:
                answer: Resp = fn(request, timeout=left, metadata=metadata)
            except grpc.RpcError as exc2:
                raise self._error(exc2) from exc2
            return answer

        resp = self.retry.call(again, err, deadline, reconnecting=self.connection.answered)
        self.connection.answered = True
        if self.connection.deferred:
            self.connection.deferred.drain()
        return resp

    def _error(self, exc: grpc.RpcError) -> RPCError:
        if self.connection.closed:
            closed = ClosedError("the client is closed")
            closed.__cause__ = exc
            raise closed
        err = map_rpc_error(exc)
        err.__cause__ = exc
        tunnel = self.connection.tunnel
        if tunnel is not None:  # restarts a dead ssh; says when the remote socket is the trouble
            return tunnel.explain(err, answered=self.connection.answered)
        if not self.connection.answered:  # no daemon there, or not ours to open: say what to do
            err = _socket.explain_unavailable(self.connection.address, err)
        return err

    def future(
        self,
        method: Unary[Req, Resp],
        request: Req,
        on_done: Callable[[Pending, Resp | None, ContainerdError | None], None],
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> Pending:
        """Start a unary call in the background (a gRPC future; no thread of ours).

        ``on_done(pending, response, error)`` runs once, on a gRPC thread (or
        at once on this thread when the call is already over), with either
        the response or the mapped error: :class:`ClosedError` once the
        client is closed, :class:`CancelledError` after :meth:`Pending.cancel`
        (``pending.cancelled`` then says it was ours), else the
        :class:`RPCError` for the status.

        Args:
            method: The RPC (``api.Tasks.Wait``).
            request: The request message.
            on_done: Called with the outcome; keep it short and non-blocking.
            timeout: Deadline in seconds; ``None`` (the default) waits forever.
            wait_for_ready: Queue the call until the channel connects instead
                of failing at once while the daemon is unreachable.

        Raises:
            ClosedError: The client was closed.
        """
        fn = self.connection.callable(method).future
        try:
            call = fn(request, timeout=timeout, metadata=self.metadata, wait_for_ready=wait_for_ready)
        except ValueError as exc:  # grpc's "Cannot invoke RPC on closed channel!"
            raise ClosedError("the client is closed") from exc
        pending = Pending(call)
        connection = self.connection

        def done(fut: grpc.Future[Resp]) -> None:
            resp: Resp | None = None
            err: ContainerdError | None = None
            try:
                resp = fut.result()
            except grpc.FutureCancelledError:
                err = ClosedError("the client is closed") if connection.closed else None
                if err is None:
                    err = CancelledError("the call was cancelled", StatusCode.CANCELLED)
            except grpc.RpcError as exc:
                err = ClosedError("the client is closed") if connection.closed else map_rpc_error(exc)
                err.__cause__ = exc
            on_done(pending, resp, err)

        call.add_done_callback(done)
        return pending

    def stream(
        self, method: ServerStream[Req, Resp], request: Req, *, timeout: float | None = None
    ) -> Stream[Resp]:
        """Start a server-streaming call; iterate the result, cancel with ``close()``."""
        fn = self.connection.callable(method)
        try:
            call = fn(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return Stream(call, self)

    def bidi(
        self, method: BidiStream[Req, Resp], requests: Iterator[Req], *, timeout: float | None = None
    ) -> Stream[Resp]:
        """Start a bidirectional stream fed by ``requests``; iterate the result for replies."""
        fn = self.connection.callable(method)
        try:
            call = fn(requests, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        return Stream(call, self)


class _Call(Protocol[T_co]):
    """A running streaming call, as grpc returns it."""

    def __next__(self) -> T_co: ...

    def cancel(self) -> bool: ...


class Pending:
    """A unary call running in the background (see :meth:`Caller.future`).

    Attributes:
        started: ``time.monotonic()`` when the call was made.
        cancelled: Whether :meth:`cancel` was called.
    """

    __slots__ = ("_call", "cancelled", "started")

    def __init__(self, call: Any) -> None:
        self._call = call
        self.started = time.monotonic()
        self.cancelled = False

    def done(self) -> bool:
        """Whether the call is over (answered, failed or cancelled)."""
        return bool(self._call.done())

    def cancel(self) -> None:
        """Cancel the call if it still runs; its callback then gets CancelledError."""
        self.cancelled = True
        self._call.cancel()


class Stream(Generic[T]):
    """A server-streaming call whose errors are mapped to the SDK's errors."""

    def __init__(self, call: _Call[T], caller: Caller) -> None:
        self._call = call
        self._caller = caller

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            raise self._caller._error(exc) from exc

    def cancel(self) -> None:
        """Cancel the call; the iterator then ends with CancelledError."""
        self._call.cancel()

    close = cancel


def set_lease(connection: Connection, lease_id: str | None) -> contextvars.Token[tuple[int, str] | None]:
    """Attach ``lease_id`` to calls on ``connection`` in this context until reset."""
    return _active_lease.set((id(connection), lease_id) if lease_id else None)


def reset_lease(token: contextvars.Token[tuple[int, str] | None]) -> None:
    """Undo :func:`set_lease`."""
    _active_lease.reset(token)
