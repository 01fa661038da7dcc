"""Containers, tasks and execs against a real containerd with runc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _cycles import cycles

from containerd_client import Client, cio, errors
from containerd_client._pb import api
from containerd_client.spec import with_memory_limit, with_tty
from containerd_client.tasks import TaskStatus


def _fifos(root: str, prefix: str = "") -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if f.startswith(prefix) and os.path.exists(p) and not os.path.isfile(p):
                found.append(p)
    return found


@pytest.fixture
def state_dir(tmp_path: object, containerd: Client) -> str:
    return containerd._state_dir or ""


def test_echo_hi(containerd: Client, busybox_rootfs: str) -> None:
    out = cio.Capture()
    with containerd.create_container("echo", rootfs=busybox_rootfs, args=["echo", "hi"]) as c:
        task = c.new_task(stdout=out)
        task.start()
        status = task.wait(timeout=30)
        assert status.exit_code == 0
        assert status.exited_at is not None
        assert task.delete().exit_code == 0
    assert out.getvalue() == b"hi\n"
    assert containerd.containers() == []


def test_task_after_the_exit_is_the_same_object_with_its_stdio(
    containerd: Client, busybox_rootfs: str
) -> None:
    # container.task() after the exit used to hand out a new Task without stdio,
    # orphaning the one that held the FIFOs (a ResourceWarning once collected).
    out = cio.Capture()
    with containerd.create_container("same", rootfs=busybox_rootfs, args=["echo", "hi"]) as c:
        task = c.new_task(stdout=out)
        task.start()
        assert task.wait(timeout=30).exit_code == 0
        assert c.task() is task
        assert c.task().delete().exit_code == 0
    assert out.getvalue() == b"hi\n"


@pytest.mark.parametrize(("args", "code"), [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42)])
def test_exit_codes(containerd: Client, busybox_rootfs: str, args: list[str], code: int) -> None:
    with containerd.create_container("codes", rootfs=busybox_rootfs, args=args) as c:
        task = c.new_task()
        task.start()
        assert task.wait(timeout=30).exit_code == code


def test_killed_reports_137(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("killed", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        assert task.status() is TaskStatus.RUNNING
        task.kill("SIGKILL")
        status = task.wait(timeout=30)
        assert status.exit_code == 137
        assert status.signal == signal.SIGKILL
        assert task.status() is TaskStatus.STOPPED


def test_kill_by_name_and_number(containerd: Client, busybox_rootfs: str) -> None:
    # sh as PID 1 ignores SIGTERM; a trap makes TERM observable.
    # It says "ready" once the trap is set: a TERM before that would kill nothing.
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"
    lines = cio.Lines()
    with containerd.create_container("killnames", rootfs=busybox_rootfs, args=["sh", "-c", script]) as c:
        task = c.new_task(stdout=lines)
        task.start()
        it = iter(lines)
        assert next(it) == "ready"
        task.kill("TERM")
        assert task.wait(timeout=30).exit_code == 7
        assert list(it) == ["got-term"]
    with containerd.create_container("killnum", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        task.kill(9)
        assert task.wait(timeout=30).exit_code == 137


def test_status_transitions_pause_resume_pids_stats(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("states", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        assert task.status() is TaskStatus.CREATED
        assert task.pid > 0
        task.start()
        assert task.status() is TaskStatus.RUNNING
        task.pause()
        assert task.status() is TaskStatus.PAUSED
        task.resume()
        assert task.status() is TaskStatus.RUNNING
        pids = task.pids()
        assert task.pid in [p.pid for p in pids]
        stats = task.stats()
        assert stats.memory is not None
        assert stats.memory.usage > 0
        assert stats.cpu is not None
        assert stats.cpu.usage_ns > 0
        assert stats.cgroup_version in (1, 2)
        task.kill("KILL")
        task.wait(timeout=30)
        assert task.status() is TaskStatus.STOPPED


def test_exec_with_stdin_1mib_50_times(containerd: Client, busybox_rootfs: str) -> None:
    payload = os.urandom(1 << 20)
    with containerd.create_container("stdin", rootfs=busybox_rootfs, args=["sleep", "300"]) as c:
        task = c.new_task()
        task.start()
        for i in range(50):
            out = cio.Capture()
            with task.exec(f"cat-{i}", ["cat"], stdin=payload, stdout=out) as proc:
                proc.start()
                status = proc.wait(timeout=30)
            assert status.exit_code == 0, i
            assert out.getvalue() == payload, i
        assert _fifos(c.bundle_dir) == []


def test_exec_empty_stdin_gets_eof(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("emptyin", rootfs=busybox_rootfs, args=["sleep", "300"]) as c:
        task = c.new_task()
        task.start()
        for i in range(20):
            out = cio.Capture()
            with task.exec(f"e{i}", ["cat"], stdin=b"", stdout=out) as proc:
                proc.start()
                assert proc.wait(timeout=30).exit_code == 0
            assert out.getvalue() == b""


def _until_tty_size(size: str, tries: int = 1000) -> str:
    """Shell that waits (up to ``tries`` x 10 ms) until the terminal has ``size``, then prints it.

    The size is applied just after start, and the resize after that: asking
    at once can get no size or the old one.
    """
    return (
        f'i=0; until [ "$(stty size 2>/dev/null)" = "{size}" ] || [ $i -ge {tries} ]; '
        "do i=$((i+1)); usleep 10000; done; stty size"
    )


def test_tty_exec_output_and_resize(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("tty", rootfs=busybox_rootfs, args=["sleep", "300"]) as c:
        task = c.new_task()
        task.start()
        out = cio.Capture()
        script = _until_tty_size("40 100") + "; echo tty-ok"
        with task.exec("t1", ["sh", "-c", script], tty=True, stdout=out) as proc:
            proc.start()
            proc.resize(100, 40)
            assert proc.wait(timeout=30).exit_code == 0
        text = out.text()
        assert "tty-ok" in text
        assert "40 100" in text
        assert "\r\n" in text  # a terminal translates newlines
        assert not any(p.endswith("-stderr") for p in os.listdir(c.bundle_dir))


def test_tty_task_resize(containerd: Client, busybox_rootfs: str) -> None:
    out = cio.Capture()
    script = _until_tty_size("30 120")
    with containerd.create_container(
        "ttytask", rootfs=busybox_rootfs, spec=[with_tty()], args=["sh", "-c", script]
    ) as c:
        task = c.new_task(stdout=out)
        task.start()
        task.resize(120, 30)
        assert task.wait(timeout=30).exit_code == 0
    assert "30 120" in out.text()


def test_run_convenience(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("runner", rootfs=busybox_rootfs, args=["sleep", "300"]) as c:
        task = c.new_task()
        task.start()
        result = task.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert result.exit_code == 3
        assert result.stdout == b"out\n"
        assert result.stderr == b"err\n"


def test_lines_sink_streams_while_running(containerd: Client, busybox_rootfs: str) -> None:
    lines = cio.Lines()
    script = "for i in 1 2 3; do echo line$i; sleep 0.1; done"
    with containerd.create_container("lines", rootfs=busybox_rootfs, args=["sh", "-c", script]) as c:
        task = c.new_task(stdout=lines)
        task.start()
        got = list(lines)
        assert task.wait(timeout=30).exit_code == 0
    assert got == ["line1", "line2", "line3"]


def test_oom_is_exit_137(containerd: Client, busybox_rootfs: str) -> None:
    # Grow a shell variable past a 16 MiB limit.
    script = "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    with containerd.create_container(
        "oom", rootfs=busybox_rootfs, spec=[with_memory_limit(16 << 20)], args=["sh", "-c", script]
    ) as c:
        task = c.new_task()
        task.start()
        assert task.wait(timeout=60).exit_code == 137


def test_update_resources(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("upd", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        task.update({"memory": {"limit": 64 << 20}})
        stats = task.stats()
        assert stats.memory is not None
        assert stats.memory.limit == 64 << 20


def test_labels_spec_info(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("lbl", rootfs=busybox_rootfs, args=["true"], labels={"a": "1"}) as c:
        assert c.labels()["a"] == "1"
        assert c.set_labels({"b": "2", "a": ""}) == {
            "b": "2",
            **{k: v for k, v in c.labels().items() if k != "b"},
        }
        assert "a" not in c.labels()
        assert c.spec()["process"]["args"] == ["true"]
        info = c.info(refresh=True)
        assert info.runtime == "io.containerd.runc.v2"
        assert [x.id for x in containerd.containers("labels.b==2")] == ["lbl"]
        assert containerd.containers("labels.b==3") == []


def test_runtime_options_survive_load(containerd: Client, busybox_rootfs: str) -> None:
    from containerd_client.containers import RuncOptions

    opts = RuncOptions(no_new_keyring=True)
    with containerd.create_container("opts", rootfs=busybox_rootfs, args=["true"], runtime_options=opts) as c:
        loaded = containerd.load_container("opts")
        assert loaded.info().runtime_options == opts
        task = loaded.new_task()
        task.start()
        assert task.wait(timeout=30).exit_code == 0
        task.delete()
        assert c.info(refresh=True).runtime_options == opts


def test_force_delete_created_task(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("created", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        assert task.status() is TaskStatus.CREATED
        status = task.force_delete()
        assert status.exit_code == 137
        with pytest.raises(errors.NotFoundError):
            c.task()


def test_restore_from_second_process(containerd: Client, busybox_rootfs: str) -> None:
    script = "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"
    first = cio.Lines()
    c = containerd.create_container("restore", rootfs=busybox_rootfs, args=["sh", "-c", script])
    try:
        task = c.new_task(stdout=first)
        task.start()
        assert next(iter(first)) == "tick0"
        # Detach this client's reader: another process takes over the FIFO.
        assert task.io is not None
        task.io.cancel()
        code = textwrap.dedent(
            f"""
            from containerd_client import Client, cio
            lines = cio.Lines()
            with Client({containerd.address!r}, {containerd.namespace_name!r}) as client:
                c = client.load_container("restore")
                task = c.attach_task(stdout=lines)
                it = iter(lines)
                got = [next(it) for _ in range(3)]
                assert all(g.startswith("tick") for g in got), got
                task.kill("KILL")
                status = task.wait(timeout=30)
                task.delete()
                print("restored", status.exit_code, got[0])
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("restored 137 tick")
        with pytest.raises(errors.NotFoundError):
            c.task()
    finally:
        c.cleanup()
    assert containerd.containers() == []


