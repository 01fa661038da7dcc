"""The pool of attached network namespaces (NetworkConfig.namespace_pool): pure logic."""

from __future__ import annotations

import pytest

from containerd_client.network import InvalidNetworkError, NetworkConfig
from containerd_client.network._pool import NamespacePool, Slot, new_slot_id, reusable


def _slot(n: int, ns: str = "ns") -> Slot:
    return Slot("/state", ns, f"ccnet-{n}", f"/state/_netns/{ns}/ccnet-{n}", f"10.0.0.{n}", {})


def test_the_pool_keeps_at_most_its_size_per_namespace_and_hands_out_by_key() -> None:
    pool = NamespacePool(2)
    assert pool.put("bridge", _slot(1))
    assert pool.put("bridge", _slot(2))
    assert not pool.put("bridge", _slot(3))  # full: the caller detaches it
    assert pool.put("bridge", _slot(4, ns="other"))
    assert pool.take("/state", "ns", "other-network") is None
    assert pool.take("/elsewhere", "ns", "bridge") is None
    taken = pool.take("/state", "ns", "bridge")
    assert taken is not None
    assert taken.namespace == "ns"
    assert len(pool.idle()) == 2


def test_a_closed_pool_takes_nothing_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import containerd_client.network as network

    detached: list[str] = []
    monkeypatch.setattr(network, "detach", lambda root, ns, cid: detached.append(cid) or True)
    pool = NamespacePool(4)
    pool.put("bridge", _slot(1))
    pool.close()
    assert detached == ["ccnet-1"]
    assert not pool.put("bridge", _slot(2))
    assert pool.idle() == []


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({}, True),
        ({"process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_RAW"]}}}, True),
        ({"process": {"capabilities": {"effective": ["CAP_NET_ADMIN"]}}}, False),
        ({"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}}, False),
        ({"linux": {"sysctl": {"net.ipv4.ip_forward": "1"}}}, False),
        ({"linux": {"sysctl": {"kernel.msgmax": "65536"}}}, True),
    ],
)
def test_only_a_namespace_its_container_could_not_change_is_reused(spec: dict, ok: bool) -> None:
    assert reusable(spec) is ok


def test_slot_ids_are_fresh_and_the_size_is_checked() -> None:
    assert new_slot_id() != new_slot_id()
    assert new_slot_id().startswith("ccnet-")
    for bad in (-1, True, "2", 5000):
        with pytest.raises(InvalidNetworkError, match="namespace_pool"):
            NetworkConfig(namespace_pool=bad)  # type: ignore[arg-type]
