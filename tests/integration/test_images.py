"""Content, snapshots and images against a real containerd: import, unpack, read, export."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client, cio, errors
from containerd_client import content as content_mod
from containerd_client._archive import chain_ids
from containerd_client.client import SESSION_LABEL
from containerd_client.content import (
    BlobTooLargeError,
    ContentStore,
    Descriptor,
    DigestMismatchError,
    Platform,
    digest_bytes,
)
from containerd_client.images import (
    ArchiveError,
    ImageStore,
    PlatformNotFoundError,
    UnsafeArchiveError,
)
from containerd_client.snapshots import SnapshotKind, SnapshotStore
from containerd_client.testing import (
    ContainerdDaemon,
    Directory,
    ImageArchive,
    Symlink,
    Whiteout,
    build_busybox_archive,
    build_image_archive,
    host_platform,
)
from containerd_client.testing.plugin import sweep_namespace

# -- helpers -------------------------------------------------------------------------


# These tests import images into their namespace as their setup and leave them to the
# sweep. The images (and the blobs and snapshots only they hold) are not leaks;
# anything else left behind is (a container, a task, a lease, an extract snapshot).
pytestmark = pytest.mark.containerd_leaks_ok("images", reason="images are the tests' setup")


@pytest.fixture(scope="session")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-archives")


@pytest.fixture(scope="session")
def busybox_oci(archive_dir: Path) -> ImageArchive:
    return build_busybox_archive(archive_dir / "busybox-oci.tar", name="localhost/cc/busybox:oci")


@pytest.fixture(scope="session")
def busybox_docker(archive_dir: Path) -> ImageArchive:
    return build_busybox_archive(
        archive_dir / "busybox-docker.tar", name="localhost/cc/busybox:docker", fmt="docker"
    )


@pytest.fixture
def images(containerd: Client) -> ImageStore:
    return ImageStore(containerd)


@pytest.fixture
def content(containerd: Client) -> ContentStore:
    return ContentStore(containerd)


@pytest.fixture
def other_namespace(containerd: Client) -> Iterator[Client]:
    view = containerd.namespace(containerd.namespace_name + "-b")
    try:
        yield view
    finally:
        sweep_namespace(view)


def _leftovers(client: Client) -> dict[str, list[str]]:
    return {
        "leases": [le.id for le in client.leases.list()],
        "images": [i.name for i in ImageStore(client).list()],
        "content": [c.digest for c in ContentStore(client).list()],
        "ingests": [s.ref for s in ContentStore(client).statuses()],
        "snapshots": [s.name for s in SnapshotStore(client).list()],
    }


def _nothing_left(client: Client) -> None:
    assert _leftovers(client) == {"leases": [], "images": [], "content": [], "ingests": [], "snapshots": []}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _rewrite_archive(src: str, dest: Path, change: dict[str, bytes | None]) -> Path:
    """Copy an archive, replacing (bytes) or dropping (None) some members."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
                tout.addfile(member, io.BytesIO(data))
            else:
                tout.addfile(member, tin.extractfile(member) if member.isreg() else None)
    return dest


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _read_member(path: str, name: str) -> bytes:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


# -- content -------------------------------------------------------------------------


def test_content_write_info_read_labels(containerd: Client, content: ContentStore) -> None:
    data = os.urandom(3 << 20) + b"tail"
    digest = digest_bytes(data)
    with containerd.lease(expire=300):
        info = content.write("t-blob", data, expected_digest=digest, labels={"team": "a"})
        assert (info.digest, info.size, dict(info.labels)) == (digest, len(data), {"team": "a"})
        assert info.created_at is not None
        assert content.info(digest) == info
        assert content.exists(digest)
        assert b"".join(content.read(digest)) == data
        assert all(len(p) <= 1000 for p in content.read(digest, chunk=1000, size=5000))
        assert b"".join(content.read(digest, offset=len(data) - 4)) == b"tail"
        assert b"".join(content.read(digest, offset=10, size=20)) == data[10:30]
        assert content.read_all(digest) == data
        with pytest.raises(BlobTooLargeError):
            content.read_all(digest, max_size=1 << 20)

        assert content.set_labels(digest, {"env": "ci", "team": ""}) == {"env": "ci"}
        assert [c.digest for c in content.list("labels.env==ci")] == [digest]
        assert content.list("labels.env==prod") == []

        # Writing it again sends nothing and applies the labels to the stored blob.
        again = content.write("t-blob-2", io.BytesIO(data), expected_digest=digest, labels={"x": "y"})
        assert dict(again.labels) == {"env": "ci", "x": "y"}
        content.delete(digest)
        with pytest.raises(errors.NotFoundError):
            content.info(digest)
        with pytest.raises(errors.NotFoundError):
            content.read_all(digest)


