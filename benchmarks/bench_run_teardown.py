"""``client.run(image, ["true"])`` with and without background teardown, against raw stubs.

Run it as ``python benchmarks/bench_run_teardown.py [--quick] [--runs N]``. On a
private containerd, with a busybox image imported (and unpacked once):

* raw: the synchronous floor of the same steps through the generated stubs:
  Snapshots.Prepare (from the image's top layer), Containers.Create, Tasks.Create
  with the snapshot's mounts, a Wait future, Tasks.Start, the wait,
  Tasks.Delete, Containers.Delete, Snapshots.Remove (no stdio).
* sync: ``client.run(image, ["true"])`` on a default client (deletes before it returns).
* background: the same on ``Client(..., background_teardown=True)``: deletion
  runs on the client's teardown pool; the pool is joined after the timed runs
  (its work still competes for the CPU with the next runs, as in a test suite).

The three alternate (rotating order). Target (issue 11): background <= 0.8x raw.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import grpc
from _common import (
    BenchEnv,
    RawStubs,
    environment,
    fmt_ms,
    json_any,
    make_parser,
    median,
    print_table,
    ratio_line,
)

from containerd_client import _typeurl
from containerd_client import spec as spec_mod
from containerd_client._pb.containerd.services.containers.v1 import containers_pb2
from containerd_client._pb.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.client import Client
from containerd_client.containers import DEFAULT_RUNTIME
from containerd_client.snapshots import SnapshotKind
from containerd_client.testing import build_busybox_archive

TARGET = 0.8
ARGS = ["/bin/true"]
WARMUP = 3


def _raw_run(
    raw: RawStubs, snaps: snapshots_pb2_grpc.SnapshotsStub, env: BenchEnv, parent: str, cid: str
) -> None:
    md, timeout = raw.metadata, raw.timeout
    # No lease (that would be two more calls): a gc.root label keeps containerd's
    # collector, which deletions elsewhere set off, away from it until Remove.
    prepared = snaps.Prepare(
        snapshots_pb2.PrepareSnapshotRequest(
            snapshotter="overlayfs", key=cid, parent=parent, labels={"containerd.io/gc.root": "bench"}
        ),
        metadata=md,
        timeout=timeout,
    )
    doc = spec_mod.generate(cid, env.namespace, spec_mod.with_process_args(ARGS))
    record = containers_pb2.Container(
        id=cid,
        runtime=containers_pb2.Container.Runtime(name=DEFAULT_RUNTIME),
        spec=json_any(_typeurl.OCI_SPEC, doc),
        snapshotter="overlayfs",
        snapshot_key=cid,
    )
    raw.containers.Create(
        containers_pb2.CreateContainerRequest(container=record), metadata=md, timeout=timeout
    )
    raw.tasks.Create(
        tasks_pb2.CreateTaskRequest(container_id=cid, rootfs=list(prepared.mounts)),
        metadata=md,
        timeout=timeout,
    )
    waiting = raw.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=cid), metadata=md)
    raw.tasks.Start(tasks_pb2.StartRequest(container_id=cid), metadata=md, timeout=timeout)
    status = waiting.result(timeout=60)
    raw.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=cid), metadata=md, timeout=timeout)
    raw.containers.Delete(containers_pb2.DeleteContainerRequest(id=cid), metadata=md, timeout=timeout)
    try:
        snaps.Remove(
            snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=cid),
            metadata=md,
            timeout=timeout,
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:  # as the SDK: already gone is done
            raise
    if status.exit_status != 0:
        raise RuntimeError(f"raw run {cid} exited with {status.exit_status}")


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter_ns()
    fn()
    return float(time.perf_counter_ns() - start)


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="runs per path (default 40, quick 10)")
    args = parser.parse_args()
    n = args.runs or (10 if args.quick else 40)

    with environment(rootfs=False) as env, RawStubs(env) as raw:
        snaps = snapshots_pb2_grpc.SnapshotsStub(raw.channel)
        sync = env.client()
        background = Client(env.address, env.namespace, state_dir=env.state_dir, background_teardown=True)
        try:
            (image,) = sync.images.import_archive(build_busybox_archive(f"{env.tmp}/busybox.tar").path)
            sync.run(image.name, ARGS)  # unpacks it
            (parent,) = [s.name for s in sync.snapshots().list() if s.kind is SnapshotKind.COMMITTED]

            def sdk_run(client: Client) -> None:
                result = client.run(image.name, ARGS)
                if result.exit_code != 0:
                    raise RuntimeError(f"run exited with {result.exit_code}")

            paths: dict[str, Callable[[int], None]] = {
                "raw": lambda i: _raw_run(raw, snaps, env, parent, f"raw-{i}"),
                "sync": lambda i: sdk_run(sync),
                "background": lambda i: sdk_run(background),
            }
            times: dict[str, list[float]] = {name: [] for name in paths}
            names = list(paths)
            for i in range(-WARMUP, n):
                order = names[i % 3 :] + names[: i % 3]
                for name in order:
                    took = _timed(lambda name=name, i=i: paths[name](i + WARMUP))  # type: ignore[misc]
                    if i >= 0:
                        times[name].append(took)
            failures = background.join_teardowns(60.0)
            if failures:
                print("background teardown failures:", *failures, sep="\n  ")
                return 1
            left = [c.id for c in sync.containers()]
            if left:
                print("left behind:", left)
                return 1
        finally:
            background.close()
            sync.close()

    floor = median(times["raw"])
    rows = [(name, len(t), fmt_ms(median(t)), f"{median(t) / floor:.3f}x") for name, t in times.items()]
    print_table(
        ("path", "runs", "median ms", "vs raw"), rows, title=f"run {ARGS[0]}: {n} runs each, rotating"
    )
    ratio_line(
        "client.run with background teardown / raw floor (median)",
        median(times["background"]) / floor,
        TARGET,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
