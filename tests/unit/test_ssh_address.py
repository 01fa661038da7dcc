"""``ssh://`` addresses without a server: parsing, the ssh command line, and what fails before ssh runs."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import pytest

from containerd_client import Client, _ssh, errors


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ssh://host", _ssh.SSHAddress("host")),
        ("ssh://me@host", _ssh.SSHAddress("host", "me")),
        ("SSH://me@host:2222", _ssh.SSHAddress("host", "me", 2222)),
        ("ssh://me@host:2222/", _ssh.SSHAddress("host", "me", 2222)),
        (
            "ssh://root@10.0.0.5/run/k3s/containerd/containerd.sock",
            _ssh.SSHAddress("10.0.0.5", "root", None, "/run/k3s/containerd/containerd.sock"),
        ),
        ("ssh://me@[::1]:22/x.sock", _ssh.SSHAddress("::1", "me", 22, "/x.sock")),
        ("ssh://first.last%40corp@host", _ssh.SSHAddress("host", "first.last@corp")),
    ],
)
def test_parse(address: str, expected: _ssh.SSHAddress) -> None:
    assert _ssh.parse_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "ssh://",
        "ssh://me@",
        "ssh://host:99999",
        "ssh://host:port",
        "ssh://me:hunter2@host",
        "ssh://-oProxyCommand=touch%20x",
        "ssh://-oProxyCommand=x@host",
        "ssh://host/a:b.sock",
        "ssh://host/x.sock?timeout=3",
        "unix:///run/containerd/containerd.sock",
    ],
)
def test_bad_addresses_are_refused_and_never_show_a_password(address: str) -> None:
    with pytest.raises(errors.InvalidAddressError) as info:
        _ssh.parse_address(address)
    assert isinstance(info.value, ValueError)
    assert "hunter2" not in str(info.value)


def test_destination_for_messages() -> None:
    assert _ssh.SSHAddress("::1", "me", 22).destination == "me@[::1]:22"
    assert _ssh.SSHAddress("host").destination == "host"


def test_command_line_leaves_host_keys_to_ssh_and_puts_user_options_first() -> None:
    tunnel = _ssh.Tunnel(
        _ssh.parse_address("ssh://me@host:2222/r.sock"), ["-F", "/cfg", "-o", "ConnectTimeout=3"]
    )
    tunnel.local_path = "/tmp/x/sock"
    cmd = tunnel.command("/usr/bin/ssh")
    assert cmd[:5] == ["/usr/bin/ssh", "-F", "/cfg", "-o", "ConnectTimeout=3"]
    # ssh keeps the first value of an option: the user's ConnectTimeout wins over ours.
    assert cmd.index("ConnectTimeout=3") < cmd.index(f"ConnectTimeout={_ssh.CONNECT_TIMEOUT}")
    assert not any("StrictHostKeyChecking" in arg or "KnownHostsFile" in arg for arg in cmd[5:])
    assert "BatchMode=yes" in cmd
    assert "ExitOnForwardFailure=yes" in cmd
    assert cmd[cmd.index("-L") + 1] == "/tmp/x/sock:/r.sock"
    assert cmd[cmd.index("-p") + 1] == "2222"
    assert cmd[cmd.index("-l") + 1] == "me"
    # The host comes after "--": it can never be read as an option.
    assert cmd[-2:] == ["--", "host"]


def test_default_remote_socket() -> None:
    assert _ssh.parse_address("ssh://host").socket == "/run/containerd/containerd.sock"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_client_without_ssh_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(errors.SSHNotFoundError) as info:
        Client("ssh://me@host")
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.destination == "me@host"
    assert os.listdir(private_tmp) == []


def test_client_refuses_a_bad_ssh_address_before_anything(private_tmp: Path) -> None:
    with pytest.raises(errors.InvalidAddressError):
        Client("ssh://me:pw@host")
    assert os.listdir(private_tmp) == []


def _fake_ssh(tmp_path: Path, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text("#!/bin/sh\n" + body)
    ssh.chmod(0o755)
    return bin_dir


def test_ssh_that_exits_gives_its_last_stderr_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    bin_dir = _fake_ssh(
        tmp_path, "echo 'debug noise' >&2\necho 'me@host: Permission denied (publickey).' >&2\nexit 255\n"
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(errors.SSHConnectError) as info:
        Client("ssh://me@host")
    assert info.value.stderr == "me@host: Permission denied (publickey)."
    assert info.value.returncode == 255
    assert "Permission denied (publickey)" in str(info.value)
    assert os.listdir(private_tmp) == []


def test_ssh_that_never_binds_is_stopped_within_the_start_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    # exec: the PID ssh's caller holds is sleep's own, so stopping it ends it.
    bin_dir = _fake_ssh(tmp_path, "exec sleep 60\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    tunnel = _ssh.Tunnel(_ssh.parse_address("ssh://me@host"), start_timeout=0.3)
    with pytest.raises(errors.SSHConnectError, match=r"within 0\.3 s"):
        tunnel.start()
    assert tunnel.pid is None
    assert os.listdir(private_tmp) == []


def test_ssh_errors_pickle() -> None:
    for exc in (
        errors.SSHConnectError("m", destination="me@host", stderr="refused", returncode=255),
        errors.RemoteSocketError("m", destination="me@host", stderr="open failed"),
        errors.SSHNotFoundError("m", destination="me@host"),
    ):
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc)
        assert (str(again), again.destination, again.stderr, again.returncode) == (
            str(exc),
            exc.destination,
            exc.stderr,
            exc.returncode,
        )
    assert errors.RemoteSocketError("m").code is errors.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("options", ["-i /key", ["-i", 3], b"-F x"])
def test_ssh_options_must_be_a_list_of_strings(options: object, private_tmp: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="ssh_options"):
        Client("ssh://me@host", ssh_options=options)  # type: ignore[arg-type]
    assert os.listdir(private_tmp) == []
