"""Crash-safe cleanup: remove what SDK sessions that no longer exist left behind.

Everything the SDK creates carries :data:`~containerd_client.client.SESSION_LABEL`
(``"<pid>-<start time>@<host>:<pid namespace>"``, see :func:`~containerd_client.client.session_id`):
leases (which also expire by themselves), containers, the snapshots it
prepares. A process killed mid-operation (``kill -9``, an OOM kill, a lost
machine) leaves them; :meth:`Client.sweep <containerd_client.Client.sweep>`
finds those whose session is dead and removes them: tasks (killed, then
deleted), containers, snapshots, leases, the containers' FIFO (bundle)
folders under the client's state folder, and, only when asked, images.

A session is *dead* when its host is this host (and its pid namespace ours)
and its process is gone or is another process under a reused pid (its start
time differs). Sessions of other hosts or pid namespaces, malformed labels
and live processes are left alone: a sweep
never touches what a running program owns, and objects without the label
(made by other tools, or by the user) are never looked at beyond reading
their labels.

Bundle folders are removed only with the container they belong to, and only
at the path the client's own state folder gives (never a path from a label):
two daemons can share one state folder and namespace name, so a folder
without a record here may well be another daemon's.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from containerd_client._pb import api
from containerd_client.client import SESSION_LABEL, pid_namespace
from containerd_client.errors import ContainerdError, NotFoundError

if TYPE_CHECKING:
    from containerd_client.client import Client
    from containerd_client.containers import Container

__all__ = [
    "SessionState",
    "SweepReport",
    "SweptObject",
    "parse_session",
    "remove_snapshots",
    "session_state",
    "sweep",
]

logger = logging.getLogger(__name__)

#: Snapshotters always looked at (plus those of the containers swept).
SNAPSHOTTERS = ("overlayfs", "native")
# Deadline of the kill + wait + delete of one task left by a dead session.
_TASK_TIMEOUT = 10.0

#: What :func:`session_state` says about a session label.
SessionState = str
ALIVE = "alive"
DEAD = "dead"
FOREIGN = "foreign"
INVALID = "invalid"


def parse_session(value: str) -> tuple[int, str, str, str] | None:
    """Split a session label ``"<pid>-<start>@<host>[:<pid namespace>]"``.

    Returns:
        ``(pid, start, host, pid_namespace)`` (the namespace "" when the
        label has none, as labels written before it was added), or None if
        the value is no session label.
    """
    ident, sep, where = value.partition("@")
    pid_text, dash, start = ident.partition("-")
    host, colon, pidns = where.partition(":")
    if not sep or not dash or not host or not pid_text.isdigit() or not start.isdigit():
        return None
    if colon and not pidns.isdigit():
        return None
    pid = int(pid_text)
    if pid <= 0:
        return None
    return pid, start, host, pidns


def session_state(value: str, *, hostname: str | None = None) -> SessionState:
    """Whether the session a label names still runs.

    Returns:
        ``"alive"``: its process runs (same pid and start time).
        ``"dead"``: its host is this host, its pid namespace ours, and the
        pid is gone or now another process (different start time).
        ``"foreign"``: another host's session, or another pid namespace's
        (a container sharing the host name): not ours to judge.
        ``"invalid"``: not a session label.
    """
    parsed = parse_session(value)
    if parsed is None:
        return INVALID
    pid, start, host, pidns = parsed
    if host != (hostname if hostname is not None else socket.gethostname()):
        return FOREIGN
    ours = pid_namespace()
    if pidns and ours and pidns != ours:
        return FOREIGN
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        # Without /proc nothing can be judged: then nothing is dead.
        return DEAD if os.path.exists("/proc/self/stat") else ALIVE
    except (OSError, IndexError):
        return ALIVE  # it exists but cannot be read: never judged dead
    if len(fields) < 20:
        return ALIVE
    if fields[19].decode("ascii", "replace") != start:
        return DEAD  # the pid now names another process
    # A zombie (killed, not yet reaped by its parent) owns nothing any more.
    return DEAD if fields[0] in (b"Z", b"X") else ALIVE


@attrs.frozen
class SweptObject:
    """One object a sweep removed (or, in a dry run, would remove).

    Attributes:
        namespace: The containerd namespace.
        name: Its id (a snapshot: ``"<snapshotter>/<key>"``; a bundle folder: its path).
        session: The dead session that made it.
    """

    namespace: str
    name: str
    session: str


@attrs.frozen
class SweepReport:
    """What :meth:`Client.sweep <containerd_client.Client.sweep>` removed, per kind.

    In a dry run the same lists say what would be removed and nothing was.
    Objects that could not be removed are in ``failed`` (``"<kind> <ns>/<name>: <error>"``),
    never raised: a sweep goes on with the rest.
    """

    dry_run: bool
    tasks: tuple[SweptObject, ...] = ()
    containers: tuple[SweptObject, ...] = ()
    snapshots: tuple[SweptObject, ...] = ()
    leases: tuple[SweptObject, ...] = ()
    images: tuple[SweptObject, ...] = ()
    bundles: tuple[SweptObject, ...] = ()
    networks: tuple[SweptObject, ...] = ()
    fifos: int = 0
    namespaces: tuple[str, ...] = ()
    dead_sessions: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def removed(self) -> int:
        """How many objects (of every kind, FIFOs not counted) were removed."""
        return sum(
            len(kind)
            for kind in (
                self.tasks,
                self.containers,
                self.snapshots,
                self.leases,
                self.images,
                self.bundles,
                self.networks,
            )
        )

    def summary(self) -> dict[str, int]:
        """Counts per kind, e.g. ``{"tasks": 5, "containers": 5, ...}``."""
        return {
            "tasks": len(self.tasks),
            "containers": len(self.containers),
            "snapshots": len(self.snapshots),
            "leases": len(self.leases),
            "images": len(self.images),
            "bundles": len(self.bundles),
            "networks": len(self.networks),
            "fifos": self.fifos,
        }


@attrs.define
class _Collector:
    dry_run: bool
    hostname: str
    verdicts: dict[str, SessionState] = attrs.field(factory=dict)
    kinds: dict[str, builtins.list[SweptObject]] = attrs.field(factory=dict)
    fifos: int = 0
    failed: builtins.list[str] = attrs.field(factory=list)
    namespaces: builtins.list[str] = attrs.field(factory=list)

    def dead(self, labels: Mapping[str, str]) -> str | None:
        """The session label's value when it names a dead session, else None."""
        value = labels.get(SESSION_LABEL)
        if not value:
            return None
        verdict = self.verdicts.get(value)
        if verdict is None:
            verdict = self.verdicts[value] = session_state(value, hostname=self.hostname)
        return value if verdict == DEAD else None

    def add(self, kind: str, namespace: str, name: str, session: str) -> None:
        self.kinds.setdefault(kind, []).append(SweptObject(namespace, name, session))

    def fail(self, kind: str, namespace: str, name: str, exc: BaseException) -> None:
        logger.warning("sweep: could not remove %s %s/%s: %s", kind, namespace, name, exc)
        self.failed.append(f"{kind} {namespace}/{name}: {type(exc).__name__}: {exc}")

    def report(self) -> SweepReport:
        def of(kind: str) -> tuple[SweptObject, ...]:
            return tuple(self.kinds.get(kind, ()))

        return SweepReport(
            dry_run=self.dry_run,
            tasks=of("tasks"),
            containers=of("containers"),
            snapshots=of("snapshots"),
            leases=of("leases"),
            images=of("images"),
            bundles=of("bundles"),
            networks=of("networks"),
            fifos=self.fifos,
            namespaces=tuple(self.namespaces),
            dead_sessions=tuple(sorted(s for s, v in self.verdicts.items() if v == DEAD)),
            failed=tuple(self.failed),
        )


