"""What the copy code of *this* process left mounted or on disk.

scripts/test runs two containerd versions' suites side by side on one host,
so /tmp and the host's mount table hold the other suite's copy folders too;
only names with this process's id (``_mount.temp_prefix()``) are ours.
"""

from __future__ import annotations

import glob
import os
import tempfile

from containerd_client import _mount


def copy_mounts() -> list[str]:
    """Lines of the mount table for this process's copy mounts."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line for line in f if _mount.temp_prefix() in line]


def copy_temp_folders() -> list[str]:
    """This process's copy temp folders that still exist."""
    return glob.glob(os.path.join(tempfile.gettempdir(), _mount.temp_prefix() + "*"))
