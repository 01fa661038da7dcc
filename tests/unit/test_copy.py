"""The copy machinery (``_copy``) on a plain folder standing in for a container's root.

No daemon: a ``root`` folder plays the container's root and a ``canary``
folder beside it plays the host's files. Every hostile case aims at the
canary, by absolute path or by ``..``, and checks that the canary is
unchanged afterwards, that writes meant for it landed inside the root, and
that refused archives wrote nothing at all.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerd_client import _copy, files
from containerd_client._archive import ArchiveError, UnsafeArchiveError
from containerd_client.errors import (
    BlobTooLargeError,
    DecompressionBombError,
    InvalidArgumentError,
    NotFoundError,
)


def _tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """A tar of ``(kind, name, data-or-link)``: kind ``f`` file, ``d`` folder, ``l`` symlink,
    ``h`` hard link, ``c`` char device, ``p`` FIFO."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "d" else 0o644
            data = b""
            if kind == "f":
                data = value if isinstance(value, bytes) else value.encode()
                info.size = len(data)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind in "lh":
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = str(value)
            elif kind == "c":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == "p":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if kind == "f" else None)
    return buf.getvalue()


def _tree(path: Path) -> dict[str, str]:
    """Every entry below ``path`` with its kind and content (links not followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(path))
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = full.read_bytes().decode(errors="replace")
            else:
                out[rel] = "dir" if stat.S_ISDIR(st.st_mode) else oct(st.st_mode)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "hostname").write_text("container\n")
    return path


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A host folder hostile input aims at: it must hold only ``secret`` when the test ends."""
    path = tmp_path / "canary"
    path.mkdir()
    (path / "secret").write_text("host secret\n")
    yield path
    assert _tree(path) == {"secret": "host secret\n"}
    assert (path / "secret").stat().st_nlink == 1


@pytest.fixture
def root_fd(root: Path) -> Iterator[int]:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _put(root_fd: int, dest: str, data: bytes) -> None:
    with _copy.spool_tar(data) as spool:
        _copy.check_tar(spool)
        _copy.extract(root_fd, dest, spool, chown=False)


def _inside(root: Path, host_path: Path) -> Path:
    """Where the host path ``host_path`` lands when read as a path inside ``root``."""
    return root / str(host_path).lstrip("/")


# -- writes through links stay inside the root --------------------------------------


def test_tar_symlink_to_host_folder_then_write_through_it(root: Path, root_fd: int, canary: Path) -> None:
    _put(root_fd, "/", _tar(("l", "link", str(canary)), ("f", "link/pwned", "x")))
    assert (root / "link").is_symlink()
    assert _inside(root, canary).joinpath("pwned").read_text() == "x"


def test_tar_relative_symlink_climbing_out_then_write_through_it(
    root: Path, root_fd: int, canary: Path
) -> None:
    up = "../" * (len(canary.parts) + 3)
    _put(root_fd, "/etc", _tar(("l", "up", up + str(canary).lstrip("/")), ("f", "up/pwned", "x")))
    # '..' stops at the container's root, so "up" is the root's own canary path.
    assert _inside(root, canary).joinpath("pwned").read_text() == "x"


def test_existing_symlink_in_container_to_host_folder(root: Path, root_fd: int, canary: Path) -> None:
    (root / "data").symlink_to(canary)
    with pytest.raises(NotFoundError):  # the container has no such folder
        _put(root_fd, "/data", _tar(("f", "pwned", "x")))
    _inside(root, canary).mkdir(parents=True)
    _put(root_fd, "/data", _tar(("f", "pwned", "x"), ("d", "sub", ""), ("f", "sub/more", "y")))
    assert _inside(root, canary).joinpath("pwned").read_text() == "x"
    assert _inside(root, canary).joinpath("sub", "more").read_text() == "y"


def test_member_replacing_a_symlink_is_not_written_through(root: Path, root_fd: int, canary: Path) -> None:
    (root / "etc" / "passwd").symlink_to(canary / "secret")
    _put(root_fd, "/etc", _tar(("f", "passwd", "root:x:0:0::/root:/bin/sh\n")))
    assert not (root / "etc" / "passwd").is_symlink()
    assert (root / "etc" / "passwd").read_text().startswith("root:")


def test_same_member_symlink_then_file(root: Path, root_fd: int, canary: Path) -> None:
    _put(root_fd, "/", _tar(("l", "f", str(canary / "secret")), ("f", "f", "mine")))
    assert (root / "f").read_text() == "mine"


