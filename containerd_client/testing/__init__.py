"""Test support for containerd-client: a private daemon and offline image archives.

:class:`ContainerdDaemon` runs a containerd of its own (root, state, socket
and namespace), and :func:`build_busybox_archive` / :func:`build_image_archive`
write images that import with no registry or network::

    from containerd_client.testing import ContainerdDaemon, build_busybox_archive

    with ContainerdDaemon() as daemon:
        image = build_busybox_archive(tmp_path / "busybox.tar")
        daemon.ctr("images", "import", image.path)
"""

from __future__ import annotations

from containerd_client.errors import DaemonStartError
from containerd_client.testing._daemon import ContainerdDaemon
from containerd_client.testing._images import (
    DEFAULT_BUSYBOX_IMAGE,
    Directory,
    Entry,
    File,
    ImageArchive,
    ImageLayer,
    LayerSpec,
    Symlink,
    Whiteout,
    build_busybox_archive,
    build_image_archive,
    host_platform,
)
from containerd_client.testing._rootfs import make_busybox_rootfs
from containerd_client.testing._service import Service, WarmCache, start_service, stop_service
from containerd_client.testing._sshd import SSHServer

__all__ = [
    "DEFAULT_BUSYBOX_IMAGE",
    "ContainerdDaemon",
    "DaemonStartError",
    "Directory",
    "Entry",
    "File",
    "ImageArchive",
    "ImageLayer",
    "LayerSpec",
    "SSHServer",
    "Service",
    "Symlink",
    "WarmCache",
    "Whiteout",
    "build_busybox_archive",
    "build_image_archive",
    "host_platform",
    "make_busybox_rootfs",
    "start_service",
    "stop_service",
]
