"""Network namespaces kept alive by a bind mount, as ``ip netns add`` keeps them.

A short-lived thread calls ``unshare(CLONE_NEWNET)`` (a namespace belongs to
the calling thread only, so the rest of the process keeps its own), then
bind-mounts its ``/proc/self/task/<tid>/ns/net`` onto an empty file; the
namespace lives as long as that mount. No process is started. Removal is a
lazy unmount and an unlink, both idempotent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import threading

__all__ = ["create", "exists", "remove"]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MNT_DETACH = 0x2


@functools.cache
def _lib() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _os_error(what: str, path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}", path)


def create(path: str) -> None:
    """Make a new network namespace pinned at ``path`` (which must not exist).

    Raises:
        FileExistsError: ``path`` exists.
        OSError: The namespace or its mount could not be made (EPERM without
            CAP_SYS_ADMIN); nothing is left behind.
    """
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    failure: list[BaseException] = []

    def pin() -> None:
        libc = _lib()
        try:
            if libc.unshare(_CLONE_NEWNET) != 0:
                raise _os_error("unshare(CLONE_NEWNET)", path)
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            if libc.mount(source, os.fsencode(path), b"none", _MS_BIND, None) != 0:
                raise _os_error("bind mount of a network namespace", path)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    # The thread ends right after: nothing else ever runs in the new namespace.
    thread = threading.Thread(target=pin, name="containerd-client-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        remove(path)
        raise failure[0]


def exists(path: str) -> bool:
    """Whether ``path`` is a pinned network namespace (a mount point of nsfs)."""
    try:
        st = os.stat(path)
        parent = os.stat(os.path.dirname(path))
    except OSError:
        return False
    # A bind-mounted namespace file lives on nsfs, a device of its own.
    return st.st_dev != parent.st_dev


def remove(path: str) -> None:
    """Unmount (lazily) and delete the namespace file at ``path``; a missing one is fine.

    Raises:
        OSError: The unmount or the unlink failed for another reason.
    """
    libc = _lib()
    if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        # EINVAL: not a mount point (a half-made namespace); ENOENT: gone.
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount of a network namespace: {os.strerror(err)}", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
