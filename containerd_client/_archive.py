"""Reading image archives and layer tars on the client, without touching the host's files.

Two jobs, both pure (no RPC), so unit tests cover them without a daemon:

* :class:`ArchiveReader` gives random access to the members of an image
  archive (an OCI image layout or a ``docker save`` tar). Every member is
  checked when the archive is opened: absolute names, ``..`` components,
  and links that point outside the archive are refused before anything is
  read, so a bad archive leaves nothing behind.
* :func:`find_file` answers "what does ``/etc/passwd`` hold in this image?"
  from the layer tars alone, top layer first, honouring whiteouts, opaque
  directories and symlinks the way an overlay mount would.

Also the small OCI helpers: chain ids, the tag of a reference.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import importlib
import io
import os
import posixpath
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, cast

import attrs

from containerd_client.errors import (
    BlobTooLargeError,
    DecompressionBombError,
    InvalidArgumentError,
    MissingPackageError,
)

__all__ = [
    "EXPANSION_FLOOR",
    "EXPANSION_RATIO",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_TAR_HEADER",
    "MAX_UNCOMPRESSED",
    "ArchiveError",
    "ArchiveReader",
    "ImageFormatError",
    "IterReader",
    "LayerOpener",
    "UnsafeArchiveError",
    "chain_ids",
    "decompressed",
    "expansion_limit",
    "find_file",
    "ref_tag",
]

_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_LINK_HOPS = 40
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Largest piece a decompressor hands out at once, whatever its input expands to.
_OUT_CHUNK = 1 << 20

#: A compressed stream may expand to this many times its compressed size...
EXPANSION_RATIO = 100
#: ...or to this many bytes, whichever is more (small blobs of text compress well)...
EXPANSION_FLOOR = 64 << 20
#: ...but never past this, whatever its size, unless the caller allows more.
MAX_UNCOMPRESSED = 64 << 30
#: Most entries an image archive may hold (an OCI layout holds one per blob).
MAX_ARCHIVE_MEMBERS = 1 << 16
#: Largest pax or GNU long-name header data (Go's archive/tar allows the same).
MAX_TAR_HEADER = 1 << 20
# Extended headers that may precede one member (a global, a pax, long name and link).
_MAX_HEADER_CHAIN = 8


class ImageFormatError(InvalidArgumentError, ValueError):
    """An image's index, manifest or config is malformed or of an unsupported kind."""


class ArchiveError(ImageFormatError):
    """An image archive is malformed: not a tar, missing files, bad JSON."""


class UnsafeArchiveError(ArchiveError):
    """An archive member has an absolute path, a ``..`` component, or a link leaving the archive."""


# -- names and ids ---------------------------------------------------------------


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain id of each layer stack: ``ChainID(L0..Ln)``, lowest first.

    ``ChainID(L0) = DiffID(L0)``; ``ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))``.
    """
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def ref_tag(name: str) -> str:
    """The tag of a reference (``latest`` for ``a/b:latest``), as OCI's ``ref.name`` wants; else the name."""
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" in last:
        return last.rsplit(":", 1)[1]
    return name


# -- the archive -----------------------------------------------------------------


def _clean_name(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def _check_member(member: tarfile.TarInfo) -> str | None:
    """Return the member's clean name, or None for members to ignore; refuse unsafe names and kinds.

    Where links lead is checked once every member is known (:func:`_walk`).
    """
    name = member.name
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = _clean_name(name)
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} climbs out of the archive ('..')")
    if not parts:
        return None
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"archive member {name!r} is a device or FIFO")
    return "/".join(parts)


