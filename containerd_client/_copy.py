"""Files in and out of a container's root folder, never leaving it: the machinery of copy.

Everything here works on a *root* given as an open directory file
descriptor (``/proc/<pid>/root`` of a running task, a mounted snapshot, a
host folder) and knows nothing of containerd.

Paths are resolved one component at a time with ``openat(O_PATH |
O_NOFOLLOW)``, as Docker's ``FollowSymlinkInScope`` does: a symlink met on
the way is read and its target walked in its place, an absolute target
starts again from the root, and ``..`` at the root stays at the root. The
kernel never sees a ``..`` or a symlink from this code, so a link to
``/etc`` resolves to the container's ``/etc``, whatever the container
changes while this runs (every step holds a descriptor of the folder it is
in, so a folder swapped for a link afterwards is not followed).

* :func:`resolve` turns a container path into (folder descriptor, name).
* :func:`extract` unpacks a tar into a folder of the root, refusing
  members with absolute names, ``..``, devices; links in the tar are made as
  they are, and later members written through them stay inside the root.
* :func:`pack` writes a tar of a path of the root (symlinks kept as links,
  one file system only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

import attrs

from containerd_client._archive import (
    MAX_ARCHIVE_MEMBERS,
    MAX_UNCOMPRESSED,
    ArchiveError,
    UnsafeArchiveError,
    _GuardedTarInfo,
    decompressed,
)
from containerd_client.errors import InvalidArgumentError, NotFoundError

__all__ = [
    "InvalidPathError",
    "PathStat",
    "check_tar",
    "extract",
    "is_dir",
    "pack",
    "read_file",
    "resolve",
    "spool_tar",
    "stat_path",
]

#: Symlinks followed on one path before it counts as a loop (the kernel's limit).
MAX_LINK_HOPS = 40
_CHUNK = 1 << 20
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class InvalidPathError(InvalidArgumentError, ValueError):
    """A path in a container is of the wrong kind (a file where a folder is needed, or the
    reverse), is empty, or passes through too many symlinks."""


@attrs.frozen
class PathStat:
    """What ``get_archive`` found at a path (docker-py's ``X-Docker-Container-Path-Stat``).

    Attributes:
        name: The last component of the path (``/`` for the root).
        size: Size in bytes (of the link itself for a symlink).
        mode: ``st_mode`` (type and permission bits).
        mtime: Modification time, seconds since the epoch.
        link_target: The symlink's target, or ``""``.
    """

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str = ""


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve(root_fd: int, path: str, *, follow_last: bool, create_dirs: bool = False) -> tuple[int, str]:
    """Resolve ``path`` inside the root; return an owned descriptor of its folder and its last name.

    The name is ``""`` when the path is a folder itself (``/``, ``a/..``, or
    a symlink to a folder with ``follow_last``). The last component need not
    exist. Every symlink is followed inside the root only.

    Args:
        root_fd: The root folder (an ``O_PATH`` or ordinary descriptor).
        path: The path in the root; relative paths start at the root.
        follow_last: Follow a symlink in the last component too.
        create_dirs: Make missing intermediate folders (mode 0755).

    Raises:
        NotFoundError: An intermediate folder is missing.
        InvalidPathError: An intermediate component is not a folder, or too
            many symlinks.
    """
    stack = [os.open(".", _PATH & ~os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=root_fd)]
    todo = _parts(path)[::-1]
    hops = 0
    try:
        while todo:
            part = todo.pop()
            last = not todo
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(part, _PATH, dir_fd=stack[-1])
            except FileNotFoundError:
                if last:
                    return stack.pop(), part
                if not create_dirs:
                    raise NotFoundError(f"{path!r}: no such file or folder in the container") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=stack[-1])
                todo.append(part)
                continue
            try:
                mode = os.fstat(fd).st_mode
            except BaseException:
                os.close(fd)
                raise
            if stat.S_ISLNK(mode) and (follow_last or not last):
                os.close(fd)
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise InvalidPathError(f"{path!r}: too many levels of symbolic links")
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(_parts(target)[::-1] or ([] if target.startswith("/") else ["."]))
                continue
            if stat.S_ISDIR(mode):
                stack.append(fd)
                continue
            os.close(fd)
            if not last:
                raise InvalidPathError(f"{path!r}: {part!r} is not a folder")
            return stack.pop(), part
        return stack.pop(), ""
    finally:
        for fd in stack:
            os.close(fd)


def _open_dir(root_fd: int, path: str, *, create_dirs: bool = False) -> int:
    """An owned ``O_RDONLY`` descriptor of the folder at ``path`` (symlinks followed inside the root)."""
    parent, name = resolve(root_fd, path, follow_last=True, create_dirs=create_dirs)
    try:
        if not name:
            return os.open(".", _DIR & ~os.O_NOFOLLOW, dir_fd=parent)
        try:
            return os.open(name, _DIR, dir_fd=parent)
        except FileNotFoundError:
            raise NotFoundError(f"{path!r}: no such folder in the container") from None
        except (NotADirectoryError, OSError) as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise InvalidPathError(f"{path!r} is not a folder") from None
            raise
    finally:
        os.close(parent)


def stat_path(root_fd: int, path: str) -> PathStat:
    """``lstat`` of a path in the root (a symlink at the end is described, not followed).

    Raises:
        NotFoundError: Nothing at that path.
        InvalidPathError: A component on the way is not a folder.
    """
    parent, name = resolve(root_fd, path, follow_last=False)
    try:
        st = os.stat(name or ".", dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        raise NotFoundError(f"{path!r}: no such file or folder in the container") from None
    else:
        target = os.readlink(name, dir_fd=parent) if stat.S_ISLNK(st.st_mode) else ""
    finally:
        os.close(parent)
    shown = _parts(path)[-1] if name else (_parts(path) or ["/"])[-1]
    return PathStat(shown, st.st_size, st.st_mode, st.st_mtime, target)


def _open_regular(parent: int, name: str) -> int | None:
    """Open ``name`` of ``parent`` for reading if it is a regular file; ``None`` if it is anything else.

    The entry is first opened with ``O_PATH`` (which opens no device, FIFO or
    link) and only a regular file is then opened for reading, through
    ``/proc/self/fd``: the same inode, even if the name was swapped meanwhile.
    A device node in a snapshot may be the host's disk; it is never opened.
    """
    path_fd = os.open(name, _PATH, dir_fd=parent)
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)


def read_file(root_fd: int, path: str, max_size: int) -> bytes:
    """The bytes of a regular file in the root (symlinks followed inside the root).

    Raises:
        NotFoundError: No such file.
        InvalidPathError: It is not a regular file.
        BlobTooLargeError: It is larger than ``max_size``.
    """
    from containerd_client.errors import BlobTooLargeError

    parent, name = resolve(root_fd, path, follow_last=True)
    try:
        if not name:
            raise InvalidPathError(f"{path!r} is a folder, not a file")
        try:
            fd = _open_regular(parent, name)
        except FileNotFoundError:
            raise NotFoundError(f"{path!r}: no such file in the container") from None
    finally:
        os.close(parent)
    if fd is None:
        raise InvalidPathError(f"{path!r} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size > max_size:
            raise BlobTooLargeError(f"{path!r} is larger than {max_size} bytes")
        data = f.read(max_size + 1)
    if len(data) > max_size:
        raise BlobTooLargeError(f"{path!r} is larger than {max_size} bytes")
    return data


# -- into the root ------------------------------------------------------------------


def _chunks_of(data: bytes | IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
        return
    read = getattr(data, "read", None)
    if read is not None:
        while chunk := read(_CHUNK):
            yield chunk
        return
    items: object = data
    if not isinstance(items, Iterable):
        raise InvalidArgumentError(
            f"archive data must be bytes, a binary file or an iterable of bytes, not {type(items).__name__}"
        )
    for chunk in items:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidArgumentError(
                f"archive data must be bytes, got a piece of type {type(chunk).__name__}"
            )
        yield bytes(chunk)


def spool_tar(
    data: bytes | IO[bytes] | Iterable[bytes], *, max_uncompressed: int = MAX_UNCOMPRESSED
) -> IO[bytes]:
    """Copy a (possibly gzip- or zstd-compressed) tar into an anonymous temporary file.

    Raises:
        InvalidArgumentError: ``data`` is not bytes, a binary file or an iterable of bytes.
        DecompressionBombError: It expands past its limit.
        ArchiveError: The compressed data is corrupt.
    """
    given: object = data
    if isinstance(given, str):
        raise InvalidArgumentError(
            "archive data must be bytes, a binary file or an iterable of bytes, not str"
        )
    spool = tempfile.TemporaryFile(prefix="containerd-client-copy-")  # noqa: SIM115 - returned
    try:
        for piece in decompressed(
            _chunks_of(data), limit=max_uncompressed, per_input=True, what="the archive"
        ):
            spool.write(piece)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _member_parts(member: tarfile.TarInfo) -> list[str]:
    name = member.name
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = _parts(name)
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} climbs out of its folder ('..')")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"archive member {name!r} is a device, FIFO or of an unknown kind")
    if member.islnk():
        target = member.linkname
        if target.startswith("/") or ".." in _parts(target) or not _parts(target):
            raise UnsafeArchiveError(
                f"archive member {name!r} is a hard link out of the archive ({target!r})"
            )
    return parts


def _members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, checked before anything is written."""
    out: list[tarfile.TarInfo] = []
    try:
        while (member := tar.next()) is not None:
            if len(out) >= MAX_ARCHIVE_MEMBERS:
                from containerd_client.errors import DecompressionBombError

                raise DecompressionBombError(f"archive has more than {MAX_ARCHIVE_MEMBERS} entries")
            _member_parts(member)
            out.append(member)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a tar archive: {exc}") from exc
    return out


def check_tar(tar_file: IO[bytes]) -> None:
    """Check every member of a seekable tar as :func:`extract` would, then rewind it.

    Raises:
        UnsafeArchiveError: A member :func:`extract` refuses.
        ArchiveError: Not a tar.
        DecompressionBombError: Too many members, or an oversized header.
    """
    try:
        with tarfile.open(fileobj=tar_file, mode="r:", tarinfo=_GuardedTarInfo) as tar:
            _members(tar)
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a tar archive: {exc}") from exc
    finally:
        tar_file.seek(0)


def is_dir(root_fd: int, path: str) -> bool:
    """Whether ``path`` is a folder of the root (symlinks followed inside it); False if missing.

    Raises:
        InvalidPathError: A component on the way is not a folder.
    """
    try:
        os.close(_open_dir(root_fd, path))
    except (NotFoundError, InvalidPathError):
        return False
    return True


def _remove_entry(parent: int, name: str) -> None:
    """Make room for a new entry: unlink a file or link, remove an empty folder."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as exc:
            raise InvalidPathError(
                f"cannot replace the folder {name!r} with a file: {exc.strerror}"
            ) from None
    else:
        os.unlink(name, dir_fd=parent)


@attrs.frozen
class _Owner:
    chown: bool
    mode_mask: int


def _finish(fd_or_name: int | str, parent: int | None, member: tarfile.TarInfo, owner: _Owner) -> None:
    if isinstance(fd_or_name, int):
        if owner.chown:
            os.fchown(fd_or_name, member.uid, member.gid)
        os.fchmod(fd_or_name, member.mode & owner.mode_mask)
        os.utime(fd_or_name, (member.mtime, member.mtime))
    else:
        if owner.chown:
            os.chown(fd_or_name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        with contextlib.suppress(NotImplementedError, OSError):
            os.utime(fd_or_name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)


def extract(
    root_fd: int,
    dest: str,
    tar_file: IO[bytes],
    *,
    rename: tuple[str, str] | None = None,
    chown: bool = True,
    mode_mask: int = 0o7777,
) -> None:
    """Unpack a seekable, uncompressed tar into the folder ``dest`` of the root.

    All members are checked first; nothing is written if one is refused.
    Missing parent folders of a member are made. An existing entry is
    replaced (a folder only when empty), never written through, except that
    a folder member meeting a link that leads to a folder inside the root
    keeps the link and fills its target (as ``tar --keep-directory-symlink``).

    Args:
        root_fd: The root the tar may not leave.
        dest: An existing folder of the root.
        tar_file: The tar, at its start.
        rename: ``(old, new)``: members named ``old`` or ``old/...`` are
            put at ``new`` instead (``docker cp`` to a new name).
        chown: Give entries the tar's uid and gid.
        mode_mask: Permission bits kept from the tar.

    Raises:
        UnsafeArchiveError: A member has an absolute name, ``..``, is a
            device or FIFO, or a hard link leaving the archive.
        ArchiveError: Not a tar.
        DecompressionBombError: More than ``MAX_ARCHIVE_MEMBERS`` entries.
        NotFoundError: ``dest`` does not exist.
        InvalidPathError: ``dest`` is not a folder, or a member cannot
            replace what is there.
    """
    try:
        tar = tarfile.open(fileobj=tar_file, mode="r:", tarinfo=_GuardedTarInfo)  # noqa: SIM115
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a tar archive: {exc}") from exc
    owner = _Owner(chown, mode_mask)
    with tar:
        members = _members(tar)
        os.close(_open_dir(root_fd, dest))  # it must be a folder
        base = dest.rstrip("/")
        folders: list[tuple[str, tarfile.TarInfo]] = []
        for member in members:
            parts = _parts(member.name)
            if rename is not None and parts and parts[0] == rename[0]:
                parts = [rename[1], *parts[1:]]
            if not parts:
                continue
            rel = "/".join(parts)
            _extract_one(root_fd, f"{base}/{rel}", base, member=member, tar=tar, owner=owner, rename=rename)
            if member.isdir():
                folders.append((rel, member))
        # Folder times last: writing into a folder changes its mtime.
        for rel, member in reversed(folders):
            with contextlib.suppress(OSError, NotFoundError, InvalidPathError):
                fd = _open_dir(root_fd, f"{base}/{rel}")
                try:
                    os.utime(fd, (member.mtime, member.mtime))
                finally:
                    os.close(fd)


def _extract_one(
    root_fd: int,
    rel: str,
    base: str,
    *,
    member: tarfile.TarInfo,
    tar: tarfile.TarFile,
    owner: _Owner,
    rename: tuple[str, str] | None,
) -> None:
    # The member's own name is never followed; its folders are, inside the root
    # (each path is resolved again from the root: what the container did
    # meanwhile can move it, never out of the root).
    parent, name = resolve(root_fd, rel, follow_last=False, create_dirs=True)
    try:
        if not name:
            return  # the member names a folder that already resolves (e.g. "a/..")
        if member.isdir():
            try:
                # An existing folder, or a link to one inside the root (merged-/usr
                # images have /lib -> usr/lib), is kept and written into.
                fd = _open_dir(root_fd, rel)
            except (NotFoundError, InvalidPathError):
                fd = _dir_for(parent, name)
            try:
                _finish(fd, None, member, owner)
            finally:
                os.close(fd)
        elif member.issym():
            _remove_entry(parent, name)
            os.symlink(member.linkname, name, dir_fd=parent)
            _finish(name, parent, member, owner)
        elif member.islnk():
            link = _parts(member.linkname)
            if rename is not None and link and link[0] == rename[0]:
                link = [rename[1], *link[1:]]
            try:
                src_parent, src_name = resolve(root_fd, f"{base}/" + "/".join(link), follow_last=False)
            except (NotFoundError, InvalidPathError):
                raise ArchiveError(
                    f"archive member {member.name!r} links to {member.linkname!r}, which is not there"
                ) from None
            try:
                if not src_name:
                    raise UnsafeArchiveError(f"archive member {member.name!r} is a hard link to a folder")
                _remove_entry(parent, name)
                try:
                    os.link(src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    raise ArchiveError(
                        f"archive member {member.name!r} links to {member.linkname!r}, which is not there"
                    ) from None
            finally:
                os.close(src_parent)
        else:
            _remove_entry(parent, name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=parent)
            with os.fdopen(fd, "wb", closefd=True) as out:
                src = tar.extractfile(member)
                if src is not None:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                out.flush()
                _finish(out.fileno(), None, member, owner)
    finally:
        os.close(parent)


def _dir_for(parent: int, name: str) -> int:
    """A descriptor of folder ``name`` of ``parent``, made if missing (a link there is replaced)."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        _remove_entry(parent, name)
    os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, _DIR, dir_fd=parent)


