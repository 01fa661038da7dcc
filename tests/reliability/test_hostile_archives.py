"""Hostile image archives against a real containerd: each gets a typed error, or is contained.

Every case runs ``import_archive`` (or ``read_file`` / ``create_container``
on an image with a hostile layer) and checks:

* the error is the typed one named (a ``ContainerdError`` from the SDK, never
  a builtin ``ValueError``/``KeyError``/``OSError`` or a ``tarfile``/``zlib`` error);
* it came within a time bound, with peak traced memory under 256 MiB;
* the daemon's namespace holds the same images, blobs, ingests, leases and
  snapshots as before;
* nothing was written outside the test's temp folders (the working
  directory and the temp folder are private and must stay empty; traversal
  cases aim at a canary path that must not appear).

``FIGURES`` collects each case's time and peak memory; the last test prints
the worst (run with ``-s`` to see them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from _hostile_archives import (
    TAR_END,
    GiB,
    MiB,
    bomb_layer,
    distinct_members_tar,
    gzip_bomb,
    pax_header_bomb,
    tar_file,
    tar_header,
    tar_of,
)

from containerd_client import Client, _archive
from containerd_client.content import DigestMismatchError
from containerd_client.errors import ContainerdError, DecompressionBombError
from containerd_client.images import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    ArchiveError,
    ImageFormatError,
    UnsafeArchiveError,
)
from containerd_client.testing import host_platform

NAME = "localhost/hostile/x:1"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"
PEAK_LIMIT = 256 * MiB
TIME_LIMIT = 30.0
CANARY = "hostile-canary-7f3a"

FIGURES: dict[str, tuple[float, int]] = {}
MESSAGES: dict[str, str] = {}


# -- building archives -------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


def _blob(data: bytes) -> str:
    return "blobs/sha256/" + _digest(data).split(":", 1)[1]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@attrs.define
class Image:
    """The parts of a one-layer OCI image, to be bent by each case before writing."""

    layer: bytes
    layer_type: str = MEDIA_TYPE_OCI_LAYER
    diff_id: str = ""
    config_extra: dict[str, Any] = attrs.field(factory=dict)

    def config(self) -> bytes:
        _, arch, _ = host_platform()
        diff_id = self.diff_id or _digest(self.layer)
        doc = {
            "architecture": arch,
            "os": "linux",
            "config": {"User": "app", **self.config_extra},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        return _json(doc)

    def manifest(self, **layer_extra: Any) -> bytes:
        layer_desc = {**_desc(self.layer_type, self.layer), **layer_extra}
        return _json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "config": _desc(MEDIA_TYPE_OCI_CONFIG, self.config()),
                "layers": [layer_desc],
            }
        )

    def index(self, manifest: bytes | None = None) -> bytes:
        manifest = self.manifest() if manifest is None else manifest
        entry = _desc(MEDIA_TYPE_OCI_MANIFEST, manifest, annotations={"io.containerd.image.name": NAME})
        return _json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": [entry]})

    def files(self) -> dict[str, bytes]:
        manifest = self.manifest()
        return {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": self.index(manifest),
            _blob(manifest): manifest,
            _blob(self.config()): self.config(),
            _blob(self.layer): self.layer,
        }


def _plain_layer() -> bytes:
    return tar_of({"etc/passwd": PASSWD, "hello": b"hi\n"})


def _entry(name: str, kind: bytes, link: str = "") -> bytes:
    return tar_header(name, 0, kind, link)


def _write(path: Path, files: dict[str, bytes], extra: bytes = b"", *, end: bool = True) -> Path:
    path.write_bytes(b"".join(tar_file(n, d) for n, d in files.items()) + extra + (TAR_END if end else b""))
    return path


# -- the harness --------------------------------------------------------------------------


def _state(client: Client) -> dict[str, list[str]]:
    snapshots: list[str] = []
    for snapshotter in ("overlayfs", "native"):
        try:
            snapshots += [f"{snapshotter}:{s.name}" for s in client.snapshots(snapshotter).list()]
        except ContainerdError:
            continue
    return {
        "images": sorted(i.name for i in client.images.list()),
        "content": sorted(c.digest for c in client.content.list()),
        "ingests": sorted(s.ref for s in client.content.statuses()),
        "leases": sorted(lease.id for lease in client.leases.list()),
        "snapshots": sorted(snapshots),
    }


@attrs.frozen
class Outcome:
    error: BaseException | None
    peak: int
    seconds: float


def _run(fn: Callable[[], object]) -> Outcome:
    tracemalloc.start()
    start = time.monotonic()
    error: BaseException | None = None
    try:
        fn()
    except Exception as exc:
        error = exc
    finally:
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Outcome(error, peak, seconds)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private working directory and temp folder, both to stay empty; the archive goes beside them."""
    work = tmp_path / "work"
    temp = tmp_path / "temp"
    inputs = tmp_path / "in"
    for d in (work, temp, inputs):
        d.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return inputs


