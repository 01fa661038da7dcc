"""Container lifecycle and exec latency through the SDK against raw generated stubs.

Run it as ``python benchmarks/bench_lifecycle.py [--quick]``. On a private
containerd, with a busybox folder as rootfs:

* lifecycle: create container -> create task (no stdio) -> start -> wait ->
  delete task -> delete container, running ``/bin/true``. The SDK path is
  ``client.create_container(...)``, ``new_task()``, ``start()``, ``wait()``,
  ``delete()`` and the container's ``delete()``. The raw path sends
  Containers.Create, Tasks.Create, arms Tasks.Wait as a future, Tasks.Start,
  waits for the future, Tasks.Delete and Containers.Delete, with the same
  spec document (built with ``containerd_client.spec.generate`` on both
  sides, inside the timed region). Runs alternate SDK/raw; target: SDK median
  <= 1.05x raw.
* exec: in one running container, ``task.exec(id, ["true"])`` + ``start()`` +
  ``wait()`` + ``delete()`` against Tasks.Exec, a Wait future, Tasks.Start,
  the wait and Tasks.DeleteProcess, alternating. Median, p99 and ratio (no
  target; printed for the lead).

Per-step medians show where a difference comes from. Exit status 1 only on
errors (a failed RPC, a wrong exit code).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from _common import (
    BenchEnv,
    RawStubs,
    environment,
    fmt_ms,
    json_any,
    make_parser,
    median,
    now_ns,
    p99,
    print_table,
    ratio_ci,
    ratio_line,
)

from containerd_client import _typeurl
from containerd_client import spec as spec_mod
from containerd_client._pb.containerd.services.containers.v1 import containers_pb2
from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2
from containerd_client.client import Client
from containerd_client.containers import DEFAULT_RUNTIME
from containerd_client.tasks import Task

TARGET_LIFECYCLE = 1.05
LIFECYCLE_STEPS = ("create container", "create task", "start", "wait", "delete task", "delete container")
EXEC_STEPS = ("exec", "start", "wait", "delete")
ARGS = ["/bin/true"]
WARMUP = 3

# One run: the nanosecond timestamps taken before the first step and after each step.
Marks = list[int]


def _sdk_lifecycle(client: Client, env: BenchEnv, cid: str) -> Marks:
    marks = [now_ns()]
    container = client.create_container(cid, rootfs=env.rootfs, args=ARGS)
    marks.append(now_ns())
    task = container.new_task()
    marks.append(now_ns())
    task.start()
    marks.append(now_ns())
    status = task.wait(timeout=60)
    marks.append(now_ns())
    task.delete()
    marks.append(now_ns())
    container.delete()
    marks.append(now_ns())
    if status.exit_code != 0:
        raise RuntimeError(f"SDK run {cid} exited with {status.exit_code}")
    return marks


def _raw_lifecycle(raw: RawStubs, env: BenchEnv, cid: str) -> Marks:
    md, timeout = raw.metadata, raw.timeout
    marks = [now_ns()]
    doc = spec_mod.generate(
        cid, env.namespace, spec_mod.with_rootfs(env.rootfs), spec_mod.with_process_args(ARGS)
    )
    record = containers_pb2.Container(
        id=cid,
        runtime=containers_pb2.Container.Runtime(name=DEFAULT_RUNTIME),
        spec=json_any(_typeurl.OCI_SPEC, doc),
    )
    raw.containers.Create(
        containers_pb2.CreateContainerRequest(container=record), metadata=md, timeout=timeout
    )
    marks.append(now_ns())
    raw.tasks.Create(tasks_pb2.CreateTaskRequest(container_id=cid), metadata=md, timeout=timeout)
    marks.append(now_ns())
    waiting = raw.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=cid), metadata=md)
    raw.tasks.Start(tasks_pb2.StartRequest(container_id=cid), metadata=md, timeout=timeout)
    marks.append(now_ns())
    status = waiting.result(timeout=60)
    marks.append(now_ns())
    raw.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=cid), metadata=md, timeout=timeout)
    marks.append(now_ns())
    raw.containers.Delete(containers_pb2.DeleteContainerRequest(id=cid), metadata=md, timeout=timeout)
    marks.append(now_ns())
    if status.exit_status != 0:
        raise RuntimeError(f"raw run {cid} exited with {status.exit_status}")
    return marks


def _sdk_exec(task: Task, eid: str) -> Marks:
    marks = [now_ns()]
    proc = task.exec(eid, ["true"])
    marks.append(now_ns())
    proc.start()
    marks.append(now_ns())
    status = proc.wait(timeout=60)
    marks.append(now_ns())
    proc.delete()
    marks.append(now_ns())
    if status.exit_code != 0:
        raise RuntimeError(f"SDK exec {eid} exited with {status.exit_code}")
    return marks


def _raw_exec(raw: RawStubs, cid: str, base_process: dict[str, object], eid: str) -> Marks:
    md, timeout = raw.metadata, raw.timeout
    marks = [now_ns()]
    process = dict(base_process)
    process["args"] = ["true"]
    process["terminal"] = False
    req = tasks_pb2.ExecProcessRequest(
        container_id=cid, exec_id=eid, spec=json_any(_typeurl.OCI_PROCESS, process)
    )
    raw.tasks.Exec(req, metadata=md, timeout=timeout)
    marks.append(now_ns())
    waiting = raw.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=cid, exec_id=eid), metadata=md)
    raw.tasks.Start(tasks_pb2.StartRequest(container_id=cid, exec_id=eid), metadata=md, timeout=timeout)
    marks.append(now_ns())
    status = waiting.result(timeout=60)
    marks.append(now_ns())
    raw.tasks.DeleteProcess(
        tasks_pb2.DeleteProcessRequest(container_id=cid, exec_id=eid), metadata=md, timeout=timeout
    )
    marks.append(now_ns())
    if status.exit_status != 0:
        raise RuntimeError(f"raw exec {eid} exited with {status.exit_status}")
    return marks


def _alternate(n: int, sdk: Callable[[int], Marks], raw: Callable[[int], Marks]) -> dict[str, list[Marks]]:
    """Run both ``n`` times, SDK first on even rounds and raw first on odd ones."""
    runs: dict[str, list[Marks]] = {"SDK": [], "raw": []}
    for i in range(n):
        order = (("SDK", sdk), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("SDK", sdk))
        for name, fn in order:
            runs[name].append(fn(i))
    return runs


def _report(title: str, steps: tuple[str, ...], runs: dict[str, list[Marks]]) -> tuple[float, str]:
    """Print totals and per-step medians; return the SDK/raw ratio of median totals and its 95% CI."""
    totals = {name: [m[-1] - m[0] for m in marks] for name, marks in runs.items()}
    rows = [
        (
            name,
            len(t),
            fmt_ms(median(t)),
            fmt_ms(p99(t)),
            fmt_ms(min(t)),
            f"{median(t) / median(totals['raw']):.3f}x",
        )
        for name, t in totals.items()
    ]
    print()
    print_table(("path", "runs", "median ms", "p99 ms", "min ms", "vs raw"), rows, title=title)
    step_rows = []
    for i, step in enumerate(steps):
        sdk = median([m[i + 1] - m[i] for m in runs["SDK"]])
        raw = median([m[i + 1] - m[i] for m in runs["raw"]])
        step_rows.append((step, fmt_ms(sdk), fmt_ms(raw), fmt_ms(sdk - raw)))
    print()
    print_table(("step (median)", "SDK ms", "raw ms", "SDK - raw"), step_rows)
    low, high = ratio_ci(totals["SDK"], totals["raw"])
    return median(totals["SDK"]) / median(totals["raw"]), f"95% CI {low:.3f}x-{high:.3f}x"


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="lifecycle runs per path (default 40, quick 10)")
    args = parser.parse_args()
    n_life = args.runs or (10 if args.quick else 40)
    n_exec = 40 if args.quick else 200

    with environment() as env, env.client() as client, RawStubs(env) as raw:
        # Lifecycle.
        _alternate(
            WARMUP,
            lambda i: _sdk_lifecycle(client, env, f"warm-sdk-{i}"),
            lambda i: _raw_lifecycle(raw, env, f"warm-raw-{i}"),
        )
        runs = _alternate(
            n_life,
            lambda i: _sdk_lifecycle(client, env, f"sdk-{i}"),
            lambda i: _raw_lifecycle(raw, env, f"raw-{i}"),
        )
        life_ratio, life_ci = _report(
            f"create -> start -> wait -> delete of {ARGS[0]}, {n_life} runs each, alternating",
            LIFECYCLE_STEPS,
            runs,
        )

        # Exec in one running container.
        with client.create_container("exec-host", rootfs=env.rootfs, args=["sleep", "3600"]) as container:
            task = container.new_task()
            task.start()
            base_process = dict(container.spec()["process"])
            _alternate(
                WARMUP,
                lambda i: _sdk_exec(task, f"warm-sdk-{i}"),
                lambda i: _raw_exec(raw, container.id, base_process, f"warm-raw-{i}"),
            )
            exec_runs = _alternate(
                n_exec,
                lambda i: _sdk_exec(task, f"sdk-{i}"),
                lambda i: _raw_exec(raw, container.id, base_process, f"raw-{i}"),
            )
        exec_ratio, exec_ci = _report(
            f"exec 'true' -> start -> wait -> delete in a running task, {n_exec} runs each, alternating",
            EXEC_STEPS,
            exec_runs,
        )

    print()
    print(f"lifecycle SDK / raw: {life_ratio:.3f}x, {life_ci} (bootstrap over run pairs)")
    print(f"exec SDK / raw (no target): {exec_ratio:.3f}x, {exec_ci}")
    ratio_line("lifecycle SDK / raw (median)", life_ratio, TARGET_LIFECYCLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