# -- out of the root ----------------------------------------------------------------


def pack(root_fd: int, path: str, out: IO[bytes]) -> PathStat:
    """Write a tar of ``path`` (named by its last component) to ``out``; return its :class:`PathStat`.

    A symlink at ``path`` is archived as a link, as ``docker cp`` does
    (end the path with ``/.`` to copy what it points to). Links below are
    kept as links. Other file systems mounted below ``path`` (``/proc`` of a
    running container) are not entered.

    Raises:
        NotFoundError: Nothing at ``path``.
        InvalidPathError: A component on the way is not a folder.
    """
    info = stat_path(root_fd, path)
    parent, name = resolve(root_fd, path, follow_last=False)
    try:
        arcname = info.name if info.name != "/" else "."
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            links: dict[tuple[int, int], str] = {}
            _add(tar, parent, name or ".", arcname, device=None, links=links)
    finally:
        os.close(parent)
    return info


def _add(
    tar: tarfile.TarFile,
    parent: int,
    name: str,
    arcname: str,
    *,
    device: int | None,
    links: dict[tuple[int, int], str],
) -> None:
    try:
        fd = os.open(name, _PATH, dir_fd=parent)
    except FileNotFoundError:
        return  # removed while we walked
    try:
        st = os.fstat(fd)
        if device is not None and st.st_dev != device and stat.S_ISDIR(st.st_mode):
            return  # another file system (a mount point): not entered
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=parent)
            tar.addfile(info)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            dfd = os.open(".", _DIR & ~os.O_NOFOLLOW, dir_fd=fd)
            try:
                for child in sorted(os.listdir(dfd)):
                    _add(
                        tar,
                        dfd,
                        child,
                        f"{arcname}/{child}",
                        device=st.st_dev if device is None else device,
                        links=links,
                    )
            finally:
                os.close(dfd)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[key]
                tar.addfile(info)
                return
            links[key] = arcname
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)  # the inode checked above
            with os.fdopen(rfd, "rb") as f:
                st = os.fstat(f.fileno())
                info.size = st.st_size
                tar.addfile(info, cast(Any, _Exact(f, st.st_size)))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(info)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
            tar.addfile(info)
        # sockets: skipped, as tar does
    finally:
        os.close(fd)


class _Exact:
    """Reads exactly ``size`` bytes of a file that may change meanwhile (zero-padded if it shrank)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self._left -= n
        return data
