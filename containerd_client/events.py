"""containerd events: a plain subscription, and the client's event dispatcher.

:meth:`Client.subscribe` gives an iterator of typed :class:`Event` values
for one gRPC subscription; use it in a ``with`` block or call ``close()``
from any thread.

The :class:`EventDispatcher` (``client.events``) is the machinery behind
``task.on_exit``, ``container.on_event`` and handlers: one reader thread on one
subscription, events handed to a per-key serial executor keyed by
``(namespace, container id)`` so that each container's events are handled in
order while containers run in parallel on a bounded pool. When the stream
breaks (containerd restarted), it waits for the daemon, subscribes again and
reconciles: every task it knows of is asked for its state, and exits it
missed are synthesised into the same queues. Exits are de-duplicated per task
run (container, process and pid), so a handler sees each exit once, also
with containerd's duplicate 137 exits after a shim disconnect.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import enum
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from google.protobuf.message import Message

from containerd_client import _typeurl
from containerd_client._convert import from_timestamp
from containerd_client._pb import api
from containerd_client._pb.containerd.events.container_pb2 import (
    ContainerCreate,
    ContainerDelete,
    ContainerUpdate,
)
from containerd_client._pb.containerd.events.image_pb2 import ImageCreate, ImageDelete, ImageUpdate
from containerd_client._pb.containerd.events.task_pb2 import (
    TaskCheckpointed,
    TaskCreate,
    TaskDelete,
    TaskExecAdded,
    TaskExecStarted,
    TaskExit,
    TaskIO,
    TaskOOM,
    TaskPaused,
    TaskResumed,
    TaskStart,
)
from containerd_client._serial import ExecutorStats, KeyedSerialExecutor, PendingCall
from containerd_client.errors import (
    CancelledError,
    ClosedError,
    ContainerdError,
    NotFoundError,
    RPCError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from containerd_client._rpc import Stream
    from containerd_client.client import Client

__all__ = [
    "Backend",
    "ContainerCreate",
    "ContainerDelete",
    "ContainerUpdate",
    "Event",
    "EventDispatcher",
    "EventHandler",
    "EventKind",
    "ExecutorStats",
    "ImageCreate",
    "ImageDelete",
    "ImageUpdate",
    "PendingCall",
    "Subscription",
    "TaskCheckpointed",
    "TaskCreate",
    "TaskDelete",
    "TaskExecAdded",
    "TaskExecStarted",
    "TaskExit",
    "TaskIO",
    "TaskOOM",
    "TaskPaused",
    "TaskResumed",
    "TaskStart",
]

logger = logging.getLogger(__name__)


class EventKind(enum.Enum):
    """What happened, for the task events libcontainerd maps (others are OTHER)."""

    CREATE = "create"
    START = "start"
    EXIT = "exit"
    OOM = "oom"
    EXEC_ADDED = "exec-added"
    EXEC_STARTED = "exec-started"
    PAUSED = "paused"
    RESUMED = "resumed"
    DELETE = "delete"
    CHECKPOINTED = "checkpointed"
    OTHER = "other"


_KIND_BY_TOPIC = {
    "/tasks/create": EventKind.CREATE,
    "/tasks/start": EventKind.START,
    "/tasks/exit": EventKind.EXIT,
    "/tasks/oom": EventKind.OOM,
    "/tasks/exec-added": EventKind.EXEC_ADDED,
    "/tasks/exec-started": EventKind.EXEC_STARTED,
    "/tasks/paused": EventKind.PAUSED,
    "/tasks/resumed": EventKind.RESUMED,
    "/tasks/delete": EventKind.DELETE,
    "/tasks/checkpointed": EventKind.CHECKPOINTED,
}


@attrs.frozen
class Event:
    """One containerd event.

    Attributes:
        topic: containerd's topic (``/tasks/exit``, ``/containers/create``, ...).
        namespace: The namespace it happened in.
        timestamp: When containerd published it.
        payload: The decoded protobuf message, or None when the type is
            unknown to this SDK. Narrow it with ``isinstance`` against the
            message classes this module exports (:class:`TaskExit`,
            :class:`TaskOOM`, :class:`ContainerCreate`, ...) to read its fields:
            mypy refuses ``event.payload.exit_status`` on an unnarrowed payload.
        type_url: The payload's type URL.
        synthesized: True for exits the dispatcher made up after reconciling
            with the daemon (the real event was lost while disconnected).
    """

    topic: str
    namespace: str
    timestamp: _dt.datetime | None
    payload: Message | None = attrs.field(repr=False)
    type_url: str = ""
    synthesized: bool = False

    @property
    def kind(self) -> EventKind:
        """The event's kind, for task events."""
        return _KIND_BY_TOPIC.get(self.topic, EventKind.OTHER)

    @property
    def container_id(self) -> str:
        """The container the event is about, or "" when it is about none."""
        p = self.payload
        if p is None:
            return ""
        cid = getattr(p, "container_id", "")
        if cid:
            return str(cid)
        if self.topic.startswith("/containers/"):
            return str(getattr(p, "id", ""))
        return ""

    @property
    def process_id(self) -> str:
        """The process the event is about: the exec id, or the container id for the init process."""
        p = self.payload
        if p is None:
            return ""
        exec_id = getattr(p, "exec_id", "")
        if exec_id:
            return str(exec_id)
        if self.topic in ("/tasks/exit", "/tasks/delete"):
            return str(getattr(p, "id", "")) or self.container_id
        return self.container_id

    @property
    def is_init(self) -> bool:
        """Whether the event is about a task's init process (never judged by pid)."""
        return self.process_id == self.container_id

    def __repr__(self) -> str:
        extra = f" container={self.container_id!r}" if self.container_id else ""
        if isinstance(self.payload, TaskExit):
            extra += f" process={self.process_id!r} status={self.payload.exit_status}"
        flag = " synthesized" if self.synthesized else ""
        return f"<Event {self.topic} ns={self.namespace!r}{extra}{flag}>"


