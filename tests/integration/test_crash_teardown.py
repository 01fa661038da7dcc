"""A test process that is terminated or killed leaves nothing of its private daemon behind.

- SIGTERM (``timeout -s TERM 4 pytest ...``, a CI cancel) is handled like
  Ctrl-C: the plugin turns it into KeyboardInterrupt, pytest tears the
  fixtures down, and no daemon, shim, container process, cgroup, mount or
  temp folder stays.
- SIGKILL cannot be handled: the daemon dies with the process (a watchdog
  on a pipe), even when the thread that started it ended long before, and
  the next daemon start reaps what was left (shims, containers, mounts,
  folders).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from containerd_client.testing import ContainerdDaemon

ROOT = Path(__file__).resolve().parents[2]

_TINY_TEST = textwrap.dedent(
    """
    import json, os, threading
    import pytest
    from containerd_client import cio
    from containerd_client.testing import build_busybox_archive
    from containerd_client.testing._reaper import _find_shims

    @pytest.mark.containerd_leaks_ok("images", reason="setup")
    def test_hold(containerd, containerd_daemon, tmp_path):
        (image,) = containerd.images.import_archive(build_busybox_archive(tmp_path / "bb.tar").path)
        with containerd.create_container("held", image=image, args=["sleep", "600"]) as c:
            task = c.new_task(stdout=cio.Capture(), stderr=cio.Capture())
            task.start()
            with open(f"/proc/{task.pid}/cgroup") as f:
                cgroups = [line.strip().split(":", 2) for line in f if line.strip()]
            info = {
                "daemon_pid": containerd_daemon.pid,
                "base_dir": containerd_daemon.base_dir,
                "socket_dir": os.path.dirname(containerd_daemon.address),
                "namespace": containerd.namespace_name,
                "task_pid": task.pid,
                "shims": [pid for pid, _ns, _id in _find_shims(containerd_daemon.address)],
                "cgroups": cgroups,
                "bundle": c.bundle_dir,
            }
            path = os.environ["HOLD_INFO"]
            with open(path + ".tmp", "w") as f:
                json.dump(info, f)
            os.replace(path + ".tmp", path)
            threading.Event().wait(600)
    """
)

# Starts a daemon from a worker thread that then ends, runs a container, reports, waits to be killed.
_KILLED = textwrap.dedent(
    """
    import json, os, sys, threading
    from containerd_client import Client, cio
    from containerd_client.testing import ContainerdDaemon, make_busybox_rootfs
    from containerd_client.testing._reaper import _find_shims

    holder = {}
    starter = threading.Thread(target=lambda: holder.update(d=ContainerdDaemon().__enter__()))
    starter.start()
    starter.join()
    daemon = holder["d"]
    rootfs = os.path.join(sys.argv[1], "rootfs")
    os.makedirs(rootfs)
    make_busybox_rootfs(rootfs)
    client = Client(daemon.address, daemon.namespace, state_dir=os.path.join(sys.argv[1], "state"))
    c = client.create_container("held", rootfs=rootfs, args=["sleep", "600"])
    task = c.new_task(stdout=cio.Capture(), stderr=cio.Capture())
    task.start()
    info = {
        "daemon_pid": daemon.pid,
        "base_dir": daemon.base_dir,
        "socket_dir": os.path.dirname(daemon.address),
        "namespace": daemon.namespace,
        "task_pid": task.pid,
        "shims": [pid for pid, _ns, _id in _find_shims(daemon.address)],
    }
    print("READY " + json.dumps(info), flush=True)
    threading.Event().wait(600)
    """
)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _wait_until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(check())  # type: ignore[operator]


def _mounts_with(*parts: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if any(part in p for part in parts)]


def _left(info: dict[str, object]) -> dict[str, object]:
    """What of the run described by ``info`` still exists."""
    pids = [info["daemon_pid"], info["task_pid"], *info["shims"]]  # type: ignore[misc]
    left: dict[str, object] = {
        "processes": [p for p in pids if not _gone(int(p))],  # type: ignore[call-overload]
        "mounts": _mounts_with(str(info["base_dir"]), str(info["socket_dir"]) + "/"),
        "folders": [p for p in (info["base_dir"], info["socket_dir"]) if os.path.exists(str(p))],
    }
    cgroups = []
    for _num, controllers, path in info.get("cgroups", []):  # type: ignore[attr-defined]
        for controller in controllers.split(",") if controllers else [""]:
            name = controller.removeprefix("name=")
            full = os.path.join("/sys/fs/cgroup", name, path.lstrip("/"))
            if path.strip("/") and os.path.isdir(full):
                cgroups.append(full)
    left["cgroups"] = cgroups
    if "bundle" in info:
        left["state"] = [
            p for p in (info["bundle"], os.path.dirname(str(info["bundle"]))) if os.path.exists(str(p))
        ]
    return {k: v for k, v in left.items() if v}


def test_sigterm_to_pytest_leaves_no_daemon_shim_process_cgroup_mount_or_folder(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(_TINY_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    info_path = tmp_path / "info.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOLD_INFO": str(info_path)}
    env.pop("PYTEST_ADDOPTS", None)
    plugin = [
        "-p",
        "no:containerd_client",
        "-p",
        "containerd_client.testing.plugin",
        "-p",
        "no:cacheprovider",
    ]
    # The outer bound only; the SIGTERM that matters is sent once the container runs.
    proc = subprocess.Popen(
        [
            "timeout",
            "-s",
            "TERM",
            "120",
            sys.executable,
            "-m",
            "pytest",
            *plugin,
            "-q",
            "-s",
            "--basetemp",
            str(tmp_path / "basetemp"),
            "test_tiny.py",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        if (
            not _wait_until(lambda: info_path.exists() or proc.poll() is not None, 60)
            or not info_path.exists()
        ):
            proc.kill()
            pytest.fail(
                "the nested test never held its container:\n" + proc.communicate(timeout=30)[0][-4000:]
            )
        info = json.loads(info_path.read_text())
        assert info["shims"]
        # The check below sees every running part before the SIGTERM.
        assert sorted(_left(info)["processes"]) == sorted(
            [info["daemon_pid"], info["task_pid"], *info["shims"]]
        )
        assert _left(info)["mounts"]
        assert _left(info)["cgroups"]
        # timeout passes the SIGTERM it gets on to pytest, as when its own time is up.
        os.kill(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 2, output[-4000:]  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
    assert _wait_until(lambda: not _left(info), 10), (_left(info), output[-4000:])


def test_sigkilled_test_process_takes_its_daemon_along_and_the_next_start_reaps_the_rest(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            proc.kill()
            pytest.fail(f"no READY: {line!r} {proc.communicate(timeout=30)[1][-4000:]}")
        info = json.loads(line[len("READY ") :])
        # The thread that started the daemon ended before READY: the daemon still runs.
        assert not _gone(info["daemon_pid"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert _wait_until(lambda: _gone(info["daemon_pid"]), 10), "the daemon outlived its test process"
    assert os.path.isdir(info["base_dir"]), "the killed process left its folder for the next start"
    # The next start (in any test process) reaps what the killed one left.
    with ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None) as daemon:
        assert daemon.running
        assert _wait_until(lambda: not _left(info), 10), _left(info)
