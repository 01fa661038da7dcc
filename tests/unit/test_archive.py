"""Archive checks, layer file lookup, OCI values and import planning, without a daemon."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from containerd_client import errors
from containerd_client._archive import (
    ArchiveError,
    ArchiveReader,
    ImageFormatError,
    UnsafeArchiveError,
    chain_ids,
    decompressed,
    find_file,
    ref_tag,
)
from containerd_client.content import (
    BlobTooLargeError,
    Descriptor,
    DigestMismatchError,
    Platform,
    _Source,
    digest_bytes,
)
from containerd_client.images import (
    PlatformNotFoundError,
    _name_entries,
    _plan_docker,
    _plan_oci,
    _repository,
)
from containerd_client.snapshots import Mount
from containerd_client.testing import build_image_archive

# -- helpers -----------------------------------------------------------------------


_Member = tuple[tarfile.TarInfo, "bytes | None"]


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, link: str = "") -> _Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info, data


def _tar_bytes(members: list[_Member], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def _layer(entries: dict[str, object], *, compress: bool = False) -> bytes:
    """A layer tar: bytes are files, ("sym", t) / ("hard", t) links, None a directory, "wh" a whiteout."""
    members = []
    for name, value in entries.items():
        if value is None:
            members.append(_member(name, tarfile.DIRTYPE))
        elif value == "wh":
            parent, _, base = name.rpartition("/")
            members.append(_member(f"{parent}/.wh.{base}" if parent else f".wh.{base}", data=b""))
        elif value == "opq":
            members.append(_member(f"{name}/.wh..wh..opq", data=b""))
        elif isinstance(value, tuple):
            kind = tarfile.SYMTYPE if value[0] == "sym" else tarfile.LNKTYPE
            members.append(_member(name, kind, link=value[1]))
        else:
            assert isinstance(value, bytes)
            members.append(_member(name, data=value))
    return _tar_bytes(members, compress=compress)


def _openers(*layers: bytes, chunk: int = 7) -> list[Callable[[], Iterator[bytes]]]:
    """Openers of layers given lowest first, returned top first as find_file wants."""

    def opener(blob: bytes) -> Callable[[], Iterator[bytes]]:
        def open_() -> Iterator[bytes]:
            for i in range(0, len(blob), chunk):
                yield blob[i : i + chunk]

        return open_

    return [opener(b) for b in reversed(layers)]


def _find(path: str, *layers: bytes, max_size: int = 1 << 20) -> bytes | None:
    return find_file(_openers(*layers), path, max_size=max_size)


# -- chain ids and names ---------------------------------------------------------------


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def test_ref_tag_and_repository() -> None:
    assert ref_tag("docker.io/library/busybox:latest") == "latest"
    assert ref_tag("localhost:5000/app") == "localhost:5000/app"
    assert _repository("localhost:5000/app:1") == "localhost:5000/app"
    assert _repository("app@sha256:abc") == "app"


# -- the archive reader ------------------------------------------------------------------

UNSAFE = {
    "dotdot": [_member("../x", data=b"x")],
    "nested-dotdot": [_member("a/../../x", data=b"x")],
    "absolute": [_member("/etc/x", data=b"x")],
    "absolute-symlink": [_member("index.json", tarfile.SYMTYPE, link="/etc/passwd")],
    "escaping-symlink": [_member("a/b", tarfile.SYMTYPE, link="../../etc/passwd")],
    "escaping-hardlink": [_member("a", tarfile.LNKTYPE, link="../a")],
    "absolute-hardlink": [_member("a", tarfile.LNKTYPE, link="/etc/passwd")],
    "fifo": [_member("p", tarfile.FIFOTYPE)],
    "device": [_member("d", tarfile.CHRTYPE)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused(case: str) -> None:
    with pytest.raises(UnsafeArchiveError) as info:
        ArchiveReader(io.BytesIO(_tar_bytes(UNSAFE[case])))
    assert isinstance(info.value, ArchiveError)
    assert isinstance(info.value, ImageFormatError)
    assert isinstance(info.value, errors.InvalidArgumentError)
    assert isinstance(info.value, ValueError)
    assert isinstance(pickle.loads(pickle.dumps(info.value)), UnsafeArchiveError)


def test_links_inside_the_archive_resolve() -> None:
    data = _tar_bytes(
        [
            _member("./store", tarfile.DIRTYPE),
            _member("./store/real", data=b"payload"),
            _member("blobs/sha256/abc", tarfile.SYMTYPE, link="../../store/real"),
            _member("hard", tarfile.LNKTYPE, link="store/real"),
        ]
    )
    with ArchiveReader(io.BytesIO(data)) as arc:
        assert arc.read("blobs/sha256/abc", 100) == b"payload"
        assert arc.read("hard", 100) == b"payload"
        assert arc.size("blobs/sha256/abc") == 7
        assert arc.has("store/real")
        assert not arc.has("store")
        assert not arc.has("missing")
        with pytest.raises(ArchiveError, match="larger than"):
            arc.read("store/real", 3)
        with pytest.raises(ArchiveError, match="no file"):
            arc.open("missing")


def test_link_loop_is_refused_on_open() -> None:
    data = _tar_bytes([_member("a", tarfile.SYMTYPE, link="b"), _member("b", tarfile.SYMTYPE, link="a")])
    with pytest.raises(ArchiveError, match="too many levels of symbolic links"):
        ArchiveReader(io.BytesIO(data))


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        chunk = self._f.read(min(len(b), 1000))
        b[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("how", ["gzip", "stream", "gzip-stream", "offset"])
def test_compressed_and_streamed_archives(how: str, tmp_path: Path) -> None:
    raw = _tar_bytes([_member("index.json", data=b"{}"), _member("blobs/x", data=b"x" * 5000)])
    data = gzip.compress(raw) if how.startswith("gzip") else raw
    src: IO[bytes]
    if how.endswith("stream"):
        src = _Unseekable(data)  # type: ignore[assignment]
    elif how == "offset":
        src = io.BytesIO(b"JUNK" + data)
        src.read(4)
    else:
        path = tmp_path / "a.tar.gz"
        path.write_bytes(data)
        with ArchiveReader(path) as arc:
            assert arc.read("blobs/x", 1 << 20) == b"x" * 5000
        return
    with ArchiveReader(src) as arc:
        assert sorted(arc.names()) == ["blobs/x", "index.json"]
        with arc.open("blobs/x") as f:
            f.seek(4990)
            assert f.read() == b"x" * 10


def test_not_a_tar() -> None:
    with pytest.raises(ArchiveError, match="not a tar"):
        ArchiveReader(io.BytesIO(b"\x00garbage" * 200))


# -- files in layers ---------------------------------------------------------------------


def test_find_file_top_layer_wins_and_whiteouts_hide() -> None:
    l0 = _layer({"etc": None, "etc/a": b"a0", "etc/b": b"b0", "etc/c": b"c0"})
    l1 = _layer({"etc/a": b"a1", "etc/b": "wh"}, compress=True)
    l2 = _layer({"etc/c": "wh"})
    l3 = _layer({"etc/c": b"c3"})
    assert _find("/etc/a", l0, l1, l2) == b"a1"
    assert _find("etc/a", l0) == b"a0"
    assert _find("/etc/b", l0, l1) is None
    assert _find("/etc/c", l0, l1, l2) is None
    assert _find("/etc/c", l0, l1, l2, l3) == b"c3"
    assert _find("/etc", l0) is None
    assert _find("/", l0) is None
    assert _find("/nope", l0, l1) is None


def test_find_file_opaque_directories() -> None:
    l0 = _layer({"d/old": b"old", "d/keep": b"k0", "e/x": b"x"})
    l1 = _layer({"d": "opq", "d/keep": b"k1", "d/new": b"new"})
    assert _find("/d/old", l0, l1) is None
    assert _find("/d/keep", l0, l1) == b"k1"
    assert _find("/d/new", l0, l1) == b"new"
    assert _find("/e/x", l0, l1) == b"x"


def test_find_file_whited_out_directory_and_recreated() -> None:
    l0 = _layer({"a/b": b"b0", "a/c": b"c0"})
    l1 = _layer({"a": "wh"})
    l2 = _layer({"a/c": b"c2"})
    assert _find("/a/b", l0, l1) is None
    # A directory made again above a whiteout does not bring back what was below.
    assert _find("/a/b", l0, l1, l2) is None
    assert _find("/a/c", l0, l1, l2) == b"c2"


def test_find_file_file_and_directory_replacing_each_other() -> None:
    l0 = _layer({"x/y": b"y0"})
    l1 = _layer({"x": b"now a file"})
    l2 = _layer({"x/z": b"z2"})
    assert _find("/x/y", l0, l1) is None
    assert _find("/x", l0, l1) == b"now a file"
    assert _find("/x/y", l0, l1, l2) is None
    assert _find("/x/z", l0, l1, l2) == b"z2"


def test_find_file_follows_symlinks_and_hardlinks() -> None:
    l0 = _layer(
        {
            "usr/bin/tool": b"tool",
            "bin": ("sym", "usr/bin"),
            "etc/rel": ("sym", "../usr/bin/tool"),
            "etc/abs": ("sym", "/usr/bin/tool"),
            "etc/up": ("sym", "../../../../usr/bin/tool"),
            "etc/hard": ("hard", "usr/bin/tool"),
            "loop1": ("sym", "loop2"),
            "loop2": ("sym", "loop1"),
            "root": ("sym", "/"),
        }
    )
    assert _find("/bin/tool", l0) == b"tool"
    assert _find("/etc/rel", l0) == b"tool"
    assert _find("/etc/abs", l0) == b"tool"
    assert _find("/etc/up", l0) == b"tool"
    assert _find("/etc/hard", l0) == b"tool"
    assert _find("/loop1", l0) is None
    assert _find("/root", l0) is None
    assert _find("/root/usr/bin/tool", l0) == b"tool"
    # A link in a lower layer leads to a file from an upper one.
    l1 = _layer({"usr/bin/tool": b"tool v2"})
    assert _find("/bin/tool", l0, l1) == b"tool v2"


def test_find_file_size_limit() -> None:
    l0 = _layer({"big": b"x" * 1000})
    with pytest.raises(BlobTooLargeError):
        _find("/big", l0, max_size=999)
    assert _find("/big", l0, max_size=1000) == b"x" * 1000


def test_find_file_bad_layer() -> None:
    with pytest.raises(ArchiveError):
        _find("/x", b"\x01" * 2048 + b"not a tar" * 100)


def test_decompressed_passes_plain_data_through() -> None:
    assert b"".join(decompressed(iter([b"ab", b"cd"]))) == b"abcd"
    assert b"".join(decompressed(iter([]))) == b""
    packed = gzip.compress(b"hello") + gzip.compress(b" world")
    assert b"".join(decompressed(iter([packed[:3], packed[3:]]))) == b"hello world"


# -- OCI values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", ("linux", "amd64", "")),
        ("linux/x86_64", ("linux", "amd64", "")),
        ("Linux/aarch64", ("linux", "arm64", "")),
        ("linux/arm64/v8", ("linux", "arm64", "")),
        ("linux/arm", ("linux", "arm", "v7")),
        ("linux/arm/6", ("linux", "arm", "v6")),
        ("linux/armhf", ("linux", "arm", "v7")),
        ("windows/amd64", ("windows", "amd64", "")),
        ("s390x", ("linux", "s390x", "")),
    ],
)
def test_platform_parse_and_normalize(text: str, expected: tuple[str, str, str]) -> None:
    p = Platform.parse(text)
    assert (p.os, p.architecture, p.variant) == expected
    assert Platform.parse(str(p)) == p


def test_platform_matching_and_host() -> None:
    host = Platform.host()
    assert host.os == "linux"
    assert Platform.parse(host.architecture).architecture == host.architecture
    assert Platform("linux", "arm").matches(Platform("linux", "arm", "v7"))
    assert not Platform("linux", "arm", "v6").matches(Platform("linux", "arm", "v7"))
    assert Platform("linux", "arm64").matches(Platform("linux", "aarch64", "v8"))
    assert not Platform("linux", "amd64").matches(Platform("windows", "amd64"))
    assert Platform.from_oci({"os": "linux", "architecture": "arm", "variant": "v5"}).to_oci() == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v5",
    }
    for bad in ("", "a/b/c/d", "linux//x"):
        with pytest.raises(ValueError, match="invalid platform"):
            Platform.parse(bad)


def test_descriptor_conversions() -> None:
    oci = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "1" * 64,
        "size": 42,
        "urls": ["https://example.invalid/blob"],
        "annotations": {"a": "b"},
        "platform": {"architecture": "arm64", "os": "linux"},
    }
    desc = Descriptor.from_oci(oci)
    assert desc.platform == Platform("linux", "arm64")
    assert desc.urls == ("https://example.invalid/blob",)
    assert desc.to_oci() == oci
    back = Descriptor.from_proto(desc.to_proto())
    assert back == Descriptor(desc.media_type, desc.digest, 42, {"a": "b"})
    for bad in ({"digest": "nope", "size": 1}, {"digest": "sha256:1", "size": -1}, {"digest": "sha256:1"}):
        with pytest.raises(ValueError, match="descriptor"):
            Descriptor.from_oci(bad)


def test_mount_proto_round_trip() -> None:
    m = Mount("overlay", "overlay", "", ["lowerdir=/a", "upperdir=/b"])
    assert m.options == ("lowerdir=/a", "upperdir=/b")
    assert Mount.from_proto(m.to_proto()) == m


def test_error_types() -> None:
    err = DigestMismatchError("bad", errors.StatusCode.FAILED_PRECONDITION)
    assert isinstance(err, errors.FailedPreconditionError)
    assert pickle.loads(pickle.dumps(err)).message == "bad"
    assert issubclass(PlatformNotFoundError, errors.NotFoundError)
    # Refinements never become the default class of their status code.
    assert type(errors.error_for_status(9, "x")) is errors.FailedPreconditionError
    assert type(errors.error_for_status(5, "x")) is errors.NotFoundError
    assert type(errors.error_for_status(3, "x")) is errors.InvalidArgumentError


# -- write sources --------------------------------------------------------------------


def test_source_skip_and_rewind_an_iterable() -> None:
    data = bytes(range(256)) * 100
    src = _Source(iter([data[:1000], data[1000:5000], data[5000:]]), chunk=4096)
    skipped, digest = src.skip(3000)
    assert (skipped, digest) == (3000, digest_bytes(data[:3000]))
    assert b"".join(src.chunks()) == data[3000:]
    src.close()
    src = _Source(iter([data]), chunk=4096)
    src.skip(3000)
    src.rewind()
    pieces = list(src.chunks())
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= 4096
    src.close()


def test_source_sizes() -> None:
    f = io.BytesIO(b"0123456789")
    f.read(3)
    src = _Source(f, chunk=4)
    assert src.size() == 7
    assert src.skip(2) == (2, digest_bytes(b"34"))
    src.rewind()
    assert b"".join(src.chunks()) == b"3456789"
    assert _Source(b"abc", chunk=1).size() == 3
    assert _Source(iter([b"abc"]), chunk=1).size() is None


# -- import planning ---------------------------------------------------------------


def test_plan_docker_predicts_containerds_manifest(tmp_path: Path) -> None:
    arc = build_image_archive(
        tmp_path / "d.tar",
        name="example/app:1",
        layers=[{"a": b"a"}, {"b": b"b"}],
        fmt="docker",
        gzip=True,
    )
    with ArchiveReader(arc.path) as reader:
        plan = _plan_docker(reader)
    named = _name_entries(plan, None)
    assert named == [("docker.io/example/app:1", named[0][1])]
    target = named[0][1]
    assert target.digest == arc.manifest_digest
    manifest = json.loads(plan.blobs[target.digest].data or b"")
    assert [layer["digest"] for layer in manifest["layers"]] == list(arc.layer_digests)
    labels = plan.blobs[target.digest].labels
    assert labels["containerd.io/gc.ref.content.config"] == arc.config_digest
    assert labels["containerd.io/gc.ref.content.l.1"] == arc.layer_digests[1]


def test_plan_oci_names(tmp_path: Path) -> None:
    arc = build_image_archive(tmp_path / "o.tar", name="localhost/app:2", layers=[{"a": b"a"}])
    with ArchiveReader(arc.path) as reader:
        plan = _plan_oci(reader)
    assert _name_entries(plan, None)[0][0] == "localhost/app:2"
    assert _name_entries(plan, "other/name:7")[0][0] == "other/name:7"
    assert set(plan.blobs) == {arc.manifest_digest, arc.config_digest, *arc.layer_digests}
    # Tag-only names take the repository from name=.
    plan.entries = [(None, "v1", plan.entries[0][2]), (None, "v2", plan.entries[0][2])]
    assert [n for n, _ in _name_entries(plan, "localhost/base:x")] == [
        "localhost/base:v1",
        "localhost/base:v2",
    ]
    with pytest.raises(ArchiveError, match="names no image"):
        _name_entries(plan, None)


def test_plan_oci_checks_sizes_and_digests(tmp_path: Path) -> None:
    arc = build_image_archive(tmp_path / "o.tar", name="localhost/app:3", layers=[{"a": b"a"}])
    manifest_name = "blobs/sha256/" + arc.manifest_digest.split(":", 1)[1]
    with tarfile.open(arc.path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    for info, data in members:
        if info.name == manifest_name:
            assert data is not None
            members[members.index((info, data))] = (info, data.replace(b"sha256", b"SHA256", 1))
    with ArchiveReader(io.BytesIO(_tar_bytes(members))) as reader, pytest.raises(DigestMismatchError):
        _plan_oci(reader)