def _sent_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    original = content_mod._WriteSession.send

    def send(self: content_mod._WriteSession, request: object) -> None:
        sent.append(len(getattr(request, "data", b"")))
        original(self, request)

    monkeypatch.setattr(content_mod._WriteSession, "send", send)
    return sent


def test_content_write_resumes_after_interruption(
    containerd: Client, content: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(5 << 20)
    digest = digest_bytes(data)

    def broken() -> Iterator[bytes]:
        yield data[: 3 << 20]
        raise ConnectionError("source went away")

    with containerd.lease(expire=300):
        with pytest.raises(ConnectionError):
            content.write("resume-me", broken(), expected_digest=digest, expected_size=len(data))
        status = content.status("resume-me")
        assert (status.offset, status.total) == (3 << 20, len(data))
        assert [s.ref for s in content.statuses()] == ["resume-me"]

        sent = _sent_bytes(monkeypatch)
        info = content.write("resume-me", iter([data[:1000], data[1000:]]), expected_digest=digest)
        assert info.size == len(data)
        assert sum(sent) == len(data) - (3 << 20)
        assert content.read_all(digest) == data
        assert content.statuses() == []


def test_content_resume_with_other_data_starts_over(
    containerd: Client, content: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.urandom(2 << 20)
    new = os.urandom(3 << 20)

    def broken() -> Iterator[bytes]:
        yield old
        raise ConnectionError("interrupted")

    with containerd.lease(expire=300):
        with pytest.raises(ConnectionError):
            content.write("shared-ref", broken(), expected_digest=digest_bytes(old + old))
        assert content.status("shared-ref").offset == len(old)
        sent = _sent_bytes(monkeypatch)
        info = content.write("shared-ref", new, expected_digest=digest_bytes(new))
        assert sum(sent) == len(new)
        assert content.read_all(info.digest) == new


def test_content_abort_drops_the_write(containerd: Client, content: ContentStore) -> None:
    data = os.urandom(1 << 20)

    def broken() -> Iterator[bytes]:
        yield data[:1000]
        raise ConnectionError("stop")

    with containerd.lease(expire=300):
        with pytest.raises(ConnectionError):
            content.write("to-abort", broken(), expected_digest=digest_bytes(data))
        content.abort("to-abort")
        assert content.statuses() == []
        with pytest.raises(errors.NotFoundError):
            content.abort("to-abort")


@pytest.mark.parametrize("size_wrong", [False, True])
def test_content_digest_mismatch_leaves_nothing(
    containerd: Client, content: ContentStore, size_wrong: bool
) -> None:
    data = b"hello world\n" * 1000
    if size_wrong:
        kwargs: dict[str, object] = {"expected_digest": digest_bytes(data), "expected_size": len(data) + 1}
    else:
        kwargs = {"expected_digest": digest_bytes(data + b"!")}
    with containerd.lease(expire=300), pytest.raises(DigestMismatchError) as info:
        content.write("mismatch", data, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, errors.FailedPreconditionError)
    assert info.value.code is errors.StatusCode.FAILED_PRECONDITION
    assert isinstance(pickle.loads(pickle.dumps(info.value)), DigestMismatchError)
    _nothing_left(containerd)


def test_content_concurrent_writers_of_one_ref(
    containerd: Client, content: ContentStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="containerd_client.content")
    data = os.urandom(4 << 20)
    digest = digest_bytes(data)
    holding = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def slow() -> Iterator[bytes]:
        yield data[: 1 << 20]
        holding.set()
        release.wait(30)
        yield data[1 << 20 :]

    def first() -> None:
        with containerd.lease(expire=300):
            try:
                results.append(content.write("busy-ref", slow(), expected_digest=digest))
            except Exception as exc:
                results.append(exc)

    with containerd.lease(expire=300):
        t = threading.Thread(target=first, name="first-writer")
        t.start()
        assert holding.wait(30)
        # The ref is locked by the first writer: this one takes its own ref.
        second = content.write("busy-ref", data, expected_digest=digest)
        assert "content ref busy-ref is busy; writing as busy-ref-" in caplog.text
        release.set()
        t.join(30)
        assert second.digest == digest
        assert len(results) == 1
        assert not isinstance(results[0], Exception), results[0]
        assert content.read_all(digest) == data


# -- snapshots -----------------------------------------------------------------------


def test_snapshots_prepare_commit_view_usage_remove(containerd: Client) -> None:
    snaps = SnapshotStore(containerd, "overlayfs")
    with containerd.lease(expire=300):
        mounts = snaps.prepare("active-1", labels={"purpose": "test"})
        assert mounts
        assert mounts[0].type in ("bind", "overlay")
        assert snaps.mounts("active-1") == mounts
        info = snaps.stat("active-1")
        assert (info.name, info.parent, info.kind) == ("active-1", "", SnapshotKind.ACTIVE)
        # The SDK's session label (for Client.sweep), then the caller's.
        assert info.labels == {"purpose": "test", SESSION_LABEL: containerd.session}

        snaps.commit("base", "active-1", labels={"layer": "0"})
        assert snaps.stat("base").kind is SnapshotKind.COMMITTED
        with pytest.raises(errors.NotFoundError):
            snaps.stat("active-1")

        view = snaps.view("view-1", "base")
        assert [m.type for m in view] == ["bind"]
        assert "ro" in view[0].options
        assert snaps.stat("view-1").kind is SnapshotKind.VIEW
        child = snaps.prepare("child-1", "base")
        assert child[0].type == "overlay"

        usage = snaps.usage("base")
        assert usage.size >= 0
        assert usage.inodes >= 1
        assert snaps.set_labels("base", {"layer": "", "extra": "1"}) == {"extra": "1"}
        with pytest.deprecated_call():
            assert snaps.update_labels("base", {"extra": "2"}).labels == {"extra": "2"}
        assert sorted(s.name for s in snaps.list()) == ["base", "child-1", "view-1"]
        assert sorted(s.name for s in snaps.list("parent==base")) == ["child-1", "view-1"]
        assert [s.name for s in snaps.list("parent==base,kind==view")] == ["view-1"]

        with pytest.raises(errors.FailedPreconditionError):
            snaps.remove("base")
        with pytest.raises(errors.AlreadyExistsError):
            snaps.prepare("child-1", "base")
        snaps.remove("view-1")
        snaps.remove("child-1")
        snaps.remove("base")
        assert snaps.list() == []
        with pytest.raises(errors.NotFoundError):
            snaps.remove("base")


# -- import, images ------------------------------------------------------------------


def _check_imported(client: Client, images: ImageStore, image_name: str, arc: ImageArchive) -> None:
    image = images.get(image_name)
    assert image.target.digest == arc.manifest_digest
    assert image.target.media_type == arc.manifest_media_type
    assert images.manifest(image)["config"]["digest"] == arc.config_digest
    assert [d.digest for d in images.layers(image_name)] == list(arc.layer_digests)
    config = images.config(image_name)
    assert config["rootfs"]["diff_ids"] == list(arc.diff_ids)
    assert config["architecture"] == arc.architecture
    top = chain_ids(arc.diff_ids)[-1]
    info = SnapshotStore(client).stat(top)
    assert info.kind is SnapshotKind.COMMITTED
    labels = ContentStore(client).info(arc.config_digest).labels
    assert labels["containerd.io/gc.ref.snapshot.overlayfs"] == top
    assert (
        ContentStore(client).info(arc.layer_digests[0]).labels["containerd.io/uncompressed"]
        == arc.diff_ids[0]
    )
    passwd = images.read_file(image, "/etc/passwd")
    assert passwd is not None
    assert passwd.startswith(b"root:x:0:0:")
    assert images.read_file(image, "/bin/sh") == images.read_file(image, "/bin/busybox")
    assert images.read_file(image, "/no/such/file") is None
    assert client.leases.list() == []


def test_import_oci_archive(containerd: Client, images: ImageStore, busybox_oci: ImageArchive) -> None:
    imported = images.import_archive(busybox_oci.path)
    assert [i.name for i in imported] == [busybox_oci.name]
    _check_imported(containerd, images, busybox_oci.name, busybox_oci)


def test_import_docker_archive_matches_ctr(
    containerd: Client,
    containerd_daemon: ContainerdDaemon,
    images: ImageStore,
    busybox_docker: ImageArchive,
) -> None:
    imported = images.import_archive(busybox_docker.path)
    assert [i.name for i in imported] == [busybox_docker.name]
    _check_imported(containerd, images, busybox_docker.name, busybox_docker)
    # containerd's own importer arrives at the same manifest digest.
    ns = containerd.namespace_name + "-ctr"
    with containerd.namespace(ns) as view:
        try:
            containerd_daemon.ctr("images", "import", busybox_docker.path, namespace=ns)
            assert ImageStore(view).get(busybox_docker.name).target.digest == imported[0].target.digest
        finally:
            sweep_namespace(view)


def test_import_docker_short_names_are_normalized(
    containerd: Client, images: ImageStore, tmp_path: Path
) -> None:
    arc = build_image_archive(
        tmp_path / "short.tar", name="shortname", layers=[{"hello.txt": b"hi\n"}], fmt="docker", gzip=True
    )
    imported = images.import_archive(arc.path, unpack=False)
    assert [i.name for i in imported] == ["docker.io/library/shortname:latest"]
    assert images.read_file(imported[0], "hello.txt") == b"hi\n"
    assert images.layers(imported[0])[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_import_from_stream_and_gzip(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, tmp_path: Path
) -> None:
    raw = Path(busybox_oci.path).read_bytes()
    compressed = tmp_path / "busybox.tar.gz"
    compressed.write_bytes(gzip.compress(raw, compresslevel=1))
    first = images.import_archive(str(compressed), name="localhost/cc/gz:1", unpack=False)
    assert first[0].target.digest == busybox_oci.manifest_digest

    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(raw)

    t = threading.Thread(target=feed, name="feed-pipe")
    t.start()
    with os.fdopen(read_fd, "rb") as pipe:
        second = images.import_archive(pipe, name="localhost/cc/pipe:1")
    t.join(30)
    assert second[0].target.digest == busybox_oci.manifest_digest


def test_images_list_get_create_delete(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive
) -> None:
    [image] = images.import_archive(busybox_oci.path, unpack=False)
    assert [i.name for i in images.list()] == [busybox_oci.name]
    assert images.list("name==nothing") == []
    alias = images.create("localhost/cc/alias:1", image.target, labels={"k": "v"})
    assert alias.target == image.target
    assert alias.labels == {"k": "v"}
    # Creating an existing name updates it.
    again = images.create("localhost/cc/alias:1", image.target)
    assert again.labels == {"k": "v"}
    relabelled = images.create("localhost/cc/alias:1", image.target, labels={"k": "w"})
    assert relabelled.labels == {"k": "w"}
    assert [i.name for i in images.list("labels.k==w")] == ["localhost/cc/alias:1"]
    images.delete("localhost/cc/alias:1")
    with pytest.raises(errors.NotFoundError):
        images.get("localhost/cc/alias:1")
    with pytest.raises(errors.NotFoundError):
        images.delete("localhost/cc/alias:1")
    images.delete(busybox_oci.name, sync=True)
    assert images.list() == []
    # The image held the content; with it gone and gc run, nothing is left.
    _nothing_left(containerd)


def test_unpack_gives_chain_id(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, tmp_path: Path
) -> None:
    arc = build_busybox_archive(
        tmp_path / "two.tar",
        name="localhost/cc/two:1",
        extra_layers=[{"etc/motd": b"hello\n"}],
        gzip=True,
    )
    [image] = images.import_archive(arc.path, unpack=False)
    snaps = SnapshotStore(containerd)
    assert snaps.list() == []
    chain = chain_ids(arc.diff_ids)
    assert images.unpack(image) == chain[-1]
    assert [snaps.stat(c).kind for c in chain] == [SnapshotKind.COMMITTED] * 2
    assert snaps.stat(chain[1]).parent == chain[0]
    # Unpacking again finds everything in place.
    assert images.unpack(image.name) == chain[-1]
    assert len(snaps.list()) == 2
    assert containerd.leases.list() == []
    # gzip layers carry their uncompressed digest once unpacked.
    layer = ContentStore(containerd).info(arc.layer_digests[1])
    assert layer.labels["containerd.io/uncompressed"] == arc.diff_ids[1]
    # After a sync gc the snapshots are still there: the image keeps them.
    with containerd.lease(expire=10, sync_delete=True):
        pass
    assert len(snaps.list()) == 2
    images.delete(image.name, sync=True)
    _nothing_left(containerd)


def test_unpacked_image_runs_in_a_container(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive
) -> None:
    [image] = images.import_archive(busybox_oci.path)
    top = chain_ids(busybox_oci.diff_ids)[-1]
    snaps = SnapshotStore(containerd)
    out = cio.Capture()
    with containerd.lease(expire=300):
        snaps.prepare("run-rootfs", top)
        with containerd.create_container(
            "run-busybox",
            args=["cat", "/etc/passwd"],
            image=image.name,
            snapshotter="overlayfs",
            snapshot_key="run-rootfs",
        ) as c:
            task = c.new_task(stdout=out, stderr=out)
            task.start()
            assert task.wait(timeout=60).exit_code == 0
            task.delete()
    assert out.getvalue() == images.read_file(image, "/etc/passwd")


# -- whiteouts -------------------------------------------------------------------------


def _layered_archive(path: Path) -> ImageArchive:
    return build_busybox_archive(
        path,
        name="localhost/cc/layers:1",
        extra_layers=[
            {
                "data/keep.txt": b"keep-0\n",
                "data/gone.txt": b"gone-0\n",
                "data/changed.txt": b"changed-0\n",
                "data/dir/inner.txt": b"inner-0\n",
                "data/opaque/old.txt": b"old-0\n",
                "data/link": Symlink("changed.txt"),
            },
            {
                "data/gone.txt": Whiteout(),
                "data/changed.txt": b"changed-1\n",
                "data/dir": Whiteout(),
                "data/opaque": Directory(opaque=True),
                "data/opaque/new.txt": b"new-1\n",
            },
            {"data/added.txt": b"added-2\n", "data/dir/inner.txt": b"inner-2\n"},
        ],
        gzip=True,
    )


def test_three_layers_with_whiteouts(containerd: Client, images: ImageStore, tmp_path: Path) -> None:
    arc = _layered_archive(tmp_path / "layers.tar")
    [image] = images.import_archive(arc.path)
    expect = {
        "/data/keep.txt": b"keep-0\n",
        "/data/gone.txt": None,
        "/data/changed.txt": b"changed-1\n",
        "/data/link": b"changed-1\n",
        "/data/dir/inner.txt": b"inner-2\n",
        "/data/opaque/old.txt": None,
        "/data/opaque/new.txt": b"new-1\n",
        "/data/added.txt": b"added-2\n",
        "/data": None,
    }
    for path, want in expect.items():
        assert images.read_file(image, path) == want, path

    # The daemon's unpack agrees: list the files from inside a container.
    top = chain_ids(arc.diff_ids)[-1]
    out = cio.Capture()
    with containerd.lease(expire=300):
        SnapshotStore(containerd).prepare("ls-rootfs", top)
        with containerd.create_container(
            "ls-layers",
            args=["sh", "-c", "cd /data && find . -type f | sort && cat changed.txt dir/inner.txt"],
            snapshotter="overlayfs",
            snapshot_key="ls-rootfs",
        ) as c:
            task = c.new_task(stdout=out, stderr=out)
            task.start()
            assert task.wait(timeout=60).exit_code == 0
            task.delete()
    assert out.text().split("\n") == [
        "./added.txt",
        "./changed.txt",
        "./dir/inner.txt",
        "./keep.txt",
        "./opaque/new.txt",
        "changed-1",
        "inner-2",
        "",
    ]


# -- platforms ---------------------------------------------------------------------------


def _multi_platform_archive(tmp_path: Path) -> tuple[Path, ImageArchive, ImageArchive]:
    """An OCI layout whose image is an index of two platforms' manifests."""
    _, host_arch, _ = host_platform()
    other_arch = "riscv64" if host_arch != "riscv64" else "s390x"
    host = build_image_archive(tmp_path / "h.tar", name="x:h", layers=[{"arch": host_arch.encode()}])
    other = build_image_archive(
        tmp_path / "o.tar", name="x:o", layers=[{"arch": other_arch.encode()}], architecture=other_arch
    )
    blobs: dict[str, bytes] = {}
    manifests = []
    for arc in (host, other):
        with tarfile.open(arc.path) as tar:
            for member in tar.getmembers():
                if member.isreg() and member.name.startswith("blobs/"):
                    f = tar.extractfile(member)
                    assert f is not None
                    blobs[member.name] = f.read()
        manifest = blobs[_blob_name(arc.manifest_digest)]
        manifests.append(
            {
                "mediaType": arc.manifest_media_type,
                "digest": arc.manifest_digest,
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": arc.architecture},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()  # fmt: skip
    index_digest = digest_bytes(index)
    blobs[_blob_name(index_digest)] = index
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest,
                "size": len(index),
                "annotations": {"io.containerd.image.name": "localhost/cc/multi:1"},
            }
        ],
    }
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (tarfile.TarInfo("oci-layout"), b'{"imageLayoutVersion":"1.0.0"}'),
        (tarfile.TarInfo("index.json"), json.dumps(top).encode()),
    ]
    members += [(tarfile.TarInfo(name), data) for name, data in sorted(blobs.items())]
    return _tar(tmp_path / "multi.tar", members), host, other


def test_multi_platform_index(containerd: Client, images: ImageStore, tmp_path: Path) -> None:
    path, host, other = _multi_platform_archive(tmp_path)
    [image] = images.import_archive(path)
    assert image.target.media_type == "application/vnd.oci.image.index.v1+json"
    assert images.read_file(image, "/arch") == host.architecture.encode()
    other_platform = f"linux/{other.architecture}"
    assert images.read_file(image, "/arch", other_platform) == other.architecture.encode()
    assert images.manifest(image, Platform.parse(other_platform))["config"]["digest"] == other.config_digest
    assert images.unpack(image) == host.diff_ids[0]
    assert images.unpack(image, platform=other_platform) == other.diff_ids[0]
    with pytest.raises(PlatformNotFoundError) as info:
        images.manifest(image, "linux/mips64le")
    assert isinstance(info.value, errors.NotFoundError)


def test_unknown_platform_fails_import_and_leaves_nothing(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, tmp_path: Path
) -> None:
    with pytest.raises(PlatformNotFoundError):
        images.import_archive(busybox_oci.path, platform="linux/mips64le")
    _nothing_left(containerd)
    path, _, _ = _multi_platform_archive(tmp_path)
    with pytest.raises(PlatformNotFoundError):
        images.import_archive(path, platform="windows/amd64")
    _nothing_left(containerd)
    with pytest.raises(ValueError, match="invalid platform"):
        images.import_archive(busybox_oci.path, platform="a/b/c/d")


# -- export ------------------------------------------------------------------------------


def test_export_then_import_in_fresh_namespace(
    containerd: Client,
    images: ImageStore,
    other_namespace: Client,
    busybox_oci: ImageArchive,
    busybox_docker: ImageArchive,
    tmp_path: Path,
) -> None:
    images.import_archive(busybox_oci.path)
    images.import_archive(busybox_docker.path)
    names = [busybox_oci.name, busybox_docker.name]
    out = tmp_path / "export.tar"
    images.export(out, *names)
    index = json.loads(_read_member(str(out), "index.json"))
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": busybox_oci.name, "org.opencontainers.image.ref.name": "oci"},
        {"io.containerd.image.name": busybox_docker.name, "org.opencontainers.image.ref.name": "docker"},
    ]
    assert json.loads(_read_member(str(out), "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    # Exporting to a stream writes the same bytes.
    buf = io.BytesIO()
    images.export(buf, *names)
    assert buf.getvalue() == out.read_bytes()

    fresh = ImageStore(other_namespace)
    reimported = fresh.import_archive(out)
    assert [(i.name, i.target) for i in reimported] == [(n, images.get(n).target) for n in names]
    for name in names:
        assert fresh.config(name) == images.config(name)
        assert [d.digest for d in fresh.layers(name)] == [d.digest for d in images.layers(name)]
    assert fresh.read_file(busybox_docker.name, "/etc/passwd") == images.read_file(
        busybox_docker.name, "/etc/passwd"
    )
    # ... and containerd's own importer reads the export too.
    again = tmp_path / "again.tar"
    fresh.export(again, *names)
    assert again.read_bytes() == out.read_bytes()


def test_export_multi_platform_subset(
    containerd: Client, images: ImageStore, other_namespace: Client, tmp_path: Path
) -> None:
    path, host, other = _multi_platform_archive(tmp_path)
    [image] = images.import_archive(path)
    out = tmp_path / "host-only.tar"
    images.export(out, image.name, platform=Platform.host())
    with tarfile.open(out) as tar:
        blobs = {m.name for m in tar.getmembers() if m.isreg() and m.name.startswith("blobs/")}
    assert _blob_name(host.config_digest) in blobs
    assert _blob_name(other.config_digest) not in blobs
    [back] = ImageStore(other_namespace).import_archive(out)
    assert back.target == image.target
    assert ImageStore(other_namespace).read_file(back, "/arch") == host.architecture.encode()
    with pytest.raises(errors.NotFoundError):
        ImageStore(other_namespace).manifest(back, f"linux/{other.architecture}")


def test_export_missing_image(images: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError):
        images.export(tmp_path / "x.tar", "localhost/none:1")
    assert not (tmp_path / "x.tar").exists()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="at least one"):
        images.export(tmp_path / "x.tar")


# -- bad archives -----------------------------------------------------------------------


def _unsafe_members() -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    def reg(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes | None]:
        return tarfile.TarInfo(name), data

    def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        return info, None

    return {
        "dotdot": [reg("index.json"), reg("../escape.txt")],
        "nested-dotdot": [reg("blobs/../../escape.txt"), reg("index.json")],
        "absolute": [reg("index.json"), reg("/etc/cron.d/evil")],
        "absolute-symlink": [link("index.json", "/etc/passwd")],
        "escaping-symlink": [reg("index.json"), link("blobs/sha256/abc", "../../../etc/shadow")],
        "escaping-hardlink": [reg("index.json"), link("blobs/x", "../etc/passwd", tarfile.LNKTYPE)],
        "device": [reg("index.json"), link("dev", "", tarfile.CHRTYPE)],
    }


@pytest.mark.parametrize("case", sorted(_unsafe_members()))
def test_unsafe_archives_are_rejected(
    containerd: Client, images: ImageStore, tmp_path: Path, case: str
) -> None:
    path = _tar(tmp_path / f"{case}.tar", _unsafe_members()[case])
    with pytest.raises(UnsafeArchiveError) as info:
        images.import_archive(path, name="localhost/cc/evil:1")
    assert isinstance(info.value, ArchiveError)
    assert isinstance(info.value, errors.InvalidArgumentError)
    _nothing_left(containerd)
    assert not (tmp_path.parent / "escape.txt").exists()


def test_archive_with_symlinked_blob_inside_is_fine(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, tmp_path: Path
) -> None:
    # Some tools store a blob once and link to it: links inside the archive are allowed.
    config_name = _blob_name(busybox_oci.config_digest)
    data = _read_member(busybox_oci.path, config_name)
    rewritten = _rewrite_archive(busybox_oci.path, tmp_path / "linked.tar", {config_name: None})
    with tarfile.open(rewritten, "a") as tar:
        info = tarfile.TarInfo("extra/config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        sym = tarfile.TarInfo(config_name)
        sym.type = tarfile.SYMTYPE
        sym.linkname = "../../extra/config.json"
        tar.addfile(sym)
    [image] = images.import_archive(rewritten, unpack=False)
    assert images.config(image)["rootfs"]["diff_ids"] == list(busybox_oci.diff_ids)


def test_truncated_and_corrupt_blobs(containerd: Client, images: ImageStore, tmp_path: Path) -> None:
    # Unique bytes: a blob the daemon already holds (in any namespace) is
    # not sent again, so a corrupt copy of it would go unnoticed, harmlessly.
    unique = build_image_archive(
        tmp_path / "unique.tar", name="localhost/cc/unique:1", layers=[{"random": os.urandom(300_000)}]
    )
    layer = _blob_name(unique.layer_digests[0])
    data = _read_member(unique.path, layer)
    truncated = _rewrite_archive(unique.path, tmp_path / "trunc.tar", {layer: data[: len(data) // 2]})
    with pytest.raises(DigestMismatchError, match="bytes in the archive"):
        images.import_archive(truncated)
    _nothing_left(containerd)

    # Same size, other bytes: only the daemon's check on commit can tell.
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    broken = _rewrite_archive(unique.path, tmp_path / "corrupt.tar", {layer: bytes(corrupt)})
    with pytest.raises(DigestMismatchError, match="unexpected commit digest"):
        images.import_archive(broken)
    _nothing_left(containerd)

    manifest = _blob_name(unique.manifest_digest)
    doc = _read_member(unique.path, manifest)
    forged = _rewrite_archive(unique.path, tmp_path / "forged.tar", {manifest: doc.replace(b"2", b"3", 1)})
    with pytest.raises(DigestMismatchError):
        images.import_archive(forged)
    _nothing_left(containerd)


def test_malformed_archives(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, tmp_path: Path
) -> None:
    not_tar = tmp_path / "not.tar"
    not_tar.write_bytes(b"hello" * 300)
    with pytest.raises(ArchiveError, match="not a tar"):
        images.import_archive(not_tar)
    empty = _tar(tmp_path / "empty.tar", [(tarfile.TarInfo("readme"), b"x")])
    with pytest.raises(ArchiveError, match=r"no index\.json"):
        images.import_archive(empty)
    missing = _rewrite_archive(
        busybox_oci.path, tmp_path / "missing.tar", {_blob_name(busybox_oci.config_digest): None}
    )
    with pytest.raises(ArchiveError, match="lacks blob"):
        images.import_archive(missing)
    index = json.loads(_read_member(busybox_oci.path, "index.json"))
    index["manifests"][0]["annotations"] = {}
    unnamed = _rewrite_archive(
        busybox_oci.path, tmp_path / "unnamed.tar", {"index.json": json.dumps(index).encode()}
    )
    with pytest.raises(ArchiveError, match="names no image"):
        images.import_archive(unnamed)
    [named] = images.import_archive(unnamed, name="localhost/cc/named:1", unpack=False)
    assert named.target.digest == busybox_oci.manifest_digest


def test_import_renames_single_image(images: ImageStore, busybox_oci: ImageArchive) -> None:
    [image] = images.import_archive(busybox_oci.path, name="localhost/cc/renamed:2", unpack=False)
    assert image.name == "localhost/cc/renamed:2"
    assert [i.name for i in images.list()] == ["localhost/cc/renamed:2"]


# -- leaks --------------------------------------------------------------------------------


@pytest.mark.slow
def test_repeated_imports_and_deletes_leave_nothing(
    containerd: Client, images: ImageStore, busybox_oci: ImageArchive, busybox_docker: ImageArchive
) -> None:
    for i in range(20):
        arc = busybox_oci if i % 2 == 0 else busybox_docker
        [image] = images.import_archive(arc.path, name=f"localhost/cc/cycle:{i}")
        assert containerd.leases.list() == []
        assert images.read_file(image, "/etc/group") is not None
        images.delete(image.name, sync=True)
    _nothing_left(containerd)


def test_caller_lease_is_reused(containerd: Client, images: ImageStore, busybox_oci: ImageArchive) -> None:
    with containerd.lease(expire=300) as lease:
        [image] = images.import_archive(busybox_oci.path)
        assert [le.id for le in containerd.leases.list()] == [lease.id]
        resources = set(containerd.leases.resources(lease.id))
        assert ("content", busybox_oci.manifest_digest) in resources
        assert ("snapshots/overlayfs", busybox_oci.diff_ids[0]) in resources
    assert image.name == busybox_oci.name


def test_descriptor_round_trip_through_image(images: ImageStore, busybox_oci: ImageArchive) -> None:
    [image] = images.import_archive(busybox_oci.path, unpack=False)
    proto = image.target.to_proto()
    assert Descriptor.from_proto(proto) == image.target
    assert Descriptor.from_oci(image.target.to_oci()) == image.target
    uid = uuid.uuid4().hex[:6]
    renamed = images.create(f"localhost/cc/{uid}:1", image.target)
    assert renamed.target == image.target


# -- short names: Docker's normalisation, the same for import, get and run -------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_short_names_resolve_alike_in_import_get_and_run(
    containerd: Client, images: ImageStore, archive_dir: Path, fmt: str
) -> None:
    # An archive made by `docker save busybox` names its image "busybox" (and an OCI
    # layout may too): "busybox" means docker.io/library/busybox:latest everywhere.
    arc = build_busybox_archive(archive_dir / f"busybox-short-{fmt}.tar", name="busybox", fmt=fmt)  # type: ignore[arg-type]
    [image] = images.import_archive(arc.path)
    assert image.name == "docker.io/library/busybox:latest"
    for name in ("busybox", "busybox:latest", "library/busybox", "docker.io/busybox", image.name):
        assert images.get(name).name == image.name
    result = containerd.run("busybox", ["echo", "short"], pull=False)
    assert (result.exit_code, result.stdout) == (0, b"short\n")
    # A name given to the import is normalised the same way.
    [renamed] = images.import_archive(arc.path, name="team/app:1", unpack=False)
    assert renamed.name == "docker.io/team/app:1"
    assert images.get("team/app:1").target == image.target
    images.delete("team/app:1")
    with pytest.raises(errors.NotFoundError):
        images.get("docker.io/team/app:1")
