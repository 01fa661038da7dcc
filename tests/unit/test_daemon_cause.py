"""Which log line a DaemonStartError leads with (containerd_client.testing)."""

from __future__ import annotations

from containerd_client.testing._daemon import _cause

INFO = 'time="t" level=info msg="skip loading plugin \\"btrfs\\"..." error="must be btrfs: skip plugin"'
ERROR = 'time="t" level=error msg="failed to load cni" error="no network config found"'
FATAL = (
    'time="t" level=fatal msg="failed to start \\"grpc\\"" error="listen unix /x.sock: bind: address in use"'
)


def test_the_exit_error_of_the_command_line_wins() -> None:
    lines = [
        INFO,
        FATAL,
        "containerd: failed to get listener for debug endpoint: mkdir /x: not a directory",
        INFO,
    ]
    assert _cause(lines) == "failed to get listener for debug endpoint: mkdir /x: not a directory"


def test_a_fatal_line_beats_later_errors_and_info() -> None:
    assert (
        _cause([INFO, FATAL, ERROR, INFO])
        == 'failed to start "grpc": listen unix /x.sock: bind: address in use'
    )


def test_an_error_line_beats_info_lines_that_carry_an_error_field() -> None:
    assert _cause([ERROR, INFO, INFO]) == "failed to load cni: no network config found"


def test_without_errors_the_last_line_stands() -> None:
    assert _cause(["", "plain words", "   "]) == "plain words"
    assert _cause([INFO]) == 'skip loading plugin "btrfs"...: must be btrfs: skip plugin'
    assert _cause([]) == ""
