"""docs/recipes.md runs: its Python blocks, in order, make one test file for a nested pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from containerd_client import network

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and CNI need root"),
    pytest.mark.skipif(
        not any(os.path.exists(os.path.join(d, "bridge")) for d in network.NetworkConfig().plugin_dirs),
        reason="CNI plugins missing (apt-get install containernetworking-plugins)",
    ),
]


def test_recipes_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", RECIPES.read_text(), re.S)
    source = "\n\n".join(blocks)
    tests = re.findall(r"^def (test_\w+)", source, re.M)
    assert len(tests) >= 6
    (tmp_path / "test_recipes_md.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(tests)} passed" in proc.stdout, proc.stdout