def test_hard_link_through_symlinked_folder_to_host_file(root: Path, root_fd: int, canary: Path) -> None:
    # "d" points at the host folder; "h" hard-links "d/secret": inside the root there
    # is no such file, so the link fails instead of linking the host's secret.
    with pytest.raises(ArchiveError, match="not there"):
        _put(root_fd, "/", _tar(("l", "d", str(canary)), ("h", "h", "d/secret")))
    assert not (root / "h").exists()


def test_dest_given_as_climbing_path_stays_inside(root: Path, root_fd: int, canary: Path) -> None:
    rel = "/../../../../" + str(canary.relative_to("/"))
    with pytest.raises(NotFoundError):
        _put(root_fd, rel, _tar(("f", "pwned", "x")))


# -- refused before anything is written ---------------------------------------------


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ((("f", "ok", "x"), ("f", "../escape", "x")), r"climbs out"),
        ((("f", "ok", "x"), ("f", "a/../../escape", "x")), r"climbs out"),
        ((("f", "ok", "x"), ("f", "/abs", "x")), r"absolute"),
        ((("f", "ok", "x"), ("h", "hl", "../../etc/passwd")), r"hard link"),
        ((("f", "ok", "x"), ("h", "hl", "/etc/passwd")), r"hard link"),
        ((("f", "ok", "x"), ("c", "null", "")), r"device"),
        ((("f", "ok", "x"), ("p", "fifo", "")), r"FIFO"),
    ],
)
def test_unsafe_members_refused_and_nothing_written(
    root: Path, root_fd: int, canary: Path, members: tuple[tuple[str, str, str], ...], match: str
) -> None:
    before = _tree(root)
    with pytest.raises(UnsafeArchiveError, match=match):
        _put(root_fd, "/etc", _tar(*members))
    assert _tree(root) == before


def test_not_a_tar(root_fd: int) -> None:
    with pytest.raises(ArchiveError):
        _put(root_fd, "/", b"hello, not a tar" * 100)