def _check_contained(
    case: str, client: Client, sandbox: Path, fn: Callable[[], object], expected: type[ContainerdError]
) -> Outcome:
    before = _state(client)
    inputs_before = sorted(p.name for p in sandbox.iterdir())
    outcome = _run(fn)
    FIGURES[case] = (outcome.seconds, outcome.peak)
    MESSAGES[case] = f"{type(outcome.error).__name__}: {outcome.error}"[:150]
    err = outcome.error
    assert err is not None, f"{case}: accepted"
    assert isinstance(err, expected), f"{case}: {type(err).__module__}.{type(err).__name__}: {err}"
    assert type(err).__module__.startswith("containerd_client"), type(err)
    assert outcome.seconds < TIME_LIMIT, f"{case}: {outcome.seconds:.1f} s"
    assert outcome.peak < PEAK_LIMIT, f"{case}: {outcome.peak / MiB:.0f} MiB"
    assert _state(client) == before, f"{case}: left something in the namespace"
    root = sandbox.parent
    assert list((root / "work").iterdir()) == [], "wrote into the working directory"
    assert list((root / "temp").iterdir()) == [], "left a temp file"
    assert sorted(p.name for p in sandbox.iterdir()) == inputs_before
    assert not list(root.parent.glob(f"**/{CANARY}*")), "a traversal reached its canary"
    return outcome


# -- import cases ------------------------------------------------------------------------

Builder = Callable[[Path], Path]


def _with_extra(*members: bytes) -> Builder:
    """A good archive plus hostile entries (after the image's own files)."""

    def build(d: Path) -> Path:
        return _write(d / "a.tar", Image(_plain_layer()).files(), b"".join(members))

    return build


def _relink_layer(*members: bytes, drop_layer: bool = True) -> Builder:
    """The layer blob's own entry replaced by ``members`` (links standing in for it)."""

    def build(d: Path) -> Path:
        img = Image(_plain_layer())
        files = img.files()
        if drop_layer:
            del files[_blob(img.layer)]
        return _write(d / "a.tar", files, b"".join(members))

    return build


def _layer_name() -> str:
    return _blob(_plain_layer())


def _gz_bomb_archive(d: Path) -> Path:
    files = Image(_plain_layer()).files()
    prefix = b"".join(tar_file(n, data) for n, data in files.items()) + tar_header("junk", 2 * GiB)
    path = d / "bomb.tar.gz"
    path.write_bytes(gzip_bomb(prefix, 2 * GiB, TAR_END))
    return path


def _pax_bomb(d: Path) -> Path:
    head, size, tail = pax_header_bomb(512 * MiB)
    path = d / "pax.tar"
    with open(path, "wb") as f:
        f.write(head)
        f.seek(len(head) + size)  # a hole: costs no disk
        f.write(tail)
    return path


def _pax_chain(d: Path) -> Path:
    records = b"".join(tar_header("././@PaxHeader", 0, tarfile.XHDTYPE) for _ in range(64))
    return _write(d / "chain.tar", Image(_plain_layer()).files(), records + tar_file("x", b"x"))


def _tar_bomb_members(d: Path) -> Path:
    # One entry over the limit (lowered by the test, to keep it fast).
    path = d / "many.tar"
    path.write_bytes(distinct_members_tar(_archive.MAX_ARCHIVE_MEMBERS + 1, prefix="blobs/x/"))
    return path


def _duplicate_index(d: Path) -> Path:
    img = Image(_plain_layer())
    files = img.files()
    return _write(d / "a.tar", files, tar_file("index.json", b'{"manifests":[]}'))


