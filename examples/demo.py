"""The main job: start a private containerd, run a real container, print what it said.

Run it with ``scripts/demo`` (which installs what it needs), or directly as
root once containerd, runc and busybox-static are installed::

    python examples/demo.py
"""

from __future__ import annotations

import tempfile

from containerd_client import Client, cio
from containerd_client.spec import with_hostname
from containerd_client.testing import ContainerdDaemon, make_busybox_rootfs


def main() -> None:
    with tempfile.TemporaryDirectory() as rootfs, ContainerdDaemon() as daemon:
        make_busybox_rootfs(rootfs)
        with Client(daemon.address, daemon.namespace) as client:
            version = client.version()
            print(f"containerd {version.version} ({version.revision}) at {daemon.address}")
            out = cio.Capture()
            with client.create_container(
                "demo",
                rootfs=rootfs,
                spec=[with_hostname("demo")],
                args=["sh", "-c", "echo hello from $(hostname); uname -s"],
            ) as container:
                task = container.new_task(stdout=out, stderr=out)
                task.start()
                status = task.wait(timeout=30)
                print(out.text(), end="")
                print(f"exit code {status.exit_code}")


if __name__ == "__main__":
    main()
