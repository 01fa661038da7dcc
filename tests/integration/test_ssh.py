"""``ssh://`` addresses against a real sshd on 127.0.0.1 (the ``containerd_sshd`` fixture).

The remote host is this machine: the session's private daemon is reached
through ``ssh://<user>@127.0.0.1:<port><its socket>``, with the server's own
throwaway keys and known_hosts passed as ``ssh_options`` (``-F <config>``),
as a user would pass theirs. Host keys are checked by ssh itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client, errors
from containerd_client.testing import ContainerdDaemon, SSHServer, build_busybox_archive

#: Every failure must be quick: no 30 s hangs on a refused or broken tunnel.
FAST = 5.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped by its parent counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling a condition with a deadline
    return True


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder for this test only: what the tunnel leaves there shows."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def ssh_address(containerd_sshd: SSHServer, containerd_daemon: ContainerdDaemon) -> str:
    return containerd_sshd.address(containerd_daemon.address)


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_busybox_archive(tmp_path_factory.mktemp("ssh-img") / "busybox.tar").path


@pytest.fixture
def remote(containerd: Client, ssh_address: str, containerd_sshd: SSHServer) -> Iterator[Client]:
    """A client in the ``containerd`` fixture's namespace, through ssh (so it is swept and leak-checked)."""
    client = Client(ssh_address, containerd.namespace_name, ssh_options=containerd_sshd.ssh_options)
    try:
        yield client
    finally:
        client.close()


def test_container_runs_through_ssh(private_tmp: Path, remote: Client, busybox_archive: str) -> None:
    (image,) = remote.images.import_archive(busybox_archive)
    # Output through FIFOs: this host is the remote host, so the shim finds them.
    result = remote.run(image, ["sh", "-c", "echo hi from $(hostname); exit 3"])
    assert (result.exit_code, result.stdout.startswith(b"hi from ")) == (3, True), result
    # No stdio at all: what works on any remote host.
    with remote.create_container("ssh-nostdio", image=image, args=["sh", "-c", "exit 7"]) as container:
        task = container.new_task()
        task.start()
        assert task.wait(30).exit_code == 7
    tunnel = remote._connection.tunnel
    assert tunnel is not None
    pid, folder = tunnel.pid, os.path.dirname(tunnel.local_path)
    assert pid is not None
    assert folder.startswith(str(private_tmp))
    # The forwarded socket opens the remote daemon: only this user may reach it.
    assert os.stat(folder).st_mode & 0o777 == 0o700
    remote.images.delete(image.name, sync=True)
    remote.close()
    assert _gone(pid), "ssh still runs after close()"
    assert not os.path.exists(folder)
    assert list(private_tmp.iterdir()) == []