def sweep(
    client: Client, *, dry_run: bool = False, images: bool = False, all_namespaces: bool = False
) -> SweepReport:
    """Remove what dead sessions left (see :meth:`Client.sweep <containerd_client.Client.sweep>`)."""
    found = _Collector(dry_run=dry_run, hostname=socket.gethostname())
    names = [client.namespace_name]
    if all_namespaces:
        names = sorted(ns.name for ns in client.namespaces.list())
    for name in names:
        view = client if name == client.namespace_name else client.namespace(name)
        _sweep_namespace(view, found, images=images)
        found.namespaces.append(name)
    return found.report()


def _sweep_namespace(client: Client, found: _Collector, *, images: bool) -> None:
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
    from containerd_client.containers import _remove_empty_namespace_folder, _state_root

    ns = client.namespace_name
    tasks = {t.id for t in client.call(api.Tasks.List, tasks_pb2.ListTasksRequest(), idempotent=True).tasks}
    dead = []
    snapshotters = set(SNAPSHOTTERS)
    for container in client.containers():
        session = found.dead(container.info().labels)
        if session is not None:
            dead.append((container, session))
            snapshotters.add(container.info().snapshotter or "overlayfs")
    # Listed before the containers go, so their snapshots (which deleting a
    # container removes) are reported too.
    snapshots = {name: _dead_snapshots(client, name, found) for name in sorted(snapshotters)}
    for container, session in dead:
        _sweep_container(container, session, container.id in tasks, found)
    for snapshotter, pending in snapshots.items():
        _remove_snapshots(client, snapshotter, pending, found)
    _sweep_networks(_state_root(client._state_dir), ns, found)
    for lease in client.leases.list():
        session = found.dead(lease.labels)
        if session is None:
            continue
        found.add("leases", ns, lease.id, session)
        if not found.dry_run:
            try:
                client.leases.delete(lease.id, missing_ok=True)
            except ContainerdError as exc:
                found.fail("lease", ns, lease.id, exc)
    if images:
        for image in client.images.list():
            session = found.dead(image.labels)
            if session is None:
                continue
            found.add("images", ns, image.name, session)
            if not found.dry_run:
                try:
                    client.images.delete(image.name)
                except NotFoundError:
                    pass
                except ContainerdError as exc:
                    found.fail("image", ns, image.name, exc)
    if not found.dry_run:
        _remove_empty_namespace_folder(_state_root(client._state_dir), ns)