def _duplicate_blob(d: Path) -> Path:
    img = Image(_plain_layer())
    other = tar_of({"etc/passwd": b"evil::0:0::/:/bin/sh\n"})
    return _write(d / "a.tar", img.files(), tar_file(_blob(img.layer), other))


def _truncated_blob(d: Path) -> Path:
    img = Image(tar_of({"etc/passwd": PASSWD, "big": os.urandom(64 << 10)}))
    data = b"".join(tar_file(n, v) for n, v in img.files().items())
    path = d / "cut.tar"
    path.write_bytes(data[: len(data) - 20_000])
    return path


def _layer_digest_mismatch(d: Path) -> Path:
    img = Image(_plain_layer())
    files = img.files()
    good = files[_blob(img.layer)]
    files[_blob(img.layer)] = good.replace(b"hi\n", b"HI\n")  # same size, other bytes
    return _write(d / "a.tar", files)


def _manifest_digest_mismatch(d: Path) -> Path:
    img = Image(_plain_layer())
    files = img.files()
    manifest = img.manifest()
    files[_blob(manifest)] = manifest.replace(b'"schemaVersion":2', b'"schemaVersion":3')
    return _write(d / "a.tar", files)


def _index_malformed(d: Path) -> Path:
    files = Image(_plain_layer()).files()
    files["index.json"] = b'{"manifests": [ {"digest": '
    return _write(d / "a.tar", files)


def _index_not_object(d: Path) -> Path:
    files = Image(_plain_layer()).files()
    files["index.json"] = b"[1, 2, 3]"
    return _write(d / "a.tar", files)


def _index_deep(d: Path) -> Path:
    files = Image(_plain_layer()).files()
    files["index.json"] = b"[" * 100_000 + b"]" * 100_000
    return _write(d / "a.tar", files)


def _index_lies_about_size(d: Path) -> Path:
    img = Image(_plain_layer())
    files = img.files()
    index = json.loads(files["index.json"])
    index["manifests"][0]["size"] += 1000
    files["index.json"] = _json(index)
    return _write(d / "a.tar", files)


def _manifest_lies_about_layer_size(d: Path) -> Path:
    img = Image(_plain_layer())
    manifest = img.manifest(size=len(img.layer) // 2)
    files = img.files()
    del files[_blob(img.manifest())]
    files[_blob(manifest)] = manifest
    files["index.json"] = img.index(manifest)
    return _write(d / "a.tar", files)


def _manifest_malformed(d: Path) -> Path:
    img = Image(_plain_layer())
    bad = b'{"schemaVersion": 2, "layers": [ {"digest": 12}'
    files = img.files()
    del files[_blob(img.manifest())]
    files[_blob(bad)] = bad
    files["index.json"] = img.index(bad)
    return _write(d / "a.tar", files)


def _manifest_bad_layers(d: Path) -> Path:
    img = Image(_plain_layer())
    bad = _json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST, "config": "x", "layers": "abc"})
    files = img.files()
    del files[_blob(img.manifest())]
    files[_blob(bad)] = bad
    files["index.json"] = img.index(bad)
    return _write(d / "a.tar", files)


def _missing_layer(d: Path) -> Path:
    img = Image(_plain_layer())
    files = img.files()
    del files[_blob(img.layer)]
    return _write(d / "a.tar", files)