def test_containerd_address_environment(
    ssh_address: str, containerd_sshd: SSHServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERD_ADDRESS", ssh_address)
    with Client(ssh_options=containerd_sshd.ssh_options) as client:
        assert client.address == ssh_address
        assert client.version().version
        assert client._connection.tunnel is not None


def test_missing_ssh_binary(
    ssh_address: str,
    containerd_sshd: SSHServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_tmp: Path,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(errors.SSHNotFoundError, match="no ssh program on PATH") as info:
        Client(ssh_address, ssh_options=containerd_sshd.ssh_options)
    assert isinstance(info.value, FileNotFoundError)
    assert list(private_tmp.iterdir()) == []


def test_refused_port(
    containerd_daemon: ContainerdDaemon, containerd_sshd: SSHServer, private_tmp: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(errors.SSHConnectError) as info:
            Client(
                f"ssh://{containerd_sshd.user}@127.0.0.1:{port}{containerd_daemon.address}",
                ssh_options=containerd_sshd.ssh_options,
            )
    assert time.monotonic() - started < FAST
    assert "Connection refused" in info.value.stderr
    assert info.value.stderr in str(info.value)
    assert info.value.returncode == 255
    assert list(private_tmp.iterdir()) == []


def _client_config(tmp_path: Path, sshd: SSHServer, *, key: str, known_hosts: str) -> list[str]:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host 127.0.0.1\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n"
    )
    return ["-F", str(config)]


def test_wrong_key(ssh_address: str, containerd_sshd: SSHServer, tmp_path: Path, private_tmp: Path) -> None:
    # The host key is a valid key, just not an authorized one.
    options = _client_config(
        tmp_path, containerd_sshd, key=containerd_sshd.host_key_path, known_hosts=containerd_sshd.known_hosts
    )
    started = time.monotonic()
    with pytest.raises(errors.SSHConnectError, match=r"Permission denied \(publickey\)") as info:
        Client(ssh_address, ssh_options=options)
    assert time.monotonic() - started < FAST
    assert info.value.destination == ssh_address.split("//")[1].split("/", 1)[0]
    assert list(private_tmp.iterdir()) == []


def test_unknown_host_key_is_refused_by_ssh(
    ssh_address: str, containerd_sshd: SSHServer, tmp_path: Path, private_tmp: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = _client_config(tmp_path, containerd_sshd, key=containerd_sshd.key_path, known_hosts=str(empty))
    with pytest.raises(errors.SSHConnectError, match="Host key verification failed"):
        Client(ssh_address, ssh_options=options)
    assert list(private_tmp.iterdir()) == []


def test_absent_remote_socket(containerd_sshd: SSHServer, tmp_path: Path, private_tmp: Path) -> None:
    address = containerd_sshd.address(str(tmp_path / "no-such.sock"))
    with Client(address, ssh_options=containerd_sshd.ssh_options) as client:
        started = time.monotonic()
        with pytest.raises(errors.RemoteSocketError, match=r"no-such\.sock") as info:
            client.version()
        assert time.monotonic() - started < FAST
        assert isinstance(info.value, errors.UnavailableError)
        assert info.value.code is errors.StatusCode.UNAVAILABLE
        assert info.value.stderr  # ssh's own words ("channel 1: open failed: ...")
    assert list(private_tmp.iterdir()) == []


def test_tunnel_restarts_when_ssh_dies(ssh_address: str, containerd_sshd: SSHServer) -> None:
    with Client(ssh_address, ssh_options=containerd_sshd.ssh_options) as client:
        assert client.version().version
        tunnel = client._connection.tunnel
        assert tunnel is not None
        assert tunnel.pid is not None
        first = tunnel.pid
        os.kill(first, signal.SIGKILL)
        assert _gone(first)
        # Idempotent calls ride the restart out; the next ssh is a new process.
        assert client.version().version
        assert tunnel.starts == 2
        assert tunnel.pid not in (None, first)


def test_tunnel_that_cannot_come_back_fails_typed(containerd_daemon: ContainerdDaemon) -> None:
    with SSHServer() as sshd:
        client = Client(sshd.address(containerd_daemon.address), ssh_options=sshd.ssh_options)
        try:
            assert client.version().version
            tunnel = client._connection.tunnel
            assert tunnel is not None
            assert tunnel.pid is not None
            pid = tunnel.pid
            sshd.kill()  # the host's sshd goes away...
            os.kill(pid, signal.SIGKILL)  # ...and with it the connection
            assert _gone(pid)
            started = time.monotonic()
            with pytest.raises(errors.SSHConnectError, match="could not be started again") as info:
                client.version()
            assert time.monotonic() - started < FAST
            assert "Connection refused" in info.value.stderr
        finally:
            client.close()


def test_bad_addresses_start_nothing(private_tmp: Path) -> None:
    for bad in ("ssh://", "ssh://user@", "ssh://host:99999", "ssh://u:secret@host", "ssh://-oProxyCommand=x"):
        with pytest.raises(errors.InvalidAddressError) as info:
            Client(bad)
        assert "secret" not in str(info.value)
    assert list(private_tmp.iterdir()) == []


_CTRL_C_CHILD = """
import os, sys, threading
from containerd_client import Client
with Client(sys.argv[1], ssh_options=sys.argv[2:]) as client:
    client.version()
    tunnel = client._connection.tunnel
    print(tunnel.pid, os.path.dirname(tunnel.local_path), flush=True)
    threading.Event().wait()
"""


def _end_child(ssh_address: str, sshd: SSHServer, sig: int) -> tuple[int, str, str]:
    """Run the child above, send it ``sig`` once its tunnel is up; its ssh pid, tunnel folder and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CTRL_C_CHILD), ssh_address, *sshd.ssh_options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid_text, folder = proc.stdout.readline().split()
        ssh_pid = int(pid_text)
        assert _alive(ssh_pid)
        assert os.path.isdir(folder)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return ssh_pid, folder, err


def test_ctrl_c_leaves_nothing(ssh_address: str, containerd_sshd: SSHServer) -> None:
    # SIGINT to the Python process only, as a notebook's interrupt.
    ssh_pid, folder, err = _end_child(ssh_address, containerd_sshd, signal.SIGINT)
    assert "KeyboardInterrupt" in err
    assert _gone(ssh_pid)
    assert not os.path.exists(folder)


def test_sigkill_of_python_ends_its_ssh_and_removes_the_tunnel_folder(
    ssh_address: str, containerd_sshd: SSHServer
) -> None:
    """No cleanup code runs on SIGKILL: the tunnel's watchdog ends ssh and removes its folder."""
    ssh_pid, folder, _ = _end_child(ssh_address, containerd_sshd, signal.SIGKILL)
    try:
        assert _gone(ssh_pid, 10.0)
        deadline = time.monotonic() + 10.0
        while os.path.exists(folder) and time.monotonic() < deadline:
            time.sleep(0.02)  # the watchdog removes it once ssh is gone
        assert not os.path.exists(folder)
    finally:
        if _alive(ssh_pid):  # what the old code left: end it here, it is this test's
            os.kill(ssh_pid, signal.SIGTERM)


def test_wait_rides_out_a_dead_ssh(
    containerd: Client, remote: Client, busybox_archive: str, containerd_sshd: SSHServer
) -> None:
    """A task.wait() blocked while ssh dies completes once the tunnel is back, with no other call made."""
    import threading

    (image,) = remote.images.import_archive(busybox_archive)
    with remote.create_container("ssh-wait", image=image, args=["sleep", "1000"]) as container:
        task = container.new_task()
        task.start()
        results: list[object] = []
        done = threading.Event()

        def waiter() -> None:
            try:
                results.append(task.wait(60).exit_code)
            except Exception as exc:  # reported below
                results.append(exc)
            done.set()

        thread = threading.Thread(target=waiter, name="ssh-waiter", daemon=True)
        thread.start()
        tunnel = remote._connection.tunnel
        assert tunnel is not None
        pid = tunnel.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _gone(pid)
        # The kill goes over the local socket: nothing on the ssh client calls in.
        containerd.load_container("ssh-wait").task().kill(signal.SIGKILL)
        assert done.wait(15), "task.wait() over ssh never returned after ssh died"
        thread.join(5)
        assert results == [128 + signal.SIGKILL]
    remote.images.delete(image.name, sync=True)


def test_unclosed_client_warns_and_its_ssh_ends(
    ssh_address: str, containerd_sshd: SSHServer, private_tmp: Path
) -> None:
    import gc

    clients = [Client(ssh_address, ssh_options=containerd_sshd.ssh_options)]
    tunnel = clients[0]._connection.tunnel
    assert tunnel is not None
    pid = tunnel.pid
    assert pid is not None

    def drop() -> None:
        clients.clear()
        gc.collect()

    with pytest.warns(ResourceWarning, match="unclosed containerd Client"):
        drop()
    assert _gone(pid)
    assert list(private_tmp.iterdir()) == []


def test_is_serving_and_wait_ready_over_a_broken_tunnel(
    containerd_daemon: ContainerdDaemon, tmp_path: Path
) -> None:
    with SSHServer() as sshd:
        # The remote socket is absent: wait_ready says what ssh said.
        with Client(sshd.address(str(tmp_path / "no.sock")), ssh_options=sshd.ssh_options) as client:
            assert client.is_serving() is False
            with pytest.raises(errors.DeadlineExceededError, match=r"ssh says: .*open failed"):
                client.wait_ready(0.3)
        # ssh died and cannot come back: is_serving answers False, as for any unreachable daemon.
        with Client(sshd.address(containerd_daemon.address), ssh_options=sshd.ssh_options) as client:
            assert client.is_serving() is True
            tunnel = client._connection.tunnel
            assert tunnel is not None
            pid = tunnel.pid
            assert pid is not None
            sshd.kill()
            os.kill(pid, signal.SIGKILL)
            assert _gone(pid)
            assert client.is_serving() is False


_CTRL_C_GROUP_CHILD = """
import sys
from containerd_client import Client
with Client(sys.argv[1], sys.argv[2], ssh_options=sys.argv[4:]) as client:
    image = client.images.get(sys.argv[3])
    with client.create_container("ssh-ctrl-c", image=image, args=["sleep", "1000"]) as container:
        task = container.new_task()
        task.start()
        print(client._connection.tunnel.pid, flush=True)
        task.wait()
"""


def test_terminal_ctrl_c_cleans_up_over_the_tunnel(
    containerd: Client, ssh_address: str, containerd_sshd: SSHServer, busybox_archive: str
) -> None:
    """Ctrl-C at a terminal reaches the whole process group: ssh must outlive it to delete the container."""
    (image,) = containerd.images.import_archive(busybox_archive)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_CTRL_C_GROUP_CHILD),
            ssh_address,
            containerd.namespace_name,
            image.name,
            *containerd_sshd.ssh_options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell job
    )
    try:
        assert proc.stdout is not None
        ssh_pid = int(proc.stdout.readline())
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in err, err
    assert "Traceback" in err
    assert "failed" not in err.split("KeyboardInterrupt")[0].lower(), err
    assert [c.id for c in containerd.containers()] == []
    assert _gone(ssh_pid)
    containerd.images.delete(image.name, sync=True)
