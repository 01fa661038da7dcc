"""A helper process that ends another one when this process is gone, however it dies.

Used for what the SDK starts that must not outlive the Python process even
after a SIGKILL, when no cleanup code runs: a test daemon
(:mod:`containerd_client.testing`) and the ``ssh`` of an ``ssh://`` address.

A pipe, not ``PR_SET_PDEATHSIG``: that fires when the *thread* that started
the child exits, and a child started from a worker thread must outlive it.
The write end is close-on-exec and only this process holds it; when the
process dies the watchdog reads EOF and signals the child, if that pid is
still the child (same start time), then removes ``folder`` once the child is
gone. :meth:`Watchdog.disarm` ends it without a signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

__all__ = ["Watchdog", "start_time"]

logger = logging.getLogger(__name__)

# Runs with -I -S: the standard library only, nothing of the environment.
_SCRIPT = """
import os, shutil, sys, time
pid, start, sig, folder = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
def same():
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode() == start and fields[0] != b"Z"
    except (OSError, IndexError):
        return False
if not os.read(0, 1):
    if same():
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    if folder:
        deadline = time.monotonic() + 5
        while same() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)
"""


def start_time(pid: int) -> str:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), "" if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


class Watchdog:
    """The watchdog of one child process; see the module docs."""

    def __init__(self, proc: subprocess.Popen[bytes], fd: int) -> None:
        self._proc: subprocess.Popen[bytes] | None = proc
        self._fd: int | None = fd

    @classmethod
    def start(cls, pid: int, *, sig: int = signal.SIGKILL, folder: str = "") -> Watchdog | None:
        """Watch over ``pid``: send it ``sig`` (and remove ``folder``) once this process is gone.

        Returns None (and logs) when the helper cannot be started: the child
        then only ends through the caller's own cleanup.
        """
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _SCRIPT, str(pid), start_time(pid), str(int(sig)), folder],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                # Not in the terminal's process group: a Ctrl-C is for Python.
                start_new_session=True,
            )
        except OSError:
            os.close(write_fd)
            logger.warning("could not start a watchdog for pid %d", pid, exc_info=True)
            return None
        finally:
            os.close(read_fd)
        return cls(proc, write_fd)

    @property
    def pid(self) -> int | None:
        """The helper's pid, while it runs."""
        return None if self._proc is None else self._proc.pid

    def disarm(self) -> None:
        """Let the helper exit without signalling anything, and reap it. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, b"x")
            os.close(fd)
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
