"""What outlives its owner says so, against a real containerd; import/export progress.

A client closed (or an interpreter exiting) while containers it created still
exist names them in a warning; ``close(cleanup=True)`` removes them, also
when the Container objects are long gone.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from containerd_client import Client
from containerd_client.pull import ProgressEvent, tqdm_progress
from containerd_client.testing import build_busybox_archive

ROOT = Path(__file__).resolve().parents[2]


def _remove(client: Client, container_id: str) -> None:
    """Delete a container another client left running (task, record, FIFO folder)."""
    client.load_container(container_id).delete(force=True)


def test_close_names_the_running_containers_it_created(
    containerd: Client, busybox_rootfs: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = Client(containerd.address, containerd.namespace_name)
    running = owner.create_container("left-running", rootfs=busybox_rootfs, args=["sleep", "60"])
    task = running.new_task()
    task.start()
    with owner.create_container("deleted-in-time", rootfs=busybox_rootfs, args=["true"]):
        pass
    try:
        with caplog.at_level(logging.WARNING, logger="containerd_client.client"):
            owner.close()
        assert f"{containerd.namespace_name}/left-running (running, pid {task.pid})" in caplog.text
        assert "deleted-in-time" not in caplog.text
        assert "cleanup=True" in caplog.text
    finally:
        _remove(containerd, "left-running")


def test_close_cleanup_removes_what_it_created_even_when_the_objects_are_gone(
    containerd: Client, busybox_rootfs: str
) -> None:
    owner = Client(containerd.address, containerd.namespace_name)
    kept = owner.create_container("kept-object", rootfs=busybox_rootfs, args=["sleep", "60"])
    kept.new_task().start()
    dropped = owner.create_container("dropped-object", rootfs=busybox_rootfs, args=["sleep", "60"])
    dropped.new_task().start()
    del dropped
    gc.collect()
    assert sorted(owner.created_containers) == sorted(
        f"{containerd.namespace_name}/{cid}" for cid in ("kept-object", "dropped-object")
    )
    owner.close(cleanup=True)
    assert containerd.containers() == []
    assert not os.path.exists(kept.bundle_dir)


def test_an_interpreter_exiting_with_its_client_open_names_its_containers(
    containerd: Client, busybox_rootfs: str
) -> None:
    script = textwrap.dedent(
        f"""
        from containerd_client import Client
        client = Client({containerd.address!r}, {containerd.namespace_name!r})
        container = client.create_container("at-exit", rootfs={busybox_rootfs!r}, args=["sleep", "60"])
        container.new_task().start()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    try:
        result = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "UnclosedClientWarning" in result.stderr
        assert f"{containerd.namespace_name}/at-exit" in result.stderr
        # It said so, and left it running: containerd's shim outlives the process.
        assert containerd.load_container("at-exit").task().status().value == "running"
    finally:
        _remove(containerd, "at-exit")


@pytest.mark.containerd_leaks_ok("images", reason="the imported image is the test's setup")
def test_import_and_export_report_progress(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(tmp_path / "busybox.tar", name="localhost/cc/progress:1")
    events: list[ProgressEvent] = []
    [image] = containerd.images.import_archive(archive.path, progress=events.append)
    assert events[0].status == "importing"
    assert events[-1].status == "complete"
    assert "unpacking" in [e.status for e in events]
    assert {e.ref for e in events} == {"import busybox.tar"}
    done = [e.done_bytes for e in events]
    assert done == sorted(done)
    assert events[-1].done_bytes == events[-1].total_bytes > 0

    exported: list[ProgressEvent] = []
    containerd.images.export(io.BytesIO(), image.name, progress=exported.append)
    assert exported[-1].status == "complete"
    assert exported[-1].done_bytes == exported[-1].total_bytes > 0
    assert len([e for e in exported if e.status == "exporting"]) >= 3

    pytest.importorskip("tqdm")
    screen = io.StringIO()
    with tqdm_progress(file=screen, mininterval=0, ascii=True) as bars:
        containerd.images.export(io.BytesIO(), image.name, progress=bars)
    last = screen.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("export: 100%"), screen.getvalue()


def test_the_reprs_of_a_live_container_follow_its_task(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container(
        "glance", rootfs=busybox_rootfs, args=["sh", "-c", "read x; exit 4"]
    ) as c:
        task = c.new_task(stdin=b"")
        assert "created" in c._repr_html_()
        task.start()
        task.wait(30)
        html = c._repr_html_()
        assert "stopped" in html
        assert ">4<" in html
        assert "glance" in containerd._repr_html_()
    assert "deleted" in c._repr_html_()