def test_with_block_cleans_up_on_error_and_keyboard_interrupt(
    containerd: Client, busybox_rootfs: str
) -> None:
    for exc_type in (RuntimeError, KeyboardInterrupt):
        container = containerd.create_container("boom", rootfs=busybox_rootfs, args=["sleep", "60"])
        bundle = container.bundle_dir
        with pytest.raises(exc_type), container as c:  # noqa: PT012
            task = c.new_task(stdout=cio.Capture())
            task.start()
            raise exc_type("boom")
        assert containerd.containers() == []
        assert not os.path.exists(bundle)


def test_lifecycle_200_cycles_leave_nothing(containerd: Client, busybox_rootfs: str) -> None:
    threads_before = threading.active_count()
    state_root = None
    for i in range(cycles(200)):
        with containerd.create_container(f"cyc{i}", rootfs=busybox_rootfs, args=["true"]) as c:
            state_root = os.path.dirname(c.bundle_dir)
            task = c.new_task(stdout=cio.Capture(), stderr=cio.Capture())
            task.start()
            assert task.wait(timeout=30).exit_code == 0
            task.delete()
    assert containerd.containers() == []
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    assert list(containerd.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks) == []
    assert state_root is not None
    assert not os.path.exists(state_root) or os.listdir(state_root) == []
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../x", "", "a" * 77, "has space", "a/b", "-lead", "trail-", "a..b"])
def test_invalid_ids_rejected_before_any_rpc(containerd: Client, bad: str) -> None:
    with pytest.raises(errors.InvalidIdError):
        containerd.create_container(bad, args=["true"])
    with pytest.raises(errors.InvalidIdError):
        containerd.load_container(bad)
    assert containerd.containers() == []


