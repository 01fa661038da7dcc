"""Client.sweep without a daemon: session verdicts, the report, state folders, the reaper's trust."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerd_client.client import session_id
from containerd_client.containers import _make_bundle, _remove_empty_namespace_folder, _remove_state_folder
from containerd_client.sweep import (
    ALIVE,
    DEAD,
    FOREIGN,
    INVALID,
    SweepReport,
    SweptObject,
    parse_session,
    session_state,
)
from containerd_client.testing._reaper import OWNER_FILE, _resources_from, reap_stale

HOST = socket.gethostname()


def test_this_process_is_alive_and_a_finished_one_is_dead() -> None:
    assert session_state(session_id()) == ALIVE
    done = subprocess.run(
        [sys.executable, "-c", "from containerd_client.client import session_id; print(session_id())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert session_state(done.stdout.strip()) == DEAD


def test_a_reused_pid_is_dead_and_other_hosts_and_bad_labels_are_left_alone() -> None:
    pid, start, host, pidns = parse_session(session_id()) or (0, "", "", "")
    assert (pid, host) == (os.getpid(), HOST)
    assert pidns.isdigit()
    assert session_state(f"{pid}-{int(start) + 1}@{HOST}") == DEAD  # same pid, another process
    assert session_state(f"{2**22 + 1}-5@{HOST}") == DEAD  # above pid_max: no such process
    assert session_state(f"{2**22 + 1}-5@another-host.invalid") == FOREIGN
    for bad in ("", "x", "12@h", "-1-2@h", "0-2@h", "1-2", "a-2@h", "1-x@h", f"1-2@{HOST}:x"):
        assert session_state(bad) == INVALID, bad


def test_a_session_of_another_pid_namespace_is_not_judged() -> None:
    """A process in a container sharing the host name: its pid means nothing here."""
    pidns = session_id().rpartition(":")[2]
    other = str(int(pidns) + 1)
    assert session_state(f"{2**22 + 1}-5@{HOST}:{other}") == FOREIGN
    assert session_state(f"{2**22 + 1}-5@{HOST}:{pidns}") == DEAD
    assert session_state(f"{2**22 + 1}-5@{HOST}") == DEAD  # a label from before the namespace was added


def test_report_counts_per_kind() -> None:
    one = SweptObject("ns", "c1", "1-2@h")
    report = SweepReport(
        dry_run=False, tasks=(one,), containers=(one,), bundles=(one,), networks=(one,), fifos=3
    )
    assert report.removed == 4
    assert report.summary() == {
        "tasks": 1,
        "containers": 1,
        "snapshots": 0,
        "leases": 0,
        "images": 0,
        "bundles": 1,
        "networks": 1,
        "fifos": 3,
    }


def test_removing_the_last_bundle_removes_the_empty_namespace_folder(tmp_path: Path) -> None:
    _make_bundle(str(tmp_path / "ns" / "c1"))
    _make_bundle(str(tmp_path / "ns" / "c2"))
    assert _remove_state_folder(str(tmp_path), "ns", "c1")
    _remove_empty_namespace_folder(str(tmp_path), "ns")
    assert os.listdir(tmp_path / "ns") == ["c2"]  # not empty: stays
    assert _remove_state_folder(str(tmp_path), "ns", "c2")
    _remove_empty_namespace_folder(str(tmp_path), "ns")
    assert not (tmp_path / "ns").exists()
    # A link where the namespace folder should be is never followed nor removed.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    _remove_empty_namespace_folder(str(tmp_path), "linked")
    assert (tmp_path / "linked").is_symlink()


def _record(base: Path, **changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "session": f"{2**22 + 1}-5@{HOST}",
        "namespace": "cctest-x",
        "base_dir": str(base),
        "socket_dir": str(base),
        "owns_socket_dir": False,
        "address": str(base / "containerd.sock"),
        "root_dir": str(base / "root"),
        "state_dir": str(base / "state"),
        "runc_root": str(base / "runc"),
        "log_path": str(base / "containerd.log"),
        "config_path": str(base / "config.toml"),
        "runc": "runc",
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    "changes",
    [
        {"base_dir": "/"},
        {"root_dir": "/etc"},
        {"state_dir": "/var/lib/../lib"},
        {"namespace": "../x"},
        {"owns_socket_dir": True, "socket_dir": "/home"},
        {"address": "/run/containerd/containerd.sock"},
        {"tmp_dir": "/tmp"},
    ],
)
def test_the_reaper_refuses_a_record_naming_paths_outside_its_folder(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    base = tmp_path / "cctest-planted"
    base.mkdir()
    assert _resources_from(_record(base), str(base)) is not None
    assert _resources_from(_record(base, **changes), str(base)) is None


def test_the_reaper_takes_the_daemons_temp_folder_and_records_without_one(tmp_path: Path) -> None:
    base = tmp_path / "cctest-x"
    base.mkdir()
    res = _resources_from(_record(base, tmp_dir=str(base / "tmp")), str(base))
    assert res is not None
    assert res.tmp_dir == str(base / "tmp")
    older = _resources_from(_record(base), str(base))  # written before the daemon had one
    assert older is not None
    assert older.tmp_dir == ""


def test_the_reaper_owns_a_namespace_only_of_the_name_a_daemon_makes(tmp_path: Path) -> None:
    """Owning it means removing its whole SDK state folder: a record must not name another's."""
    base = tmp_path / "cctest-x"
    base.mkdir()
    made = _resources_from(_record(base, namespace="cctest-0123abcd", owns_namespace=True), str(base))
    assert made is not None
    assert made.owns_namespace
    for namespace, owns in (("default", True), ("k8s.io", True), ("cctest-0123abcd", False)):
        res = _resources_from(_record(base, namespace=namespace, owns_namespace=owns), str(base))
        assert res is not None
        assert not res.owns_namespace, namespace
    older = _resources_from(_record(base, namespace="cctest-0123abcd"), str(base))  # no field yet
    assert older is not None
    assert not older.owns_namespace


def test_reap_stale_removes_only_dead_sessions_folders(tmp_path: Path) -> None:
    dead, live, foreign, bare = (tmp_path / f"cctest-{n}" for n in ("dead", "live", "foreign", "bare"))
    for base, session in (
        (dead, f"{2**22 + 1}-5@{HOST}"),
        (live, session_id()),
        (foreign, f"{2**22 + 1}-5@another-host.invalid"),
    ):
        (base / "root").mkdir(parents=True)
        (base / OWNER_FILE).write_text(json.dumps(_record(base, session=session)))
    bare.mkdir()
    assert reap_stale(str(tmp_path)) == [str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cctest-bare", "cctest-foreign", "cctest-live"]


def test_a_zombie_is_dead() -> None:
    """A killed process its parent has not reaped yet owns nothing any more."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from containerd_client.client import session_id; print(session_id(), flush=True)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        session = child.stdout.readline().strip()
        deadline = time.monotonic() + 30
        state = b""
        while time.monotonic() < deadline:  # not child.poll(): that would reap it
            with open(f"/proc/{child.pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state == b"Z":
                break
            time.sleep(0.01)
        assert state == b"Z"
        assert session_state(session) == DEAD
    finally:
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