def _walk(members: Mapping[str, tarfile.TarInfo], start: Sequence[str], path: str, what: str) -> str:
    """Resolve ``path`` from the folder ``start`` inside an archive, following its symlinks.

    Components are taken one at a time as the kernel does: a symlink met on
    the way (the last component included) is replaced by its target, read
    from the symlink's own folder; ``..`` goes up one folder; a name the
    archive lacks counts as a plain folder. Going above the archive's root,
    or an absolute target, is an escape; more than 40 symlinks (the kernel's
    limit) on one path is a loop.

    Raises:
        UnsafeArchiveError: The path leads outside the archive.
        ArchiveError: Too many symlinks (a loop).
    """
    if path.startswith("/"):
        raise UnsafeArchiveError(f"{what} is the absolute path {path!r}")
    todo = path.split("/")[::-1]
    done = list(start)
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise UnsafeArchiveError(f"{what} leads outside the archive")
            done.pop()
            continue
        member = members.get("/".join([*done, part]))
        if member is not None and member.issym():
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise ArchiveError(f"{what}: too many levels of symbolic links")
            target = member.linkname
            if target.startswith("/"):
                raise UnsafeArchiveError(f"{what} passes through a symlink to the absolute path {target!r}")
            todo.extend(target.split("/")[::-1])
            continue
        done.append(part)
    return "/".join(done)


def _check_links(members: Mapping[str, tarfile.TarInfo]) -> None:
    """Refuse an archive if any of its symlinks or hard links leads outside it."""
    for clean, member in members.items():
        # A loop (or a chain longer than the kernel follows) is refused too:
        # no image needs one, and where it leads depends on who follows it.
        if member.issym():
            what = f"archive member {member.name!r} (a symlink to {member.linkname!r})"
            folder = _walk(members, (), posixpath.dirname(clean), what)
            _walk(members, folder.split("/") if folder else (), member.linkname, what)
        elif member.islnk():
            what = f"archive member {member.name!r} (a hard link to {member.linkname!r})"
            _walk(members, (), member.linkname, what)


class _HeaderBudget:
    """Stands in for a tar's file object while extended headers are read, and caps what they read."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            raise DecompressionBombError(
                f"tar extended headers of one entry take more than {MAX_TAR_HEADER * 4} bytes"
            )
        self._left -= size
        return self._inner.read(size)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_EXTENDED_TYPES = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_header_chain = threading.local()


class _GuardedTarInfo(tarfile.TarInfo):
    """A ``TarInfo`` that checks extended headers before ``tarfile`` reads them whole.

    ``tarfile`` reads a pax or GNU long-name header's data into memory in one
    piece, and follows a chain of them by recursion: a 2 GiB header, or a
    long chain, is a bomb. ``_proc_member`` is the hook the ``tarfile``
    module documents for subclasses.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = self.type in _EXTENDED_TYPES
        if not extended and self.type != tarfile.GNUTYPE_SPARSE:
            return cast(tarfile.TarInfo, cast(Any, super())._proc_member(tarfile_))
        if extended and self.size > MAX_TAR_HEADER:
            raise DecompressionBombError(
                f"tar entry {self.name!r} has an extended header of {self.size} bytes "
                f"(at most {MAX_TAR_HEADER} allowed)"
            )
        depth = getattr(_header_chain, "depth", 0)
        if depth >= _MAX_HEADER_CHAIN:
            raise DecompressionBombError(f"tar has more than {_MAX_HEADER_CHAIN} extended headers in a row")
        fileobj = tarfile_.fileobj
        wrapped = not isinstance(fileobj, _HeaderBudget)
        if wrapped:
            tarfile_.fileobj = cast(Any, _HeaderBudget(fileobj, MAX_TAR_HEADER * 4))
        _header_chain.depth = depth + 1
        try:
            return cast(tarfile.TarInfo, cast(Any, super())._proc_member(tarfile_))
        finally:
            _header_chain.depth = depth
            if wrapped:
                tarfile_.fileobj = fileobj