def _index_loop(d: Path) -> Path:
    # Indexes nested deeper than any image: each index lists the next one.
    img = Image(_plain_layer())
    files = img.files()
    child = img.manifest()
    child_type = MEDIA_TYPE_OCI_MANIFEST
    for _ in range(12):
        doc = _json(
            {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": [_desc(child_type, child)]}
        )
        files[_blob(doc)] = doc
        child, child_type = doc, MEDIA_TYPE_OCI_INDEX
    entry = _desc(MEDIA_TYPE_OCI_INDEX, child, annotations={"io.containerd.image.name": NAME})
    files["index.json"] = _json({"schemaVersion": 2, "manifests": [entry]})
    return _write(d / "a.tar", files)


def _diff_id_lies(d: Path) -> Path:
    img = Image(_plain_layer(), diff_id=_digest(b"something else"))
    return _write(d / "a.tar", img.files())


def _not_a_tar(d: Path) -> Path:
    path = d / "noise.tar"
    path.write_bytes(os.urandom(64 << 10))
    return path


def _gzip_corrupt(d: Path) -> Path:
    path = d / "corrupt.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + os.urandom(4096))
    return path


def _gzip_truncated(d: Path) -> Path:
    import gzip

    data = gzip.compress(b"".join(tar_file(n, v) for n, v in Image(_plain_layer()).files().items()) + TAR_END)
    path = d / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _docker_layer_traversal(d: Path) -> Path:
    config = _json({"rootfs": {"type": "layers", "diff_ids": [_digest(_plain_layer())]}})
    manifest = _json([{"Config": "c.json", "RepoTags": [NAME], "Layers": [f"../../{CANARY}/layer.tar"]}])
    return _write(d / "a.tar", {"manifest.json": manifest, "c.json": config})


def _docker_layer_not_a_name(d: Path) -> Path:
    config = _json({"rootfs": {"type": "layers", "diff_ids": []}})
    manifest = _json([{"Config": "c.json", "RepoTags": [NAME], "Layers": [{"path": "x"}]}])
    return _write(d / "a.tar", {"manifest.json": manifest, "c.json": config})


def _docker_config_absolute(d: Path) -> Path:
    manifest = _json([{"Config": "/etc/passwd", "RepoTags": [NAME], "Layers": []}])
    return _write(d / "a.tar", {"manifest.json": manifest})


def _symlink_chain_escape(d: Path) -> Path:
    # "a" is the root; "b" is "a/.." - lexically inside, really the root's parent.
    layer = _layer_name()
    return _relink_layer(
        _entry("a", tarfile.SYMTYPE, "."),
        _entry("b", tarfile.SYMTYPE, "a/.."),
        _entry(layer, tarfile.SYMTYPE, f"../../b/{CANARY}"),
    )(d)


def _symlink_folder_escape(d: Path) -> Path:
    # "d" is the root, so "d/l" lives in the root and its "../x" leaves it.
    return _with_extra(_entry("d", tarfile.SYMTYPE, "."), _entry("d/l", tarfile.SYMTYPE, f"../{CANARY}"))(d)


CASES: list[Any] = [
    pytest.param(_with_extra(tar_file(f"../{CANARY}", b"x")), UnsafeArchiveError, id="traversal-dotdot"),
    pytest.param(
        _with_extra(tar_file(f"blobs/../../{CANARY}", b"x")), UnsafeArchiveError, id="traversal-inner"
    ),
    pytest.param(_with_extra(tar_file(f"/tmp/{CANARY}", b"x")), UnsafeArchiveError, id="absolute-path"),
    pytest.param(
        _relink_layer(_entry(_layer_name(), tarfile.SYMTYPE, "../../../../etc/passwd")),
        UnsafeArchiveError,
        id="symlink-relative-escape",
    ),
    pytest.param(
        _relink_layer(_entry(_layer_name(), tarfile.SYMTYPE, "/etc/passwd")),
        UnsafeArchiveError,
        id="symlink-absolute",
    ),
    pytest.param(_symlink_chain_escape, UnsafeArchiveError, id="symlink-chain-escape"),
    pytest.param(_symlink_folder_escape, UnsafeArchiveError, id="symlink-through-symlinked-folder"),
    pytest.param(
        _relink_layer(_entry(_layer_name(), tarfile.LNKTYPE, "../../etc/passwd")),
        UnsafeArchiveError,
        id="hardlink-out",
    ),
    pytest.param(
        _relink_layer(_entry(_layer_name(), tarfile.LNKTYPE, "/etc/passwd")),
        UnsafeArchiveError,
        id="hardlink-absolute",
    ),
    pytest.param(
        _relink_layer(
            _entry("up", tarfile.SYMTYPE, "."), _entry(_layer_name(), tarfile.LNKTYPE, "up/../etc/passwd")
        ),
        UnsafeArchiveError,
        id="hardlink-through-symlink",
    ),
    pytest.param(_with_extra(_entry("dev/null", tarfile.CHRTYPE)), UnsafeArchiveError, id="char-device"),
    pytest.param(_with_extra(_entry("dev/sda", tarfile.BLKTYPE)), UnsafeArchiveError, id="block-device"),
    pytest.param(_with_extra(_entry("fifo", tarfile.FIFOTYPE)), UnsafeArchiveError, id="fifo"),
    pytest.param(_gz_bomb_archive, DecompressionBombError, id="gzip-bomb-2GiB"),
    pytest.param(_pax_bomb, DecompressionBombError, id="pax-header-512MiB"),
    pytest.param(_pax_chain, DecompressionBombError, id="pax-header-chain"),
    pytest.param(_tar_bomb_members, DecompressionBombError, id="tar-bomb-entries"),
    pytest.param(_duplicate_index, ArchiveError, id="duplicate-index"),
    pytest.param(_duplicate_blob, ArchiveError, id="duplicate-blob"),
    pytest.param(_truncated_blob, ArchiveError, id="truncated-blob"),
    pytest.param(_layer_digest_mismatch, DigestMismatchError, id="layer-digest-mismatch"),
    pytest.param(_manifest_digest_mismatch, DigestMismatchError, id="manifest-digest-mismatch"),
    pytest.param(_index_malformed, ArchiveError, id="index-malformed-json"),
    pytest.param(_index_not_object, ArchiveError, id="index-not-an-object"),
    pytest.param(_index_deep, ImageFormatError, id="index-nested-100k"),
    pytest.param(_index_lies_about_size, DigestMismatchError, id="index-lies-about-size"),
    pytest.param(_manifest_lies_about_layer_size, DigestMismatchError, id="manifest-lies-about-size"),
    pytest.param(_manifest_malformed, ImageFormatError, id="manifest-malformed-json"),
    pytest.param(_manifest_bad_layers, ImageFormatError, id="manifest-wrong-types"),
    pytest.param(_missing_layer, ArchiveError, id="missing-blob"),
    pytest.param(_index_loop, ImageFormatError, id="indexes-nested-12-deep"),
    pytest.param(_diff_id_lies, DigestMismatchError, id="diff-id-lies"),
    pytest.param(_not_a_tar, ArchiveError, id="not-a-tar"),
    pytest.param(_gzip_corrupt, ArchiveError, id="gzip-corrupt"),
    pytest.param(_gzip_truncated, ArchiveError, id="gzip-truncated"),
    pytest.param(_docker_layer_traversal, UnsafeArchiveError, id="docker-layer-traversal"),
    pytest.param(_docker_layer_not_a_name, ArchiveError, id="docker-layer-not-a-name"),
    pytest.param(_docker_config_absolute, UnsafeArchiveError, id="docker-config-absolute"),
]


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_hostile_import(
    monkeypatch: pytest.MonkeyPatch,
    build: Builder,
    expected: type[ContainerdError],
    containerd: Client,
    sandbox: Path,
    request: pytest.FixtureRequest,
) -> None:
    # The real limit (65,536 entries) takes ~5 s to reach; the check is the same.
    monkeypatch.setattr(_archive, "MAX_ARCHIVE_MEMBERS", 8_192)
    path = build(sandbox)
    _check_contained(
        request.node.callspec.id,
        containerd,
        sandbox,
        lambda: containerd.images.import_archive(path),
        expected,
    )


class _Pipe(io.RawIOBase):
    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed with the pipe

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b)

    def close(self) -> None:
        self._f.close()
        super().close()


