"""Finding CRIU and telling whether it can work on this kernel.

Checkpoint and restore run ``criu`` inside runc, started by the daemon's
shim, so the daemon's ``PATH`` decides which ``criu`` runs. This module
answers two questions without any RPC:

* :func:`detect`: is there a ``criu`` (on a given ``PATH``), which version,
  and is it new enough for the running kernel? It raises
  :class:`~containerd_client.errors.CriuUnavailableError` saying what is
  missing or too old.
* :func:`explain_failure`: does a daemon's error message say that criu was
  missing or failed? Then the caller raises the typed error instead of the
  daemon's raw one.

The one version rule that is known and measured: criu before 4.0 fails on
kernels >= 6.13 (``vdso: Unexpected rt vDSO area bounds``); criu 4.1.1 works.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tarfile
from typing import IO

import attrs

from containerd_client.errors import CriuUnavailableError

__all__ = [
    "CriuInfo",
    "check_checkpoint_tar",
    "daemon_path",
    "detect",
    "explain_failure",
    "extract_checkpoint_tar",
    "kernel_version",
    "pack_checkpoint_folder",
    "parse_version",
    "too_old_reason",
]

#: The oldest kernel on which criu before :data:`MIN_VERSION_NEW_KERNEL` fails.
NEW_KERNEL = (6, 13)
#: The criu version needed on :data:`NEW_KERNEL` and newer kernels.
MIN_VERSION_NEW_KERNEL = (4, 0)
#: Environment variable naming a folder with ``criu``, searched before ``PATH``.
CRIU_DIR_ENV = "CONTAINERD_CLIENT_CRIU_DIR"

_VERSION = re.compile(r"^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", re.MULTILINE)
_KERNEL = re.compile(r"^(\d+)\.(\d+)")


@attrs.frozen
class CriuInfo:
    """A ``criu`` binary that was found and judged usable.

    Attributes:
        path: Absolute path of the binary.
        version: Its version, e.g. ``(4, 1, 1)``.
        kernel: The running kernel's release (``os.uname().release``).
    """

    path: str
    version: tuple[int, int, int]
    kernel: str

    @property
    def version_text(self) -> str:
        """The version as ``"4.1.1"``."""
        return ".".join(map(str, self.version))


def parse_version(output: str) -> tuple[int, int, int] | None:
    """The version in ``criu --version`` output (``"Version: 4.1.1"``), else None."""
    m = _VERSION.search(output)
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def kernel_version(release: str) -> tuple[int, int] | None:
    """``"6.18.44-fc-v1045"`` -> ``(6, 18)``; None when it does not start with two numbers."""
    m = _KERNEL.match(release)
    return (int(m[1]), int(m[2])) if m else None


def too_old_reason(version: tuple[int, int, int], release: str) -> str | None:
    """Why ``criu`` of ``version`` cannot work on kernel ``release``, or None when it can.

    Only the measured rule is applied: criu < 4.0 on kernels >= 6.13.
    """
    kernel = kernel_version(release)
    if kernel is not None and kernel >= NEW_KERNEL and version[:2] < MIN_VERSION_NEW_KERNEL:
        return (
            f"criu {'.'.join(map(str, version))} is too old for kernel {release}: kernels "
            f"{NEW_KERNEL[0]}.{NEW_KERNEL[1]} and newer need criu "
            f"{MIN_VERSION_NEW_KERNEL[0]}.{MIN_VERSION_NEW_KERNEL[1]} or newer "
            "(older ones fail with 'vdso: Unexpected rt vDSO area bounds')"
        )
    return None


def _search_path(path: str | None) -> str:
    if path is not None:
        return path
    parts = [os.environ.get(CRIU_DIR_ENV, ""), os.environ.get("PATH", "")]
    return os.pathsep.join(p for p in parts if p)


def detect(path: str | None = None, *, release: str | None = None, timeout: float = 10.0) -> CriuInfo:
    """Find ``criu`` and check it can work here.

    Args:
        path: A ``PATH``-style folder list to search (the daemon's ``PATH``);
            by default ``$CONTAINERD_CLIENT_CRIU_DIR`` then ``$PATH``. A value
            naming the binary itself (a path ending in ``criu``) is used as is.
        release: The kernel release to judge against; the running kernel's by default.
        timeout: Seconds ``criu --version`` may take.

    Returns:
        The binary, its version and the kernel.

    Raises:
        CriuUnavailableError: criu is not found, does not run, prints no
            version, or is too old for the kernel (the message says which).
    """
    release = release if release is not None else os.uname().release
    if path is not None and os.path.basename(path) == "criu" and os.path.isfile(path):
        binary: str | None = path
        where = path
    else:
        search = _search_path(path)
        binary = shutil.which("criu", path=search)
        where = f"PATH={search}"
    if binary is None:
        raise CriuUnavailableError(
            f"criu is not installed (not found on {where}); checkpoint and restore need criu "
            f"{MIN_VERSION_NEW_KERNEL[0]}.{MIN_VERSION_NEW_KERNEL[1]} or newer on this kernel ({release})",
            kernel=release,
        )
    binary = os.path.abspath(binary)
    try:
        result = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CriuUnavailableError(f"{binary} does not run: {exc}", path=binary, kernel=release) from exc
    version = parse_version(result.stdout) if result.returncode == 0 else None
    if version is None:
        out = (result.stdout + result.stderr).strip()[-500:]
        raise CriuUnavailableError(
            f"{binary} --version printed no version (exit {result.returncode}): {out}",
            path=binary,
            kernel=release,
        )
    reason = too_old_reason(version, release)
    if reason is not None:
        raise CriuUnavailableError(
            f"{binary}: {reason}", path=binary, version=".".join(map(str, version)), kernel=release
        )
    return CriuInfo(path=binary, version=version, kernel=release)


# What runc and the shim say when criu is absent or failed. runc reports a
# missing binary as Go's exec error; a failing criu as "criu failed: type ...".
_MISSING = re.compile(r'exec: "?criu"?: executable file not found|criu[^\n]*no such file or directory', re.I)
_TOO_OLD = re.compile(r"vdso|criu version|CRIU version", re.I)
_FAILED = re.compile(r"criu failed", re.I)


def explain_failure(message: str) -> str | None:
    """What a daemon's checkpoint/restore error says about criu.

    Returns:
        ``"missing"`` (no criu binary), ``"too_old"`` (a version or vDSO
        complaint), ``"failed"`` (criu ran and failed) or None (not criu's doing).
    """
    if _MISSING.search(message):
        return "missing"
    if _TOO_OLD.search(message):
        return "too_old"
    if _FAILED.search(message):
        return "failed"
    return None


# -- the daemon's PATH -------------------------------------------------------------


def daemon_path(socket_path: str) -> str | None:
    """The ``PATH`` of the process serving the unix socket ``socket_path``, if this host can tell.

    Found through the socket's peer credentials (``SO_PEERCRED``) and that
    process's ``/proc/<pid>/environ``; None for a remote or unreadable daemon.
    """
    import socket
    import struct

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(socket_path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        if pid <= 0:
            return None
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except (OSError, struct.error):
        return None
    for item in environ.split(b"\0"):
        if item.startswith(b"PATH="):
            return item[5:].decode("utf-8", "replace")
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- checkpoint folders and tars ---------------------------------------------------

#: Every CRIU image folder has it; a folder or tar without it holds no checkpoint.
INVENTORY = "inventory.img"


def is_checkpoint_folder(path: str) -> bool:
    """Whether ``path`` is a folder holding a CRIU image (its ``inventory.img``)."""
    return os.path.isfile(os.path.join(path, INVENTORY))


def check_checkpoint_tar(tar_file: IO[bytes]) -> list[str]:
    """Check a CRIU checkpoint tar before anything of it is written, then rewind it.

    Refused: absolute names, ``..``, devices and FIFOs, hard links leaving the
    archive, and symlinks whose target leads outside it (followed through
    the archive's own symlinks, as the kernel would). A tar without
    ``inventory.img`` holds no checkpoint.

    Returns:
        The clean member names.

    Raises:
        UnsafeArchiveError: A member escapes the archive.
        ArchiveError: Not a tar, or too many links on one path.
        CheckpointError: No ``inventory.img``.
    """
    from containerd_client import _archive, _copy
    from containerd_client.errors import CheckpointError

    _copy.check_tar(tar_file)  # names, kinds, hard links, bombs
    members: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(fileobj=tar_file, mode="r:") as tar:
            for member in tar:
                clean = _archive._check_member(member)
                if clean is not None:
                    members[clean] = member
    except (tarfile.TarError, EOFError) as exc:
        raise _archive.ArchiveError(f"not a tar archive: {exc}") from exc
    finally:
        tar_file.seek(0)
    _archive._check_links(members)  # symlinks leading out
    inventory = members.get(INVENTORY)
    if inventory is None or not inventory.isreg():
        raise CheckpointError(f"the checkpoint tar holds no CRIU image (no {INVENTORY})")
    return sorted(members)


def extract_checkpoint_tar(tar_file: IO[bytes], target: str, *, checked: bool = False) -> None:
    """Unpack a checked CRIU checkpoint tar into the folder ``target`` (made if missing).

    Every member is checked first (:func:`check_checkpoint_tar`; ``checked``
    says the caller has just done so); nothing is written if one is refused.
    Writing is confined to ``target``: paths are resolved relative to a
    descriptor of it, never through a link that leaves it.

    Raises:
        UnsafeArchiveError: A member escapes (nothing written).
        ArchiveError: Not a tar.
        CheckpointError: No ``inventory.img`` (nothing written).
        InvalidPathError: ``target`` exists and is not a folder.
    """
    from containerd_client import _copy

    if not checked:  # else the caller ran check_checkpoint_tar on it already
        check_checkpoint_tar(tar_file)
    os.makedirs(target, mode=0o700, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _copy.extract(fd, ".", tar_file, chown=False)
    finally:
        os.close(fd)


def pack_checkpoint_folder(path: str, out: IO[bytes]) -> None:
    """Write the CRIU image folder ``path`` as an uncompressed tar (regular files only, sorted).

    Raises:
        CheckpointError: ``path`` holds no ``inventory.img``, or holds
            something else than regular files.
    """
    from containerd_client.errors import CheckpointError

    if not is_checkpoint_folder(path):
        raise CheckpointError(f"{path} holds no CRIU image (no {INVENTORY})")
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{full} is not a regular file; a CRIU image folder holds only files")
            info = tarfile.TarInfo(name)
            info.size = st.st_size
            info.mode = st.st_mode & 0o7777
            info.mtime = int(st.st_mtime)
            with open(full, "rb") as f:
                tar.addfile(info, f)
