"""Copy files in and out of a container, running or not (docker-py's ``put_archive``/``get_archive``).

The container's root is reached without the daemon's help:

* a task that is alive (created, running, paused): through
  ``/proc/<pid>/root`` of its init process, checked with a pidfd to be the
  task's own process and not a reused pid;
* otherwise, a container on a snapshot: its snapshot's mounts are mounted
  on a private temporary folder (read-only to read, writable to write) and
  taken down after, whatever happens; a container on a host folder
  (``rootfs=``): that folder.

Every path inside is resolved by :mod:`containerd_client._copy`, one
component at a time, following symlinks inside the root only: a link to
``/etc`` in the container means the container's ``/etc``, never the host's.

The methods of :class:`~containerd_client.containers.Container`
(:meth:`~containerd_client.containers.Container.put_archive` and the rest)
call these functions; they are usable directly too.
"""

from __future__ import annotations

import contextlib
import os
import select
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from containerd_client import _copy, _mount
from containerd_client._archive import MAX_UNCOMPRESSED
from containerd_client._copy import InvalidPathError, PathStat
from containerd_client.errors import (
    ContainerdError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from containerd_client.snapshots import SnapshotStore
from containerd_client.tasks import TaskStatus, get_process_state

if TYPE_CHECKING:
    from containerd_client.containers import Container

__all__ = [
    "DEFAULT_MAX_READ",
    "InvalidPathError",
    "PathStat",
    "copy_in",
    "copy_out",
    "get_archive",
    "put_archive",
    "read_file",
    "write_file",
]

#: Largest file :func:`read_file` returns unless told otherwise.
DEFAULT_MAX_READ = 16 << 20
_CHUNK = 1 << 20
_LIVE = (TaskStatus.CREATED, TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.PAUSING)
_ROOT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def _check_path(path: object, what: str = "path") -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidPathError(f"{what} must be a non-empty string without NUL bytes, got {path!r}")
    return path


def _open_proc_root(container: Container, pid: int) -> int | None:
    """A descriptor of ``/proc/<pid>/root`` if ``pid`` is still the task's live init process."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        # The pidfd now pins this process; ask again that it is the task's.
        try:
            state = get_process_state(container.client, container.id)
        except NotFoundError:
            return None
        if state.pid != pid or state.status not in _LIVE:
            return None
        try:
            fd = os.open(f"/proc/{pid}/root", _ROOT_FLAGS)
        except (FileNotFoundError, ProcessLookupError):
            return None
        if select.select([pidfd], [], [], 0)[0]:  # readable: it exited meanwhile
            os.close(fd)
            return None
        return fd
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def _root(container: Container, *, write: bool) -> Iterator[int]:
    """Yield a descriptor of the container's root folder; release all it took after."""
    if write and (container.info().spec.get("root") or {}).get("readonly"):
        # As Docker: a read-only root stays read-only, also when no task holds it.
        raise FailedPreconditionError(f"container {container.id!r} has a read-only root file system")
    try:
        state = get_process_state(container.client, container.id)
    except NotFoundError:
        state = None
    if state is not None and state.pid > 0 and state.status in _LIVE:
        fd = _open_proc_root(container, state.pid)
        if fd is not None:
            try:
                yield fd
            finally:
                os.close(fd)
            return
    info = container.info()
    if info.snapshot_key:
        mounts = SnapshotStore(container.client, info.snapshotter or "overlayfs").mounts(info.snapshot_key)
        with _mount.mounted(mounts, read_only=not write) as target:
            fd = os.open(target, _ROOT_FLAGS)
            try:
                yield fd
            finally:
                os.close(fd)
        return
    root = (info.spec.get("root") or {}).get("path", "")
    if not isinstance(root, str) or not os.path.isabs(root):
        raise FailedPreconditionError(
            f"container {container.id!r} has no snapshot and no absolute root path: cannot reach its files"
        )
    try:
        fd = os.open(root, _ROOT_FLAGS)
    except FileNotFoundError:
        raise NotFoundError(f"container {container.id!r}: its root folder {root!r} is gone") from None
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _os_errors(container_id: str, doing: str) -> Iterator[None]:
    """Turn an ``OSError`` of file work into a typed error (FailedPreconditionError)."""
    try:
        yield
    except ContainerdError:
        raise
    except OSError as exc:
        raise FailedPreconditionError(f"{doing} container {container_id!r} failed: {exc}") from exc


def put_archive(
    container: Container,
    path: str,
    data: bytes | IO[bytes] | Iterable[bytes],
    *,
    max_uncompressed: int = MAX_UNCOMPRESSED,
) -> None:
    """Unpack a tar (plain, gzip or zstd) into the existing folder ``path`` of the container.

    The tar is read and checked whole before the container is touched.
    Members keep their mode, owner and times; an existing entry of the same
    name is replaced (a folder only when empty). Symlinks in the tar are
    made as they are; a later member written through one stays inside the
    container's root.

    Raises:
        InvalidPathError: ``path`` is empty or not a folder.
        InvalidArgumentError: ``data`` is not bytes, a binary file or an
            iterable of bytes.
        UnsafeArchiveError: A member has an absolute name or ``..``, is a
            device or FIFO, or a hard link out of the archive (nothing written).
        ArchiveError: ``data`` is not a tar.
        DecompressionBombError: It expands past ``max_uncompressed``, or has
            too many members.
        NotFoundError: ``path`` does not exist in the container.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The container's root is read-only, or the
            file system refused a write.
        RPCError: A call to containerd failed.
    """
    _check_path(path)
    with _copy.spool_tar(data, max_uncompressed=max_uncompressed) as spool:
        _put(container, path, spool)


def _put(container: Container, path: str, spool: IO[bytes], rename: tuple[str, str] | None = None) -> None:
    _copy.check_tar(spool)
    with _os_errors(container.id, "copying into"), _root(container, write=True) as root:
        _copy.extract(root, path, spool, rename=rename)


def get_archive(container: Container, path: str) -> tuple[Iterator[bytes], PathStat]:
    """A tar of ``path`` in the container (named by its last component), and what ``path`` is.

    A symlink at ``path`` is archived as a link (end the path with ``/.`` to
    get what it points to); folders are archived whole, without entering
    other file systems mounted below them. The tar is written to an
    anonymous temporary file before this returns, so the container's
    snapshot is not held mounted while the caller reads; the iterator
    closes that file when it ends.

    Raises:
        InvalidPathError: ``path`` is empty, or a component on the way is
            not a folder.
        NotFoundError: Nothing at ``path``.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The file system refused a read.
        RPCError: A call to containerd failed.
    """
    _check_path(path)
    spool = tempfile.TemporaryFile(prefix="containerd-client-copy-")  # noqa: SIM115 - closed by _chunks
    try:
        with _os_errors(container.id, "copying from"), _root(container, write=False) as root:
            info = _copy.pack(root, path, spool)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return _chunks(spool), info


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(_CHUNK):
            yield chunk


def read_file(container: Container, path: str, *, max_size: int = DEFAULT_MAX_READ) -> bytes:
    """The bytes of one regular file of the container (symlinks followed inside the container).

    Raises:
        InvalidPathError: ``path`` is empty, a folder or not a regular file.
        NotFoundError: No such file.
        BlobTooLargeError: It is larger than ``max_size``.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The file system refused the read.
        RPCError: A call to containerd failed.
    """
    _check_path(path)
    with _os_errors(container.id, "reading from"), _root(container, write=False) as root:
        return _copy.read_file(root, path, max_size)


def write_file(
    container: Container, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> None:
    """Write ``data`` to the file ``path`` of the container (its folder must exist).

    Whatever is at ``path`` is replaced (a symlink there is replaced, not
    followed; symlinks in the folders above are followed inside the
    container).

    Raises:
        InvalidPathError: ``path`` is empty or names a folder.
        InvalidArgumentError: ``data`` is not bytes or ``mode`` no
            permission bits.
        NotFoundError: The folder of ``path`` does not exist.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The file system refused the write.
        RPCError: A call to containerd failed.
    """
    _check_path(path)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgumentError(f"data must be bytes, got {type(data).__name__}")
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise InvalidArgumentError(f"mode must be permission bits (0 to 0o7777), got {mode!r}")
    folder, _, name = path.rstrip("/").rpartition("/") if not path.endswith("/") else ("", "", "")
    if not name or name in (".", ".."):
        raise InvalidPathError(f"{path!r} does not name a file")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = int(time.time())
    with tempfile.TemporaryFile(prefix="containerd-client-copy-") as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, _BytesReader(bytes(data)))
        spool.seek(0)
        _put(container, folder or "/", spool)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        out, self._data = bytes(self._data[:n]), self._data[n:]
        return out


def copy_in(container: Container, local_path: str | os.PathLike[str], container_path: str) -> None:
    """Copy a host file or folder into the container, as ``docker cp SRC CONTAINER:DEST`` does.

    If ``container_path`` is an existing folder, the copy goes inside it
    under its own name; otherwise it is made at ``container_path`` (whose
    folder must exist). Host symlinks are copied as links.

    Raises:
        InvalidPathError: ``local_path`` does not exist, or a path is empty.
        UnsafeArchiveError: ``local_path`` holds a device or FIFO.
        NotFoundError: The folder of ``container_path`` does not exist.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The file system refused a write.
        RPCError: A call to containerd failed.
    """
    local = os.fspath(local_path)
    _check_path(local, "local_path")
    _check_path(container_path, "container_path")
    if not os.path.lexists(local):
        raise InvalidPathError(f"local path {local!r} does not exist")
    src_name = os.path.basename(os.path.normpath(os.path.abspath(local))) or "root"
    with tempfile.TemporaryFile(prefix="containerd-client-copy-") as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(local, arcname=src_name, recursive=True)
        spool.seek(0)
        _copy.check_tar(spool)
        with _os_errors(container.id, "copying into"), _root(container, write=True) as root:
            if _copy.is_dir(root, container_path):
                _copy.extract(root, container_path, spool)
            else:
                folder, _, name = container_path.rstrip("/").rpartition("/")
                if not name or name in (".", ".."):
                    raise InvalidPathError(f"{container_path!r} does not name a file or folder")
                _copy.extract(root, folder or "/", spool, rename=(src_name, name))


def copy_out(container: Container, container_path: str, local_path: str | os.PathLike[str]) -> PathStat:
    """Copy a file or folder of the container to the host, as ``docker cp CONTAINER:SRC DEST`` does.

    If ``local_path`` is an existing folder, the copy goes inside it under
    its own name; otherwise it is made at ``local_path`` (whose folder must
    exist). Files get this process's owner and lose set-uid/set-gid bits;
    links are copied as links, and nothing is written through them.

    Returns:
        What ``container_path`` is.

    Raises:
        InvalidPathError: A path is empty, or names the container's root
            with a ``local_path`` that is not an existing folder.
        NotFoundError: Nothing at ``container_path``, or the folder of
            ``local_path`` does not exist.
        UnsafeArchiveError: The path holds a device or FIFO.
        PermissionDeniedError: A stopped container's snapshot must be
            mounted and this process may not mount.
        FailedPreconditionError: The file system refused a read or write.
        RPCError: A call to containerd failed.
    """
    local = os.path.abspath(os.fspath(local_path))
    _check_path(container_path, "container_path")
    chunks, info = get_archive(container, container_path)
    with tempfile.TemporaryFile(prefix="containerd-client-copy-") as spool:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        with _os_errors(container.id, "copying from"):
            if os.path.isdir(local):
                target, rename = local, None
            else:
                if info.name == "/":
                    raise InvalidPathError(
                        f"copy the container's root into an existing folder, not {local!r}"
                    )
                target, rename = os.path.dirname(local), (info.name, os.path.basename(local))
            try:
                fd = os.open(target, _ROOT_FLAGS)
            except FileNotFoundError:
                raise NotFoundError(f"local folder {target!r} does not exist") from None
            try:
                _copy.extract(fd, "/", spool, rename=rename, chown=False, mode_mask=0o1777)
            finally:
                os.close(fd)
    return info
