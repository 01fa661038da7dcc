"""A busybox root filesystem on the host, for containers run from a folder."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["make_busybox_rootfs"]

_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def _busybox() -> str:
    for path in _BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    found = shutil.which("busybox")
    if found:
        return found
    raise FileNotFoundError("busybox not found: install Debian's busybox-static")


def make_busybox_rootfs(path: str, *, users: dict[str, tuple[int, int]] | None = None) -> str:
    """Fill ``path`` with a minimal busybox root filesystem and return it.

    The folder gets ``/bin/busybox`` (a static build), a symlink for every
    applet, ``/etc/passwd`` and ``/etc/group`` (root plus ``users``), and the
    empty mount points runc expects.

    Args:
        path: An existing or new folder.
        users: Extra users as ``{"app": (uid, gid)}``.
    """
    busybox = _busybox()
    os.makedirs(path, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "run", "root", "var"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    target = os.path.join(path, "bin", "busybox")
    if not os.path.exists(target):
        shutil.copy2(busybox, target)
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = os.path.join(path, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    passwd = ["root:x:0:0:root:/root:/bin/sh"]
    group = ["root:x:0:"]
    for name, (uid, gid) in (users or {}).items():
        passwd.append(f"{name}:x:{uid}:{gid}:{name}:/home/{name}:/bin/sh")
        group.append(f"{name}:x:{gid}:")
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("\n".join(passwd) + "\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("\n".join(group) + "\n")
    return path
