"""Import throughput of :meth:`ImageStore.import_archive` against ``ctr images import``.

Run it as ``python benchmarks/bench_import.py [--mib 200] [--rounds 3] [--fmt oci]``.
A private containerd (:class:`containerd_client.testing.ContainerdDaemon`)
serves both importers. The archive holds one uncompressed layer with a file
of ``--mib`` random MiB (random, so nothing dedupes), plus a small busybox-free
config. Each round imports it with the SDK and with ``ctr`` (whose own
import unpacks too), each into a namespace of its own that is emptied with a
synchronous garbage collection afterwards, so no blob is shared between
runs. The two importers alternate in order from round to round; medians
decide. Both are measured twice: with unpacking (the default of both) and
without (``unpack=False`` / ``--no-unpack``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    from containerd_client import Client
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from containerd_client import Client

from containerd_client.images import ImageStore
from containerd_client.testing import ContainerdDaemon, File, build_image_archive
from containerd_client.testing.plugin import sweep_namespace


def _sdk(daemon: ContainerdDaemon, path: str, unpack: bool) -> float:
    ns = "bench-sdk-" + uuid.uuid4().hex[:8]
    with Client(daemon.address, ns) as client:
        start = time.perf_counter()
        ImageStore(client).import_archive(path, unpack=unpack)
        elapsed = time.perf_counter() - start
        _empty(client)
    return elapsed


def _ctr(daemon: ContainerdDaemon, path: str, unpack: bool) -> float:
    ns = "bench-ctr-" + uuid.uuid4().hex[:8]
    args = ["images", "import", *(() if unpack else ("--no-unpack",)), path]
    start = time.perf_counter()
    daemon.ctr(*args, namespace=ns, timeout=900)
    elapsed = time.perf_counter() - start
    with Client(daemon.address, ns) as client:
        _empty(client)
    return elapsed


def _empty(client: Client) -> None:
    sweep_namespace(client)
    # A synchronous gc: the blobs leave the daemon, so the next import of
    # the same digests cannot reuse them from another namespace.
    with client.lease(expire=60, sync_delete=True):
        pass
    client.namespaces.delete(client.namespace_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the layer's file in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fmt", choices=("oci", "docker"), default="oci")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp, ContainerdDaemon() as daemon:
        path = os.path.join(tmp, "big.tar")
        build_image_archive(
            path,
            name="localhost/bench/big:1",
            layers=[{"data/random.bin": File(os.urandom(args.mib << 20))}],
            config={"Cmd": ["true"]},
            fmt=args.fmt,
        )
        size = os.path.getsize(path)
        mib = size / (1 << 20)
        print(f"containerd {daemon.version}, {args.fmt} archive of {mib:.1f} MiB, {args.rounds} rounds")
        results: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for unpack in (True, False):
                order = [("sdk", _sdk), ("ctr", _ctr)]
                if r % 2:
                    order.reverse()
                for who, fn in order:
                    key = f"{who}{'' if unpack else ' --no-unpack'}"
                    results.setdefault(key, []).append(fn(daemon, path, unpack))
        print(f"{'importer':<18}{'median s':>10}{'MiB/s':>9}   all rounds (s)")
        for key, times in results.items():
            med = statistics.median(times)
            runs = " ".join(f"{t:.2f}" for t in times)
            print(f"{key:<18}{med:>10.2f}{size / (1 << 20) / med:>9.0f}   {runs}")
        for suffix in ("", " --no-unpack"):
            sdk = statistics.median(results["sdk" + suffix])
            ctr = statistics.median(results["ctr" + suffix])
            label = "with unpack" if not suffix else "without unpack"
            print(f"throughput sdk/ctr {label}: {ctr / sdk:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
