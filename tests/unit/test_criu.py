"""CRIU detection and checkpoint-tar safety (pure logic, no daemon)."""

from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile
from pathlib import Path

import pytest

from containerd_client import _criu, errors
from containerd_client._archive import UnsafeArchiveError
from containerd_client.checkpoint import load_checkpoint


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    buf.seek(0)
    return buf


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


INVENTORY = ("inventory.img", b"inv")


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("Version: 4.1.1\n", (4, 1, 1)),
        ("Version: 3.17.1\nGitID: v3.17.1\n", (3, 17, 1)),
        ("Version: 4.0\n", (4, 0, 0)),
        ("criu: unknown option\n", None),
        ("", None),
    ],
)
def test_parse_version(output: str, version: tuple[int, int, int] | None) -> None:
    assert _criu.parse_version(output) == version


@pytest.mark.parametrize(
    ("version", "release", "too_old"),
    [
        ((3, 17, 1), "6.18.44-fc-v1045", True),
        ((3, 17, 1), "6.13.0", True),
        ((3, 17, 1), "6.12.9", False),
        ((3, 19, 0), "7.0.1", True),
        ((4, 0, 0), "6.18.0", False),
        ((4, 1, 1), "6.18.44", False),
        ((3, 17, 1), "weird", False),
    ],
)
def test_too_old_rule(version: tuple[int, int, int], release: str, too_old: bool) -> None:
    reason = _criu.too_old_reason(version, release)
    assert (reason is not None) is too_old
    if reason:
        assert "3." in reason
        assert release in reason
        assert "4.0" in reason


def _fake_criu(folder: Path, output: str, code: int = 0) -> Path:
    exe = folder / "criu"
    exe.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_detect_missing_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(errors.CriuUnavailableError, match="not installed") as info:
        _criu.detect(str(tmp_path), release="6.18.0")
    assert info.value.kernel == "6.18.0"
    assert info.value.path == ""
    again = pickle.loads(pickle.dumps(info.value))
    assert again.message == info.value.message
    assert again.kernel == "6.18.0"


def test_detect_too_old_on_a_new_kernel(tmp_path: Path) -> None:
    _fake_criu(tmp_path, "Version: 3.17.1\\n")
    with pytest.raises(errors.CriuUnavailableError, match="too old") as info:
        _criu.detect(str(tmp_path), release="6.18.44")
    assert info.value.version == "3.17.1"
    assert info.value.path == str(tmp_path / "criu")
    # The same binary is fine on an older kernel.
    assert _criu.detect(str(tmp_path), release="6.1.0").version == (3, 17, 1)


def test_detect_a_criu_that_prints_no_version(tmp_path: Path) -> None:
    _fake_criu(tmp_path, "boom", code=1)
    with pytest.raises(errors.CriuUnavailableError, match="no version"):
        _criu.detect(str(tmp_path), release="6.18.0")


def test_detect_a_good_one(tmp_path: Path) -> None:
    exe = _fake_criu(tmp_path, "Version: 4.1.1\\n")
    info = _criu.detect(str(exe), release="6.18.0")
    assert info.version_text == "4.1.1"
    assert info.path == str(exe)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('runc checkpoint failed: exec: "criu": executable file not found in $PATH: unknown', "missing"),
        ("criu failed: type NOTIFY errno 0\nlog file: /tmp/x/dump.log", "failed"),
        ("Error (criu/vdso.c:230): vdso: Unexpected rt vDSO area bounds", "too_old"),
        ("container not running", None),
    ],
)
def test_explain_failure(message: str, kind: str | None) -> None:
    assert _criu.explain_failure(message) == kind


# -- checkpoint tars ------------------------------------------------------------------


def test_a_good_tar_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "inventory.img").write_bytes(b"inv")
    (src / "pages-1.img").write_bytes(os.urandom(5000))
    out = io.BytesIO()
    _criu.pack_checkpoint_folder(str(src), out)
    out.seek(0)
    target = tmp_path / "dst"
    _criu.extract_checkpoint_tar(out, str(target))
    assert sorted(os.listdir(target)) == ["inventory.img", "pages-1.img"]
    assert (target / "pages-1.img").read_bytes() == (src / "pages-1.img").read_bytes()


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([INVENTORY, ("/etc/evil", b"x")], "absolute"),
        ([INVENTORY, ("../evil", b"x")], r"\.\."),
        ([INVENTORY, ("a/../../evil", b"x")], r"\.\."),
        ([INVENTORY, _link("out", "../../outside")], "outside"),
        ([INVENTORY, _link("abs", "/etc")], "absolute"),
        ([INVENTORY, _link("d", "."), _link("d2", "d/../..")], "outside"),
        ([INVENTORY, _link("hard", "../x", tarfile.LNKTYPE)], "hard link"),
    ],
)
def test_escaping_members_are_refused_before_anything_is_written(
    tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], match: str
) -> None:
    target = tmp_path / "a" / "b"
    with pytest.raises(UnsafeArchiveError, match=match):
        _criu.extract_checkpoint_tar(_tar(members), str(target))
    assert not target.exists()  # not even the folder
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_an_escaping_symlink_then_a_write_through_it_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "t"
    members = [INVENTORY, _link("escape", "../.."), ("escape/pwned", b"!")]
    with pytest.raises(UnsafeArchiveError):
        _criu.extract_checkpoint_tar(_tar(members), str(target))
    assert not (tmp_path / "pwned").exists()
    assert not target.exists()


def test_a_tar_without_inventory_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(errors.CheckpointError, match="inventory"):
        _criu.extract_checkpoint_tar(_tar([("core-1.img", b"x")]), str(tmp_path / "t"))
    assert not (tmp_path / "t").exists()


def test_a_symlink_inside_the_checkpoint_is_allowed(tmp_path: Path) -> None:
    target = tmp_path / "t"
    _criu.extract_checkpoint_tar(_tar([INVENTORY, _link("alias", "inventory.img")]), str(target))
    assert os.readlink(target / "alias") == "inventory.img"


def test_packing_refuses_what_is_not_a_criu_folder(tmp_path: Path) -> None:
    with pytest.raises(errors.CheckpointError, match="inventory"):
        _criu.pack_checkpoint_folder(str(tmp_path), io.BytesIO())
    (tmp_path / "inventory.img").write_bytes(b"x")
    os.symlink("/etc/passwd", tmp_path / "link")
    with pytest.raises(errors.CheckpointError, match="regular file"):
        _criu.pack_checkpoint_folder(str(tmp_path), io.BytesIO())


def test_load_checkpoint_needs_an_image_and_a_record(tmp_path: Path) -> None:
    with pytest.raises(errors.CheckpointError, match="inventory"):
        load_checkpoint(tmp_path)
    (tmp_path / "inventory.img").write_bytes(b"x")
    with pytest.raises(errors.CheckpointError, match=r"containerd-client\.json"):
        load_checkpoint(tmp_path)
