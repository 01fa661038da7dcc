"""Cleanup removes only what the SDK created, under its own state folder (issue 9, item 4).

Any client of the daemon can set a container's labels, including the one
that records its FIFO folder, and anyone who can write to the state folder
can plant symlinks there. Neither may turn ``delete()`` or the test plugin's
sweep into a removal of someone else's files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client
from containerd_client.containers import BUNDLE_LABEL
from containerd_client.testing.plugin import sweep_namespace


def _victim(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text("and me")
    return folder


def _intact(folder: Path) -> bool:
    return (folder / "precious.txt").read_text() == "keep me" and (folder / "sub" / "more.txt").exists()


def _cid() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def private_state(containerd: Client, tmp_path: Path) -> Iterator[Client]:
    """A client in the fixture's namespace whose state folder is a fresh temp folder."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with Client(containerd.address, containerd.namespace_name, state_dir=str(state)) as client:
        yield client


def test_loaded_delete_ignores_a_label_pointing_outside(
    containerd: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    victim = _victim(tmp_path / "victim")
    cid = _cid()
    created = containerd.create_container(cid, rootfs=busybox_rootfs, args=["true"])
    own_bundle = created.bundle_dir
    # Another client of the daemon rewrites the label.
    created.set_labels({BUNDLE_LABEL: str(victim)})
    loaded = containerd.load_container(cid)
    assert loaded.bundle_dir == own_bundle  # derived from the state folder, not the label
    loaded.delete()
    assert _intact(victim)
    assert containerd.containers() == []
    # The label disagreed, so the SDK's own folder was left alone too (logged):
    # removing it is the owner's call, not the loader's.
    if os.path.isdir(own_bundle):
        os.rmdir(own_bundle)


def test_sweep_ignores_a_label_pointing_outside(
    containerd: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    victim = _victim(tmp_path / "victim")
    for _ in range(2):
        c = containerd.create_container(_cid(), rootfs=busybox_rootfs, args=["sleep", "30"])
        c.new_task().start()
        c.set_labels({BUNDLE_LABEL: str(victim)})
    removed = sweep_namespace(containerd)
    assert sum(r.startswith("container:") for r in removed) == 2
    assert _intact(victim)


def test_label_naming_another_containers_folder_does_not_remove_it(
    containerd: Client, busybox_rootfs: str
) -> None:
    with containerd.create_container(_cid(), rootfs=busybox_rootfs, args=["sleep", "30"]) as other:
        task = other.new_task(stdout=lambda b: None)
        fifos_before = sorted(os.listdir(other.bundle_dir))
        assert fifos_before
        attacker = containerd.create_container(_cid(), rootfs=busybox_rootfs, args=["true"])
        attacker.set_labels({BUNDLE_LABEL: other.bundle_dir})
        containerd.load_container(attacker.id).delete()
        assert sorted(os.listdir(other.bundle_dir)) == fifos_before
        task.force_delete()
        if os.path.isdir(attacker.bundle_dir):
            os.rmdir(attacker.bundle_dir)


def test_symlinked_namespace_folder_is_not_followed(
    private_state: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    cid = _cid()
    elsewhere = tmp_path / "elsewhere"
    victim = _victim(elsewhere / cid)
    ns_dir = Path(private_state._state_dir or "") / private_state.namespace_name
    ns_dir.symlink_to(elsewhere, target_is_directory=True)
    c = private_state.create_container(cid, rootfs=busybox_rootfs, args=["true"])
    # The folder the SDK made went through the link: it is the victim's.
    assert os.path.realpath(c.bundle_dir) == str(victim)
    private_state.load_container(cid).delete()
    assert _intact(victim)
    assert private_state.containers() == []


def test_symlinked_bundle_folder_is_not_followed(
    private_state: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    victim = _victim(tmp_path / "victim")
    cid = _cid()
    c = private_state.create_container(cid, rootfs=busybox_rootfs, args=["true"])
    os.rmdir(c.bundle_dir)
    os.symlink(victim, c.bundle_dir, target_is_directory=True)
    c.delete()  # owned: the folder it made was swapped for a link
    assert _intact(victim)
    assert os.path.islink(c.bundle_dir)
    os.unlink(c.bundle_dir)


def test_label_outside_and_symlink_inside_together_under_sweep(
    private_state: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    victim = _victim(tmp_path / "victim")
    other_victim = _victim(tmp_path / "victim2")
    ids = [_cid(), _cid()]
    for cid in ids:
        private_state.create_container(cid, rootfs=busybox_rootfs, args=["true"])
    containers = {c.id: c for c in private_state.containers()}
    containers[ids[0]].set_labels({BUNDLE_LABEL: str(victim)})
    bundle = containers[ids[1]].bundle_dir
    os.rmdir(bundle)
    os.symlink(other_victim, bundle, target_is_directory=True)
    removed = sweep_namespace(private_state)
    assert sorted(r for r in removed if r.startswith("container:")) == sorted(f"container:{i}" for i in ids)
    assert _intact(victim)
    assert _intact(other_victim)


def test_cleanup_still_removes_the_sdks_own_folders(private_state: Client, busybox_rootfs: str) -> None:
    # Owned container, with a task: its folder and FIFOs go.
    with private_state.create_container(_cid(), rootfs=busybox_rootfs, args=["echo", "hi"]) as c:
        task = c.new_task(stdout=lambda b: None)
        task.start()
        task.wait(10)
        bundle = c.bundle_dir
        assert os.listdir(bundle)
    assert not os.path.exists(bundle)
    # Created by one client, deleted through another with the same state folder
    # (a process restart): the label agrees, so the folder is removed.
    cid = _cid()
    first = private_state.create_container(cid, rootfs=busybox_rootfs, args=["true"])
    assert os.path.isdir(first.bundle_dir)
    state_dir = private_state._state_dir
    with Client(private_state.address, private_state.namespace_name, state_dir=state_dir) as again:
        again.load_container(cid).delete()
    assert not os.path.exists(first.bundle_dir)


def test_links_inside_the_folder_are_unlinked_not_followed(
    private_state: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    victim = _victim(tmp_path / "victim")
    c = private_state.create_container(_cid(), rootfs=busybox_rootfs, args=["true"])
    os.symlink(victim, os.path.join(c.bundle_dir, "to-dir"), target_is_directory=True)
    os.symlink(victim / "precious.txt", os.path.join(c.bundle_dir, "to-file"))
    os.mkdir(os.path.join(c.bundle_dir, "nested"))
    os.symlink(victim, os.path.join(c.bundle_dir, "nested", "deeper"))
    c.delete()
    assert not os.path.lexists(c.bundle_dir)
    assert _intact(victim)