def test_hostile_import_gzip_bomb_from_a_pipe(containerd: Client, sandbox: Path) -> None:
    path = _gz_bomb_archive(sandbox)
    with io.BufferedReader(_Pipe(path)) as pipe:
        _check_contained(
            "gzip-bomb-2GiB-pipe",
            containerd,
            sandbox,
            lambda: containerd.images.import_archive(pipe),
            DecompressionBombError,
        )


# -- hostile layers, read on the client ------------------------------------------------------


@pytest.fixture
def bomb_image(containerd: Client, sandbox: Path) -> str:
    """An image whose 2 MiB gzip layer expands to 2 GiB (a file of zeros, then /etc/passwd)."""
    layer = bomb_layer(2 * GiB, after={"etc/passwd": PASSWD})
    img = Image(layer, layer_type=MEDIA_TYPE_OCI_LAYER_GZIP, diff_id="sha256:" + "0" * 64)
    path = _write(sandbox / "bomb-layer.tar", img.files())
    # Not unpacked: the daemon would have to expand it (and refuse it: wrong diff id).
    containerd.images.import_archive(path, unpack=False)
    return NAME


@pytest.mark.containerd_leaks_ok("images", reason="the hostile image is the test's setup")
def test_hostile_layer_read_file(containerd: Client, sandbox: Path, bomb_image: str) -> None:
    outcome = _check_contained(
        "read_file-gzip-bomb-layer",
        containerd,
        sandbox,
        lambda: containerd.images.read_file(bomb_image, "/etc/passwd"),
        DecompressionBombError,
    )
    assert outcome.seconds < 5


