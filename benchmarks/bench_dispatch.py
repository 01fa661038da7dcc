"""Throughput of the per-key serial executor against two naive designs.

Run it as ``python benchmarks/bench_dispatch.py``. It measures events per
second from the first submit until the last handler has run, with no RPC:
each handler appends the event's sequence number to a list for its key.
Every design is also checked for per-key order. Designs:

* ``keyed``: :class:`containerd_client._serial.KeyedSerialExecutor`.
* ``queue``: one consumer thread on a ``queue.Queue``. It is ordered but runs
  every key one after another, so one slow handler stops all containers.
* ``chain``: moby's ``libcontainerd/queue`` ported literally, with one thread
  per event that waits for its predecessor's ``done`` Event. Starting a
  thread per event is costly, so this design gets fewer events by default
  (``--chain-events``).

A second, shorter table uses handlers that block for about 1 ms, as an RPC
would. It shows what the bounded parallelism buys over a single consumer.

The script exits with status 1 only if a design loses or reorders events. It
prints, but does not fail on, whether the product target (>= 50,000 events/s
with 16 keys) was met.
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

try:
    from containerd_client._serial import KeyedSerialExecutor
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from containerd_client._serial import KeyedSerialExecutor

TARGET_KEYS = 16
TARGET_RATE = 50_000.0

Handler = Callable[..., object]
Stream = list[tuple[Hashable, Handler, int]]


class _Design:
    """A dispatcher under test: submit events, then wait for all of them."""

    name = ""
    # An attribute, not a method, so that the keyed design can expose the
    # executor's own bound method and the loop measures no wrapper call.
    submit: Callable[[Hashable, Handler, int], object]

    def finish(self) -> None:
        raise NotImplementedError


class _Keyed(_Design):
    name = "keyed"

    def __init__(self, workers: int) -> None:
        self._ex = KeyedSerialExecutor(workers, name="bench-keyed")
        self.submit = self._ex.submit

    def finish(self) -> None:
        if self._ex.close(timeout=120):
            raise RuntimeError("keyed executor left events undelivered")


class _SingleQueue(_Design):
    name = "queue"

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[Handler, int] | None] = queue.Queue()
        self._t = threading.Thread(target=self._run, name="bench-queue", daemon=True)
        self._t.start()
        self.submit = self._submit

    def _run(self) -> None:
        get = self._q.get
        while (item := get()) is not None:
            item[0](item[1])

    def _submit(self, key: Hashable, fn: Handler, arg: int) -> None:
        self._q.put((fn, arg))

    def finish(self) -> None:
        self._q.put(None)
        self._t.join(120)


class _Chain(_Design):
    """moby's queue.go: a new thread per event, chained on the key's previous one."""

    name = "chain"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: dict[Hashable, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self.submit = self._submit

    def _submit(self, key: Hashable, fn: Handler, arg: int) -> None:
        done = threading.Event()
        with self._lock:
            prev = self._tails.get(key)
            self._tails[key] = done

        def run() -> None:
            if prev is not None:
                prev.wait()
            try:
                fn(arg)
            finally:
                done.set()
                with self._lock:
                    if self._tails.get(key) is done:
                        del self._tails[key]

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)

    def finish(self) -> None:
        for t in self._threads:
            t.join(120)


def _stream(n_events: int, n_keys: int, seed: int) -> tuple[Stream, dict[Hashable, list[int]]]:
    """Build a random interleaving of events over keys, with per-key sequence numbers."""
    rng = random.Random(seed)
    keys: list[Hashable] = [("default", f"container-{k}") for k in range(n_keys)]
    sinks: dict[Hashable, list[int]] = {key: [] for key in keys}
    seq = dict.fromkeys(keys, 0)
    events: Stream = []
    for _ in range(n_events):
        key = keys[rng.randrange(n_keys)]
        events.append((key, sinks[key].append, seq[key]))
        seq[key] += 1
    return events, sinks


def _run_once(design: _Design, events: Stream) -> float:
    submit = design.submit
    start = time.perf_counter()
    for key, fn, arg in events:
        submit(key, fn, arg)
    design.finish()
    return time.perf_counter() - start


def _check(name: str, sinks: dict[Hashable, list[int]], n_events: int) -> list[str]:
    errors = []
    if sum(len(s) for s in sinks.values()) != n_events:
        errors.append(f"{name}: {sum(len(s) for s in sinks.values())} of {n_events} events delivered")
    for key, got in sinks.items():
        if got != list(range(len(got))):
            errors.append(f"{name}: events for {key!r} ran out of order")
            break
    return errors


def _measure(
    make: Callable[[], _Design], n_events: int, n_keys: int, repeat: int, errors: list[str]
) -> float:
    """Return the median events/s over ``repeat`` runs, each on a fresh design."""
    rates = []
    for r in range(repeat):
        events, sinks = _stream(n_events, n_keys, seed=r)
        design = make()
        try:
            elapsed = _run_once(design, events)
        except Exception as e:  # a design failing is a result to report
            errors.append(f"{design.name}: {type(e).__name__}: {e}")
            return 0.0
        errors.extend(_check(design.name, sinks, n_events))
        rates.append(n_events / elapsed)
    return statistics.median(rates)


def _blocking_handler(sink: Callable[[int], object]) -> Handler:
    def handler(seq: int) -> None:
        time.sleep(0.001)  # stands in for an RPC
        sink(seq)

    return handler


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables.

    Returns:
        0 if every design delivered every event in per-key order, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200000)")
    parser.add_argument(
        "--chain-events", type=int, default=10_000, help="events per run for the chain design (default 10000)"
    )
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 16, 256], help="key counts to measure")
    parser.add_argument("--workers", type=int, default=8, help="max_workers of the keyed executor")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    args = parser.parse_args(argv)

    errors: list[str] = []
    print(
        f"Python {sys.version.split()[0]}, {threading.active_count()} thread(s) at start, "
        f"keyed max_workers={args.workers}, median of {args.repeat} run(s)"
    )
    print(f"Trivial handler (list.append); keyed/queue: {args.events:,} events; chain: {args.chain_events:,}")
    columns = ("keys", "keyed ev/s", "queue ev/s", "chain ev/s", "keyed/queue", "keyed/chain")
    header = f"{columns[0]:>6} " + " ".join(f"{c:>12}" for c in columns[1:])
    print(header)
    print("-" * len(header))
    keyed_at_target = None
    for n_keys in args.keys:
        keyed = _measure(lambda: _Keyed(args.workers), args.events, n_keys, args.repeat, errors)
        single = _measure(_SingleQueue, args.events, n_keys, args.repeat, errors)
        chain = _measure(_Chain, args.chain_events, n_keys, args.repeat, errors)
        if n_keys == TARGET_KEYS:
            keyed_at_target = keyed
        print(
            f"{n_keys:>6} {keyed:>12,.0f} {single:>12,.0f} {chain:>12,.0f} "
            f"{_ratio(keyed, single):>12} {_ratio(keyed, chain):>12}"
        )

    # Handlers that block: parallelism across keys is what matters here.
    n_block, k_block = 2_000, 16
    print()
    print(f"Handler blocking ~1 ms (like an RPC); {n_block:,} events over {k_block} keys")
    rates = {}
    for name, make in (
        ("keyed", lambda: _Keyed(args.workers)),
        ("queue", _SingleQueue),
        ("chain", _Chain),
    ):
        events, sinks = _stream(n_block, k_block, seed=99)
        events = [(key, _blocking_handler(fn), seq) for key, fn, seq in events]
        design = make()
        elapsed = _run_once(design, events)
        errors.extend(_check(name, sinks, n_block))
        rates[name] = n_block / elapsed
    print(
        f"{'':>6} {rates['keyed']:>12,.0f} {rates['queue']:>12,.0f} {rates['chain']:>12,.0f} "
        f"{_ratio(rates['keyed'], rates['queue']):>12} {_ratio(rates['keyed'], rates['chain']):>12}"
    )

    print()
    if keyed_at_target is not None:
        verdict = "met" if keyed_at_target >= TARGET_RATE else "NOT met"
        print(
            f"target >= {TARGET_RATE:,.0f} ev/s with {TARGET_KEYS} keys: {verdict} "
            f"({keyed_at_target:,.0f} ev/s)"
        )
    for e in errors:
        print(f"ERROR: {e}", file=sys.stderr)
    return 1 if errors else 0


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


if __name__ == "__main__":
    sys.exit(main())