def decode_envelope(env: Any) -> Event:
    """Turn a ``containerd.types.Envelope`` (or the 1.x v1 envelope) into an :class:`Event`."""
    payload: Message | None = None
    type_url = ""
    if env.HasField("event"):
        type_url = env.event.type_url
        try:
            decoded = _typeurl.unpack(env.event)
        except ContainerdError:
            logger.debug("undecodable event %s (%s)", env.topic, type_url)
        else:
            payload = decoded if isinstance(decoded, Message) else None
    ts = from_timestamp(env.timestamp)
    return Event(env.topic, env.namespace, ts, payload, type_url)


class Subscription:
    """An iterator of events from one ``Events.Subscribe`` call.

    Filters use containerd's syntax; several filter strings are OR'd and the
    comma-joined parts of one string are AND'd
    (``'namespace==default,topic~="/tasks/"'``). ``close()`` works from any
    thread and ends the iteration; Ctrl-C while iterating cancels the call.
    """

    def __init__(self, client: Client, filters: tuple[str, ...]) -> None:
        from containerd_client._pb.containerd.services.events.v1 import events_pb2

        self._stream: Stream[Any] = client._caller.stream(
            api.Events.Subscribe, events_pb2.SubscribeRequest(filters=list(filters))
        )
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._closed:
            raise StopIteration
        try:
            env = next(self._stream)
        except StopIteration:
            self._closed = True
            raise
        except (CancelledError, ClosedError):
            if self._closed:
                raise StopIteration from None
            raise
        except BaseException:
            self.close()
            raise
        return decode_envelope(env)

    def close(self) -> None:
        """End the subscription; a thread blocked in ``next()`` gets StopIteration."""
        if not self._closed:
            self._closed = True
            self._stream.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHandler(Protocol):
    """A callable handed every event that matches its registration."""

    def __call__(self, event: Event, /) -> None: ...


class Backend(Protocol):
    """libcontainerd's backend shape: ``process_event(container_id, kind, event)``."""

    def process_event(self, container_id: str, kind: EventKind, event: Event, /) -> None: ...


@attrs.frozen
class _Registration:
    fn: Callable[[Event], None]
    namespace: str | None
    container_id: str | None
    topic_prefix: str | None

    def matches(self, event: Event) -> bool:
        return (
            (self.namespace is None or event.namespace == self.namespace)
            and (self.container_id is None or event.container_id == self.container_id)
            and (self.topic_prefix is None or event.topic.startswith(self.topic_prefix))
        )


