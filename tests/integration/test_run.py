"""client.run and create_container(image=...): image config, users, cleanup, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cycles import cycles

from containerd_client import Client, cio, errors
from containerd_client._pb import api
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.testing import build_busybox_archive

# These tests import images into their namespace as their setup and leave them to the
# sweep. The images (and the blobs and snapshots only they hold) are not leaks;
# anything else left behind is (a container, a task, a lease, an extract snapshot).
pytestmark = pytest.mark.containerd_leaks_ok("images", reason="images are the tests' setup")


@pytest.fixture
def busybox(containerd: Client, tmp_path: Path) -> str:
    archive = build_busybox_archive(
        tmp_path / "busybox.tar",
        env={"GREETING": "hello"},
        workdir="/tmp",
        passwd=["app:x:1000:1000:app:/home/app:/bin/sh"],
        group=["app:x:1000:", "staff:x:50:"],
    )
    (image,) = containerd.images.import_archive(archive.path)
    return image.name


def _state(client: Client) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    tasks = [t.id for t in client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks]
    return (
        sorted(c.id for c in client.containers()),
        sorted(tasks),
        sorted(le.id for le in client.leases.list()),
        sorted(s.name for s in client.snapshots().list()),
        sorted(i.digest for i in client.content.list()),
    )


def test_run_echo_and_image_config(containerd: Client, busybox: str) -> None:
    result = containerd.run(busybox, ["sh", "-c", 'echo "$GREETING from $(pwd)"; id -u'])
    assert result.exit_code == 0
    assert result.stdout == b"hello from /tmp\n0\n"
    assert containerd.run(busybox, ["sh", "-c", "echo oops >&2; exit 9"]) == type(result)(9, b"", b"oops\n")


def test_named_user_from_image_config(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(
        tmp_path / "app.tar",
        name="localhost/containerd-client/app:1",
        user="app",
        passwd=["app:x:1000:1000:app:/home/app:/bin/sh"],
        group=["app:x:1000:"],
    )
    (image,) = containerd.images.import_archive(archive.path)
    result = containerd.run(image, ["id"])
    assert result.stdout.decode().startswith("uid=1000(app) gid=1000(app)")


def test_user_with_named_group(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(
        tmp_path / "grp.tar",
        name="localhost/containerd-client/grp:1",
        user="app:staff",
        passwd=["app:x:1000:1000:app:/home/app:/bin/sh"],
        group=["app:x:1000:", "staff:x:50:"],
    )
    (image,) = containerd.images.import_archive(archive.path)
    assert containerd.run(image, ["id", "-g"]).stdout == b"50\n"


def test_unknown_user_is_a_typed_error_and_leaves_nothing(containerd: Client, tmp_path: Path) -> None:
    archive = build_busybox_archive(
        tmp_path / "ghost.tar", name="localhost/containerd-client/ghost:1", user="ghost"
    )
    (image,) = containerd.images.import_archive(archive.path)
    before = _state(containerd)
    with pytest.raises(errors.InvalidArgumentError, match="ghost"):
        containerd.run(image, ["true"])
    assert _state(containerd) == before


def test_create_container_from_image_with_stdin(containerd: Client, busybox: str) -> None:
    out = cio.Capture()
    with containerd.create_container("fromimg", image=busybox, args=["cat"]) as c:
        info = c.info()
        assert info.image == busybox
        assert info.snapshot_key == "fromimg"
        task = c.new_task(stdin=b"through stdin", stdout=out)
        task.start()
        assert task.wait(timeout=30).exit_code == 0
    assert out.getvalue() == b"through stdin"
    assert "fromimg" not in [s.name for s in containerd.snapshots().list()]


def test_a_string_command_is_split_as_docker_py_splits_it(containerd: Client, busybox: str) -> None:
    assert containerd.run(busybox, "echo hi").stdout == b"hi\n"
    assert containerd.run(busybox, "sh -c 'echo \"$0\" b'  'a  1'").stdout == b"a  1 b\n"
    with containerd.create_container("split", image=busybox, args="sleep 30") as c:
        assert c.spec()["process"]["args"] == ["sleep", "30"]
        task = c.new_task()
        task.start()
        assert task.run("echo exec 'in one'").stdout == b"exec in one\n"
        task.kill("KILL")
        task.wait(timeout=30)


def test_100_runs_leave_nothing_behind(containerd: Client, busybox: str) -> None:
    containerd.run(busybox, ["true"])  # unpacks once
    before = _state(containerd)
    for i in range(cycles(100)):
        assert containerd.run(busybox, ["true"]).exit_code == 0, i
    assert _state(containerd) == before
    containers, tasks, leases, _snapshots, _content = before
    assert containers == tasks == leases == []


def test_run_missing_image_without_pull(containerd: Client) -> None:
    with pytest.raises(errors.NotFoundError):
        containerd.run("localhost/containerd-client/absent:1", ["true"], pull=False)


def test_run_timeout_kills_and_cleans_up(containerd: Client, busybox: str) -> None:
    before = _state(containerd)
    with pytest.raises(errors.DeadlineExceededError):
        containerd.run(busybox, ["sleep", "30"], timeout=0.5)
    assert _state(containerd) == before


def test_run_duplicate_container_id(containerd: Client, busybox: str) -> None:
    with containerd.create_container("taken", image=busybox, args=["true"]):
        with pytest.raises(errors.ConflictError):
            containerd.run(busybox, ["true"], container_id="taken")
        assert [s.name for s in containerd.snapshots().list()].count("taken") == 1
