"""Bounded decompression: gzip and tar bombs cost bounded memory, time and disk, and end in a typed error.

Memory is measured with tracemalloc (every bytes object zlib and tarfile
make is a traced allocation); the figures asserted are far below what the
unbounded code took (the whole expanded stream at once).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from _hostile_archives import (
    TAR_END,
    GiB,
    MiB,
    bomb_layer,
    check_bomb_builder,
    chunks,
    distinct_members_tar,
    gzip_bomb,
    many_members_layer,
    pax_header_bomb,
    tar_file,
    tar_header,
)

from containerd_client import _archive
from containerd_client._archive import ArchiveError, ArchiveReader, ImageFormatError, decompressed, find_file
from containerd_client.errors import ContainerdError, DecompressionBombError
from containerd_client.images import _plan_docker, _plan_oci
from containerd_client.testing import build_image_archive

PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"


def _measure(fn: Callable[[], Any]) -> tuple[Any, int, float]:
    """Run ``fn``; return its result (or the exception it raised), peak traced bytes, seconds."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        out: Any = fn()
    except Exception as exc:
        out = exc
    finally:
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, peak, elapsed


def _opener(blob: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: chunks(blob)


def test_bomb_builder_is_a_real_gzip_stream() -> None:
    check_bomb_builder()


def test_decompressed_yields_bounded_pieces() -> None:
    blob = gzip_bomb(b"", 256 * MiB)
    total, peak, _ = _measure(lambda: sum(len(c) for c in decompressed(chunks(blob))))
    assert total == 256 * MiB
    assert peak < 16 * MiB, f"decompressing held {peak / MiB:.0f} MiB at once"


def test_find_file_skips_a_huge_member_in_bounded_memory() -> None:
    layer = bomb_layer(256 * MiB, after={"etc/passwd": PASSWD})
    found, peak, _ = _measure(lambda: find_file([_opener(layer)], "/etc/passwd", max_size=MiB))
    assert found == PASSWD
    assert peak < 16 * MiB, f"reading past a 256 MiB member held {peak / MiB:.0f} MiB"


def test_find_file_stops_a_bomb_at_its_limit() -> None:
    layer = bomb_layer(2 * GiB, after={"etc/passwd": PASSWD})
    limit = _archive.expansion_limit(len(layer))
    assert limit < 2 * GiB
    err, peak, elapsed = _measure(
        lambda: find_file([_opener(layer)], "/etc/passwd", max_size=MiB, max_uncompressed=limit)
    )
    assert isinstance(err, DecompressionBombError), err
    assert "/etc/passwd" not in str(err) or str(limit) in str(err)
    assert peak < 32 * MiB
    assert elapsed < 10


def test_find_file_does_not_keep_every_member() -> None:
    layer = many_members_layer(20_000, after={"etc/passwd": PASSWD})
    found, peak, _ = _measure(lambda: find_file([_opener(layer)], "/etc/passwd", max_size=MiB))
    assert found == PASSWD
    # Kept whole, 20,000 members take ~25 MiB; streamed, a few hundred KiB.
    assert peak < 4 * MiB, f"20,000 members held {peak / MiB:.1f} MiB"


def test_find_file_refuses_a_huge_pax_header() -> None:
    head, zeros, tail = pax_header_bomb(1 * GiB, then={"etc/passwd": PASSWD})
    layer = gzip_bomb(head, zeros, tail)
    err, peak, elapsed = _measure(lambda: find_file([_opener(layer)], "/etc/passwd", max_size=MiB))
    assert isinstance(err, DecompressionBombError), err
    assert peak < 16 * MiB
    assert elapsed < 10


# -- image archives ------------------------------------------------------------------


def _legit_members(tmp_path: Path) -> bytes:
    """The members of a small OCI archive, as tar blocks without the end marker."""
    built = build_image_archive(tmp_path / "small.tar", name="localhost/bomb/x:1", layers=[{"a": b"a"}])
    out = io.BytesIO()
    with tarfile.open(built.path) as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out.write(tar_file(member.name, f.read()))
    return out.getvalue()


@pytest.fixture
def gz_bomb_archive(tmp_path: Path) -> Path:
    """A 2 MiB .tar.gz image archive holding a 2 GiB member of zeros."""
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip_bomb(_legit_members(tmp_path) + tar_header("junk", 2 * GiB), 2 * GiB, TAR_END))
    assert path.stat().st_size < 3 * MiB
    return path


