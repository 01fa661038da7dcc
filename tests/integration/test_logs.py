"""Kept logs (new_task(logs=True)) and text sinks without a descriptor, against a real containerd."""

from __future__ import annotations

import io
import os

import pytest

from containerd_client import Client, Container, cio, errors
from containerd_client.spec import with_tty


def _script(client: Client, rootfs: str, name: str, script: str) -> Container:
    return client.create_container(name, rootfs=rootfs, args=["sh", "-c", script])


def test_logs_streams_apart_together_and_tail(containerd: Client, busybox_rootfs: str) -> None:
    script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf 'no newline'"
    with _script(containerd, busybox_rootfs, "logs", script) as c:
        task = c.new_task(logs=True)
        assert task.has_logs
        task.start()
        assert task.wait(timeout=30).exit_code == 0
        assert task.logs(stderr=False) == b"out1\nout2\nno newline"
        assert task.logs(stdout=False) == b"err1\nerr2\n"
        both = task.logs()
        assert len(both) == len(b"out1\nout2\nno newline" + b"err1\nerr2\n")
        # The two streams are copied apart, so only each stream's own order is
        # certain; the iterator shows the lines one by one.
        lines = list(task.logs(follow=True))
        assert sorted(lines) == [b"err1\n", b"err2\n", b"no newline", b"out1\n", b"out2\n"]
        assert [x for x in lines if x.startswith(b"out")] == [b"out1\n", b"out2\n"]
        assert task.logs(stderr=False, tail=1) == b"no newline"
        assert task.logs(stdout=False, tail=1) == b"err2\n"
        assert task.logs(tail=0) == b""
        with pytest.raises(errors.InvalidArgumentError):
            task.logs(stdout=False, stderr=False)
        with pytest.raises(errors.InvalidArgumentError):
            task.logs(tail=-1)
        task.delete()
        # The log outlives the task (and its FIFOs), until the container goes.
        assert c.logs(stdout=False) == b"err1\nerr2\n"
        bundle = c.bundle_dir
        assert os.listdir(bundle) == ["logs-log"]
    assert not os.path.exists(bundle)


def test_follow_yields_lines_as_they_come_and_ends_at_exit(containerd: Client, busybox_rootfs: str) -> None:
    with _script(containerd, busybox_rootfs, "follow", "echo start; cat; echo end >&2") as c:
        task = c.new_task(stdin=cio.PIPE, logs=True)
        task.start()
        it = task.logs(follow=True)
        assert next(it) == b"start\n"
        assert task.io is not None
        task.io.stdin_write(b"one\n")
        assert next(it) == b"one\n"  # while the task still runs
        task.io.close_stdin()
        rest = list(it)  # ends by itself once the task exited
        assert rest == [b"end\n"]
        assert task.exit_status is not None or task.wait(timeout=30).exit_code == 0
        # A follower started after the exit gets what was kept, and ends.
        assert list(task.logs(follow=True, tail=2)) == [b"one\n", b"end\n"]


def test_logs_tee_with_a_sink_and_a_terminal(containerd: Client, busybox_rootfs: str) -> None:
    out = cio.Capture()
    with _script(containerd, busybox_rootfs, "tee", "echo both") as c:
        task = c.new_task(stdout=out, logs=True)
        task.start()
        task.wait(timeout=30)
        assert out.getvalue() == b"both\n"
        assert task.logs() == b"both\n"
    tty = containerd.create_container("tty", rootfs=busybox_rootfs, spec=[with_tty()], args=["echo", "tty"])
    with tty:
        task = tty.new_task(logs=True)  # a TTY: one stream, still kept
        task.start()
        task.wait(timeout=30)
        assert task.logs() == b"tty\r\n"


def test_logs_need_opt_in_and_refuse_io(containerd: Client, busybox_rootfs: str) -> None:
    with _script(containerd, busybox_rootfs, "optin", "true") as c:
        with pytest.raises(errors.InvalidArgumentError):
            c.new_task(io=cio.null_io(), logs=True)
        assert not os.path.exists(os.path.join(c.bundle_dir, "optin-log"))
        with pytest.raises(errors.FailedPreconditionError):
            c.logs()
        task = c.new_task()  # the fast path: no stdio at all
        assert task.io is not None
        assert task.io.config == cio.IOConfig()
        with pytest.raises(errors.FailedPreconditionError):
            task.logs()
        task.start()
        task.wait(timeout=30)


class _NotebookStdout:
    """Like Jupyter's sys.stdout: writes text, has no usable descriptor."""

    encoding = "UTF-8"

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError("write() argument must be str")
        self.parts.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_text_stream_without_descriptor_gets_the_text(containerd: Client, busybox_rootfs: str) -> None:
    cell = _NotebookStdout()
    with _script(containerd, busybox_rootfs, "jupyter", "echo 'héllo from the container'") as c:
        task = c.new_task(stdout=cell, stderr=cell)
        task.start()
        assert task.wait(timeout=30).exit_code == 0
        assert isinstance(task.io, cio.FifoIO)
        assert task.io.errors == ()
    assert "".join(cell.parts) == "héllo from the container\n"
