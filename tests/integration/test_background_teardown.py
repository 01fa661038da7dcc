"""Background teardown on a real daemon: off the critical path, nothing left at close, failures reported."""

from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client, errors
from containerd_client._pb import api
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.containers import Container, _default_state_dir
from containerd_client.testing import build_busybox_archive

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.containerd_leaks_ok("images", reason="images are the tests' setup")

WAIT = 30.0


@pytest.fixture
def busybox(containerd: Client, tmp_path: Path) -> str:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    (image,) = containerd.images.import_archive(archive.path)
    return image.name


@pytest.fixture
def background(containerd: Client) -> Iterator[Client]:
    client = Client(containerd.address, containerd.namespace_name, background_teardown=True)
    try:
        yield client
    finally:
        client.close()


def _state(client: Client) -> tuple[list[str], ...]:
    tasks = [t.id for t in client.call(api.Tasks.List, tasks_pb2.ListTasksRequest()).tasks]
    return (
        sorted(c.id for c in client.containers()),
        sorted(tasks),
        sorted(le.id for le in client.leases.list()),
        sorted(s.name for s in client.snapshots().list()),
    )


def _bundles(client: Client) -> list[str]:
    folder = os.path.join(_default_state_dir(), client.namespace_name)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold every teardown until the returned event is set (proves it is off the caller's path)."""
    gate = threading.Event()
    real = Container._teardown

    def held(self: Container) -> None:
        gate.wait(WAIT)
        real(self)

    monkeypatch.setattr(Container, "_teardown", held)
    return gate


def test_run_returns_before_teardown_and_close_leaves_nothing(
    containerd: Client, background: Client, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, bundles = _state(containerd), _bundles(containerd)
    gate = _gate(monkeypatch)
    for i in range(6):
        result = background.run(busybox, ["sh", "-c", f"echo {i}"])
        assert result.stdout == f"{i}\n".encode()
    with background.create_container("in-block", image=busybox, args=["true"]) as c:
        c.new_task().start()
    # Every teardown is held: all seven containers still exist after their calls returned.
    assert len(containerd.containers()) == 7
    assert len(background.pending_teardowns) == 7
    gate.set()
    background.close()
    assert background.join_teardowns() == []
    assert _state(containerd) == before
    assert _bundles(containerd) == bundles


def test_same_id_waits_for_its_pending_teardown(
    containerd: Client, background: Client, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _gate(monkeypatch)
    assert background.run(busybox, ["true"], container_id="same").exit_code == 0
    results: list[int] = []
    second = threading.Thread(
        target=lambda: results.append(background.run(busybox, ["true"], container_id="same").exit_code)
    )
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first one's teardown, not failing with ConflictError
    gate.set()
    second.join(WAIT)
    assert results == [0]
    assert background.join_teardowns(WAIT) == []
    assert containerd.containers() == []


def test_failing_teardown_is_reported_at_close(
    containerd: Client, background: Client, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Container, *, snapshot: bool = True, force: bool = False) -> None:
        raise errors.InternalError(f"refusing to delete {self.id}", errors.StatusCode.INTERNAL)

    monkeypatch.setattr(Container, "delete", refuse)
    background.run(busybox, ["true"], container_id="stuck")
    background.close()
    failures = background.join_teardowns()
    assert [f.what for f in failures] == ["tear down container stuck"]
    assert isinstance(failures[0].error, errors.InternalError)
    monkeypatch.undo()
    # The record is still there (the failure was real); clean it up so the leak check passes.
    containerd.load_container("stuck").delete(force=True)


def test_run_default_stays_synchronous(containerd: Client, busybox: str) -> None:
    before = _state(containerd)
    with Client(containerd.address, containerd.namespace_name) as client:
        assert not client.background_teardown
        assert client.run(busybox, ["true"]).exit_code == 0
        assert _state(containerd) == before  # gone when run returned
        assert client._teardown is None  # no pool, no thread


def test_detach_cleanup_per_call(containerd: Client, busybox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _state(containerd)
    with Client(containerd.address, containerd.namespace_name) as client:
        gate = _gate(monkeypatch)
        assert client.run(busybox, ["true"], detach_cleanup=True).exit_code == 0
        assert len(client.pending_teardowns) == 1
        gate.set()
        assert client.join_teardowns(WAIT) == []
        assert _state(containerd) == before


def test_a_failing_block_is_torn_down_before_its_error(
    containerd: Client, background: Client, busybox: str
) -> None:
    before = _state(containerd)
    with pytest.raises(RuntimeError), background.create_container("fails", image=busybox, args=["true"]):
        raise RuntimeError("boom")
    assert background.pending_teardowns == []
    assert _state(containerd) == before


def test_the_plugin_option_turns_it_on_and_reports_failures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncontainerd_background_teardown = true\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            from containerd_client import errors
            from containerd_client.containers import Container

            def test_on(containerd):
                assert containerd.background_teardown

            def test_failing_teardown(containerd, monkeypatch):
                def refuse(self):
                    raise errors.InternalError("refused", errors.StatusCode.INTERNAL)

                monkeypatch.setattr(Container, "_teardown", refuse)
                c = containerd.create_container("bg", rootfs="/nonexistent", args=["true"])
                c.cleanup(wait=False)
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_failing_teardown*",
            # The plugin's own message (a whole line), not the pool's log line.
            "background teardown failed:",
            "  tear down container bg: InternalError: refused",
        ]
    )
