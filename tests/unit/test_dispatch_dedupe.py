"""Exit de-duplication and routing in the event dispatcher (no daemon: pure logic)."""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Any

from containerd_client._pb.containerd.events import container_pb2, task_pb2
from containerd_client.events import Event, EventDispatcher, EventKind


class _FakeClient:
    """Just what EventDispatcher._dispatch touches; no channel, no thread."""

    namespace_name = "ns"
    closed = False

    def _tracked(self, namespace: str, container_id: str, exec_id: str) -> Any:
        return None


def _exit(cid: str, pid: int, status: int, exec_id: str = "") -> Event:
    msg = task_pb2.TaskExit(container_id=cid, id=exec_id or cid, pid=pid, exit_status=status)
    return Event("/tasks/exit", "ns", _dt.datetime.now(_dt.timezone.utc), msg, "containerd.events.TaskExit")


def _dispatcher() -> tuple[EventDispatcher, list[Event]]:
    d = EventDispatcher(_FakeClient())  # type: ignore[arg-type]
    seen: list[Event] = []
    lock = threading.Lock()

    def handler(e: Event) -> None:
        with lock:
            seen.append(e)

    # Register without starting the reader (start() would subscribe).
    from containerd_client.events import _Registration

    d._registrations.append(_Registration(handler, None, None, None))
    return d, seen


def test_duplicate_exit_of_one_run_is_delivered_once() -> None:
    d, seen = _dispatcher()
    try:
        d._dispatch(_exit("c1", 100, 0))
        d._dispatch(_exit("c1", 100, 137))  # the shim-disconnect duplicate
        d._dispatch(_exit("c1", 100, 0))  # a replay after a reconnect
        assert d.wait_idle(5)
    finally:
        d.close()
    assert [e.payload.exit_status for e in seen] == [0]


def test_new_run_and_exec_exits_are_distinct() -> None:
    d, seen = _dispatcher()
    try:
        d._dispatch(_exit("c1", 100, 1))
        d._dispatch(_exit("c1", 200, 2))  # the next run of the same container
        d._dispatch(_exit("c1", 300, 3, exec_id="e1"))  # an exec in it
        d._dispatch(_exit("c1", 300, 3, exec_id="e1"))
        assert d.wait_idle(5)
    finally:
        d.close()
    assert [(e.process_id, e.payload.exit_status) for e in seen] == [("c1", 1), ("c1", 2), ("e1", 3)]
    assert [e.is_init for e in seen] == [True, True, False]


def test_init_is_told_by_process_id_not_pid() -> None:
    # Kata reports the same pid for every exit; only the process id tells them apart.
    d, seen = _dispatcher()
    try:
        d._dispatch(_exit("c1", 7, 0, exec_id="e1"))
        d._dispatch(_exit("c1", 7, 5))
        assert d.wait_idle(5)
    finally:
        d.close()
    assert [(e.is_init, e.payload.exit_status) for e in seen] == [(False, 0), (True, 5)]


def test_events_keep_order_per_container() -> None:
    d, seen = _dispatcher()
    try:
        for i in range(200):
            msg = container_pb2.ContainerUpdate(id=f"c{i % 5}", labels={"n": str(i)})
            d._dispatch(Event("/containers/update", "ns", None, msg, "containerd.events.ContainerUpdate"))
        assert d.wait_idle(5)
    finally:
        d.close()
    for k in range(5):
        got = [int(e.payload.labels["n"]) for e in seen if e.container_id == f"c{k}"]
        assert got == list(range(k, 200, 5))
    assert all(e.kind is EventKind.OTHER for e in seen)
