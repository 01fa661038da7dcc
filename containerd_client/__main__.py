"""``python -m containerd_client``: the command line (see :mod:`containerd_client.cli`)."""

from __future__ import annotations

if __name__ == "__main__":
    from containerd_client.cli import console_main

    console_main()