class _SpoolSpy:
    """Records how large the temporary copies of an archive grew."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[IO[bytes]] = []
        self.largest = 0
        real = tempfile.TemporaryFile

        def spy(*args: Any, **kwargs: Any) -> IO[bytes]:
            f = real(*args, **kwargs)
            self.files.append(f)
            write = f.write

            def counting(data: Any) -> int:
                n = write(data)
                self.largest = max(self.largest, f.tell())
                return n

            f.write = counting  # type: ignore[method-assign]
            return f

        monkeypatch.setattr(_archive.tempfile, "TemporaryFile", spy)


def test_gzip_bomb_archive_is_refused_before_spooling_it(
    gz_bomb_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _SpoolSpy(monkeypatch)
    err, peak, elapsed = _measure(lambda: ArchiveReader(gz_bomb_archive).close())
    assert isinstance(err, DecompressionBombError), err
    limit = _archive.expansion_limit(gz_bomb_archive.stat().st_size)
    assert spy.largest <= limit < 512 * MiB
    assert all(f.closed for f in spy.files)
    assert peak < 32 * MiB
    assert elapsed < 10


class _Pipe(io.RawIOBase):
    """A stream that cannot seek, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._data.readinto(b)


def test_gzip_bomb_from_a_stream_is_refused(gz_bomb_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _SpoolSpy(monkeypatch)
    pipe = io.BufferedReader(_Pipe(gz_bomb_archive.read_bytes()))
    err, peak, elapsed = _measure(lambda: ArchiveReader(pipe).close())
    assert isinstance(err, DecompressionBombError), err
    assert spy.largest < 512 * MiB
    assert all(f.closed for f in spy.files)
    assert peak < 32 * MiB
    assert elapsed < 10


def test_max_uncompressed_lets_the_caller_allow_more(tmp_path: Path) -> None:
    # 80 MiB of zeros: over the 64 MiB floor for a blob this small, under an explicit 100 MiB.
    path = tmp_path / "zeros.tar.gz"
    path.write_bytes(gzip_bomb(_legit_members(tmp_path) + tar_header("junk", 80 * MiB), 80 * MiB, TAR_END))
    with pytest.raises(DecompressionBombError, match="max_uncompressed"):
        ArchiveReader(path)
    with ArchiveReader(path, max_uncompressed=100 * MiB) as arc:
        assert arc.size("junk") == 80 * MiB


def test_huge_pax_header_in_an_archive_is_refused(tmp_path: Path) -> None:
    head, size, tail = pax_header_bomb(512 * MiB)
    path = tmp_path / "pax.tar"
    with open(path, "wb") as f:
        # Sparse on disk: the header's data is a hole.
        f.write(head)
        f.seek(len(head) + size)
        f.write(tail)
    err, peak, _ = _measure(lambda: ArchiveReader(path).close())
    assert isinstance(err, DecompressionBombError), err
    assert peak < 16 * MiB


def test_archive_with_too_many_members_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real limit (65,536 entries, ~64 MiB of TarInfo) made small to keep the test fast.
    monkeypatch.setattr(_archive, "MAX_ARCHIVE_MEMBERS", 5_000)
    path = tmp_path / "many.tar"
    path.write_bytes(distinct_members_tar(5_001))
    err, peak, _ = _measure(lambda: ArchiveReader(path).close())
    assert isinstance(err, DecompressionBombError), err
    assert peak < 16 * MiB
    path.write_bytes(distinct_members_tar(5_000))
    with ArchiveReader(path) as arc:
        assert len(arc.names()) == 5_000


def test_truncated_member_is_refused_on_open(tmp_path: Path) -> None:
    whole = tar_file("index.json", b"{}" * 600)
    path = tmp_path / "truncated.tar"
    path.write_bytes(whole[:700])
    with pytest.raises(ArchiveError, match="truncated"):
        ArchiveReader(path)


# -- malformed JSON that used to escape as builtin errors --------------------------------


def _archive_of(tmp_path: Path, files: dict[str, bytes]) -> ArchiveReader:
    path = tmp_path / "a.tar"
    path.write_bytes(b"".join(tar_file(n, d) for n, d in files.items()) + TAR_END)
    return ArchiveReader(path)


def test_deeply_nested_index_json_is_a_format_error(tmp_path: Path) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with _archive_of(tmp_path, {"index.json": deep}) as arc, pytest.raises(ImageFormatError):
        _plan_oci(arc)


@pytest.mark.parametrize("layers", [[7], [None], [["a"]], "abc", 5])
def test_docker_manifest_with_bad_layer_entries_is_an_archive_error(tmp_path: Path, layers: object) -> None:
    config = json.dumps({"rootfs": {"diff_ids": []}}).encode()
    manifest = json.dumps([{"Config": "c.json", "Layers": layers}]).encode()
    with _archive_of(tmp_path, {"manifest.json": manifest, "c.json": config}) as arc:
        with pytest.raises(ContainerdError) as info:
            _plan_docker(arc)
        assert isinstance(info.value, ArchiveError), repr(info.value)


def test_no_temp_file_is_left_in_the_temp_folder(
    gz_bomb_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    spy = _SpoolSpy(monkeypatch)
    with pytest.raises(DecompressionBombError):
        ArchiveReader(gz_bomb_archive)
    assert spy.files, "the archive was not spooled to the private folder"
    assert list(private.iterdir()) == []
