"""A CNI network of its own (bridge and subnet) for each private test daemon.

Two daemons on one host must not share the SDK's default bridge network:
each keeps its address allocations in its own state folder, so both would
hand out the same addresses on one bridge, and tests that compare the
host's network state would see each other's containers (the suite runs
containerd 1.7 and 2.x side by side, and pytest-xdist runs one daemon per
worker). A slot is claimed with an exclusive file under
``/run/containerd-client/netslots`` naming its owner (pid and start time);
a slot whose owner is gone is taken over. Releasing it, or taking it over,
detaches what is still attached to its bridge and deletes the bridge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from typing import Any

import attrs

from containerd_client import network
from containerd_client._watchdog import start_time as _start_time
from containerd_client.containers import _default_state_dir
from containerd_client.network import NetworkConfig

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
        """Undo what is still attached to the bridge, delete it, then the claim. Never raises."""
        _clear(self.config.bridge)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _clear(bridge: str, state_root: str | None = None) -> None:
    """Detach every attachment on ``bridge`` still recorded (CNI DEL: its veth, address,
    iptables rules and pinned namespace), then delete the bridge. Never raises.

    A daemon stopped (or whose process died) with containers on its network
    has its containers killed by the reaper, but their attachments are the
    SDK's, recorded under its state folder; nothing else would undo them.
    """
    root = os.path.abspath(state_root or _default_state_dir())
    try:
        found = detach_order(root, bridge)
    except Exception:
        logger.warning("cannot list the attachments on %s", bridge, exc_info=True)
        found = []
    for ns, cid in found:
        try:
            network.detach(root, ns, cid)
        except Exception:  # one failure must not keep the others
            logger.warning("detaching %s/%s from %s failed", ns, cid, bridge, exc_info=True)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False, timeout=10)


def _bridge_of(doc: dict[str, Any] | None) -> str | None:
    plugins = ((doc or {}).get("conflist") or {}).get("plugins") or []
    for plugin in plugins:
        if isinstance(plugin, dict) and plugin.get("type") == "bridge":
            return str(plugin.get("bridge") or "")
    return None


def detach_order(state_root: str, bridge: str) -> list[tuple[str, str]]:
    """The ``(namespace, id)`` attachments on ``bridge``: containers on a pooled
    namespace first (detaching one detaches its slot), then the rest."""
    first: list[tuple[str, str]] = []
    rest: list[tuple[str, str]] = []
    for ns, cid in network.attachments(state_root):
        doc = network.record(state_root, ns, cid)
        if doc is not None and doc.get("slot"):
            if _bridge_of(network.record(state_root, ns, str(doc["slot"]))) == bridge:
                first.append((ns, cid))
        elif _bridge_of(doc) == bridge:
            rest.append((ns, cid))
    return first + rest


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
                # What the dead owner's containers left on the bridge goes first.
                _clear(f"{BRIDGE_PREFIX}{n}")
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
