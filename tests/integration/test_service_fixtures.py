"""The plugin's fixtures for users' tests, run by a nested pytest as a user would.

The nested suite has a conftest with a session image (``containerd_image``)
and an httpd service (``containerd_service``) with a published port and the
HTTP wait strategy; its tests fetch a page and then check, with the plugin's
own census, that the service left nothing in the session namespace or in
the network state folder.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from containerd_client import network
from containerd_client.testing import ContainerdDaemon

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and CNI need root"),
    pytest.mark.skipif(
        not any(os.path.exists(os.path.join(d, "bridge")) for d in network.NetworkConfig().plugin_dirs),
        reason="CNI plugins missing (apt-get install containernetworking-plugins)",
    ),
]

CONFTEST = """
import pytest

from containerd_client import wait
from containerd_client.testing import build_busybox_archive


@pytest.fixture(scope="session")
def busybox(containerd_image, tmp_path_factory):
    return containerd_image(build_busybox_archive(tmp_path_factory.mktemp("image") / "busybox.tar"))


@pytest.fixture
def web(containerd_service, busybox, tmp_path):
    (tmp_path / "index.html").write_text("hello from a fixture\\n")
    return containerd_service(
        busybox,
        ["httpd", "-f", "-p", "80", "-h", "/www"],
        ports=[80],
        wait=wait.http(80),
        mounts={str(tmp_path): "/www"},
    )
"""

TESTS = """
import os
import urllib.request

import pytest

from containerd_client import network, wait
from containerd_client.testing._census import state_folder
from containerd_client.testing.plugin import find_leaks

SEEN = []


@pytest.mark.parametrize("n", range({n}))
def test_page(web, n):
    with urllib.request.urlopen(web.url(80), timeout=10) as resp:
        assert resp.read() == b"hello from a fixture\\n"
    assert web.host_port(80) != 80
    assert web.task.status().value == "running"
    SEEN.append(web.id)


def test_graceful_stop(containerd_service, busybox):
    # The stop signal first: the trap writes into a host folder before the shell exits.
    script = "trap 'echo term > /out/term; exit 0' TERM; echo up; while :; do sleep 0.05; done"
    svc = containerd_service(
        busybox, ["sh", "-c", script], wait=wait.log("^up$"), mounts={os.environ["SERVICE_OUT"]: "/out"},
        stop_timeout=20,
    )
    SEEN.append(svc.id)


def test_nothing_left(containerd_session):
    assert SEEN, "the service tests did not run first"
    # The services were torn down in the background: nothing is left once it is joined.
    assert containerd_session.join_teardowns() == []
    leaks = find_leaks(containerd_session)
    assert "containers" not in leaks and "tasks" not in leaks and "leases" not in leaks, leaks
    assert "bundles" not in leaks, leaks
    assert not [s for s in leaks.get("snapshots", []) if any(i in s for i in SEEN)], leaks
    root = os.path.dirname(state_folder(containerd_session))
    # Only the network namespaces the session client keeps for its next services
    # (detached when the session ends: the outer test checks that).
    kept = [cid for _, cid in network.attachments(root, containerd_session.namespace_name)]
    assert all(cid.startswith("ccnet-") for cid in kept), kept
    assert len(kept) <= 4, kept
    with open(os.path.join(os.environ["SERVICE_OUT"], "session"), "w") as f:
        f.write(f"{root} {containerd_session.namespace_name}")
"""

GONE = """
from containerd_client import wait


def test_deleted_under_the_fixture(containerd_service, busybox):
    svc = containerd_service(busybox, ["sleep", "60"], wait=wait.command(["true"]))
    svc.task.kill(9)
    svc.task.wait(timeout=30)
    svc.task.delete()
    svc.container.delete()
"""


def _run(tmp_path: Path, *args: str, n: int = 1) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_web.py").write_text(TESTS.replace("{n}", str(n)))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "SERVICE_OUT": str(out)},
        timeout=300,
        check=False,
    )


def test_service_fixture_in_a_users_suite(tmp_path: Path, containerd_daemon: ContainerdDaemon) -> None:
    proc = _run(tmp_path, "-v", n=2)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "4 passed" in proc.stdout, out
    assert (tmp_path / "out" / "term").read_text() == "term\n"
    # The session's kept network namespaces went with it.
    root, namespace = (tmp_path / "out" / "session").read_text().split()
    assert network.attachments(root, namespace) == []
    # The daemon the plugin starts, named in the report header.
    assert f"containerd: {containerd_daemon.version} ({containerd_daemon.binary})" in proc.stdout, out


def test_teardown_failure_is_reported(tmp_path: Path, containerd_daemon: ContainerdDaemon) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_gone.py").write_text(GONE)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed, 1 error" in proc.stdout, out
    assert "ERROR at teardown of test_deleted_under_the_fixture" in proc.stdout, out
    assert "NotFoundError" in proc.stdout, out


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_service_fixture_under_xdist(tmp_path: Path) -> None:
    # Two workers, each with its own daemon and session namespace; test_nothing_left runs
    # on the worker that ran the service tests (--dist loadfile keeps the file together).
    proc = _run(tmp_path, "-n", "2", "--dist", "loadfile", n=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout + proc.stderr