#: Topic of the marker event the dispatcher publishes to learn that its
#: subscription is live (never handed to handlers).
SYNC_TOPIC = "/containerd-client/sync"
SYNC_LABEL = "containerd-client/sync"
#: Seconds to wait for the marker before reconciling anyway.
SYNC_TIMEOUT = 2.0


def _sync_token(env: Any) -> str:
    try:
        return str(_typeurl.unpack(env.event).labels.get(SYNC_LABEL, ""))
    except (ContainerdError, AttributeError):
        return ""


#: How many task runs' exits are remembered for de-duplication.
_SEEN_EXITS = 8192
#: Deadline for deleting an exec after its exit.
EXEC_DELETE_TIMEOUT = 10.0


#: How many of the last events :meth:`EventDispatcher.recent` keeps.
RECENT_EVENTS = 50


class EventDispatcher:
    """The client's event machinery; get it as ``client.events``.

    It starts with the first handler or callback and stops with the client.

    Args:
        client: The root client.
        max_workers: Threads that run handlers (keys run in parallel).
        slow_after: Seconds after which a running handler is reported as stuck.
        filters: Subscription filters; all events of all namespaces by default.
    """

    def __init__(
        self,
        client: Client,
        *,
        max_workers: int = 8,
        slow_after: float = 10.0,
        filters: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._filters = filters
        self._executor = KeyedSerialExecutor(max_workers, name="containerd-events", slow_after=slow_after)
        # Guards registrations, watched containers, seen exits and _running.
        self._lock = threading.Lock()
        # Serialises dispatching: the reader's live events and the exits that
        # reconciliation synthesises (possibly on the sync timer's thread) are
        # each decided and queued atomically, so per container they reach the
        # handlers in the order they were decided, and each exit once.
        self._dispatch_lock = threading.RLock()
        self._registrations: list[_Registration] = []
        self._containers: dict[tuple[str, str], weakref.WeakSet[Any]] = {}
        self._seen_exits: collections.OrderedDict[tuple[str, str, str, int], None] = collections.OrderedDict()
        self._running: dict[tuple[str, str, str], int] = {}
        self._stream: Stream[Any] | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._reconnects = 0
        self._attempt = 0
        self._sync_timer: threading.Timer | None = None
        self._synced_attempts: set[int] = set()
        # The last events dispatched, for a look at a glance (notebook repr, debugging).
        self._recent: collections.deque[Event] = collections.deque(maxlen=RECENT_EVENTS)

    # -- registration ---------------------------------------------------------------

    def add_handler(
        self,
        fn: Callable[[Event], None],
        *,
        namespace: str | None = None,
        container_id: str | None = None,
        topic: str | None = None,
    ) -> Callable[[], None]:
        """Call ``fn(event)`` for matching events; returns a function that removes it.

        Handlers run on the dispatcher's pool, in order per container.
        ``topic`` matches as a prefix (``"/tasks/"``).
        """
        reg = _Registration(fn, namespace, container_id, topic)
        with self._lock:
            self._registrations.append(reg)
        self._start_once()

        def remove() -> None:
            with self._lock:
                if reg in self._registrations:
                    self._registrations.remove(reg)

        return remove

    def add_backend(self, backend: Backend, *, namespace: str | None = None) -> Callable[[], None]:
        """Register a libcontainerd-style backend for task events."""

        def handler(event: Event) -> None:
            if event.kind is not EventKind.OTHER and event.container_id:
                backend.process_event(event.container_id, event.kind, event)

        return self.add_handler(handler, namespace=namespace, topic="/tasks/")

    def _watch_container(self, namespace: str, container: Any) -> None:
        with self._lock:
            self._containers.setdefault((namespace, container.id), weakref.WeakSet()).add(container)
        self._start_once()

    # -- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        """Whether the subscription is live (cleared while reconnecting)."""
        return self._connected.is_set() and not self._closing.is_set()

    def start(self, timeout: float = 10.0) -> bool:
        """Start the reader thread (idempotent) and wait until it is subscribed.

        Not being subscribed in time is not an error: the reader keeps trying
        in the background (containerd may be restarting), and exits missed
        meanwhile are reconciled once it is back. The result says which case
        it is.

        Args:
            timeout: Seconds to wait for the subscription.

        Returns:
            True if subscribed within ``timeout``, False if not (yet).

        Raises:
            ClosedError: The dispatcher or client was closed.
        """
        with self._lock:
            if self._closing.is_set():
                raise ClosedError("the event dispatcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="containerd-events-reader", daemon=True
                )
                self._thread.start()
        return self._connected.wait(timeout) and not self._closing.is_set()

    def _start_once(self) -> None:
        """Start the reader if it never was; never waits for a reconnect in progress."""
        if self._thread is None:
            self.start()

    def close(self, timeout: float | None = 10.0) -> list[PendingCall]:
        """Stop reading, let queued handlers finish within ``timeout``, join threads.

        Returns:
            What could not be delivered in time (empty when everything ran).
        """
        self._closing.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        timer = self._sync_timer
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        undelivered = self._executor.close(timeout)
        if undelivered:
            logger.warning("event dispatcher closed with %d undelivered events", len(undelivered))
        return undelivered

    def stuck_keys(self) -> dict[Hashable, float]:
        """Containers whose current handler runs past ``slow_after``, with seconds running."""
        return self._executor.stuck_keys()

    def stats(self) -> ExecutorStats:
        """Counters of the handler executor (pending, completed, failed, ...)."""
        return self._executor.stats()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every received event was handled (for tests and shutdown)."""
        return self._executor.wait_idle(timeout)

    @property
    def reconnects(self) -> int:
        """How many times the subscription was re-established after a failure."""
        return self._reconnects

    def recent(self, limit: int | None = None) -> list[Event]:
        """The last events dispatched (at most :data:`RECENT_EVENTS`), oldest first.

        Every event of the subscription is kept, whether a handler wanted it
        or not, and each exit once. The dispatcher records events only while
        it runs: it starts with the first handler, ``on_exit`` or
        :meth:`start`.
        """
        with self._dispatch_lock:
            events = list(self._recent)
        return events if limit is None else events[-limit:] if limit > 0 else []

    def __repr__(self) -> str:
        state = "connected" if self.connected else "running" if self.running else "stopped"
        return f"<EventDispatcher {state} recent={len(self._recent)} reconnects={self._reconnects}>"

    def _repr_html_(self) -> str:
        from containerd_client import _html

        def detail(event: Event) -> str:
            text = (
                _html.exit_badge(int(event.payload.exit_status))
                if isinstance(event.payload, TaskExit)
                else ""
            )
            return text + (" <i>synthesized</i>" if event.synthesized else "")

        rows = [
            (
                _html.esc(e.timestamp.strftime("%H:%M:%S.%f")[:-3] if e.timestamp else "-"),
                _html.code(e.namespace),
                _html.esc(e.topic),
                _html.code(e.container_id) if e.container_id else "",
                detail(e),
            )
            for e in self.recent(20)
        ]
        state = "connected" if self.connected else "running" if self.running else "stopped"
        title = f"Events ({state}; last {len(rows)} of {RECENT_EVENTS} kept)"
        return _html.grid(
            ("time", "namespace", "topic", "container", ""), rows, title=title, empty="no events yet"
        )

    # -- reader ---------------------------------------------------------------------

    def _run(self) -> None:
        from containerd_client._pb.containerd.services.events.v1 import events_pb2

        reconnecting = False
        filters = list(self._filters)
        if filters:
            filters.append(f'topic=="{SYNC_TOPIC}"')
        while not self._closing.is_set():
            try:
                stream = self._client._caller.stream(
                    api.Events.Subscribe, events_pb2.SubscribeRequest(filters=filters)
                )
                self._stream = stream
                if self._closing.is_set():
                    stream.cancel()
                    break
                attempt = self._attempt = self._attempt + 1
                token = self._send_sync()
                if token is None:
                    self._synced(attempt, reconnecting)
                else:
                    # Should the marker never come back, reconcile anyway.
                    timer = threading.Timer(SYNC_TIMEOUT, self._synced, (attempt, reconnecting))
                    timer.name = "containerd-events-sync"
                    timer.daemon = True
                    self._sync_timer = timer
                    timer.start()
                for env in stream:
                    if env.topic == SYNC_TOPIC:
                        if token is not None and _sync_token(env) == token:
                            self._synced(attempt, reconnecting)
                        continue
                    self._dispatch(decode_envelope(env))
                if self._closing.is_set():
                    break
                logger.warning("event stream ended; reconnecting")
            except (ClosedError, CancelledError):
                if self._closing.is_set() or self._client.closed:
                    break
                logger.warning("event stream cancelled; reconnecting")
            except RPCError as exc:
                if self._closing.is_set():
                    break
                logger.warning("event stream failed (%s); waiting for containerd", exc)
            except Exception:
                logger.exception("event reader failed; reconnecting")
            reconnecting = True
            self._disconnected()
            self._wait_serving()
        self._connected.set()  # wakes start() callers; `connected` is false once closing

    def _send_sync(self) -> str | None:
        """Publish a marker event; seeing it come back proves the subscription is live.

        containerd registers a subscription some time after the call starts;
        without this, events published in between would be missed, and a
        reconciliation run before that moment could miss an exit.
        """
        import uuid

        from containerd_client._pb.containerd.events import container_pb2
        from containerd_client._pb.containerd.services.events.v1 import events_pb2

        token = uuid.uuid4().hex
        marker = container_pb2.ContainerUpdate(labels={SYNC_LABEL: token})
        req = events_pb2.PublishRequest(topic=SYNC_TOPIC, event=_typeurl.pack(marker))
        try:
            self._client.call(api.Events.Publish, req, timeout=5.0)
        except ContainerdError:
            logger.debug("sync event not published; assuming the subscription is live", exc_info=True)
            return None
        return token

    def _disconnected(self) -> None:
        """The stream broke: not connected until the next subscription syncs."""
        with self._lock:
            self._connected.clear()
            timer, self._sync_timer = self._sync_timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def _synced(self, attempt: int, reconnecting: bool) -> None:
        with self._lock:
            if attempt in self._synced_attempts or attempt != self._attempt:
                return
            self._synced_attempts.add(attempt)
            timer, self._sync_timer = self._sync_timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if reconnecting:
            self._reconnects += 1
            logger.info("event stream re-established; reconciling tasks")
            self._reconcile_quietly()
        self._connected.set()

    def _wait_serving(self) -> None:
        delay = 0.05
        while not self._closing.is_set():
            try:
                if self._client.is_serving(timeout=1.0):
                    return
            except ClosedError:
                self._closing.set()
                return
            self._closing.wait(delay)
            delay = min(delay * 2, 1.0)

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        with self._dispatch_lock:
            self._dispatch_locked(event)

    def _dispatch_locked(self, event: Event) -> None:
        kind = event.kind
        ns, cid = event.namespace, event.container_id
        if kind is EventKind.EXIT:
            if not self._first_exit(event):
                return
            self._recent.append(event)
            key = (ns, cid, "" if event.is_init else event.process_id)
            pid = int(getattr(event.payload, "pid", 0))
            with self._lock:
                # Only the run that exited: a new run of the same id may have
                # started since (its START came first on the live stream).
                if pid == 0 or self._running.get(key, pid) == pid:
                    self._running.pop(key, None)
        else:
            self._recent.append(event)
        if isinstance(event.payload, TaskStart):
            with self._lock:
                self._running[(ns, cid, "")] = int(event.payload.pid)
        elif isinstance(event.payload, TaskExecStarted):
            with self._lock:
                self._running[(ns, cid, event.process_id)] = int(event.payload.pid)
        self._builtin(event)
        with self._lock:
            regs = [r for r in self._registrations if r.matches(event)]
            watchers = list(self._containers.get((ns, cid), ())) if cid else []
        if not regs and not watchers:
            return
        with contextlib.suppress(ClosedError):
            self._executor.submit((ns, cid), self._deliver, event, regs, watchers)

    def _first_exit(self, event: Event) -> bool:
        p = event.payload
        key = (event.namespace, event.container_id, event.process_id, int(getattr(p, "pid", 0)))
        with self._lock:
            if key in self._seen_exits:
                logger.debug("duplicate exit dropped: %r", event)
                return False
            self._seen_exits[key] = None
            while len(self._seen_exits) > _SEEN_EXITS:
                self._seen_exits.popitem(last=False)
        return True

    @staticmethod
    def _deliver(event: Event, regs: list[_Registration], watchers: list[Any]) -> None:
        for reg in regs:
            try:
                reg.fn(event)
            except Exception:
                logger.exception("event handler %r failed for %r", reg.fn, event)
        for container in watchers:
            for fn in list(getattr(container, "_event_callbacks", ())):
                try:
                    fn(event)
                except Exception:
                    logger.exception("container callback %r failed for %r", fn, event)

    def _builtin(self, event: Event) -> None:
        """What the SDK itself does with events: OOM flags, exits, exec cleanup."""
        from containerd_client.tasks import ExitStatus, Process, Task

        kind = event.kind
        if kind is EventKind.OOM:
            task = self._client._tracked(event.namespace, event.container_id, "")
            if isinstance(task, Task):
                task._oom = True
        elif kind is EventKind.EXIT:
            exec_id = "" if event.is_init else event.process_id
            proc = self._client._tracked(event.namespace, event.container_id, exec_id)
            if proc is None:
                return
            p = event.payload
            if not isinstance(p, TaskExit):
                return
            if p.pid and proc.pid and p.pid != proc.pid:
                return  # the exit of an earlier run of the same id, not of this process
            proc._notify_exit(ExitStatus(int(p.exit_status), from_timestamp(p.exited_at)))
            if isinstance(proc, Process) and proc._deleted is None:
                # Delete off the container's queue so a slow delete cannot hold
                # up that container's later events.
                with contextlib.suppress(ClosedError):
                    self._executor.submit(
                        ("exec-cleanup", event.namespace, event.container_id), proc._auto_delete
                    )

    # -- reconciliation -------------------------------------------------------------

    def _reconcile_quietly(self) -> None:
        try:
            self._reconcile()
        except Exception:
            logger.warning("reconciliation failed", exc_info=True)

    def _reconcile(self) -> None:
        """Ask the daemon about every known task and synthesise the exits we missed."""
        with self._lock:
            targets: dict[tuple[str, str, str], int] = dict(self._running)
        for (ns, cid, exec_id), proc in self._client._tracked_items():
            if proc.exit_status is None:
                targets.setdefault((ns, cid, exec_id), proc.pid)
        for (ns, cid, exec_id), pid in targets.items():
            if self._closing.is_set():
                return
            event = self._probe(ns, cid, exec_id, pid)
            if event is not None:
                self._dispatch(event)

    def _probe(self, ns: str, cid: str, exec_id: str, pid: int) -> Event | None:
        from containerd_client._pb.containerd.events import task_pb2 as events_pb2
        from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
        from containerd_client._pb.containerd.types.task import task_pb2 as task_types_pb2
        from containerd_client.tasks import UNKNOWN_EXIT_CODE

        view = self._client if self._client.namespace_name == ns else self._client.namespace(ns)
        try:
            resp = view.call(api.Tasks.Get, tasks_pb2.GetRequest(container_id=cid, exec_id=exec_id))
        except NotFoundError:
            exit_msg = events_pb2.TaskExit(
                container_id=cid, id=exec_id or cid, pid=pid, exit_status=UNKNOWN_EXIT_CODE
            )
        except ContainerdError:
            logger.debug("reconcile: cannot get %s/%s/%s", ns, cid, exec_id, exc_info=True)
            return None
        else:
            if pid and resp.process.pid and resp.process.pid != pid:
                # Another run of the same id: the one we knew ended unseen.
                exit_msg = events_pb2.TaskExit(
                    container_id=cid, id=exec_id or cid, pid=pid, exit_status=UNKNOWN_EXIT_CODE
                )
                now = _dt.datetime.now(_dt.timezone.utc)
                return Event("/tasks/exit", ns, now, exit_msg, "containerd.events.TaskExit", synthesized=True)
            if resp.process.status != task_types_pb2.Status.STOPPED:
                return None
            exit_msg = events_pb2.TaskExit(
                container_id=cid,
                id=exec_id or cid,
                pid=resp.process.pid or pid,
                exit_status=resp.process.exit_status,
                exited_at=resp.process.exited_at,
            )
        now = _dt.datetime.now(_dt.timezone.utc)
        return Event("/tasks/exit", ns, now, exit_msg, "containerd.events.TaskExit", synthesized=True)
