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

Also the small OCI helpers: chain ids, reference normalization.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import os
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import attrs

from containerd_client.content import BlobTooLargeError
from containerd_client.errors import InvalidArgumentError, NotSupportedError

__all__ = [
    "ArchiveError",
    "ArchiveReader",
    "ImageFormatError",
    "IterReader",
    "LayerOpener",
    "UnsafeArchiveError",
    "chain_ids",
    "decompressed",
    "find_file",
    "normalize_reference",
    "ref_tag",
]

_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_LINK_HOPS = 40
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


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


def normalize_reference(name: str) -> str:
    """Docker's normalization of an image name: ``busybox`` is ``docker.io/library/busybox:latest``.

    Raises:
        ArchiveError: The name is empty.
    """
    name = name.strip()
    if not name:
        raise ArchiveError("empty image name")
    remainder, at, digest = name.partition("@")
    first, slash, rest = remainder.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", remainder
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if not at and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}" + (f"@{digest}" if at else "")


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
    """Return the member's clean name, or None for members to ignore; refuse unsafe ones."""
    name = member.name
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = _clean_name(name)
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} climbs out of the archive ('..')")
    if not parts:
        return None
    clean = "/".join(parts)
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            raise UnsafeArchiveError(f"archive member {name!r} is a symlink to the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(clean), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"archive member {name!r} is a symlink to {target!r}, outside the archive"
            )
    elif member.islnk():
        target = member.linkname
        if target.startswith("/") or ".." in _clean_name(target):
            raise UnsafeArchiveError(
                f"archive member {name!r} is a hard link to {target!r}, outside the archive"
            )
    elif not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"archive member {name!r} is a device or FIFO")
    return clean


class ArchiveReader:
    """Random access to the files of an image archive, checked for safety on open.

    Accepts a path or a binary file object. Gzip-compressed archives and
    streams that cannot seek are first copied (decompressed) to a temporary
    file, so memory use stays small whatever the archive's size.

    Raises:
        UnsafeArchiveError: A member's path or link leaves the archive.
        ArchiveError: The data is not a tar archive.
        OSError: The file could not be read.
    """

    def __init__(self, src: str | os.PathLike[str] | IO[bytes]) -> None:
        self._owned: list[IO[bytes]] = []
        try:
            fileobj = self._open(src)
            try:
                self._tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115 - closed in close()
                members = self._tar.getmembers()
            except (tarfile.TarError, EOFError) as exc:
                raise ArchiveError(f"not a tar archive: {exc}") from exc
            self._members: dict[str, tarfile.TarInfo] = {}
            for member in members:
                clean = _check_member(member)
                if clean is not None:
                    self._members[clean] = member
        except BaseException:
            self.close()
            raise

    def _open(self, src: str | os.PathLike[str] | IO[bytes]) -> IO[bytes]:
        if isinstance(src, str | os.PathLike):
            f: IO[bytes] = open(src, "rb")  # noqa: SIM115 - closed in close()
            self._owned.append(f)
        else:
            f = src
        seekable = False
        with contextlib.suppress(OSError, ValueError):
            seekable = f.seekable()
        if seekable:
            start = f.tell()
            head = f.read(4)
            f.seek(start)
            if head[:2] == _GZIP_MAGIC or head == _ZSTD_MAGIC:
                return self._spool(decompressed(_file_chunks(f)))
            if start:
                # tarfile needs the archive to start at offset 0 of what it reads.
                return self._spool(_file_chunks(f))
            return f
        return self._spool(decompressed(_file_chunks(f)))

    def _spool(self, chunks: Iterable[bytes]) -> IO[bytes]:
        spool = tempfile.TemporaryFile(prefix="containerd-client-import-")  # noqa: SIM115
        self._owned.append(spool)
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        return spool

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
        clean = "/".join(_clean_name(name))
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(clean)
            if member is None:
                raise ArchiveError(f"archive has no file {name!r}")
            if member.issym():
                clean = posixpath.normpath(posixpath.join(posixpath.dirname(clean), member.linkname))
            elif member.islnk():
                clean = "/".join(_clean_name(member.linkname))
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


def _gunzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        data = chunk
        while data:
            out = d.decompress(data)
            if out:
                yield out
            if d.eof:
                # Another gzip member may follow (pigz, concatenated streams).
                data = d.unused_data
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if data[:2] != _GZIP_MAGIC:
                    return
            else:
                data = b""
    tail = d.flush()
    if tail:
        yield tail


def _unzstd_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

        d: Any = zstd.ZstdDecompressor()
        for chunk in chunks:
            out = d.decompress(chunk)
            if out:
                yield out
        return
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise NotSupportedError("reading zstd-compressed layers on the client (install zstandard)") from None
    dobj = zstandard.ZstdDecompressor().decompressobj()
    for chunk in chunks:
        out = dobj.decompress(chunk)
        if out:
            yield out


def decompressed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a gzip or zstd stream (found by its magic bytes); pass anything else through.

    Raises:
        NotSupportedError: The stream is zstd and no zstd decoder is available.
    """
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= 4:
            break

    def rest() -> Iterator[bytes]:
        if head:
            yield head
        yield from it

    if head[:2] == _GZIP_MAGIC:
        return _gunzip_chunks(rest())
    if head[:4] == _ZSTD_MAGIC:
        return _unzstd_chunks(rest())
    return rest()


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
) -> _LayerScan:
    """Read one layer tar and note what it says about ``wanted`` paths."""
    scan = _LayerScan()
    wanted_set = set(wanted)
    raw = opener()
    try:
        with tarfile.open(fileobj=IterReader(decompressed(raw)), mode="r|") as tar:
            for member in tar:
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
    except tarfile.TarError as exc:
        raise ArchiveError(f"layer is not a valid tar: {exc}") from exc
    finally:
        close = getattr(raw, "close", None)
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


def _lookup(layers: Sequence[LayerOpener], path: str, max_size: int) -> bytes | _Redirect | None:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decided = 0  # how many leading prefixes are known to be directories
    for opener in layers:
        scan = _scan_layer(opener, prefixes, path, max_size)
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
                found = _scan_layer(opener, (), link, max_size).entries.get(link)
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
) -> bytes | None:
    """Read a regular file from an image's layers, as the merged root file system shows it.

    Args:
        layers: Openers of the layer blobs, **top layer first**; each returns
            the blob's bytes (gzip and zstd are decompressed here).
        path: The file's path in the image (``/etc/passwd``).
        max_size: Largest file returned.

    Returns:
        The file's bytes; ``None`` when the path does not exist, was deleted
        by an upper layer, is not a regular file, or has too many symlinks.

    Raises:
        BlobTooLargeError: The file is larger than ``max_size``.
        ArchiveError: A layer is not a tar.
    """
    current = "/".join(_clean_name(path))
    if not current:
        return None
    for _ in range(_MAX_LINK_HOPS):
        found = _lookup(layers, current, max_size)
        if not isinstance(found, _Redirect):
            return found
        if not found.path:
            return None  # a link to the root directory
        current = found.path
    return None