class ArchiveReader:
    """Random access to the files of an image archive, checked for safety on open.

    Accepts a path or a binary file object. Gzip-compressed archives and
    streams that cannot seek are first copied (decompressed) to a temporary
    file, so memory use stays small whatever the archive's size; the copy
    may not grow past ``max_uncompressed`` bytes (by default
    :func:`expansion_limit` of the compressed size, or, for a stream of
    unknown size, :data:`EXPANSION_RATIO` times what was read so far).

    Args:
        src: Path or binary file object.
        max_uncompressed: Largest size the decompressed archive may have.

    Raises:
        UnsafeArchiveError: A member's path or link leaves the archive, or
            it is a device or FIFO.
        DecompressionBombError: The archive expands past its limit, has more
            than :data:`MAX_ARCHIVE_MEMBERS` entries, or an oversized header.
        ArchiveError: The data is not a tar archive, a member is truncated or
            named twice.
        OSError: The file could not be read.
    """

    def __init__(
        self, src: str | os.PathLike[str] | IO[bytes], *, max_uncompressed: int | None = None
    ) -> None:
        self._owned: list[IO[bytes]] = []
        self._max_uncompressed = max_uncompressed
        try:
            fileobj, end = self._open(src)
            self._members: dict[str, tarfile.TarInfo] = {}
            try:
                self._tar = tarfile.open(  # noqa: SIM115 - closed in close()
                    fileobj=fileobj, mode="r:", tarinfo=_GuardedTarInfo
                )
                self._load(end)
            except (tarfile.TarError, EOFError) as exc:
                raise ArchiveError(f"not a tar archive: {exc}") from exc
            _check_links(self._members)
        except BaseException:
            self.close()
            raise

    def _load(self, end: int) -> None:
        count = 0
        while True:
            member = self._tar.next()
            if member is None:
                return
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                raise DecompressionBombError(f"archive has more than {MAX_ARCHIVE_MEMBERS} entries")
            clean = _check_member(member)
            if clean is None:
                continue
            if member.isreg() and member.offset_data + member.size > end:
                raise ArchiveError(
                    f"archive member {member.name!r} is truncated: its header says {member.size} bytes"
                )
            earlier = self._members.get(clean)
            if earlier is not None and not (earlier.isdir() and member.isdir()):
                # tar says the last one wins, other readers take the first: refuse to guess.
                raise ArchiveError(f"archive has two entries named {member.name!r}")
            self._members[clean] = member

    def _open(self, src: str | os.PathLike[str] | IO[bytes]) -> tuple[IO[bytes], int]:
        """The archive as a seekable, uncompressed file starting at offset 0, and its size."""
        if isinstance(src, str | os.PathLike):
            f: IO[bytes] = open(src, "rb")  # noqa: SIM115 - closed in close()
            self._owned.append(f)
        else:
            f = src
        seekable = False
        with contextlib.suppress(OSError, ValueError):
            seekable = f.seekable()
        if not seekable:
            limit = self._max_uncompressed
            return self._spool(
                decompressed(
                    _file_chunks(f),
                    limit=MAX_UNCOMPRESSED if limit is None else limit,
                    per_input=limit is None,
                    what="the archive",
                )
            )
        start = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(start)
        head = f.read(4)
        f.seek(start)
        if head[:2] == _GZIP_MAGIC or head == _ZSTD_MAGIC:
            limit = self._max_uncompressed
            if limit is None:
                limit = expansion_limit(end - start)
            return self._spool(decompressed(_file_chunks(f), limit=limit, what="the archive"))
        if start:
            # tarfile needs the archive to start at offset 0 of what it reads.
            return self._spool(_file_chunks(f))
        return f, end

    def _spool(self, chunks: Iterable[bytes]) -> tuple[IO[bytes], int]:
        spool = tempfile.TemporaryFile(prefix="containerd-client-import-")  # noqa: SIM115
        self._owned.append(spool)
        size = 0
        for chunk in chunks:
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        return spool, size

    def close(self) -> None:
        """Close the archive and remove any temporary copy. Idempotent."""
        tar = getattr(self, "_tar", None)
        if tar is not None:
            tar.close()
        for f in reversed(self._owned):
            f.close()
        self._owned.clear()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        """The clean names of all members (no leading ``./``)."""
        return list(self._members)

    def has(self, name: str) -> bool:
        """Whether the archive holds a regular file (or a link to one) by that name."""
        try:
            self._resolve(name)
        except ArchiveError:
            return False
        return True

    def _resolve(self, name: str) -> tarfile.TarInfo:
        what = f"archive file {name!r}"
        clean = _walk(self._members, (), name, what)
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(clean)
            if member is None:
                raise ArchiveError(f"archive has no file {name!r}")
            if member.islnk():
                clean = _walk(self._members, (), member.linkname, what)
            elif member.isreg():
                return member
            else:
                raise ArchiveError(f"archive member {name!r} is not a regular file")
        raise ArchiveError(f"archive member {name!r}: too many links")

    def size(self, name: str) -> int:
        """Size of a file in the archive.

        Raises:
            ArchiveError: No such file.
        """
        return int(self._resolve(name).size)

    def open(self, name: str) -> IO[bytes]:
        """A seekable reader of one file in the archive.

        Raises:
            ArchiveError: No such file.
        """
        f = self._tar.extractfile(self._resolve(name))
        if f is None:
            raise ArchiveError(f"archive member {name!r} is not a regular file")
        return f

    def read(self, name: str, max_size: int) -> bytes:
        """A whole (small) file of the archive.

        Raises:
            ArchiveError: No such file, or it is larger than ``max_size``.
        """
        if self.size(name) > max_size:
            raise ArchiveError(f"archive file {name!r} is larger than {max_size} bytes")
        with self.open(name) as f:
            return f.read()


