"""The README's tour runs: its Python blocks are executed against a real daemon.

The script and notebook blocks run in one namespace with ``address``,
``namespace`` and ``rootfs`` defined, as a reader would set them; the
pytest-fixture block is written to a file and run by a nested pytest.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from containerd_client.testing import ContainerdDaemon, build_busybox_archive

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_three_tours() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# containerd-client")
    commands = re.search(r"```sh\n(.*?)```", text, re.S)
    assert commands is not None
    assert [c.split()[0] for c in commands.group(1).strip().splitlines()] == ["scripts/demo", "scripts/test"]
    for heading in ("### In a script", "### In a notebook", "### In a pytest fixture"):
        assert heading in text
    assert len(_blocks()) >= 4


def test_script_and_notebook_blocks_run(
    containerd_daemon: ContainerdDaemon, busybox_rootfs: str, tmp_path: Path
) -> None:
    namespace = f"readme-{uuid.uuid4().hex[:8]}"
    archive = build_busybox_archive(tmp_path / "busybox.tar").path
    env = {
        "address": containerd_daemon.address,
        "namespace": namespace,
        "rootfs": busybox_rootfs,
        "archive": archive,
    }
    fixture_block = [b for b in _blocks() if "def test_" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in _blocks():
            if block in fixture_block:
                continue
            exec(compile(block, str(README), "exec"), env)  # the README is ours: its code is the test
    printed = out.getvalue()
    assert "0 hi" in printed
    assert "3 b'from exec\\n'" in printed
    assert "0 b'from an image\\n'" in printed
    assert printed.count("b'hello from a container\\n'") == 2  # through the port, and copied out
    assert "\n137\n" in printed
    from containerd_client import Client

    with Client(containerd_daemon.address, namespace) as client:
        assert client.containers() == []
        from containerd_client.testing.plugin import sweep_namespace

        sweep_namespace(client)  # the imported image and its content


def test_pytest_fixture_blocks_run(tmp_path: Path, containerd_daemon: ContainerdDaemon) -> None:
    blocks = [b for b in _blocks() if "def test_" in b]
    assert len(blocks) >= 2  # containerd fixture, service fixture
    for i, block in enumerate(blocks):
        (tmp_path / f"test_from_readme_{i}.py").write_text("from containerd_client import cio\n\n" + block)
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(blocks)} passed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("script", ["examples/demo.py"])
def test_demo_runs(script: str) -> None:
    root = README.parent
    proc = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, cwd=root, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello from" in proc.stdout
    assert "exit code 0" in proc.stdout
