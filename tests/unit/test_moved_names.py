"""Names that moved to their own modules still import from where they were."""

from __future__ import annotations

import importlib

import pytest

MOVED = [
    # (old module, name, new module)
    ("content", "Descriptor", "types"),
    ("content", "Platform", "types"),
    ("content", "digest_bytes", "types"),
    ("content", "DigestMismatchError", "errors"),
    ("content", "BlobTooLargeError", "errors"),
    ("images", "Descriptor", "types"),
    ("images", "Platform", "types"),
    ("images", "DigestMismatchError", "errors"),
    ("snapshots", "Mount", "types"),
    ("client", "Namespace", "namespaces"),
    ("client", "NamespaceStore", "namespaces"),
    ("client", "Lease", "leases"),
    ("client", "LeaseStore", "leases"),
    ("tasks", "parse_signal", "spec"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_old_import_path_gives_the_same_object(old: str, name: str, new: str) -> None:
    before = getattr(importlib.import_module(f"containerd_client.{old}"), name)
    after = getattr(importlib.import_module(f"containerd_client.{new}"), name)
    assert before is after
    assert before.__module__ == f"containerd_client.{new}"
