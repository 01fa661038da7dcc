"""Hostile copies into and out of real containers: nothing escapes the container's root.

Each case runs against a container whose files are reached three ways: a
running task (``/proc/<pid>/root``), an image container without a task (its
snapshot mounted on a private temp folder) and a container on a host folder
(``rootfs=``). A host ``canary`` folder holding ``secret`` is the target of
every escape (by absolute symlink, by ``..``, by hard link); after each case
the canary must hold exactly what it held, the host's secret must not appear
in anything read from the container, refused archives must have written
nothing, and no mount, temp folder or descriptor of the copy code is left.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _copy_leaks import copy_mounts, copy_temp_folders

from containerd_client import Client
from containerd_client._archive import ArchiveError, UnsafeArchiveError
from containerd_client.containers import Container
from containerd_client.errors import ContainerdError, NotFoundError
from containerd_client.testing import build_busybox_archive, make_busybox_rootfs

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.containerd_leaks_ok("images", reason="the busybox image is the tests' setup"),
]

SECRET = b"host secret 7f3a\n"


def _tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """A tar of ``(kind, name, value)``; kinds: ``f`` file, ``d`` folder, ``l``/``h`` links, ``c`` device."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "d" else 0o644
            data = value if isinstance(value, bytes) else value.encode()
            if kind == "f":
                info.size = len(data)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, str(value)
            elif kind == "c":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info, io.BytesIO(data) if kind == "f" else None)
    return buf.getvalue()


def _host_state(canary: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(canary):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(canary))] = (st.st_nlink, p.read_bytes() if p.is_file() else b"")
    return out


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "canary"
    path.mkdir()
    (path / "secret").write_bytes(SECRET)
    before = _host_state(path)
    yield path
    assert _host_state(path) == before


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    fds = len(os.listdir("/proc/self/fd"))
    yield
    assert copy_mounts() == []
    assert copy_temp_folders() == []
    assert len(os.listdir("/proc/self/fd")) <= fds + 8


@pytest.fixture(params=["running", "no-task", "rootfs"])
def container(request: pytest.FixtureRequest, containerd: Client, tmp_path: Path) -> Iterator[Container]:
    mode = request.param
    if mode == "rootfs":
        rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
        c = containerd.create_container("hostile", rootfs=rootfs, args=["sleep", "60"])
    else:
        archive = build_busybox_archive(tmp_path / "busybox.tar")
        (image,) = containerd.images.import_archive(archive.path)
        c = containerd.create_container("hostile", image=image.name, args=["sleep", "60"])
    with c:
        task = None
        if mode == "running":
            task = c.new_task()
            task.start()
        yield c
        if task is not None:
            task.kill("SIGKILL")
            task.wait(timeout=30)


def _inside(canary: Path) -> str:
    """The container path that has the host canary's name."""
    return str(canary)


def test_writes_through_symlinks_stay_inside(container: Container, canary: Path) -> None:
    # 1. A symlink in the container to the host folder: the container has no such folder.
    container.put_archive("/tmp", _tar(("l", "to-host", str(canary))))
    with pytest.raises(NotFoundError):
        container.put_archive("/tmp/to-host", _tar(("f", "pwned", "x")))
    # 2. The same link, and a write through it, in one tar: lands in the container.
    container.put_archive("/", _tar(("l", "esc", str(canary)), ("f", "esc/pwned", "x")))
    assert container.read_file(_inside(canary) + "/pwned") == b"x"
    # 3. A relative link climbing far above the root: '..' stops at the container's root.
    up = "../" * (len(canary.parts) + 5) + str(canary).lstrip("/")
    container.put_archive("/tmp", _tar(("l", "up", up), ("f", "up/pwned2", "y")))
    assert container.read_file(_inside(canary) + "/pwned2") == b"y"
    # 4. The container's own /etc replaced by a link to the host's canary: a write into /etc.
    container.put_archive("/tmp", _tar(("l", "etc-link", str(canary))))
    container.write_file("/tmp/etc-link/hostname", b"inside")
    assert container.read_file(_inside(canary) + "/hostname") == b"inside"
    # 5. A file member replacing a symlink to the host's secret replaces the link.
    container.put_archive("/tmp", _tar(("l", "secret", str(canary / "secret"))))
    container.put_archive("/tmp", _tar(("f", "secret", "mine")))
    assert container.read_file("/tmp/secret") == b"mine"


