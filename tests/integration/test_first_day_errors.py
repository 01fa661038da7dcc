"""The two commonest first-day mistakes get errors that say what to do.

No daemon at the socket (a wrong path, containerd not started, a socket left
by a daemon that stopped) and a socket the user may not open. These go
through the real gRPC stack; no containerd is needed: a socket nobody
serves, or one that listens but refuses the user, fails the same way.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client, errors

# Well under the 15 s reconnect window: a client that never reached its
# daemon must not ride out a "restart".
QUICK = 5.0
NOBODY = 65534


def _first_call_error(address: str) -> tuple[errors.ContainerdError, float]:
    started = time.monotonic()
    with Client(address=address) as client, pytest.raises(errors.ContainerdError) as info:
        client.version()
    return info.value, time.monotonic() - started


def test_no_daemon_at_the_path_names_it_and_containerd_address(tmp_path: Path) -> None:
    path = str(tmp_path / "containerd.sock")
    err, took = _first_call_error(path)
    assert isinstance(err, errors.UnavailableError)
    message = str(err)
    assert path in message
    assert "not running" in message
    assert "CONTAINERD_ADDRESS" in message
    assert "address=" in message
    assert took < QUICK


def test_unix_scheme_address_is_diagnosed_too(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere" / "containerd.sock")
    err, _ = _first_call_error("unix://" + path)
    assert isinstance(err, errors.UnavailableError)
    assert path in str(err)
    assert "CONTAINERD_ADDRESS" in str(err)


def test_a_socket_nobody_listens_on_says_containerd_is_not_running(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening: what a killed daemon leaves
    err, took = _first_call_error(path)
    assert isinstance(err, errors.UnavailableError)
    assert path in str(err)
    assert "not running" in str(err)
    assert "CONTAINERD_ADDRESS" in str(err)
    assert took < QUICK


def test_a_regular_file_at_the_address_is_no_socket(tmp_path: Path) -> None:
    path = tmp_path / "containerd.sock"
    path.write_text("")
    err, _ = _first_call_error(str(path))
    assert isinstance(err, errors.UnavailableError)
    assert "not a socket" in str(err)
    assert "CONTAINERD_ADDRESS" in str(err)


def _other_group() -> grp.struct_group:
    """A named group that the unprivileged user is not in."""
    for group in grp.getgrall():
        if 0 < group.gr_gid < NOBODY and "nobody" not in group.gr_mem:
            return group
    pytest.skip("no group on this machine to give the socket")


@pytest.fixture
def guarded_socket() -> Iterator[tuple[str, grp.struct_group]]:
    """A listening socket, mode 0660, root and another group's, in a folder anyone may enter."""
    group = _other_group()
    folder = tempfile.mkdtemp(prefix="cctest-perm-", dir="/tmp")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "containerd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(8)
        os.chown(path, 0, group.gr_gid)
        os.chmod(path, 0o660)
        yield path, group
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


# Everything is imported and the client (a channel that has not connected
# yet) made as root; then the process becomes nobody and makes the first
# call (the interpreter may live where nobody cannot read).
_AS_NOBODY = """
import json, os, sys
import tenacity
from google.protobuf import empty_pb2
from containerd_client import Client, errors
client = Client(address=sys.argv[1])
client.services.version
os.setgroups([])
os.setgid(%(uid)d)
os.setuid(%(uid)d)
try:
    client.version()
    print(json.dumps({"type": None}))
except errors.ContainerdError as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
finally:
    client.close()
"""


def test_permission_denied_on_the_socket_says_root_or_its_group(
    guarded_socket: tuple[str, grp.struct_group],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a socket another user may not open")
    path, group = guarded_socket
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY % {"uid": NOBODY}, path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(Path(__file__).resolve().parents[2]),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "PermissionDeniedError", outcome
    message = outcome["message"]
    assert path in message
    assert "root" in message
    assert f"group {group.gr_name!r}" in message
    assert took < QUICK + 5  # the interpreter's start counts here too
