"""Wait strategies (containerd_client.wait) against a real containerd."""

from __future__ import annotations

import pickle
import socket
import time
import urllib.request

import pytest

from containerd_client import Client, Container, Task, errors, wait
from containerd_client.spec import with_host_network

#: Pause of the long-running services; tests stop them long before.
FOREVER = "exec sleep 300"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service(client: Client, rootfs: str, name: str, script: str, *, host_net: bool = False) -> Container:
    spec = [with_host_network()] if host_net else []
    return client.create_container(name, rootfs=rootfs, args=["sh", "-c", script], spec=spec)


def _started(c: Container) -> Task:
    task = c.new_task(logs=True)
    task.start()
    return task


def test_log_strategy_waits_for_the_line(containerd: Client, busybox_rootfs: str) -> None:
    with _service(containerd, busybox_rootfs, "wlog", f"echo starting; echo ready >&2; {FOREVER}") as c:
        task = _started(c)
        task.wait_for(wait.log(r"^ready$"), timeout=30)
        wait.log("start|ready", times=2).wait(task, timeout=30)  # lines before the wait count
        assert task.exit_status is None
        task.stop(timeout=0)


def test_timeout_error_carries_the_last_lines(containerd: Client, busybox_rootfs: str) -> None:
    with _service(containerd, busybox_rootfs, "wtimeout", f"echo starting up; {FOREVER}") as c:
        task = _started(c)
        wait.log("starting").wait(task, timeout=30)
        started = time.monotonic()
        with pytest.raises(errors.WaitTimeoutError) as info:
            task.wait_for(wait.log("never printed"), timeout=0.3)
        assert time.monotonic() - started >= 0.3
        err = info.value
        assert isinstance(err, TimeoutError)
        assert isinstance(err, errors.DeadlineExceededError)
        assert err.logs == ("starting up",)
        assert err.exit_code is None
        assert "never printed" in str(err)
        assert "starting up" in str(err)
        again = pickle.loads(pickle.dumps(err))
        assert (type(again), again.logs, again.exit_code) == (errors.WaitTimeoutError, err.logs, None)
        task.stop(timeout=0)


def test_a_task_that_dies_fails_the_wait_at_once(containerd: Client, busybox_rootfs: str) -> None:
    with _service(containerd, busybox_rootfs, "wdied", "echo 'config error: no port' >&2; exit 3") as c:
        task = _started(c)
        started = time.monotonic()
        with pytest.raises(errors.WaitTimeoutError) as info:
            task.wait_for(wait.http(_free_port()), timeout=60)
        assert time.monotonic() - started < 30  # not the whole timeout
        assert info.value.exit_code == 3
        assert info.value.logs == ("config error: no port",)
        assert "exited with code 3" in str(info.value)


def test_port_and_http_in_the_host_network(containerd: Client, busybox_rootfs: str) -> None:
    port = _free_port()
    script = (
        f"mkdir /dev/shm/www && echo hello > /dev/shm/www/index.html && "
        f"echo serving && exec httpd -f -p 127.0.0.1:{port} -h /dev/shm/www"
    )
    with _service(containerd, busybox_rootfs, "whttp", script, host_net=True) as c:
        task = _started(c)
        task.wait_for(wait.port(port), wait.http(port, status=200), timeout=30)
        wait.http(f"http://127.0.0.1:{port}/missing", status={404, 410}).wait(task, timeout=5)
        wait.http(port, path="/index.html", status=lambda s: s < 300).wait(task, timeout=5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as resp:
            assert resp.read() == b"hello\n"
        with pytest.raises(errors.WaitTimeoutError):
            wait.http(port, status=500).wait(task, timeout=0.2)
        assert task.stop(timeout=0).exit_code == 137  # httpd as pid 1 ignores TERM
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_command_file_and_composition(containerd: Client, busybox_rootfs: str) -> None:
    with _service(containerd, busybox_rootfs, "wexec", f"echo up; {FOREVER}") as c:
        task = _started(c)
        flag = wait.file("/dev/shm/ready")
        with pytest.raises(errors.WaitTimeoutError) as info:
            flag.wait(task, timeout=0.3)
        assert "/dev/shm/ready" in str(info.value)
        assert task.run(["touch", "/dev/shm/ready"]).ok
        flag.wait(task, timeout=30)
        wait.command("sh -c 'test -f /dev/shm/ready && test ! -s /dev/shm/ready'").wait(task, timeout=30)
        # Composition: all_of needs each, any_of one; & and | read the same.
        task.wait_for(wait.log("up") & flag, timeout=30)
        (wait.file("/dev/shm/never") | wait.log("up")).wait(task, timeout=30)
        with pytest.raises(errors.WaitTimeoutError) as info:
            wait.all_of(wait.log("up"), wait.file("/dev/shm/never")).wait(task, timeout=0.3)
        assert "/dev/shm/never" in str(info.value)
        task.stop(timeout=0)


def test_bad_input_is_refused_before_waiting(containerd: Client, busybox_rootfs: str) -> None:
    for make in (
        lambda: wait.log("("),
        lambda: wait.log("x", times=0),
        lambda: wait.log("x", stream="stdin"),
        lambda: wait.port(0),
        lambda: wait.port(70000),
        lambda: wait.http("https://127.0.0.1/"),
        lambda: wait.http(80, path="no-slash"),
        lambda: wait.http(80, status="200"),  # type: ignore[arg-type]
        lambda: wait.file("relative"),
        wait.all_of,
        lambda: wait.any_of("log"),  # type: ignore[arg-type]
    ):
        with pytest.raises(errors.InvalidArgumentError):
            make()
    with _service(containerd, busybox_rootfs, "wbad", "true") as c:
        task = c.new_task()  # no logs kept
        with pytest.raises(errors.FailedPreconditionError):
            task.wait_for(wait.log("x"), timeout=1)
        with pytest.raises(errors.InvalidTimeoutError):
            task.wait_for(wait.port(80), timeout=-1)
        with pytest.raises(errors.InvalidArgumentError):
            task.wait_for(timeout=1)
        task.start()
        task.wait(timeout=30)
