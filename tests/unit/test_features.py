"""Capability decisions from version and plugins."""

from __future__ import annotations

import pytest

from containerd_client._features import FEATURES, Features
from containerd_client.errors import NotSupportedError

GRPC = "io.containerd.grpc.v1"


def features(version: tuple[int, ...], *plugins: str) -> Features:
    return Features.build(version, ".".join(map(str, version)), [(GRPC, p) for p in plugins])


def test_transfer_needs_both_services() -> None:
    assert not features((1, 6, 20), "tasks").has("transfer")
    assert not features((1, 7, 24), "transfer").has("transfer")
    assert features((1, 7, 24), "transfer", "streaming").has("transfer")


def test_plain_http_pull_through_daemon_needs_2x() -> None:
    assert not features((1, 7, 24), "transfer", "streaming").has("transfer-pull-plain-http")
    assert features((2, 1, 9), "transfer", "streaming").has("transfer-pull-plain-http")


def test_require_names_the_version_needed() -> None:
    f = features((1, 6, 20))
    with pytest.raises(NotSupportedError) as info:
        f.require("transfer")
    assert info.value.needed == "1.7"
    assert "1.6.20" in str(info.value)
    assert "1.7" in str(info.value)


def test_runtime_v1_only_before_2() -> None:
    assert features((1, 7, 0)).has("runtime-v1")
    assert not features((2, 0, 0)).has("runtime-v1")


def test_table_covers_every_feature() -> None:
    assert set(features((2, 1)).table()) == set(FEATURES)


def test_unknown_feature_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        features((2, 1)).has("teleport")