def _file_chunks(f: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        yield chunk


# -- decompression ---------------------------------------------------------------


def expansion_limit(compressed_size: int) -> int:
    """How far a compressed blob or archive of ``compressed_size`` bytes may expand by default.

    :data:`EXPANSION_RATIO` times its size, at least :data:`EXPANSION_FLOOR`,
    at most :data:`MAX_UNCOMPRESSED`. Real layers and archives expand a few
    times; gzip of zeros expands a thousand times.
    """
    return min(MAX_UNCOMPRESSED, max(EXPANSION_FLOOR, EXPANSION_RATIO * max(0, compressed_size)))


class _Counted:
    """An iterator of bytes that counts what was taken from it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._it)
        self.count += len(chunk)
        return chunk


def _bounded(out: Iterator[bytes], limit: int, source: _Counted | None, what: str) -> Iterator[bytes]:
    total = 0
    for piece in out:
        total += len(piece)
        allowed = limit
        if source is not None:
            allowed = min(limit, max(EXPANSION_FLOOR, EXPANSION_RATIO * source.count))
        if total > allowed:
            raise DecompressionBombError(
                f"{what} expands to more than {allowed} bytes (a decompression bomb?); "
                "pass a larger max_uncompressed= to allow it"
            )
        yield piece


def _gunzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    # max_length keeps each piece small: 1 MiB of gzip can inflate to 1 GiB in one call.
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fresh = True  # nothing of the current gzip member seen yet
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if fresh:
                    if not _GZIP_MAGIC.startswith(data[:2]):
                        return  # padding or garbage after the last member
                    fresh = False
                out = d.decompress(data, _OUT_CHUNK)
                if out:
                    yield out
                if d.eof:
                    # Another gzip member may follow (pigz, concatenated streams).
                    data = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    fresh = True
                else:
                    data = d.unconsumed_tail
        if not fresh:
            tail = d.flush()
            if tail:
                yield tail
            if not d.eof:
                raise ArchiveError("gzip data is truncated")
    except zlib.error as exc:
        raise ArchiveError(f"gzip data is corrupt: {exc}") from exc


def _unzstd_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    # Imported by name: whether mypy sees either module's types depends on the
    # interpreter and what is installed, and the code is the same either way.
    zstd: Any
    try:
        zstd = importlib.import_module("compression.zstd")  # Python 3.14+
    except ImportError:
        zstd = None
    if zstd is not None:
        d: Any = zstd.ZstdDecompressor()
        try:
            for chunk in chunks:
                data = chunk
                while True:
                    out = d.decompress(data, _OUT_CHUNK)
                    data = b""
                    if out:
                        yield out
                    if d.eof:
                        data = d.unused_data
                        d = zstd.ZstdDecompressor()
                        if not data:
                            break
                    elif d.needs_input:
                        break
        except zstd.ZstdError as exc:
            raise ArchiveError(f"zstd data is corrupt: {exc}") from exc
        return
    zstandard: Any
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        raise MissingPackageError(
            "reading a zstd-compressed layer", "zstandard", "zstd", alternative=" (or Python 3.14+)"
        ) from None
    reader = zstandard.ZstdDecompressor().stream_reader(IterReader(chunks), read_across_frames=True)
    try:
        with reader:
            while piece := reader.read(_OUT_CHUNK):
                yield piece
    except zstandard.ZstdError as exc:
        raise ArchiveError(f"zstd data is corrupt: {exc}") from exc


def decompressed(
    chunks: Iterable[bytes],
    *,
    limit: int | None = None,
    per_input: bool = False,
    what: str = "compressed data",
) -> Iterator[bytes]:
    """Decompress a gzip or zstd stream (found by its magic bytes); pass anything else through.

    Decompressed pieces are at most 1 MiB each, whatever the input.

    Args:
        chunks: The (possibly compressed) bytes.
        limit: Most bytes a compressed stream may expand to.
        per_input: Also hold the output to :data:`EXPANSION_RATIO` times the
            input read so far (for streams of unknown size).
        what: Names the stream in errors.

    Raises:
        DecompressionBombError: The stream expands past its limit (raised
            while iterating).
        ArchiveError: The compressed data is corrupt or truncated.
        MissingPackageError: The stream is zstd and no zstd decoder is available
            (a ``NotSupportedError``).
    """
    source = _Counted(chunks)
    head = b""
    for chunk in source:
        head += chunk
        if len(head) >= 4:
            break

    def rest() -> Iterator[bytes]:
        if head:
            yield head
        yield from source

    if head[:2] == _GZIP_MAGIC:
        out = _gunzip_chunks(rest())
    elif head[:4] == _ZSTD_MAGIC:
        out = _unzstd_chunks(rest())
    else:
        return rest()
    if limit is None and not per_input:
        return out
    return _bounded(out, MAX_UNCOMPRESSED if limit is None else limit, source if per_input else None, what)


class IterReader(io.RawIOBase):
    """A read-only file over an iterator of bytes (what ``tarfile`` stream mode wants)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._it = iter(chunks)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


# -- files in layers -------------------------------------------------------------


class _Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    OTHER = "other"


@attrs.define
class _Entry:
    kind: _Kind
    linkname: str = ""
    data: bytes | None = None


@attrs.define
class _LayerScan:
    entries: dict[str, _Entry] = attrs.field(factory=dict)
    whiteouts: set[str] = attrs.field(factory=set)
    opaque: set[str] = attrs.field(factory=set)
    parents: set[str] = attrs.field(factory=set)


#: Opens one layer blob as an iterator of its (possibly compressed) bytes.
LayerOpener = Callable[[], Iterator[bytes]]


def _kind(member: tarfile.TarInfo) -> _Kind:
    if member.isreg():
        return _Kind.FILE
    if member.isdir():
        return _Kind.DIR
    if member.issym():
        return _Kind.SYMLINK
    if member.islnk():
        return _Kind.HARDLINK
    return _Kind.OTHER


def _scan_layer(
    opener: LayerOpener,
    wanted: Sequence[str],
    capture: str,
    max_size: int,
    limit: int,
) -> _LayerScan:
    """Read one layer tar and note what it says about ``wanted`` paths.

    The tar is read as a stream: members are skipped without being held,
    only the ``capture`` file's bytes are kept, and ``limit`` bounds what a
    compressed layer may expand to.
    """
    scan = _LayerScan()
    wanted_set = set(wanted)
    raw = opener()
    stream = decompressed(raw, limit=limit, what="layer")
    try:
        with tarfile.open(fileobj=IterReader(stream), mode="r|", tarinfo=_GuardedTarInfo) as tar:
            while True:
                member = tar.next()
                # Stream mode still lists every member it met: a tar of a
                # million empty files would be kept whole.
                cast(Any, tar).members.clear()
                if member is None:
                    break
                parts = _clean_name(member.name)
                if not parts:
                    continue
                path = "/".join(parts)
                parent = posixpath.dirname(path)
                base = parts[-1]
                for q in wanted:
                    if path.startswith(q + "/"):
                        scan.parents.add(q)
                if base == _OPAQUE:
                    scan.opaque.add(parent)
                    continue
                if base.startswith(_WHITEOUT_PREFIX):
                    target = posixpath.join(parent, base[len(_WHITEOUT_PREFIX) :])
                    if target in wanted_set:
                        scan.whiteouts.add(target)
                    continue
                if path not in wanted_set and path != capture:
                    continue
                entry = _Entry(_kind(member), member.linkname)
                if path == capture and entry.kind is _Kind.FILE:
                    if member.size > max_size:
                        raise BlobTooLargeError(f"/{path} is larger than {max_size} bytes")
                    f = tar.extractfile(member)
                    entry.data = f.read() if f is not None else b""
                scan.entries[path] = entry
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"layer is not a valid tar: {exc}") from exc
    finally:
        for it in (stream, raw):
            close = getattr(it, "close", None)
            if close is not None:
                close()
    return scan