def test_bad_data_types() -> None:
    with pytest.raises(InvalidArgumentError):
        _copy.spool_tar("a str")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        _copy.spool_tar(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        _copy.spool_tar(["text"])  # type: ignore[list-item]


def test_too_many_members(root: Path, root_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_copy, "MAX_ARCHIVE_MEMBERS", 3)
    with pytest.raises(DecompressionBombError):
        _put(root_fd, "/", _tar(*[("f", f"m{i}", "") for i in range(4)]))
    assert not (root / "m0").exists()


def test_gzip_tar_accepted(root: Path, root_fd: int) -> None:
    import gzip

    _put(root_fd, "/", gzip.compress(_tar(("f", "z", "zipped"))))
    assert (root / "z").read_text() == "zipped"


# -- reading ------------------------------------------------------------------------


def test_read_file_through_absolute_link_reads_the_container(root: Path, root_fd: int, canary: Path) -> None:
    (root / "etc" / "secret").symlink_to(canary / "secret")
    with pytest.raises(NotFoundError):
        _copy.read_file(root_fd, "/etc/secret", 1 << 20)
    _inside(root, canary).mkdir(parents=True)
    _inside(root, canary).joinpath("secret").write_text("container copy")
    assert _copy.read_file(root_fd, "/etc/secret", 1 << 20) == b"container copy"


def test_read_file_limits_and_kinds(root: Path, root_fd: int) -> None:
    assert _copy.read_file(root_fd, "etc/hostname", 100) == b"container\n"
    with pytest.raises(BlobTooLargeError):
        _copy.read_file(root_fd, "/etc/hostname", 3)
    with pytest.raises(_copy.InvalidPathError):
        _copy.read_file(root_fd, "/etc", 100)
    with pytest.raises(_copy.InvalidPathError, match="not a folder"):
        _copy.read_file(root_fd, "/etc/hostname/x", 100)
    (root / "loop").symlink_to("loop")
    with pytest.raises(_copy.InvalidPathError, match="too many levels"):
        _copy.read_file(root_fd, "/loop", 100)


def test_pack_keeps_links_as_links(root: Path, root_fd: int, canary: Path) -> None:
    (root / "etc" / "host").symlink_to(canary)
    (root / "etc" / "secret").symlink_to(canary / "secret")
    out = io.BytesIO()
    info = _copy.pack(root_fd, "/etc", out)
    assert info.name == "etc"
    assert stat.S_ISDIR(info.mode)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["etc/host"].issym()
        assert members["etc/secret"].issym()
        assert "etc/host/secret" not in members
        hostname = tar.extractfile(members["etc/hostname"])
        assert hostname is not None
        assert hostname.read() == b"container\n"
    link = _copy.stat_path(root_fd, "/etc/secret")
    assert link.link_target == str(canary / "secret")


def test_pack_extract_round_trip(root: Path, root_fd: int, tmp_path: Path) -> None:
    src = root / "app"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    os.link(src / "run.sh", src / "sub" / "again.sh")
    (src / "latest").symlink_to("run.sh")
    out = io.BytesIO()
    _copy.pack(root_fd, "/app", out)
    out.seek(0)
    dest = tmp_path / "out"
    dest.mkdir()
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        _copy.extract(fd, "/", out, rename=("app", "copy"), chown=False)
    finally:
        os.close(fd)
    assert _tree(dest / "copy") == _tree(src)
    assert stat.S_IMODE((dest / "copy" / "run.sh").stat().st_mode) == 0o750
    assert (dest / "copy" / "run.sh").stat().st_ino == (dest / "copy" / "sub" / "again.sh").stat().st_ino


def test_nothing_left_open(root: Path, root_fd: int, canary: Path) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        _put(root_fd, "/", _tar(("l", "link", str(canary)), ("f", "link/pwned", "x")))
        with pytest.raises(UnsafeArchiveError):
            _put(root_fd, "/", _tar(("f", "../x", "x")))
        with pytest.raises(NotFoundError):
            _copy.read_file(root_fd, "/nope/x", 10)
        _copy.pack(root_fd, "/", io.BytesIO())
    # No more than before (other tests' threads may close theirs meanwhile).
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_device_nodes_are_never_opened(root: Path, root_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stopped container's snapshot may hold a block device node of the host's disk:
    # opening it from the host reads the host's disk. Only O_PATH opens may touch it.
    os.mknod(root / "etc" / "disk", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, flags: int, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]
        if not flags & os.O_PATH and stat.S_ISCHR(os.fstat(fd).st_mode):
            opened.append(path)
        return fd

    monkeypatch.setattr(_copy.os, "open", spy)
    with pytest.raises(_copy.InvalidPathError):
        _copy.read_file(root_fd, "/etc/disk", 100)
    out = io.BytesIO()
    _copy.pack(root_fd, "/etc", out)
    assert opened == []
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert tar.getmember("etc/disk").ischr()


class _NoRPCContainer:
    """Stands in for a Container whose every daemon call fails the test."""

    id = "c"

    @property
    def client(self) -> object:
        raise AssertionError("bad input must be refused before any call to containerd")

    def info(self) -> object:
        raise AssertionError("bad input must be refused before any call to containerd")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: files.put_archive(c, "/tmp", _tar(("f", "../x", "x"))), UnsafeArchiveError),
        (lambda c: files.put_archive(c, "/tmp", _tar(("c", "dev", ""))), UnsafeArchiveError),
        (lambda c: files.put_archive(c, "/tmp", b"not a tar" * 200), ArchiveError),
        (lambda c: files.put_archive(c, "/tmp", "text"), InvalidArgumentError),
        (lambda c: files.put_archive(c, "", _tar(("f", "x", "x"))), _copy.InvalidPathError),
        (lambda c: files.put_archive(c, None, b""), _copy.InvalidPathError),
        (lambda c: files.write_file(c, "/tmp/x", "text"), InvalidArgumentError),
        (lambda c: files.write_file(c, "/tmp/x", b"", mode=0o10000), InvalidArgumentError),
        (lambda c: files.write_file(c, "/tmp/", b""), _copy.InvalidPathError),
        (lambda c: files.write_file(c, "/", b""), _copy.InvalidPathError),
        (lambda c: files.read_file(c, ""), _copy.InvalidPathError),
        (lambda c: files.get_archive(c, "a\0b"), _copy.InvalidPathError),
        (lambda c: files.copy_in(c, "/no/such/local/path", "/tmp"), _copy.InvalidPathError),
    ],
)
def test_bad_input_refused_before_any_rpc(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(_NoRPCContainer())


def test_folder_member_keeps_an_existing_link_to_a_folder(root: Path, root_fd: int, canary: Path) -> None:
    # Merged-/usr images have /lib -> usr/lib: a tar holding "lib/" must not replace the link
    # with an empty folder (the image would lose its libraries); it writes through it, inside.
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "libc.so").write_text("libc")
    (root / "lib").symlink_to("usr/lib")
    (root / "hostlink").symlink_to(canary)  # a link to a folder only the host has
    _put(
        root_fd,
        "/",
        _tar(("d", "lib", ""), ("f", "lib/x", "x"), ("d", "hostlink", ""), ("f", "hostlink/y", "y")),
    )
    assert os.readlink(root / "lib") == "usr/lib"
    assert (root / "usr" / "lib" / "x").read_text() == "x"
    assert (root / "usr" / "lib" / "libc.so").read_text() == "libc"
    # The link to a folder that is not in the container is replaced by a real folder.
    assert not (root / "hostlink").is_symlink()
    assert (root / "hostlink" / "y").read_text() == "y"
