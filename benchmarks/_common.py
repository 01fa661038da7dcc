"""Shared helpers of the benchmarks: a private daemon, timing, tables, target lines.

Every benchmark that needs containerd starts its own with :func:`environment`
(``$CONTAINERD_BIN_DIR`` picks another daemon), runs on a busybox folder from
:func:`containerd_client.testing.make_busybox_rootfs`, and stops the daemon by
its PID at the end. Results are printed side by side with a baseline measured
in the same run; a missed target is printed, never turned into a failure.

Target lines share one shape so that ``run_all.py`` can collect them::

    unary Client.version / raw stub: 1.04x (target <= 1.25) met
    import containerd_client: 84.1 ms (target < 150 ms) met
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import grpc
from google.protobuf import any_pb2

try:
    import containerd_client
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import containerd_client

from containerd_client import _rpc
from containerd_client._pb.containerd.services.containers.v1 import containers_pb2_grpc
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2_grpc
from containerd_client.testing import ContainerdDaemon, make_busybox_rootfs

__all__ = [
    "BenchEnv",
    "RawStubs",
    "environment",
    "fmt_ms",
    "fmt_us",
    "json_any",
    "make_parser",
    "median",
    "now_ns",
    "p99",
    "parse_args",
    "print_table",
    "ratio_ci",
    "ratio_line",
    "sdk_channel_options",
    "target_line",
]

#: The clock of every measurement, in integer nanoseconds.
now_ns = time.perf_counter_ns

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser with the option every benchmark takes: ``--quick`` (smaller sizes, for run_all.py)."""
    parser = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0] or None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few seconds per table")
    return parser


def parse_args(description: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the options of a benchmark that takes only ``--quick``."""
    return make_parser(description).parse_args(argv)


@attrs.frozen
class BenchEnv:
    """What :func:`environment` set up."""

    daemon: ContainerdDaemon
    rootfs: str
    tmp: str

    @property
    def address(self) -> str:
        """The daemon's socket path."""
        return self.daemon.address

    @property
    def namespace(self) -> str:
        """The daemon's own namespace (unique per daemon)."""
        return self.daemon.namespace

    @property
    def state_dir(self) -> str:
        """A folder for the SDK's FIFO folders (``Client(state_dir=...)``)."""
        return os.path.join(self.tmp, "state")

    def client(self) -> containerd_client.Client:
        """A Client on the private daemon, in its namespace, FIFOs under :attr:`tmp`."""
        return containerd_client.Client(self.address, self.namespace, state_dir=self.state_dir)


@contextlib.contextmanager
def environment(*, rootfs: bool = True) -> Iterator[BenchEnv]:
    """Start a private containerd (and make a busybox rootfs); stop it by PID at the end."""
    tmp = tempfile.mkdtemp(prefix="ccbench-")
    daemon = ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR"))
    try:
        daemon.start()
        print(f"containerd {daemon.version} (pid {daemon.pid}), namespace {daemon.namespace}")
        path = make_busybox_rootfs(os.path.join(tmp, "rootfs")) if rootfs else ""
        yield BenchEnv(daemon, path, tmp)
    finally:
        daemon.stop()  # SIGTERM to its PID, then its shims and containers, mounts and folders
        shutil.rmtree(tmp, ignore_errors=True)


def json_any(url: str, value: object) -> any_pb2.Any:
    """An ``Any`` holding ``value`` as compact JSON, built without the SDK (the raw side's spec)."""
    return any_pb2.Any(type_url=url, value=json.dumps(value, separators=(",", ":")).encode())


def sdk_channel_options() -> list[tuple[str, Any]]:
    """The options the SDK's Connection gives its channel, caught as it opens one."""
    with mock.patch.object(grpc, "insecure_channel") as opener:
        _rpc.Connection("/nonexistent.sock")
    return list(opener.call_args.kwargs["options"])


class RawStubs:
    """Generated stubs on a channel of their own: the baseline the SDK is measured against.

    The channel has the SDK's options and every call the namespace header and
    the SDK's default deadline, so that only the SDK's own Python work differs.
    """

    def __init__(self, env: BenchEnv) -> None:
        self.channel = grpc.insecure_channel(f"unix://{env.address}", options=sdk_channel_options())
        self.metadata = ((_rpc.NAMESPACE_HEADER, env.namespace),)
        self.timeout = _rpc.DEFAULT_TIMEOUT
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.tasks = tasks_pb2_grpc.TasksStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> RawStubs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def median(values: Sequence[float]) -> float:
    """The median (0 for no values)."""
    return float(statistics.median(values)) if values else 0.0


def p99(values: Sequence[float]) -> float:
    """The 99th percentile, interpolated between samples (the maximum for a few samples)."""
    if len(values) < 2:
        return float(values[0]) if values else 0.0
    return float(statistics.quantiles(values, n=100, method="inclusive")[98])


def ratio_ci(
    numer: Sequence[float], denom: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 95% bootstrap interval of ``median(numer) / median(denom)``, resampling run pairs.

    ``numer[i]`` and ``denom[i]`` are runs made next to each other, so a pair
    is resampled as a whole and drift between pairs stays out of the interval.
    """
    rng = random.Random(seed)
    n = min(len(numer), len(denom))
    if n < 2:
        return 0.0, 0.0
    ratios = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median(numer[i] for i in picks) / statistics.median(denom[i] for i in picks))
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def fmt_us(ns: float) -> str:
    """Nanoseconds as microseconds."""
    return f"{ns / 1e3:,.1f}"


def fmt_ms(ns: float) -> str:
    """Nanoseconds as milliseconds."""
    return f"{ns / 1e6:,.2f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> None:
    """Print rows under headers; the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    if title:
        print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _verdict(value: float, op: str, target: float) -> str:
    return "met" if _OPS[op](value, target) else "MISSED"


def ratio_line(name: str, ratio: float, target: float, op: str = "<=") -> bool:
    """Print ``name: X.XXx (target <= T) met|MISSED``; return whether it was met."""
    verdict = _verdict(ratio, op, target)
    print(f"{name}: {ratio:.2f}x (target {op} {target:g}) {verdict}")
    return verdict == "met"


def target_line(name: str, value: float, unit: str, target: float, op: str = "<") -> bool:
    """Print ``name: V unit (target < T unit) met|MISSED``; return whether it was met."""
    verdict = _verdict(value, op, target)
    print(f"{name}: {value:,.2f} {unit} (target {op} {target:g} {unit}) {verdict}")
    return verdict == "met"