def _sweep_container(container: Container, session: str, has_task: bool, found: _Collector) -> None:
    ns = container.client.namespace_name
    bundle = container.bundle_dir
    fifos = _count_fifos(bundle)
    if has_task:
        found.add("tasks", ns, container.id, session)
    found.add("containers", ns, container.id, session)
    if os.path.isdir(bundle):
        found.add("bundles", ns, bundle, session)
        found.fifos += fifos
    if found.dry_run:
        return
    if has_task:
        try:
            container.task().force_delete(timeout=_TASK_TIMEOUT)
        except NotFoundError:
            pass
        except ContainerdError as exc:
            found.fail("task", ns, container.id, exc)
            return
    try:
        # Also removes its snapshot and its FIFO folder (at the path the
        # client's state folder gives, and only if the record's label agrees).
        container.delete(force=True)
    except NotFoundError:
        container._remove_bundle()
    except ContainerdError as exc:
        found.fail("container", ns, container.id, exc)


def _sweep_networks(state_root: str, ns: str, found: _Collector) -> None:
    """Undo the CNI attachments of dead sessions.

    Their containers are gone by now (deleting one detaches it), or never got
    a record (the session died between CNI ADD and the record). An attachment
    without a readable record names no session and is left alone.
    """
    from containerd_client import network

    for namespace, container_id in network.attachments(state_root, ns):
        doc = network.record(state_root, namespace, container_id)
        session = None if doc is None else found.dead({SESSION_LABEL: str(doc.get("session") or "")})
        if session is None:
            continue
        found.add("networks", ns, container_id, session)
        if found.dry_run:
            continue
        try:
            network.detach(state_root, namespace, container_id)
        except ContainerdError as exc:
            found.fail("network", ns, container_id, exc)


def _dead_snapshots(client: Client, snapshotter: str, found: _Collector) -> dict[str, str]:
    """The snapshots of dead sessions, ``{key: session}``, recorded in the report."""
    try:
        infos = client.snapshots(snapshotter).list()
    except ContainerdError:
        return {}  # a snapshotter this daemon lacks
    pending = {}
    for info in infos:
        session = found.dead(info.labels)
        if session is not None:
            pending[info.name] = session
    for name, session in sorted(pending.items()):
        found.add("snapshots", client.namespace_name, f"{snapshotter}/{name}", session)
    return pending


def _remove_snapshots(client: Client, snapshotter: str, pending: dict[str, str], found: _Collector) -> None:
    if found.dry_run or not pending:
        return
    for name, exc in remove_snapshots(client, snapshotter, pending).items():
        found.fail("snapshot", client.namespace_name, f"{snapshotter}/{name}", exc)


def remove_snapshots(client: Client, snapshotter: str, names: Iterable[str]) -> dict[str, ContainerdError]:
    """Remove these snapshots, children before parents (in passes, until no more go).

    A snapshot that is already gone counts as removed. Shared by
    :meth:`Client.sweep <containerd_client.Client.sweep>` and the pytest
    plugin's namespace sweep.

    Returns:
        The snapshots that could not be removed, with the last error of each.
    """
    store = client.snapshots(snapshotter)
    pending = set(names)
    last: dict[str, ContainerdError] = {}
    for _ in range(len(pending) + 1):
        progress = False
        for name in sorted(pending):
            try:
                store.remove(name)
            except NotFoundError:
                pass
            except ContainerdError as exc:
                last[name] = exc
                continue
            pending.discard(name)
            last.pop(name, None)
            progress = True
        if not pending or not progress:
            break
    return {name: last[name] for name in sorted(pending)}


def _count_fifos(folder: str) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                    count += 1
    return count
