#!/usr/bin/env python3
"""Build the sdist and the wheel into a temporary folder and check them.

Usage::

    python scripts/check_dist.py

Fails (exit 1) when the build prints a warning (setuptools' deprecation
warnings among them), or when LICENSE, the typing marker or the generated
stubs are missing from either archive. Run by ``.ci/run``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lines of build output that are not about the package: pip's notes about its
# own indexes, and setuptools' byte-compiling remark (the wheel carries no .pyc).
_NOISE = re.compile(
    r"Location '.*' is ignored|byte-compiling is disabled|Running pip as the 'root' user",
    re.IGNORECASE,
)
_WARNING = re.compile(r"warn|deprecat", re.IGNORECASE)

# Files each archive must carry, as path suffixes.
_REQUIRED = ("LICENSE", "containerd_client/py.typed", "containerd_client/_pb/py.typed", "tasks_pb2.pyi")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", tmp, str(ROOT)],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            print(output, file=sys.stderr)
            print("check_dist: the build failed", file=sys.stderr)
            return 1
        problems = [
            line.strip() for line in output.splitlines() if _WARNING.search(line) and not _NOISE.search(line)
        ]
        (sdist,) = Path(tmp).glob("*.tar.gz")
        (wheel,) = Path(tmp).glob("*.whl")
        with tarfile.open(sdist) as tar:
            sdist_names = tar.getnames()
        with zipfile.ZipFile(wheel) as whl:
            wheel_names = whl.namelist()
        for archive, names in ((sdist.name, sdist_names), (wheel.name, wheel_names)):
            for want in _REQUIRED:
                if not any(name.endswith("/" + want) or name == want for name in names):
                    problems.append(f"{archive} has no {want}")
        if problems:
            lines = ["check_dist: the package build is not clean:", *problems]
            print("\n  ".join(lines), file=sys.stderr)
            return 1
        print(f"check_dist: {sdist.name} and {wheel.name} built without warnings, LICENSE in both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
