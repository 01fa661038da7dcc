"""Graceful stop (Task.stop, Container.stop) against a real containerd."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from containerd_client import Client, Container, Task, errors, wait
from containerd_client.tasks import STOP_SIGNAL_LABEL
from containerd_client.testing import build_busybox_archive

#: sh as pid 1 runs traps between commands: short sleeps keep it responsive.
LOOP = "while :; do sleep 0.05; done"


def _ready(c: Container) -> Task:
    task = c.new_task(logs=True)
    task.start()
    task.wait_for(wait.log("ready"), timeout=30)
    return task


def test_stop_lets_a_task_that_traps_term_exit(containerd: Client, busybox_rootfs: str) -> None:
    script = f"trap 'echo bye; exit 0' TERM; echo ready; {LOOP}"
    with containerd.create_container("trapper", rootfs=busybox_rootfs, args=["sh", "-c", script]) as c:
        task = _ready(c)
        assert task.stop_signal == 15
        started = time.monotonic()
        status = task.stop(timeout=20)
        assert status.exit_code == 0
        assert time.monotonic() - started < 10  # long before the SIGKILL
        assert task.logs(tail=1) == b"bye\n"
        assert task.stop() == status  # again: the same status, nothing sent


def test_stop_kills_a_task_that_ignores_term(containerd: Client, busybox_rootfs: str) -> None:
    # A handler that does not exit: the signal arrives and changes nothing.
    script = f"trap 'echo ignored' TERM; echo ready; {LOOP}"
    with containerd.create_container("ignorer", rootfs=busybox_rootfs, args=["sh", "-c", script]) as c:
        _ready(c)
        started = time.monotonic()
        status = c.stop(timeout=0.5)
        assert status is not None
        assert time.monotonic() - started >= 0.5
        assert status.exit_code == 137
        assert status.signal == 9


def test_stop_kills_at_once_an_init_without_a_handler(containerd: Client, busybox_rootfs: str) -> None:
    # sleep as PID 1 has no SIGTERM handler: the kernel drops the signal, so the
    # timeout could only end in SIGKILL; stop sends it without waiting.
    with containerd.create_container("nohandler", rootfs=busybox_rootfs, args=["sleep", "600"]) as c:
        task = c.new_task()
        task.start()
        started = time.monotonic()
        status = task.stop(timeout=60)
        assert time.monotonic() - started < 30  # far from the 60 s timeout
        assert status.exit_code == 137
        assert status.signal == 9


def test_stop_sends_the_images_stop_signal(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(
        tmp_path / "usr1.tar",
        name="localhost/cc/stop-usr1:1",
        cmd=["sh", "-c", f"trap 'exit 7' USR1; trap '' TERM; echo ready; {LOOP}"],
        stop_signal="SIGUSR1",
    )
    containerd.images.import_archive(archive.path)
    with containerd.create_container("usr1", image=archive.name) as c:
        assert c.info().labels[STOP_SIGNAL_LABEL] == "SIGUSR1"
        task = _ready(c)
        assert task.stop_signal == 10
        assert task.stop(timeout=20).exit_code == 7
    containerd.images.delete(archive.name)


def test_stop_without_a_task_and_bad_input(containerd: Client, busybox_rootfs: str) -> None:
    script = f"echo ready; {LOOP}"
    with containerd.create_container("stopbad", rootfs=busybox_rootfs, args=["sh", "-c", script]) as c:
        assert c.stop() is None
        task = _ready(c)
        for bad in (-1, float("nan"), None):
            with pytest.raises(errors.InvalidTimeoutError):
                task.stop(bad)  # type: ignore[arg-type]
        with pytest.raises(errors.UnknownSignalError):
            task.stop(signal="SIGNOPE")
        assert task.exit_status is None  # nothing was sent
        assert task.stop(timeout=5, signal="KILL").exit_code == 137
