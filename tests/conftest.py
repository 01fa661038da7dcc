"""Shared test setup. Fixtures for a real daemon come from containerd_client.testing.plugin."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration and tests/reliability talks to a real daemon.
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path or "/reliability/" in path:
            item.add_marker(pytest.mark.integration)
