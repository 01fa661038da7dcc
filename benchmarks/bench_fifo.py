"""Throughput of :mod:`containerd_client.cio` output copying against raw loops.

Run it as ``python benchmarks/bench_fifo.py [--mib 256] [--rounds 15]``. A
``dd if=/dev/zero bs=1M`` process plays the shim and writes into a FIFO; the
time runs from starting it until the reader saw EOF and the data sits in a
file on tmpfs (``/dev/shm`` when there is one, so the disk does not set the
pace). Readers:

* ``raw-read``: blocking ``os.read(fd, 1 MiB)`` + ``os.write`` loop.
* ``raw-splice``: blocking ``os.splice(fifo, file, 1 MiB)`` loop.
* ``raw-read-256k``, ``raw-splice-256k``: the same after growing the pipe
  to 256 KiB, as cio does.
* ``cio-file``: ``cio.stdio(stdout=<binary file>)``: read(2) from the
  non-blocking FIFO into one reused buffer and write(2) it to the file's
  descriptor, poll only when the FIFO runs dry (``_fifo.copy_out`` says why
  not splice into files).
* ``cio-callable``: ``cio.stdio(stdout=callable)``: ``os.read`` into bytes
  objects handed to Python code (counts bytes).
* ``cio-drain``: ``cio.stdio(stdout=None)``: discarded (splice to /dev/null).

Readers run interleaved, round after round. The machine is shared and noisy,
so medians decide: ``cio-file`` against the fastest raw loop, target >= 0.95.
The reader's CPU time per GiB is printed too, a steadier measure of the
loop's own cost. Exit status 1 only if a copy lost bytes.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    from containerd_client import cio
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from containerd_client import cio

CHUNK = 1 << 20
TARGET = 0.95


def _dd(fifo: str, mib: int, stderr_fifo: str = "") -> subprocess.Popen[bytes]:
    script = 'exec dd if=/dev/zero of="$1" bs=1M count="$2" status=none'
    if stderr_fifo:
        script = 'exec 2>"$3"; ' + script
    return subprocess.Popen(["sh", "-c", script, "sh", fifo, str(mib), stderr_fifo])


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raw(folder: str, out_path: str, mib: int, mode: str) -> tuple[float, float]:
    fifo = os.path.join(folder, "raw")
    os.mkfifo(fifo, 0o700)
    try:
        with open(out_path, "wb") as out:
            start, cpu = time.perf_counter(), _cpu()
            proc = _dd(fifo, mib)
            fd = os.open(fifo, os.O_RDONLY)  # blocks until dd opened it
            try:
                if mode.endswith("-256k"):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 256 << 10)
                dst = out.fileno()
                if mode.startswith("raw-read"):
                    while data := os.read(fd, CHUNK):
                        os.write(dst, data)
                else:
                    while os.splice(fd, dst, CHUNK):
                        pass
                elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
            finally:
                os.close(fd)
            proc.wait()
        return elapsed, cpu
    finally:
        os.unlink(fifo)


def _cio(folder: str, out_path: str, mib: int, mode: str) -> tuple[float, float]:
    counted = [0]

    def count(data: bytes) -> None:
        counted[0] += len(data)

    with open(out_path, "wb") as out:
        sinks: dict[str, cio.OutputSink] = {"cio-file": out, "cio-callable": count, "cio-drain": None}
        sink = sinks[mode]
        start, cpu = time.perf_counter(), _cpu()
        with cio.stdio(stdout=sink)(folder, "bench") as io:
            proc = _dd(io.config.stdout, mib, io.config.stderr)
            io.start()
            if not io.wait(600):
                raise RuntimeError("cio copy did not finish")
            elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
        proc.wait()
    if mode == "cio-callable" and counted[0] != mib * CHUNK:
        raise RuntimeError(f"callable saw {counted[0]} bytes, expected {mib * CHUNK}")
    return elapsed, cpu


MODES: dict[str, Callable[[str, str, int, str], tuple[float, float]]] = {
    "raw-read": _raw,
    "raw-read-256k": _raw,
    "raw-splice": _raw,
    "raw-splice-256k": _raw,
    "cio-file": _cio,
    "cio-callable": _cio,
    "cio-drain": _cio,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per round (default 256)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per reader (default 15)")
    parser.add_argument("--dir", default="", help="folder for the FIFO and output (default /dev/shm)")
    args = parser.parse_args()
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    lost = False
    with tempfile.TemporaryDirectory(dir=base) as folder:
        out_path = os.path.join(folder, "out")
        order = list(MODES.items())
        rng = random.Random(1)
        for _ in range(args.rounds):
            # Interleave the readers, in a new order each round, so that
            # machine noise hits them alike.
            rng.shuffle(order)
            for mode, run in order:
                elapsed, cpu = run(folder, out_path, args.mib, mode)
                size = os.path.getsize(out_path)
                expected = 0 if mode in ("cio-callable", "cio-drain") else args.mib * CHUNK
                if size != expected:
                    print(f"{mode}: wrote {size} bytes, expected {expected}")
                    lost = True
                walls.setdefault(mode, []).append(elapsed)
                cpus.setdefault(mode, []).append(cpu)
    gib = args.mib / 1024
    print(f"{args.mib} MiB per round, {args.rounds} rounds; GiB/s of the best and the median round,")
    print("and the reader's CPU seconds per GiB (median):")
    median = {mode: statistics.median(values) for mode, values in walls.items()}
    for mode in MODES:
        values = walls[mode]
        cpu_per_gib = statistics.median(cpus[mode]) / gib
        print(
            f"  {mode:16s} best {gib / min(values):5.2f}  median {gib / median[mode]:5.2f}"
            f"  cpu {cpu_per_gib:5.2f} s/GiB"
        )
    raw = min(seconds for mode, seconds in median.items() if mode.startswith("raw"))
    raw_default = min(median["raw-read"], median["raw-splice"])
    ratio = raw / median["cio-file"]
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"cio-file vs the fastest raw loop (medians): {ratio:.2f}x (target >= {TARGET}: {verdict})")
    default = raw_default / median["cio-file"]
    print(f"cio-file vs the fastest raw loop on a default 64 KiB pipe: {default:.2f}x")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