def _resolve_link(dir_path: str, target: str) -> str:
    joined = target if target.startswith("/") else posixpath.join("/", dir_path, target)
    # The root's parent is the root, as in the kernel's path walk.
    return "/".join(_clean_name(posixpath.normpath("/" + joined.lstrip("/"))))


@attrs.frozen
class _Redirect:
    path: str


def _lookup(
    layers: Sequence[LayerOpener], path: str, max_size: int, limits: Sequence[int]
) -> bytes | _Redirect | None:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decided = 0  # how many leading prefixes are known to be directories
    for opener, limit in zip(layers, limits, strict=True):
        scan = _scan_layer(opener, prefixes, path, max_size, limit)
        for i, q in enumerate(prefixes):
            entry = scan.entries.get(q)
            if i < decided:
                # A directory from an upper layer: this layer can still hide
                # what lies below it, with a whiteout or a non-directory.
                if q in scan.whiteouts or (entry is not None and entry.kind is not _Kind.DIR):
                    return None
                continue
            if q in scan.whiteouts:
                return None
            if entry is None:
                if q in scan.parents:
                    decided = i + 1
                    continue
                break
            if entry.kind is _Kind.DIR:
                decided = i + 1
                continue
            rest = parts[i + 1 :]
            if entry.kind is _Kind.SYMLINK:
                target = _resolve_link(posixpath.dirname(q), entry.linkname)
                return _Redirect("/".join(p for p in (target, *rest) if p))
            if rest or entry.kind is _Kind.OTHER:
                return None
            if entry.kind is _Kind.HARDLINK:
                link = "/".join(_clean_name(entry.linkname))
                found = _scan_layer(opener, (), link, max_size, limit).entries.get(link)
                return found.data if found is not None and found.kind is _Kind.FILE else None
            return entry.data if entry.data is not None else b""
        if decided == len(prefixes):
            return None  # a directory
        if any(prefixes[j] in scan.opaque for j in range(decided)):
            return None
    return None


