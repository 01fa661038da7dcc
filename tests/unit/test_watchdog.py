"""The watchdog helper: a child ends with the process that started it, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from containerd_client._watchdog import Watchdog, start_time


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling another process's state, with a deadline
    return True


_OWNER = """
import os, signal, subprocess, sys
from containerd_client._watchdog import Watchdog
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
dog = Watchdog.start(child.pid, sig=signal.SIGTERM, folder=sys.argv[1])
print(child.pid, dog.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_sigkilled_owner_takes_its_child_and_folder_along(tmp_path: Path) -> None:
    folder = tmp_path / "tunnel"
    folder.mkdir()
    (folder / "socket").write_text("")
    owner = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_OWNER), str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    child, dog = (int(p) for p in owner.stdout.split())
    try:
        assert _until(lambda: not _alive(child))
        assert _until(lambda: not folder.exists())
        assert _until(lambda: not _alive(dog))
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_disarm_leaves_the_child_running_and_reaps_the_helper(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        dog = Watchdog.start(child.pid, folder=str(tmp_path))
        assert dog is not None
        helper = dog.pid
        assert helper is not None
        dog.disarm()
        dog.disarm()  # idempotent
        assert dog.pid is None
        assert not _alive(helper)
        assert child.poll() is None
        assert tmp_path.exists()
    finally:
        child.kill()
        child.wait()


def test_start_time_of_a_missing_process_is_empty() -> None:
    assert start_time(os.getpid()) != ""
    assert start_time(2**22 + 7) == ""
