"""The containerd fixture reports what a test left in its namespace (and garbage is not a leak)."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client
from containerd_client.testing import ContainerdDaemon
from containerd_client.testing.plugin import find_leaks, format_leaks, sweep_namespace

pytest_plugins = ["pytester"]


@pytest.fixture
def bare_client(containerd_daemon: ContainerdDaemon) -> Iterator[Client]:
    """A client in a fresh namespace that nobody checks: these tests leak on purpose."""
    client = Client(containerd_daemon.address, f"leak-{uuid.uuid4().hex[:8]}")
    try:
        yield client
    finally:
        sweep_namespace(client)
        client.close()


def _write(client: Client, blob: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    return client.content.write(f"test-{digest}", blob, expected_digest=digest).digest


def test_find_leaks_names_each_kind_left_behind(bare_client: Client, busybox_rootfs: str) -> None:
    assert find_leaks(bare_client) == {}
    container = bare_client.create_container("leaky", rootfs=busybox_rootfs, args=["sleep", "60"])
    task = container.new_task()
    lease = bare_client.leases.create(expire=600)
    blob = b"kept by the lease " + uuid.uuid4().bytes
    with bare_client.lease(expire=600):
        digest = _write(bare_client, blob)
        bare_client.leases.add_resource(lease.id, digest, "content")
    leaks = find_leaks(bare_client)
    assert leaks == {
        "containers": ["leaky"],
        "tasks": ["leaky"],
        "leases": [lease.id],
        "content": [digest],
        "bundles": ["leaky"],
    }
    message = format_leaks(bare_client.namespace_name, leaks)
    assert "containers (1): leaky" in message
    assert lease.id in message
    assert "containerd_leaks_ok" in message
    assert task.pid > 0
    removed = sweep_namespace(bare_client)
    assert "task:leaky" in removed
    assert "container:leaky" in removed
    assert f"lease:{lease.id}" in removed
    # Deleting the lease may let containerd's collector take the blob before
    # the sweep reaches it: either way it must be gone.
    assert f"content:{digest}" in removed or not bare_client.content.exists(digest)
    assert find_leaks(bare_client) == {}


def test_garbage_the_collector_removes_is_not_a_leak(bare_client: Client) -> None:
    # A blob written inside a lease that is then dropped: referenced by nothing,
    # collected by containerd on its next run. The check runs one first.
    blob = b"garbage " + uuid.uuid4().bytes
    with bare_client.lease(expire=600):
        digest = _write(bare_client, blob)
        assert bare_client.content.exists(digest)
    assert find_leaks(bare_client) == {}


def test_a_leaking_test_fails_at_teardown_and_a_marked_one_does_not(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            def test_leaks_a_lease(containerd):
                containerd.leases.create(lease_id="forgotten-lease", expire=600)

            def test_leaks_a_container(containerd):
                containerd.create_container("forgotten", rootfs="/nonexistent", args=["true"])

            @pytest.mark.containerd_leaks_ok("leases", reason="on purpose")
            def test_leaks_on_purpose(containerd):
                containerd.leases.create(lease_id="allowed-lease", expire=600)

            @pytest.mark.containerd_leaks_ok("containers", reason="the wrong kind")
            def test_marked_for_another_kind(containerd):
                containerd.leases.create(lease_id="not-allowed-lease", expire=600)

            def test_failing_test_is_not_also_reported(containerd):
                containerd.leases.create(lease_id="after-failure", expire=600)
                assert False, "the test's own failure"

            def test_clean(containerd):
                with containerd.lease():
                    pass
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    # A test that passed and then errored at teardown counts in both.
    result.assert_outcomes(passed=5, failed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_lease*",
            "*leases (1): forgotten-lease*",
            "*ERROR at teardown of test_leaks_a_container*",
            "*containers (1): forgotten*",
        ]
    )
    out = result.stdout.str()
    assert "ERROR at teardown of test_marked_for_another_kind" in out
    assert "leases (1): not-allowed-lease" in out
    assert "ERROR at teardown of test_leaks_on_purpose" not in out
    assert "ERROR at teardown of test_failing_test_is_not_also_reported" not in out
    assert "ERROR at teardown of test_clean" not in out


def test_allowing_images_allows_only_what_they_hold(bare_client: Client, tmp_path: Path) -> None:
    from containerd_client.testing import build_busybox_archive

    archive = build_busybox_archive(tmp_path / "busybox.tar", name="localhost/leak/busybox:1")
    [image] = bare_client.images.import_archive(archive.path)
    kept = bare_client.leases.create(expire=600)
    blob = b"held by a lease " + uuid.uuid4().bytes
    with bare_client.lease(expire=600):
        digest = _write(bare_client, blob)
        bare_client.leases.add_resource(kept.id, digest, "content")
    everything = find_leaks(bare_client)
    assert everything["images"] == [image.name]
    assert len(everything["content"]) > 1
    assert everything["snapshots"]  # the unpacked layer
    # Without the image, its blobs and snapshot go; the lease and its blob stay leaks.
    assert find_leaks(bare_client, drop_images=True) == {
        "images": [image.name],
        "leases": [kept.id],
        "content": [digest],
    }
