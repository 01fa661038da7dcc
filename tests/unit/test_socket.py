"""The diagnosis behind the first-day errors: why a socket path cannot be reached."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import _socket
from containerd_client.errors import (
    NotFoundError,
    PermissionDeniedError,
    StatusCode,
    UnavailableError,
)

NOBODY = 65534
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "containerd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        sock.listen(4)
        yield path


def test_missing_path_says_not_running_and_where_to_point(tmp_path: Path) -> None:
    path = str(tmp_path / "containerd.sock")
    text = _socket.diagnose_socket(path)
    assert text is not None
    assert path in text
    assert "not running" in text
    assert "no socket" in text
    assert "CONTAINERD_ADDRESS" in text
    assert "address=" in text


def test_missing_folder_is_a_missing_path(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "containerd" / "containerd.sock")
    text = _socket.diagnose_socket(path)
    assert text is not None
    assert path in text
    assert "no socket" in text


def test_a_file_in_the_path_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    path = str(tmp_path / "run" / "containerd.sock")
    text = _socket.diagnose_socket(path)
    assert text is not None
    assert "not a folder" in text
    assert "CONTAINERD_ADDRESS" in text


@pytest.mark.parametrize(("make", "kind"), [("file", "file"), ("dir", "folder"), ("fifo", "non-socket")])
def test_something_that_is_no_socket(tmp_path: Path, make: str, kind: str) -> None:
    path = tmp_path / "containerd.sock"
    if make == "file":
        path.write_text("")
    elif make == "dir":
        path.mkdir()
    else:
        os.mkfifo(path)
    text = _socket.diagnose_socket(str(path))
    assert text is not None
    assert f"it is a {kind}, not a socket" in text
    assert str(path) in text


def test_a_socket_nobody_listens_on(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
    text = _socket.diagnose_socket(path)
    assert text is not None
    assert "nothing listens" in text
    assert "not running" in text


def test_a_listening_socket_we_may_open_is_fine(listening: str) -> None:
    assert _socket.diagnose_socket(listening) is None


@pytest.mark.parametrize(
    ("address", "path"),
    [
        ("/run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
        ("unix:///run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
        ("relative.sock", "relative.sock"),
        ("dns:///localhost:1234", None),
        ("unix://", None),
        ("", None),
    ],
)
def test_socket_path_reads_addresses_as_the_connection_does(address: str, path: str | None) -> None:
    assert _socket.socket_path(address) == path


def test_explain_unavailable_replaces_the_transport_message(tmp_path: Path) -> None:
    path = str(tmp_path / "containerd.sock")
    cause = RuntimeError("the grpc error")
    err = UnavailableError("failed to connect to all addresses")
    err.__cause__ = cause
    better = _socket.explain_unavailable("unix://" + path, err)
    assert type(better) is UnavailableError
    assert better.code is StatusCode.UNAVAILABLE
    assert path in str(better)
    assert "CONTAINERD_ADDRESS" in str(better)
    assert better.__cause__ is cause


def test_explain_unavailable_leaves_other_errors_and_live_sockets(listening: str) -> None:
    missing = NotFoundError("no such container")
    assert _socket.explain_unavailable("/nonexistent/containerd.sock", missing) is missing
    away = UnavailableError("transport is closing")
    assert _socket.explain_unavailable(listening, away) is away
    assert _socket.explain_unavailable("dns:///localhost:1234", away) is away


def _group_other_than_root() -> grp.struct_group:
    for group in grp.getgrall():
        if 0 < group.gr_gid < NOBODY:
            return group
    pytest.skip("no group on this machine to give the socket")


# Imports happen as root; then the child becomes nobody and diagnoses.
_AS_NOBODY = """
import json, os, sys
from containerd_client import _socket
from containerd_client.errors import UnavailableError
os.setgroups([])
os.setgid(%(uid)d)
os.setuid(%(uid)d)
err = _socket.explain_unavailable(sys.argv[1], UnavailableError("transport"))
print(json.dumps({"type": type(err).__name__, "message": str(err)}))
"""


def _as_nobody(address: str) -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a socket another user may not open")
    result = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY % {"uid": NOBODY}, address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


@pytest.fixture
def open_folder() -> Iterator[str]:
    """A folder in /tmp that anyone may enter (pytest's tmp_path is root's alone)."""
    folder = tempfile.mkdtemp(prefix="cctest-perm-", dir="/tmp")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("root_group", [False, True])
def test_a_socket_of_another_group_says_root_or_join_it(open_folder: str, root_group: bool) -> None:
    group = grp.getgrgid(0) if root_group else _group_other_than_root()
    path = os.path.join(open_folder, "containerd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        sock.listen(4)
        os.chown(path, 0, group.gr_gid)
        os.chmod(path, 0o660)
        outcome = _as_nobody(path)
    assert outcome["type"] == PermissionDeniedError.__name__, outcome
    message = outcome["message"]
    assert path in message
    assert "run as root" in message
    assert f"group {group.gr_name}" in message
    if root_group:
        # Joining root's group is no advice: containerd can give its socket a group.
        assert "[grpc] gid" in message
    else:
        assert f"join the group {group.gr_name!r}" in message


def test_a_folder_we_may_not_enter_is_named(open_folder: str) -> None:
    inner = os.path.join(open_folder, "private")
    os.mkdir(inner, 0o700)
    path = os.path.join(inner, "containerd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        sock.listen(4)
        outcome = _as_nobody(path)
    assert outcome["type"] == PermissionDeniedError.__name__, outcome
    assert f"the folder {inner} above containerd's socket {path}" in outcome["message"]
    assert "run as root" in outcome["message"]


def test_a_socket_replaced_during_the_diagnosis_is_not_called_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarting daemon unlinks its old socket between our stat and our next look.

    That is not a permission problem (found as a PermissionDeniedError raised to
    root by an idempotent call riding out a restart, on containerd 1.7).
    """
    import stat as _stat

    path = str(tmp_path / "containerd.sock")  # gone by the time we look again
    real_stat = os.stat
    old_socket = os.stat_result((_stat.S_IFSOCK | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: old_socket if str(p) == path else real_stat(p, *a, **k)
    )
    found = _socket._diagnose(path)
    assert found is not None
    denied, message = found
    assert not denied, message
    assert "CONTAINERD_ADDRESS" in message