def find_file(
    layers: Sequence[LayerOpener],
    path: str,
    *,
    max_size: int,
    max_uncompressed: int | Sequence[int] = MAX_UNCOMPRESSED,
) -> bytes | None:
    """Read a regular file from an image's layers, as the merged root file system shows it.

    Args:
        layers: Openers of the layer blobs, **top layer first**; each returns
            the blob's bytes (gzip and zstd are decompressed here).
        path: The file's path in the image (``/etc/passwd``).
        max_size: Largest file returned.
        max_uncompressed: Most bytes a compressed layer may expand to, one
            value for all or one per layer (in ``layers`` order).

    Returns:
        The file's bytes; ``None`` when the path does not exist, was deleted
        by an upper layer, is not a regular file, or has too many symlinks.

    Raises:
        BlobTooLargeError: The file is larger than ``max_size``.
        DecompressionBombError: A layer expands past its limit or has an
            oversized tar header.
        ArchiveError: A layer is not a tar, or its compression is corrupt.
    """
    if isinstance(max_uncompressed, int):
        limits: Sequence[int] = [max_uncompressed] * len(layers)
    else:
        limits = list(max_uncompressed)
        if len(limits) != len(layers):
            raise InvalidArgumentError(f"max_uncompressed has {len(limits)} limits for {len(layers)} layers")
    current = "/".join(_clean_name(path))
    if not current:
        return None
    for _ in range(_MAX_LINK_HOPS):
        found = _lookup(layers, current, max_size, limits)
        if not isinstance(found, _Redirect):
            return found
        if not found.path:
            return None  # a link to the root directory
        current = found.path
    return None
