"""docs/remote.md runs: its Python blocks, in order, are executed and its test is called.

The blocks run in this process, with this session's fixtures passed to the
page's test function (a nested pytest would start a second daemon and sshd
for one test). The fan-out example goes over two addresses of the session's
private daemon: its socket, and the same socket through a private sshd
(``containerd_sshd``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from containerd_client import Client
from containerd_client.testing import ContainerdDaemon, SSHServer

REMOTE = Path(__file__).resolve().parents[2] / "docs" / "remote.md"


def test_remote_doc_runs(
    containerd: Client, containerd_daemon: ContainerdDaemon, containerd_sshd: SSHServer, tmp_path: Path
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", REMOTE.read_text(), re.S)
    source = "\n\n".join(blocks)
    page: dict[str, Any] = {"__name__": "remote_md"}
    exec(compile(source, str(REMOTE), "exec"), page)
    tests = [name for name in page if name.startswith("test_")]
    assert tests == ["test_fan_out_over_two_addresses"]
    page["test_fan_out_over_two_addresses"](containerd, containerd_daemon, containerd_sshd, tmp_path)