@pytest.mark.containerd_leaks_ok("images", reason="the hostile image is the test's setup")
def test_hostile_layer_create_container_with_user(containerd: Client, sandbox: Path, bomb_image: str) -> None:
    # The image's config has User "app": its name is looked up in the layers' /etc/passwd.
    _check_contained(
        "create_container-gzip-bomb-layer",
        containerd,
        sandbox,
        lambda: containerd.create_container("bomb", image=bomb_image, args=["true"]),
        DecompressionBombError,
    )
    assert not containerd.containers()


@pytest.mark.containerd_leaks_ok("images", reason="the hostile image is the test's setup")
def test_hostile_layer_huge_passwd(containerd: Client, sandbox: Path) -> None:
    # A 1 GiB /etc/passwd (zeros, gzip): refused on its tar header, before reading it.
    layer = gzip_bomb(tar_header("etc/passwd", GiB), GiB, TAR_END)
    img = Image(layer, layer_type=MEDIA_TYPE_OCI_LAYER_GZIP, diff_id="sha256:" + "0" * 64)
    containerd.images.import_archive(_write(sandbox / "big-passwd.tar", img.files()), unpack=False)
    from containerd_client.content import BlobTooLargeError

    outcome = _check_contained(
        "read_file-1GiB-passwd",
        containerd,
        sandbox,
        lambda: containerd.images.read_file(NAME, "/etc/passwd"),
        BlobTooLargeError,
    )
    assert outcome.seconds < 2


# -- peak RSS of the worst cases, in a process of their own -------------------------------------

_RSS_SCRIPT = r"""
import json, sys
from containerd_client import Client
from containerd_client.errors import DecompressionBombError

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

address, namespace, what, arg = sys.argv[1:5]
with Client(address, namespace) as client:
    client.version()
    base = status("VmRSS")
    try:
        if what == "import":
            client.images.import_archive(arg)
        else:
            client.images.read_file(arg, "/etc/passwd")
        outcome = "accepted"
    except DecompressionBombError as exc:
        outcome = type(exc).__name__
    print(json.dumps({"outcome": outcome, "growth": status("VmHWM") - base}))
"""


@pytest.mark.containerd_leaks_ok("images", reason="the hostile image is the test's setup")
@pytest.mark.parametrize("what", ["import", "read_file"])
def test_bomb_peak_rss_in_a_subprocess(
    what: str, containerd: Client, sandbox: Path, containerd_daemon: Any, request: pytest.FixtureRequest
) -> None:
    arg = str(_gz_bomb_archive(sandbox)) if what == "import" else request.getfixturevalue("bomb_image")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, containerd_daemon.address, containerd.namespace_name, what, arg],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    FIGURES[f"rss-{what}"] = (0.0, report["growth"])
    assert report["outcome"] == "DecompressionBombError"
    assert report["growth"] < PEAK_LIMIT, f"peak RSS grew by {report['growth'] / MiB:.0f} MiB"


def test_zz_report_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Print each case's time and peak memory (a summary, for the issue's note)."""
    if not FIGURES:
        pytest.skip("no case ran in this session")
    with capsys.disabled():
        worst_time = max(FIGURES.items(), key=lambda kv: kv[1][0])
        worst_peak = max(FIGURES.items(), key=lambda kv: kv[1][1])
        print(f"\nhostile archives: {len(FIGURES)} cases contained")
        for case, (seconds, peak) in sorted(FIGURES.items()):
            print(f"  {case:40s} {seconds:6.2f} s  {peak / MiB:7.1f} MiB  {MESSAGES.get(case, '')}")
        print(f"  longest: {worst_time[0]} {worst_time[1][0]:.2f} s")
        print(f"  largest peak: {worst_peak[0]} {worst_peak[1][1] / MiB:.1f} MiB")
    assert all(peak < PEAK_LIMIT for _, peak in FIGURES.values())
