"""The service helper and the plugin's report header without a daemon."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from containerd_client import wait
from containerd_client.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from containerd_client.testing import Service, start_service, stop_service
from containerd_client.testing.plugin import pytest_report_header


def test_published_maps_container_ports_of_port_and_http_strategies() -> None:
    ports = {80: 32768, 5432: 40000}
    s = wait.http(80, path="/health").published(ports.__getitem__)
    assert "http://127.0.0.1:32768/health" in s.describe()
    assert "127.0.0.1:40000" in wait.port(5432).published(ports.__getitem__).describe()
    both = (wait.port(5432) & wait.http(80)).published(ports.__getitem__)
    assert "127.0.0.1:40000" in both.describe()
    assert ":32768/" in both.describe()
    assert "all of" in both.describe()
    either = (wait.port(5432) | wait.http(80)).published(ports.__getitem__)
    assert "any of" in either.describe()
    assert ":32768/" in either.describe()


def test_published_leaves_urls_other_hosts_and_other_strategies_alone() -> None:
    def boom(port: int) -> int:
        raise AssertionError(f"asked for {port}")

    for s in (
        wait.http("http://127.0.0.1:8080/"),
        wait.http(80, host="10.0.0.2"),
        wait.port(80, host="localhost"),
        wait.log("ready"),
        wait.command(["true"]),
        wait.file("/tmp/ready"),
    ):
        assert s.published(boom) is s


class _FakeClient:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def create_container(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("create_container")
        raise AssertionError("no container should be made")


@pytest.mark.parametrize("ports", [80, "80", b"80"])
def test_bad_ports_are_refused_before_anything(ports: Any) -> None:
    client = _FakeClient()
    with pytest.raises(InvalidArgumentError), start_service(client, "img", ports=ports):  # type: ignore[arg-type]
        pass
    assert client.calls == []


@pytest.mark.parametrize("strategy", ["http://x/", [], [wait.port(80), "ready"], 80])
def test_bad_wait_is_refused_before_anything(strategy: Any) -> None:
    client = _FakeClient()
    with pytest.raises(InvalidArgumentError, match="wait"), start_service(client, "img", wait=strategy):  # type: ignore[arg-type]
        pass
    assert client.calls == []


def test_bad_mount_is_refused_before_anything() -> None:
    client = _FakeClient()
    with pytest.raises(InvalidArgumentError), start_service(client, "img", mounts={"relative": "/x"}):  # type: ignore[arg-type]
        pass
    assert client.calls == []


class _Task:
    pid = 0
    stop_signal = 15

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.stopped: list[float] = []

    def stop(self, timeout: float) -> None:
        self.stopped.append(timeout)
        if self.error is not None:
            raise self.error


class _TeardownClient:
    """What stop_service needs of a client: its background setting and pool."""

    def __init__(self, background: bool = False) -> None:
        self.background_teardown = background
        self.jobs: list[tuple[str, str, Any]] = []

    def _submit_teardown(self, key: str, what: str, job: Any) -> bool:
        self.jobs.append((key, what, job))
        return True


class _Container:
    id = "svc-1"
    ports = ()

    def __init__(self, error: Exception | None = None, client: _TeardownClient | None = None) -> None:
        self.error = error
        self.events: list[str] = []
        self.client = client or _TeardownClient()

    def host_port(self, port: int, protocol: str = "tcp") -> int:
        return {80: 32768}[port]

    def delete(self, *, force: bool = False) -> None:
        self.events.append(f"delete force={force}")
        if self.error is not None:
            raise self.error

    def cleanup(self) -> None:
        self.events.append("cleanup")


def test_stop_failure_still_deletes_and_is_raised() -> None:
    task, container = _Task(UnavailableError("daemon away")), _Container()
    with pytest.raises(UnavailableError, match="daemon away"):
        stop_service(Service(container, task), timeout=0.5)  # type: ignore[arg-type]
    assert task.stopped == [0.5]
    assert container.events == ["delete force=True", "cleanup"]


def test_background_teardown_hands_stop_and_delete_to_the_pool() -> None:
    client = _TeardownClient(background=True)
    task, container = _Task(UnavailableError("daemon away")), _Container(client=client)
    assert stop_service(Service(container, task), timeout=0.5) is None  # type: ignore[arg-type]
    assert task.stopped == []
    assert container.events == []
    [(key, what, job)] = client.jobs
    assert key == "svc-1"
    assert "svc-1" in what
    with pytest.raises(UnavailableError, match="daemon away"):  # the pool collects it
        job()
    assert task.stopped == [0.5]
    assert container.events == ["delete force=True", "cleanup"]


def test_wait_true_stops_on_the_callers_path_despite_the_client() -> None:
    client = _TeardownClient(background=True)
    task, container = _Task(None), _Container(client=client)
    stop_service(Service(container, task), wait=True)  # type: ignore[arg-type]
    assert client.jobs == []
    assert container.events == ["delete force=True", "cleanup"]


def test_delete_failure_is_raised_after_cleanup() -> None:
    task, container = _Task(None), _Container(FailedPreconditionError("busy"))
    with pytest.raises(FailedPreconditionError, match="busy"):
        stop_service(Service(container, task))  # type: ignore[arg-type]
    assert task.stopped == [1.0]
    assert container.events == ["delete force=True", "cleanup"]


def test_service_urls() -> None:
    svc = Service(_Container(), _Task(None))  # type: ignore[arg-type]
    assert svc.url(80) == "http://127.0.0.1:32768/"
    assert svc.url(80, "/a?b=1") == "http://127.0.0.1:32768/a?b=1"
    assert svc.address(80) == ("127.0.0.1", 32768)
    with pytest.raises(InvalidArgumentError):
        svc.url(80, "a")


def test_report_header_names_the_binary_and_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "containerd"
    fake.write_text("#!/bin/sh\necho 'containerd github.com/containerd/containerd v9.8.7 abcdef'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CONTAINERD_BIN", raising=False)
    monkeypatch.setenv("CONTAINERD_BIN_DIR", str(tmp_path))
    assert pytest_report_header(None) == f"containerd: 9.8.7 ({fake})"  # type: ignore[arg-type]


def test_report_header_without_a_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERD_BIN", os.path.join(str(tmp_path), "missing"))
    header = pytest_report_header(None)  # type: ignore[arg-type]
    assert header is not None
    assert header.startswith("containerd: unavailable (")


class _ImageClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.images = self

    def import_archive(self, path: str) -> list[str]:
        self.calls.append(("import", path))
        return [f"image-of-{os.path.basename(path)}"]

    def pull(self, ref: str, **options: Any) -> str:
        self.calls.append(("pull", ref))
        return f"pulled-{ref}"


def test_image_factory_imports_archives_and_pulls_references_once(tmp_path: Path) -> None:
    from containerd_client.testing.plugin import ImageFactory

    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"")
    client = _ImageClient()
    images = ImageFactory(client)  # type: ignore[arg-type]
    assert images(archive) == "image-of-busybox.tar"
    assert images(str(archive)) == "image-of-busybox.tar"
    assert images("library/busybox:1.36") == "pulled-library/busybox:1.36"
    assert images("library/busybox:1.36") == "pulled-library/busybox:1.36"
    assert client.calls == [("import", str(archive)), ("pull", "library/busybox:1.36")]


def _status(tmp_path: Path, pid: int, nspid: str, sigcgt: str) -> str:
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "status").write_text(f"Name:\thttpd\nNSpid:\t{nspid}\nSigCgt:\t{sigcgt}\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    ("nspid", "sigcgt", "discarded"),
    [
        ("4242\t1", "0000000000000000", True),  # busybox httpd as PID 1: SIGTERM dropped
        ("4242\t1", "0000000000004000", False),  # catches SIGTERM (bit 15)
        ("4242\t7", "0000000000000000", False),  # not its namespace's init: default action kills
        ("4242", "0000000000000000", False),  # host pid namespace
    ],
)
def test_signal_discarded(tmp_path: Path, nspid: str, sigcgt: str, discarded: bool) -> None:
    from containerd_client.tasks import _signal_discarded

    proc = _status(tmp_path, 4242, nspid, sigcgt)
    assert _signal_discarded(4242, 15, proc) is discarded


def test_signal_discarded_is_false_when_unsure(tmp_path: Path) -> None:
    from containerd_client.tasks import _signal_discarded

    assert _signal_discarded(0, 15, str(tmp_path)) is False
    assert _signal_discarded(4242, 15, str(tmp_path)) is False  # no such process
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text("Name:\tx\n")
    assert _signal_discarded(7, 15, str(tmp_path)) is False


def test_stop_waits_for_runcs_init_to_exec_the_command(tmp_path: Path) -> None:
    """Right after Start the init may still be runc's: a signal then is lost (seen in CI: a 60 s stop)."""
    import threading

    from containerd_client.tasks import _await_exec

    comm = tmp_path / "4242" / "comm"
    comm.parent.mkdir()
    comm.write_text("runc:[2:INIT]\n")
    execs = threading.Timer(0.2, lambda: comm.write_text("sleep\n"))
    execs.start()
    try:
        started = time.monotonic()
        _await_exec(4242, str(tmp_path), timeout=10.0)
        assert comm.read_text() == "sleep\n"  # returned once the command ran, not before
        assert time.monotonic() - started < 5.0
    finally:
        execs.cancel()
    # Bounded when it never execs, and at once for a gone or already exec'd process.
    comm.write_text("runc:[2:INIT]\n")
    started = time.monotonic()
    _await_exec(4242, str(tmp_path), timeout=0.1)
    assert time.monotonic() - started < 5.0
    _await_exec(4343, str(tmp_path), timeout=10.0)
