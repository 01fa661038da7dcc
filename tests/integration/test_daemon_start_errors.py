"""DaemonStartError puts containerd's own reason first, the log tail after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from containerd_client.testing import ContainerdDaemon, DaemonStartError


def _start_error(extra_config: str, log_level: str | None = None) -> str:
    daemon = ContainerdDaemon(
        bin_dir=os.environ.get("CONTAINERD_BIN_DIR") or None,
        extra_config=extra_config,
        log_level=log_level,
        start_timeout=15,
    )
    with pytest.raises(DaemonStartError) as info:
        daemon.start()
    assert not daemon.running
    return str(info.value)


def test_an_endpoint_it_cannot_make_is_the_first_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    # With debug logging the daemon writes dozens of lines before it gives up.
    message = _start_error(extra_config=f'[debug]\n  address = "{blocker}/debug.sock"\n', log_level="debug")
    first, _, rest = message.partition("\n")
    assert first.startswith("containerd exited with code")
    assert "failed to get listener for debug endpoint" in first
    assert "not a directory" in first
    # The tail still follows, for what led up to it.
    assert "last log lines" in rest
    assert len(rest.splitlines()) > 10


def test_a_config_that_is_no_toml_is_the_first_line() -> None:
    message = _start_error(extra_config="this is = not toml [[[\n")
    first, _, rest = message.partition("\n")
    # 1.x: "failed to load TOML: <path>: (7, 6): ...", 2.x: "failed to unmarshal TOML at row 7 ..."
    assert "TOML" in first
    assert "row 7" in first or "(7, 6)" in first
    assert "config.toml" in rest
