"""Mount a snapshot's mounts on a private temporary folder, and always take them down again.

Used to reach the files of a container that has no running task. Needs
``CAP_SYS_ADMIN`` (root), as containerd's own ``mount.WithTempMount`` does.
Only what snapshotters hand out is understood: ``overlay`` and ``bind``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from containerd_client.errors import NotSupportedError, PermissionDeniedError
from containerd_client.types import Mount

__all__ = ["mounted", "read_only_overlay", "temp_prefix"]

logger = logging.getLogger(__name__)

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_BIND = 4096
_MS_REC = 16384
_MNT_DETACH = 2

_FLAGS = {
    "ro": _MS_RDONLY,
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "bind": _MS_BIND,
    "rbind": _MS_BIND | _MS_REC,
}
_IGNORED = frozenset({"rw", "suid", "dev", "exec", "atime", "defaults"})

_libc_cache: list[Any] = []


def _libc() -> Any:
    if not _libc_cache:
        _libc_cache.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True))
    return _libc_cache[0]


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _libc().mount(
        os.fsencode(source),
        os.fsencode(target),
        os.fsencode(fstype),
        ctypes.c_ulong(flags),
        os.fsencode(data) if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise PermissionDeniedError(
                f"mounting {fstype} {source!r} needs root (CAP_SYS_ADMIN): {os.strerror(err)}"
            )
        raise OSError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


def temp_prefix() -> str:
    """The name prefix of the temp folders a process mounts on: it carries the process id.

    Two processes copying at once (two test suites side by side, two
    notebooks) can then each find, and answer for, only their own folders.
    """
    return f"containerd-client-mnt-{os.getpid()}-"


def _umount(target: str) -> None:
    if _libc().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # EINVAL: not mounted
            logger.warning("could not unmount %s: %s", target, os.strerror(err))


def read_only_overlay(mount: Mount) -> Mount:
    """An overlay mount turned into one without upper and work folders: the upper becomes the top lower.

    Such a mount is read-only by construction and does not take overlayfs'
    "in use" lock on the upper folder, so it can sit beside the mount of a
    stopped task's shim. Other mounts gain ``ro``.
    """
    if mount.type != "overlay":
        return Mount(mount.type, mount.source, mount.target, (*mount.options, "ro"))
    upper = ""
    lower = ""
    rest: list[str] = []
    for opt in mount.options:
        key, _, value = opt.partition("=")
        if key == "upperdir":
            upper = value
        elif key == "lowerdir":
            lower = value
        elif key not in ("workdir", "index", "redirect_dir", "metacopy"):
            rest.append(opt)
    lowers = ":".join(p for p in (upper, lower) if p)
    if ":" not in lowers:
        # overlayfs wants two lower folders when it has no upper one: a bind does the job.
        return Mount("bind", lowers, mount.target, ("rbind", "ro"))
    return Mount("overlay", mount.source, mount.target, (f"lowerdir={lowers}", *rest, "ro"))


def _apply(mount: Mount, target: str) -> None:
    flags = 0
    data: list[str] = []
    for opt in mount.options:
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    if mount.type == "bind" or flags & _MS_BIND:
        _mount(mount.source, target, "none", flags & (_MS_BIND | _MS_REC), "")
        if flags & ~(_MS_BIND | _MS_REC):
            try:
                _mount("", target, "none", _MS_REMOUNT | _MS_BIND | (flags & ~_MS_REC), "")
            except BaseException:
                _umount(target)
                raise
        return
    if mount.type != "overlay":
        raise NotSupportedError(f"copying to or from a snapshot mounted as {mount.type!r}")
    _mount(mount.source or "overlay", target, "overlay", flags, ",".join(data))


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], *, read_only: bool) -> Iterator[str]:
    """Mount ``mounts`` on a fresh private folder; yield its path; unmount and remove it after.

    Raises:
        PermissionDeniedError: This process may not mount (not root).
        NotSupportedError: A mount type other than overlay or bind.
        OSError: The kernel refused the mount.
    """
    if not mounts:
        raise NotSupportedError("copying to or from a snapshot that has no mounts")
    target = tempfile.mkdtemp(prefix=temp_prefix())
    try:
        os.chmod(target, 0o700)
        done = 0
        try:
            for m in mounts:
                _apply(read_only_overlay(m) if read_only else m, target)
                done += 1
            yield target
        finally:
            for _ in range(done):
                _umount(target)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)
