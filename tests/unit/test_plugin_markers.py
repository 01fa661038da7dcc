"""The pytest plugin registers only its own, prefixed markers in the projects that install it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _markers(project: Path) -> str:
    """``pytest --markers`` in a fresh project that has the plugin (and nothing of ours) loaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package, whatever is installed
    env.pop("PYTEST_ADDOPTS", None)
    # The installed entry point (if any) is blocked and the module loaded by name,
    # so the plugin under test is this checkout's, exactly once.
    plugin = ["-p", "no:containerd_client", "-p", "containerd_client.testing.plugin"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", "--markers"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_plugin_does_not_register_a_generic_integration_marker(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = _markers(tmp_path)
    assert "@pytest.mark.containerd_leaks_ok" in out  # the plugin is loaded
    assert "@pytest.mark.integration" not in out


def test_a_project_declaring_integration_itself_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: this project's own\n")
    out = _markers(tmp_path)
    assert "@pytest.mark.integration: this project's own" in out
