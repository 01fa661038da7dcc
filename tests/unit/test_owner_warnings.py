"""Warnings for what outlives its owner: unclosed clients, containers left behind.

The ResourceWarning for an unclosed :class:`Client` is an
:class:`~containerd_client.client.UnclosedClientWarning`, shown every time
(Python ignores ResourceWarning by default outside ``__main__``, and shows a
warning once per place at most); a client closed or collected while
containers it created were not deleted logs a warning naming them.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from containerd_client import Client
from containerd_client._retry import NO_RETRY
from containerd_client.containers import Container, ContainerInfo

NOWHERE = "/nonexistent/containerd-client-test.sock"
ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with Python's default warning filters."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, *args, "-c", code],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


DROP_THREE = f"""
import gc
from containerd_client import Client
for _ in range(3):
    client = Client({NOWHERE!r}, "ns")
    del client
    gc.collect()
"""


def test_unclosed_client_warning_shows_every_time_under_default_filters() -> None:
    result = _python(DROP_THREE)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("UnclosedClientWarning: unclosed containerd Client") == 3, result.stderr


def test_unclosed_client_warning_can_still_be_silenced() -> None:
    code = (
        "import warnings\nfrom containerd_client.client import UnclosedClientWarning\n"
        "warnings.filterwarnings('ignore', category=UnclosedClientWarning)\n" + DROP_THREE
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "unclosed containerd Client" not in result.stderr


def _drop_a_client() -> None:
    client = Client(NOWHERE, "ns")
    del client
    gc.collect()


def test_unclosed_client_warning_is_a_resource_warning() -> None:
    from containerd_client.client import UnclosedClientWarning

    assert issubclass(UnclosedClientWarning, ResourceWarning)
    with pytest.warns(UnclosedClientWarning, match="unclosed containerd Client"):
        _drop_a_client()


def _created(client: Client, cid: str, tmp_path: Path) -> Container:
    """A Container object as create_container returns it (no daemon needed)."""
    info = ContainerInfo(cid, {}, "example.test/img:1", "io.containerd.runc.v2", None, "", "", None, None, {})
    container = Container(client, info, owned=True, state_root=str(tmp_path))
    client._note_created(container)
    return container


def test_close_names_the_containers_it_created_and_did_not_delete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1)
    _created(client, "left-<b>behind</b>", tmp_path)
    with caplog.at_level(logging.WARNING, logger="containerd_client.client"):
        client.close()
    text = caplog.text
    assert "left-<b>behind</b>" in text
    assert "cleanup=True" in text


def test_close_cleanup_false_leaves_them_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1)
    _created(client, "kept", tmp_path)
    with caplog.at_level(logging.WARNING, logger="containerd_client.client"):
        client.close(cleanup=False)
    assert "kept" not in caplog.text


def test_a_deleted_container_is_not_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1)
    container = _created(client, "gone", tmp_path)
    container._mark_deleted()
    with caplog.at_level(logging.WARNING, logger="containerd_client.client"):
        client.close()
    assert "gone" not in caplog.text


def test_a_collected_client_names_what_it_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(NOWHERE, "ns.view-root")
    view = client.namespace("other")
    _created(view, "from-a-view", tmp_path)
    del view
    with caplog.at_level(logging.WARNING, logger="containerd_client.client"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del client
        gc.collect()
    assert "from-a-view" in caplog.text
    assert "other" in caplog.text


def test_interpreter_exit_names_the_containers_left(tmp_path: Path) -> None:
    code = f"""
from containerd_client import Client
from containerd_client.containers import Container, ContainerInfo
client = Client({NOWHERE!r}, "ns")
info = ContainerInfo("still-here", {{}}, "img", "io.containerd.runc.v2", None, "", "", None, None, {{}})
client._note_created(Container(client, info, owned=True, state_root={str(tmp_path)!r}))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert "still-here" in result.stderr
    assert "unclosed containerd Client" in result.stderr
