"""Cost of one unary call through the SDK against a raw generated stub, and import time.

Run it as ``python benchmarks/bench_unary.py [--quick] [--profile]``. On a
private containerd it times ``Client.version()`` one call at a time against
the same RPC on a raw ``VersionStub`` with its own channel, the SDK's 16 MiB
message limits, the namespace header and the SDK's default deadline. The two
run in alternating batches (the order flips every batch) so that drift on a
shared machine hits both alike. A second raw row without a deadline is shown
for information only.

Target: the Client adds at most 25% (median per call, ratio <= 1.25). When
it misses, or with ``--profile``, the SDK loop is run again under cProfile and
the functions that cost the most are printed.

Import time: ``import containerd_client`` in fresh interpreters, median of
10, target < 150 ms.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from _common import (
    environment,
    fmt_us,
    make_parser,
    median,
    now_ns,
    p99,
    print_table,
    ratio_line,
    sdk_channel_options,
    target_line,
)
from google.protobuf import empty_pb2

from containerd_client import _rpc
from containerd_client._pb.containerd.services.version.v1 import version_pb2_grpc

TARGET_RATIO = 1.25
TARGET_IMPORT_MS = 150.0
IMPORT_RUNS = 10
BATCH = 100
SDK = "Client.version()"
BASE = "raw, SDK's channel options"
LIMITS_ONLY = "raw, 16 MiB options only"
_LIMITS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", _rpc.MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _rpc.MAX_MESSAGE_BYTES),
]

_IMPORT_CODE = (
    "import time; t = time.perf_counter(); import containerd_client; print(time.perf_counter() - t)"
)


def _run_batches(
    variants: dict[str, Callable[[], object]], n: int, samples: dict[str, list[int]] | None
) -> None:
    """Call each variant ``n`` times in batches of BATCH, rotating which goes first."""
    names = list(variants)
    for b in range(max(1, n // BATCH)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            out = samples[name] if samples is not None else None
            for _ in range(BATCH):
                t0 = now_ns()
                fn()
                t1 = now_ns()
                if out is not None:
                    out.append(t1 - t0)


def _profile(fn: Callable[[], object], calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    print(f"cProfile of {calls} Client.version() calls, by own time:")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def _import_times(runs: int) -> list[float]:
    repo = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_CODE],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=repo,
            stdin=subprocess.DEVNULL,
        )
        times.append(float(out.stdout.strip()) * 1e3)
    return times


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--profile", action="store_true", help="profile the SDK loop even if on target")
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    warmup = 200 if args.quick else 500

    with environment(rootfs=False) as env, env.client() as client, contextlib.ExitStack() as stack:
        metadata = ((_rpc.NAMESPACE_HEADER, env.namespace),)
        request = empty_pb2.Empty()
        timeout = _rpc.DEFAULT_TIMEOUT

        def stub(options: list[tuple[str, Any]]) -> version_pb2_grpc.VersionStub:
            channel = stack.enter_context(grpc.insecure_channel(f"unix://{env.address}", options=options))
            return version_pb2_grpc.VersionStub(channel)

        same = stub(sdk_channel_options())
        limits = stub(_LIMITS)

        def raw_same() -> object:
            return same.Version(request, timeout=timeout, metadata=metadata)

        def raw_limits() -> object:
            return limits.Version(request, timeout=timeout, metadata=metadata)

        def raw_limits_no_deadline() -> object:
            return limits.Version(request, metadata=metadata)

        variants: dict[str, Callable[[], object]] = {
            SDK: client.version,
            BASE: raw_same,
            LIMITS_ONLY: raw_limits,
            "raw, 16 MiB options only, no deadline": raw_limits_no_deadline,
        }
        if client.version().version != raw_same().version:  # type: ignore[attr-defined]
            raise RuntimeError("the SDK and the raw stub disagree on the version")
        _run_batches(variants, warmup, None)
        samples: dict[str, list[int]] = {name: [] for name in variants}
        _run_batches(variants, n, samples)

        base = median(samples[BASE])
        rows = [
            (name, len(s), fmt_us(median(s)), fmt_us(p99(s)), f"{median(s) / base:.2f}x")
            for name, s in samples.items()
        ]
        print()
        print_table(
            ("variant", "calls", "median us", "p99 us", "vs raw"),
            rows,
            title=f"Version.Version, one call at a time, batches of {BATCH} in rotating order",
        )
        sdk = median(samples[SDK])
        print()
        limits_ratio = sdk / median(samples[LIMITS_ONLY])
        print(
            f"Client.version() / raw with 16 MiB options only (median, for information): {limits_ratio:.2f}x"
        )
        met = ratio_line("unary Client.version() / raw stub (median)", sdk / base, TARGET_RATIO)
        if args.profile or not met:
            print()
            _profile(client.version, 2000 if args.quick else 5000)

    print()
    times = _import_times(IMPORT_RUNS)
    print(
        f"import containerd_client in {len(times)} fresh interpreters: "
        f"min {min(times):.1f} ms, median {median(times):.1f} ms, max {max(times):.1f} ms"
    )
    target_line("import containerd_client (median)", median(times), "ms", TARGET_IMPORT_MS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
