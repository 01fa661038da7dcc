"""A CNI network of its own (bridge and subnet) for each private test daemon.

Two daemons on one host must not share the SDK's default bridge network:
each keeps its address allocations in its own state folder, so both would
hand out the same addresses on one bridge, and tests that compare the
host's network state would see each other's containers (the suite runs
containerd 1.7 and 2.x side by side, and pytest-xdist runs one daemon per
worker). A slot is claimed with an exclusive file under
``/run/containerd-client/netslots`` naming its owner (pid and start time);
a slot whose owner is gone is taken over. Releasing it deletes its bridge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess

import attrs

from containerd_client.network import NetworkConfig
from containerd_client.testing._reaper import _start_time

__all__ = ["SLOTS_DIR", "NetSlot", "claim"]

logger = logging.getLogger(__name__)

SLOTS_DIR = "/run/containerd-client/netslots"
#: Slots n = 0..COUNT-1 use 10.(FIRST + n).0.0/16 on the bridge ``<BRIDGE_PREFIX><n>``.
FIRST = 230
COUNT = 20
BRIDGE_PREFIX = "cctestnet"


@attrs.frozen
class NetSlot:
    """A claimed network; :meth:`release` gives it back."""

    index: int
    path: str
    config: NetworkConfig

    def release(self) -> None:
        """Delete the bridge, then the claim. Never raises."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ip", "link", "delete", self.config.bridge],
                capture_output=True,
                check=False,
                timeout=10,
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _owner() -> str:
    pid = os.getpid()
    return f"{pid} {_start_time(pid)}"


def _stale(path: str) -> bool:
    try:
        with open(path) as fh:
            pid_text, _, start = fh.read().strip().partition(" ")
    except FileNotFoundError:
        return False
    except OSError:
        return False
    if not pid_text.isdigit():
        return True
    return _start_time(int(pid_text)) != start


def claim() -> NetSlot:
    """Claim a free slot.

    Raises:
        RuntimeError: All slots are taken by live processes.
    """
    os.makedirs(SLOTS_DIR, mode=0o755, exist_ok=True)
    for n in range(COUNT):
        path = os.path.join(SLOTS_DIR, str(n))
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not _stale(path):
                    break
                logger.info("network slot %d: its owner is gone; taking it over", n)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(_owner())
            # Published ports through the in-process proxy: a test's containers
            # never outlive its process, and no DNAT rule is left to capture a
            # port if the process dies (portmap's rules would stay).
            config = NetworkConfig(
                subnet=f"10.{FIRST + n}.0.0/16", bridge=f"{BRIDGE_PREFIX}{n}", port_forwarding="proxy"
            )
            return NetSlot(n, path, config)
    raise RuntimeError(f"all {COUNT} test network slots in {SLOTS_DIR} are taken by live processes")
