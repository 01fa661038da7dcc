"""Each private test daemon gets a CNI network of its own (testing/_netslot.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from containerd_client.testing import _netslot


@pytest.fixture
def slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_netslot, "SLOTS_DIR", str(tmp_path))
    # Not the real daemons' bridges: releasing a slot deletes its bridge.
    monkeypatch.setattr(_netslot, "BRIDGE_PREFIX", "ccunitnet")
    return tmp_path


def test_two_claims_get_different_bridges_and_subnets(slots: Path) -> None:
    a, b = _netslot.claim(), _netslot.claim()
    assert a.index != b.index
    assert a.config.bridge != b.config.bridge
    assert a.config.subnet != b.config.subnet
    assert len(a.config.bridge) <= 15  # a Linux interface name
    a.release()
    assert not os.path.exists(a.path)
    assert _netslot.claim().index == a.index  # free again
    b.release()


def test_a_slot_of_a_process_that_is_gone_is_taken_over(slots: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    (slots / "0").write_text(f"{done.stdout.strip()} 12345")
    slot = _netslot.claim()
    assert slot.index == 0
    assert (slots / "0").read_text().split()[0] == str(os.getpid())
    slot.release()


def test_a_live_owner_keeps_its_slot(slots: Path) -> None:
    mine = _netslot.claim()
    (slots / "1").write_text(_netslot._owner())  # this live process
    other = _netslot.claim()
    assert other.index not in (mine.index, 1)
    mine.release()
    other.release()


def test_all_slots_taken_is_a_clear_error(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_netslot, "COUNT", 2)
    held = [_netslot.claim(), _netslot.claim()]
    with pytest.raises(RuntimeError, match="all 2 test network slots"):
        _netslot.claim()
    for slot in held:
        slot.release()
