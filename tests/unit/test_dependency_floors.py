"""The declared dependency floors, the floor constraints CI installs, and the generated code agree."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PB = ROOT / "containerd_client" / "_pb"


def _lines(text: str) -> list[str]:
    """Lines without comments and blanks."""
    return [kept for line in text.splitlines() if (kept := line.split("#", 1)[0].strip())]


def _floors(text: str) -> dict[str, Version]:
    floors = {}
    for line in _lines(text):
        req = Requirement(line)
        (floor,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
        floors[req.name] = floor
    return floors


def _declared() -> dict[str, Version]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {
        **_floors(cfg["options"]["install_requires"]),
        **_floors(cfg["options.extras_require"]["zstd"]),
    }


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in _lines((ROOT / ".ci" / "constraints-floor.txt").read_text()):
        name, _, version = line.partition("==")
        pins[name.strip()] = Version(version.strip())
    return pins


def _stamped(pattern: str, regex: str) -> set[Version]:
    """The versions generated modules named ``pattern`` carry (found by ``regex``)."""
    return {Version(m[1]) for p in PB.rglob(pattern) if (m := re.search(regex, p.read_text()))}


def test_the_floor_constraints_pin_exactly_the_declared_floors() -> None:
    declared = _declared()
    assert set(declared) >= {"grpcio", "protobuf", "grpcio-health-checking"}
    assert _constraints() == declared


def test_the_generated_code_asks_for_no_more_than_the_floors() -> None:
    declared = _declared()
    # One generator made every module, and its version checks accept exactly the floors.
    assert _stamped("*_pb2_grpc.py", r"GRPC_GENERATED_VERSION = '([^']+)'") == {declared["grpcio"]}
    assert _stamped("*_pb2.py", r"# Protobuf Python Version: (\S+)") == {declared["protobuf"]}
