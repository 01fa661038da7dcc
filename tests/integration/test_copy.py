"""Copy in and out of containers (put_archive, get_archive, read_file, write_file, copy_in, copy_out).

Three ways to a container's files are covered: a live task (``/proc/<pid>/root``),
an image container with no task or a stopped task (its snapshot mounted on a
private temp folder), and a container on a host folder (``rootfs=``). Every test
checks that no mount and no temp folder of the copy code is left behind.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _copy_leaks import copy_mounts, copy_temp_folders

from containerd_client import Client, files
from containerd_client.containers import Container
from containerd_client.errors import InvalidArgumentError, NotFoundError
from containerd_client.files import InvalidPathError
from containerd_client.testing import build_busybox_archive, make_busybox_rootfs

pytestmark = [
    pytest.mark.timeout(120),
    # The busybox image is each test's setup, left to the sweep; anything else is a leak.
    pytest.mark.containerd_leaks_ok("images", reason="images are the tests' setup"),
]


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    fds = len(os.listdir("/proc/self/fd"))
    yield
    assert copy_mounts() == []
    assert copy_temp_folders() == []
    # The client's own channel may hold a few descriptors; copies hold none.
    assert len(os.listdir("/proc/self/fd")) <= fds + 8


@pytest.fixture
def busybox(containerd: Client, tmp_path: Path) -> str:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    (image,) = containerd.images.import_archive(archive.path)
    return image.name


def tar_of(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def untar(chunks: Iterator[bytes]) -> dict[str, tarfile.TarInfo | bytes]:
    data = b"".join(chunks)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f is not None else m
    return out


def cat(container: Container, path: str) -> bytes:
    result = container.task().run(["cat", path], timeout=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _no_mounts(*args: object, **kwargs: object) -> object:
    raise AssertionError("a live task's files are reached through /proc, without mounting")


def test_stopped_image_container_then_running_then_stopped_task(
    containerd: Client, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with containerd.create_container("cp", image=busybox, args=["sleep", "60"]) as c:
        # No task: the snapshot is mounted for each call.
        c.write_file("/etc/greeting", b"hello\n", mode=0o600)
        c.put_archive(
            "/tmp", tar_of({"app/run.sh": b"#!/bin/sh\necho ran\n"}, links={"app/latest": "run.sh"})
        )
        assert c.read_file("/etc/greeting") == b"hello\n"
        assert c.read_file("/tmp/app/latest") == b"#!/bin/sh\necho ran\n"
        chunks, info = c.get_archive("/etc/greeting")
        assert (info.name, info.size, stat.S_IMODE(info.mode)) == ("greeting", 6, 0o600)
        assert untar(chunks) == {"greeting": b"hello\n"}

        task = c.new_task()
        task.start()
        # A live task: reached through /proc/<pid>/root; both sides see each other's writes.
        monkeypatch.setattr(files._mount, "mounted", _no_mounts)
        assert cat(c, "/etc/greeting") == b"hello\n"
        assert cat(c, "/tmp/app/latest") == b"#!/bin/sh\necho ran\n"
        c.write_file("/tmp/live", b"from the host")
        assert cat(c, "/tmp/live") == b"from the host"
        assert task.run(["sh", "-c", "echo made > /tmp/made"], timeout=30).exit_code == 0
        assert c.read_file("/tmp/made") == b"made\n"
        listing = untar(c.get_archive("/tmp")[0])
        assert listing["tmp/made"] == b"made\n"
        assert isinstance(listing["tmp/app/latest"], tarfile.TarInfo)
        assert listing["tmp/app/latest"].linkname == "run.sh"

        monkeypatch.undo()
        task.kill("SIGKILL")
        task.wait(timeout=30)
        # A stopped task still holds its rootfs mount: reading uses a read-only view beside it.
        assert c.read_file("/tmp/made") == b"made\n"
        c.write_file("/tmp/after", b"after stop")
        assert c.read_file("/tmp/after") == b"after stop"
        task.delete()
        assert c.read_file("/tmp/after") == b"after stop"


def test_copy_in_and_out(containerd: Client, busybox: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("A")
    (src / "b.txt").write_text("B")
    (src / "link").symlink_to("b.txt")
    with containerd.create_container("cpio", image=busybox, args=["sleep", "60"]) as c:
        c.copy_in(src, "/tmp")  # an existing folder: goes inside, as /tmp/src
        c.copy_in(src / "b.txt", "/etc/renamed.txt")  # a new name
        task = c.new_task()
        task.start()
        assert cat(c, "/tmp/src/sub/a.txt") == b"A"
        assert cat(c, "/etc/renamed.txt") == b"B"
        assert cat(c, "/tmp/src/link") == b"B"

        out = tmp_path / "out"
        out.mkdir()
        info = c.copy_out("/tmp/src", out)
        assert info.name == "src"
        assert (out / "src" / "sub" / "a.txt").read_text() == "A"
        assert os.readlink(out / "src" / "link") == "b.txt"
        c.copy_out("/etc/passwd", out / "passwd.copy")
        assert (out / "passwd.copy").read_text().startswith("root:")
        task.kill("SIGKILL")
        task.wait(timeout=30)


def test_another_process_copying_at_once_is_told_apart(containerd: Client, busybox: str) -> None:
    # scripts/test runs two daemons' suites side by side: the other one's copy
    # folder must not count as ours (a full CI run failed on exactly that).
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, tempfile, os; from containerd_client import _mount; "
            "d = tempfile.mkdtemp(prefix=_mount.temp_prefix()); print(d, flush=True); "
            "sys.stdin.read(); os.rmdir(d)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        folder = other.stdout.readline().strip()
        assert os.path.isdir(folder)
        assert f"-{other.pid}-" in os.path.basename(folder)
        with containerd.create_container("cpother", image=busybox, args=["true"]) as c:
            c.write_file("/etc/mine", b"mine")  # no task: our own folder, mounted and removed
            assert c.read_file("/etc/mine") == b"mine"
        assert copy_temp_folders() == []
        assert copy_mounts() == []
        assert os.path.isdir(folder)  # the other process's folder, untouched
    finally:
        other.communicate("", timeout=30)
    assert not os.path.exists(folder)


def test_rootfs_folder_container(containerd: Client, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
    with containerd.create_container("cpdir", rootfs=rootfs, args=["true"]) as c:
        c.write_file("/etc/motd", b"hi")
        assert (Path(rootfs) / "etc" / "motd").read_bytes() == b"hi"
        assert c.read_file("/bin/sh")[:4] == b"\x7fELF"  # the symlink to busybox, followed inside


def test_typed_errors(containerd: Client, busybox: str) -> None:
    with containerd.create_container("cperr", image=busybox, args=["sleep", "60"]) as c:
        with pytest.raises(NotFoundError):
            c.read_file("/no/such/file")
        with pytest.raises(NotFoundError):
            c.put_archive("/no/such/folder", tar_of({"x": b"x"}))
        with pytest.raises(InvalidPathError):
            c.put_archive("/etc/passwd", tar_of({"x": b"x"}))
        with pytest.raises(InvalidPathError):
            c.read_file("/etc")
        with pytest.raises(InvalidPathError):
            c.read_file("")
        with pytest.raises(InvalidArgumentError):
            c.put_archive("/tmp", "not bytes")  # type: ignore[arg-type]
        with pytest.raises(InvalidPathError):
            c.write_file("/tmp/", b"x")
        with pytest.raises(NotFoundError):
            c.get_archive("/nope")
        with pytest.raises(InvalidPathError):
            c.copy_in("/definitely/not/here", "/tmp")


def test_read_only_root_refuses_writes_without_a_task(containerd: Client, busybox: str) -> None:
    from containerd_client import spec
    from containerd_client.errors import FailedPreconditionError

    with containerd.create_container(
        "cpro", image=busybox, args=["sleep", "60"], spec=[spec.with_readonly_rootfs()]
    ) as c:
        with pytest.raises(FailedPreconditionError, match="read-only"):
            c.write_file("/tmp/x", b"x")
        with pytest.raises(FailedPreconditionError, match="read-only"):
            c.put_archive("/tmp", tar_of({"x": b"x"}))
        assert c.read_file("/etc/passwd").startswith(b"root:")
        with pytest.raises(NotFoundError):
            c.read_file("/tmp/x")
