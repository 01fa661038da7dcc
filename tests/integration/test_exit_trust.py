"""Exits a user can trust (issue 9): across a containerd SIGKILL, and the OOM flag.

The restart tests run on a private daemon of their own (same binaries as the
session's, see CONTAINERD_BIN_DIR), so killing it never disturbs other tests.
No event dispatcher is started in them: the Wait calls alone must carry the exit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fakes import in_thread

from containerd_client import Client
from containerd_client._pb import api
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.errors import NotFoundError
from containerd_client.spec import with_memory_limit
from containerd_client.tasks import ExitStatus
from containerd_client.testing import ContainerdDaemon, build_busybox_archive

#: After containerd serves again, wait() must return within this many seconds.
RETURN_BOUND = 15.0
OOM_SCRIPT = "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"


@pytest.fixture(scope="module")
def own_daemon() -> Iterator[ContainerdDaemon]:
    daemon = ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def own_client(own_daemon: ContainerdDaemon) -> Iterator[Client]:
    if not own_daemon.running:
        own_daemon.start()
    client = Client(own_daemon.address, own_daemon.namespace)
    try:
        yield client
    finally:
        client.close()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


def _expected(client: Client, cid: str, exec_id: str, real: int) -> set[int]:
    """What containerd itself says after the restart: the real code, or 255 if it forgot."""
    if client.features().version < (1, 7):
        return {real}  # 1.6 keeps exited tasks across its restart
    try:
        state = client.call(api.Tasks.Get, tasks_pb2.GetRequest(container_id=cid, exec_id=exec_id)).process
    except NotFoundError:
        return {255, real}  # forgotten now; the re-armed Wait may have answered before
    return {state.exit_status}


def _exit_while_down(daemon: ContainerdDaemon, client: Client, pid: int, waiter: threading.Thread) -> float:
    """SIGKILL containerd, let ``pid`` exit meanwhile, start it again; returns when it serves."""
    daemon.kill()
    assert _gone(pid, 20), "the process did not exit while containerd was down"
    assert waiter.is_alive(), "wait() returned while containerd was down"
    daemon.start()
    client.wait_ready(20)
    return time.monotonic()


def _join(t: threading.Thread, out: dict[str, Any], serving_at: float) -> ExitStatus:
    t.join(RETURN_BOUND)
    assert not t.is_alive(), f"wait() still blocked {RETURN_BOUND} s after containerd came back"
    assert time.monotonic() - serving_at <= RETURN_BOUND
    assert "error" not in out, repr(out.get("error"))
    status = out["value"]
    assert isinstance(status, ExitStatus)
    return status


def test_task_wait_sees_exit_across_containerd_sigkill(
    own_daemon: ContainerdDaemon, own_client: Client, busybox_rootfs: str
) -> None:
    with own_client.create_container(
        "down-task", rootfs=busybox_rootfs, args=["sh", "-c", "sleep 1.5; exit 3"]
    ) as c:
        task = c.new_task()
        task.start()
        t, out = in_thread(lambda: task.wait(timeout=60))
        serving_at = _exit_while_down(own_daemon, own_client, task.pid, t)
        status = _join(t, out, serving_at)
        assert status.exit_code in _expected(own_client, "down-task", "", 3)
        assert own_client._dispatcher is None or not own_client._dispatcher.running


def test_exec_wait_sees_exit_across_containerd_sigkill(
    own_daemon: ContainerdDaemon, own_client: Client, busybox_rootfs: str
) -> None:
    with own_client.create_container("down-exec", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        proc = task.exec("x", ["sh", "-c", "sleep 1.5; exit 4"])
        proc.start()
        t, out = in_thread(lambda: proc.wait(timeout=60))
        serving_at = _exit_while_down(own_daemon, own_client, proc.pid, t)
        status = _join(t, out, serving_at)
        assert status.exit_code in _expected(own_client, "down-exec", "x", 4)
        assert own_client._dispatcher is None or not own_client._dispatcher.running


def test_run_sees_exit_across_containerd_sigkill(
    own_daemon: ContainerdDaemon, own_client: Client, tmp_path: Path
) -> None:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    (image,) = own_client.images.import_archive(archive.path)
    t, out = in_thread(
        lambda: own_client.run(image.name, ["sh", "-c", "sleep 1.5; exit 5"], container_id="down-run")
    )
    pid = 0
    deadline = time.monotonic() + 30
    while not pid and time.monotonic() < deadline:
        for info in own_client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks:
            if info.id == "down-run" and info.status == 2:  # RUNNING
                pid = info.pid
        time.sleep(0.02)
    assert pid, "client.run did not start its task"
    own_daemon.kill()
    assert _gone(pid, 20)
    assert t.is_alive()
    own_daemon.start()
    own_client.wait_ready(20)
    serving_at = time.monotonic()
    t.join(RETURN_BOUND)
    assert not t.is_alive(), "client.run still blocked after containerd came back"
    assert time.monotonic() - serving_at <= RETURN_BOUND
    assert "error" not in out, repr(out.get("error"))
    keeps = own_client.features().version < (1, 7)
    assert out["value"].exit_code in ({5} if keeps else {5, 255})
    assert [c.id for c in own_client.containers()] == []


def _oom_container(client: Client, rootfs: str, cid: str) -> Any:
    return client.create_container(
        cid, rootfs=rootfs, spec=[with_memory_limit(16 << 20)], args=["sh", "-c", OOM_SCRIPT]
    )


def test_oom_flag_without_the_dispatcher(containerd: Client, busybox_rootfs: str) -> None:
    with _oom_container(containerd, busybox_rootfs, "oom-nodisp") as c:
        task = c.new_task()
        task.start()
        status = task.wait(timeout=60)
        assert status.exit_code == 137
        assert status.oom_killed
        assert task.exit_status is not None
        assert task.exit_status.oom_killed
        assert task.oom_killed
        assert task.delete().oom_killed
        assert task.wait().oom_killed  # after delete: the same record
    assert containerd._dispatcher is None or not containerd._dispatcher.running


def test_oom_flag_in_on_exit_and_delete_without_waiting(containerd: Client, busybox_rootfs: str) -> None:
    got: list[ExitStatus] = []
    called = threading.Event()
    with _oom_container(containerd, busybox_rootfs, "oom-cb") as c:
        task = c.new_task()
        task.on_exit(lambda st: (got.append(st), called.set()))
        task.start()
        assert called.wait(60)
        assert [(s.exit_code, s.oom_killed) for s in got] == [(137, True)]
        # delete() before any wait(): still the complete record.
        assert task.delete().oom_killed


def test_sigkill_without_oom_is_not_flagged(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("killed", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        task.kill("KILL")
        status = task.wait(timeout=30)
        assert status.exit_code == 137
        assert not status.oom_killed
        assert not task.delete().oom_killed
