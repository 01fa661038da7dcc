"""One labels verb on every store: ``set_labels(key, labels) -> dict[str, str]``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pytest

from containerd_client import Client, errors
from containerd_client.content import Descriptor, digest_bytes

pytestmark = pytest.mark.integration

Setter = Callable[[Mapping[str, str]], dict[str, str]]
Getter = Callable[[], Mapping[str, str]]


@contextmanager
def _labelled(client: Client, kind: str, rootfs: str) -> Iterator[tuple[Setter, Getter]]:
    """An object of ``kind`` created with labels {"keep": "1", "drop": "2"}; its setter and getter."""
    start = {"keep": "1", "drop": "2"}
    if kind == "container":
        with client.create_container("lbl", rootfs=rootfs, args=["true"], labels=start) as c:
            yield c.set_labels, c.labels
    elif kind == "namespace":
        ns = client.namespace_name + "-lbl"
        client.namespaces.create(ns, labels=start)
        try:
            yield (
                lambda labels: client.namespaces.set_labels(ns, labels),
                lambda: client.namespaces.get(ns).labels,
            )
        finally:
            client.namespaces.delete(ns)
    else:
        with client.lease(expire=300):
            data = b"labels " + kind.encode()
            digest = digest_bytes(data)
            content = client.content
            content.write(
                "lbl-" + kind, data, expected_digest=digest, labels=start if kind == "content" else None
            )
            if kind == "content":
                yield (lambda labels: content.set_labels(digest, labels), lambda: content.info(digest).labels)
            elif kind == "image":
                images = client.images
                images.create(
                    "example.test/lbl:1", Descriptor("application/octet-stream", digest, len(data)), start
                )
                yield (
                    lambda labels: images.set_labels("example.test/lbl:1", labels),
                    lambda: images.get("example.test/lbl:1").labels,
                )
                images.delete("example.test/lbl:1")
            else:
                snaps = client.snapshots()
                snaps.prepare("lbl-active", labels=start)
                yield (
                    lambda labels: snaps.set_labels("lbl-active", labels),
                    lambda: snaps.stat("lbl-active").labels,
                )
                snaps.remove("lbl-active")


KINDS = ["container", "namespace", "content", "image", "snapshot"]


@pytest.mark.parametrize("kind", KINDS)
def test_set_labels_sets_removes_and_returns_all_labels(
    containerd: Client, busybox_rootfs: str, kind: str
) -> None:
    with _labelled(containerd, kind, busybox_rootfs) as (set_labels, get_labels):
        result = set_labels({"new": "3", "drop": ""})
        assert result == dict(get_labels())
        # Containers also carry the SDK's own labels.
        assert {k: v for k, v in result.items() if not k.startswith("containerd-client/")} == {
            "keep": "1",
            "new": "3",
        }
        assert set_labels({"containerd.io/gc.ref.content.x": "y"})["containerd.io/gc.ref.content.x"] == "y"


@pytest.mark.parametrize("kind", KINDS)
def test_set_labels_with_nothing_changes_nothing(containerd: Client, busybox_rootfs: str, kind: str) -> None:
    # An Update with an empty mask replaces the whole record (content,
    # snapshots: all labels gone), so an empty mapping must send no Update.
    with _labelled(containerd, kind, busybox_rootfs) as (set_labels, get_labels):
        before = dict(get_labels())
        assert before.items() >= {"keep": "1", "drop": "2"}.items()
        set_labels({})
        assert dict(get_labels()) == before


@pytest.mark.parametrize("bad", [{"": "x"}, {"k": 1}, {2: "x"}])
def test_set_labels_refuses_bad_labels_before_any_rpc(containerd: Client, bad: dict[object, object]) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        containerd.content.set_labels("sha256:" + "0" * 64, bad)  # type: ignore[arg-type]