#: Tars ``put_archive`` must refuse, and the error each gets. One container serves all
#: (a container per case would triple the test's time for no more coverage).
HOSTILE_TARS: list[tuple[tuple[tuple[str, str, str], ...], type[Exception]]] = [
    ((("f", "ok", "x"), ("f", "../../../../pwned", "x")), UnsafeArchiveError),
    ((("f", "ok", "x"), ("f", "/pwned", "x")), UnsafeArchiveError),
    ((("f", "ok", "x"), ("h", "hl", "../../../../etc/passwd")), UnsafeArchiveError),
    ((("f", "ok", "x"), ("h", "hl", "/etc/passwd")), UnsafeArchiveError),
    ((("f", "ok", "x"), ("c", "null", "")), UnsafeArchiveError),
    # A hard link through a symlinked folder to the host's secret: not there in the container.
    ((("l", "d", "/CANARY"), ("h", "hl", "d/secret")), ArchiveError),
]


def test_hostile_tars_refused(container: Container, canary: Path) -> None:
    for template, error in HOSTILE_TARS:
        members = tuple((k, n, v.replace("/CANARY", str(canary))) for k, n, v in template)
        with pytest.raises(error):
            container.put_archive("/tmp", _tar(*members))
        if error is UnsafeArchiveError:  # refused before anything was written
            with pytest.raises(NotFoundError):
                container.read_file("/tmp/ok")
        with pytest.raises(NotFoundError):
            container.read_file("/tmp/hl")


def test_reads_never_follow_links_to_the_host(container: Container, canary: Path, tmp_path: Path) -> None:
    container.put_archive(
        "/tmp",
        _tar(("d", "box", ""), ("l", "box/secret", str(canary / "secret")), ("l", "box/dir", str(canary))),
    )
    with pytest.raises(NotFoundError):
        container.read_file("/tmp/box/secret")
    with pytest.raises(NotFoundError):
        container.read_file("/tmp/box/dir/secret")
    chunks, info = container.get_archive("/tmp/box")
    data = b"".join(chunks)
    assert SECRET not in data
    chunks, info = container.get_archive("/tmp/box/secret")
    assert info.link_target == str(canary / "secret")
    assert SECRET not in b"".join(chunks)
    out = tmp_path / "out"
    out.mkdir()
    container.copy_out("/tmp/box", out)
    assert os.readlink(out / "box" / "secret") == str(canary / "secret")
    assert (out / "box" / "dir").is_symlink()


def test_symlink_swapped_while_copying(containerd: Client, canary: Path, tmp_path: Path) -> None:
    """A container process swaps a folder for a link to the host's canary in a loop while
    the host copies into it and reads from it: every copy lands in the container or fails
    with a typed error; none reaches the canary."""
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
    script = (
        f"mkdir -p /tmp/d; echo in > /tmp/d/f; echo ready; while true; do "
        f"mv /tmp/d /tmp/real; ln -s {canary} /tmp/d; rm /tmp/d; mv /tmp/real /tmp/d; done"
    )
    with containerd.create_container("swap", rootfs=rootfs, args=["sh", "-c", script]) as c:
        task = c.new_task()
        task.start()
        deadline = 30.0
        start = time.monotonic()
        outcomes: dict[str, int] = {}
        for i in range(150):
            assert time.monotonic() - start < deadline
            for op in (
                lambda i=i: c.put_archive("/tmp/d", _tar(("f", f"p{i}", "x"))),
                lambda: c.write_file("/tmp/d/w", b"w"),
                lambda: c.read_file("/tmp/d/secret"),
            ):
                try:
                    data = op()
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                    assert data != SECRET
                except ContainerdError as exc:
                    outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
        task.kill("SIGKILL")
        task.wait(timeout=30)
    assert outcomes.get("ok", 0) > 0
    assert not (canary / "w").exists()