def test_bad_input_on_tasks(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("bad", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        with pytest.raises(errors.ConflictError):
            containerd.create_container("bad", rootfs=busybox_rootfs, args=["true"])
        task = c.new_task()
        task.start()
        with pytest.raises(errors.FailedPreconditionError):
            task.start()
        with pytest.raises(errors.FailedPreconditionError):
            task.delete()
        with pytest.raises(errors.FailedPreconditionError):
            c.delete()
        with pytest.raises(errors.UnknownSignalError):
            task.kill("SIGNOPE")
        with pytest.raises(errors.UnknownSignalError):
            task.kill(0)
        with pytest.raises(errors.InvalidIdError):
            task.exec("../x", ["true"])
        proc = task.exec("dup", ["sleep", "5"])
        with pytest.raises(errors.ConflictError):
            task.exec("dup", ["true"])
        proc.cleanup()
        task.kill("KILL")
        task.wait(timeout=30)
        with pytest.raises(errors.NotFoundError):
            task.kill("TERM")
        with pytest.raises(errors.FailedPreconditionError):
            task.exec("late", ["true"])
        task.delete()
        with pytest.raises(errors.NotFoundError):
            task.delete()
    assert containerd.containers() == []
    assert not os.path.exists(c.bundle_dir)


def test_exec_start_failure_cleans_up(containerd: Client, busybox_rootfs: str) -> None:
    with containerd.create_container("execfail", rootfs=busybox_rootfs, args=["sleep", "60"]) as c:
        task = c.new_task()
        task.start()
        proc = task.exec("nobin", ["/no/such/binary"], stdout=cio.Capture())
        with pytest.raises(errors.RPCError):
            proc.start()
        assert _fifos(c.bundle_dir, "nobin") == []
        with pytest.raises(errors.NotFoundError):
            task.load_process("nobin")


def test_task_create_failure_leaves_nothing(containerd: Client, tmp_path: object) -> None:
    with containerd.create_container("nocreate", rootfs="/nonexistent-rootfs", args=["true"]) as c:
        with pytest.raises(errors.RPCError):
            c.new_task(stdout=cio.Capture())
        assert _fifos(c.bundle_dir) == []
        with pytest.raises(errors.NotFoundError):
            c.task()
    assert containerd.containers() == []
