"""Checkpoint and restore through the SDK against ``ctr``, and a warm service against a cold one.

Run it as ``python benchmarks/bench_checkpoint.py [--quick]`` (as root).
Everything runs on this machine and is started here: a private containerd
(:func:`_common.environment`, ``$CONTAINERD_BIN_DIR`` for another version)
whose ``PATH`` holds the criu that ``scripts/build_criu`` built, and the
busybox image of :func:`containerd_client.testing.build_busybox_archive`
imported into its namespace.

Two tables:

1. checkpoint, then restore under a new id, of the same kind of task: a
   container of the busybox image running a counting loop (``sh`` writing
   to a file every 50 ms). Per round each side gets a fresh running
   container (not timed), then:

   * SDK: ``task.checkpoint()`` (content store, under a lease; paused and
     resumed around the dump), then ``client.restore(new_id, cp)`` (a new
     snapshot of the image, the container, ``Tasks.Create`` from the CRIU
     blob, start);
   * ctr (the ``ctr`` beside the daemon, i.e. containerd's Go client, as a
     process per command, as a shell script would use it):
     ``ctr containers checkpoint --task --image <id> <ref>`` (pause, dump,
     resume, a checkpoint image), then ``ctr containers restore --live
     <new_id> <ref>`` (new container, task from the checkpoint, start).

   Not timed: deleting the originals, the restored containers, the SDK's
   checkpoint (lease) and ctr's checkpoint image (``ctr images rm --sync``:
   containerd 1.6/1.7 refuse a second checkpoint of a container while the
   first one's spec blob exists). The sides alternate (SDK first on even
   rounds); medians per step and the SDK/ctr ratio of the medians of
   checkpoint + restore, with a bootstrap interval. Target <= 1.1x.
2. a service that needs >= 1 s to become ready (``sleep 1`` then ``httpd``,
   port 80 published on a bridge network, ready at the first HTTP 200):
   ``start_service(...)`` cold against ``start_service(..., warm=True)``,
   which restores a copy of a checkpoint taken once (before the timed rounds)
   into a new container with its own network namespace and host port.
   Alternating; time from the call to the ready service. Target <= 0.3x.

A missed target is printed, never a failure; exit status 1 only on errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from _common import environment, fmt_ms, make_parser, median, now_ns, print_table, ratio_ci, ratio_line

from containerd_client import Client, wait
from containerd_client.testing import WarmCache, build_busybox_archive, start_service

TARGET_CKPT = 1.1
TARGET_WARM = 0.3
IMAGE = "localhost/containerd-client/bench-ckpt:1"
COUNT = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"]
SLOW = ["sh", "-c", "sleep 1; echo ready > /www/index.html; exec httpd -f -p 80 -h /www"]


def _ctr(env_ctr: list[str], *args: str) -> None:
    subprocess.run([*env_ctr, *args], check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def _running(client: Client, cid: str) -> None:
    c = client.create_container(cid, image=IMAGE, args=COUNT)
    t = c.new_task()
    t.start()


def _remove(client: Client, cid: str) -> None:
    c = client.load_container(cid)
    try:
        c.delete(force=True)
    finally:
        c.cleanup()


def _sdk_round(client: Client, i: int) -> tuple[int, int, int]:
    _running(client, f"sdk-orig-{i}")
    task = client.load_container(f"sdk-orig-{i}").task()
    t0 = now_ns()
    cp = task.checkpoint()
    t1 = now_ns()
    restored = client.restore(f"sdk-new-{i}", cp)
    t2 = now_ns()
    restored.delete(force=True)
    restored.cleanup()
    cp.delete()
    _remove(client, f"sdk-orig-{i}")
    return t0, t1, t2


def _ctr_round(client: Client, ctr: list[str], i: int) -> tuple[int, int, int]:
    _running(client, f"ctr-orig-{i}")
    ref = f"localhost/bench/checkpoint:{i}"
    t0 = now_ns()
    _ctr(ctr, "containers", "checkpoint", "--task", "--image", f"ctr-orig-{i}", ref)
    t1 = now_ns()
    _ctr(ctr, "containers", "restore", "--live", f"ctr-new-{i}", ref)
    t2 = now_ns()
    _remove(client, f"ctr-new-{i}")
    _ctr(ctr, "images", "rm", "--sync", ref)
    _remove(client, f"ctr-orig-{i}")
    return t0, t1, t2


def _alternate(
    n: int, a: Callable[[int], tuple[int, ...]], b: Callable[[int], tuple[int, ...]]
) -> list[list[tuple[int, ...]]]:
    runs: list[list[tuple[int, ...]]] = [[], []]
    for i in range(n):
        order = ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a))
        for k, fn in order:
            runs[k].append(fn(i))
    return runs


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="rounds per side (default 12, quick 4)")
    args = parser.parse_args()
    n = args.runs or (4 if args.quick else 12)
    n_warm = 4 if args.quick else 10

    with environment(rootfs=False) as env:
        print(f"criu folder on the daemon's PATH: {env.daemon.criu_dir or '(none)'}")
        ctr_bin = os.path.join(env.daemon.bin_dir, "ctr")
        if not os.path.isfile(ctr_bin):
            ctr_bin = shutil.which("ctr") or "ctr"
        ctr = [ctr_bin, "--address", env.address, "--namespace", env.namespace]
        archive = build_busybox_archive(os.path.join(env.tmp, "bb.tar"), name=IMAGE)
        with Client(
            env.address, env.namespace, state_dir=env.state_dir, network_config=env.daemon.network_config
        ) as client:
            client.images.import_archive(archive.path)
            # Warm-up: one round each (unpack, first shim, criu's first run).
            _sdk_round(client, 900)
            _ctr_round(client, ctr, 901)
            sdk, theirs = _alternate(n, lambda i: _sdk_round(client, i), lambda i: _ctr_round(client, ctr, i))
            rows = []
            totals = {}
            for name, runs in (("SDK", sdk), ("ctr", theirs)):
                ck = [r[1] - r[0] for r in runs]
                rs = [r[2] - r[1] for r in runs]
                tot = [r[2] - r[0] for r in runs]
                totals[name] = tot
                rows.append((name, len(runs), fmt_ms(median(ck)), fmt_ms(median(rs)), fmt_ms(median(tot))))
            print()
            print_table(
                ("path", "rounds", "checkpoint ms", "restore ms", "total ms"),
                rows,
                title=f"checkpoint + restore under a new id of a counting loop, {n} rounds each, alternating",
            )
            ratio = median(totals["SDK"]) / median(totals["ctr"])
            lo, hi = ratio_ci(totals["SDK"], totals["ctr"])
            print(f"SDK / ctr: {ratio:.3f}x, 95% CI [{lo:.3f}, {hi:.3f}] (bootstrap over round pairs)")

            # Warm service against cold.
            www = os.path.join(env.tmp, "www")
            os.makedirs(www, exist_ok=True)
            cache = WarmCache()
            opts = {"ports": [80], "wait": wait.http(80), "mounts": {www: "/www"}, "timeout": 30.0}
            try:
                t0 = now_ns()
                with start_service(client, IMAGE, SLOW, warm=True, warm_cache=cache, **opts):
                    pass
                first = now_ns() - t0

                def cold(i: int) -> tuple[int, int]:
                    t = now_ns()
                    with start_service(client, IMAGE, SLOW, stop_timeout=0, **opts):
                        return t, now_ns()

                def warm(i: int) -> tuple[int, int]:
                    t = now_ns()
                    with start_service(
                        client, IMAGE, SLOW, warm=True, warm_cache=cache, stop_timeout=0, **opts
                    ):
                        return t, now_ns()

                w_runs, c_runs = _alternate(n_warm, warm, cold)
            finally:
                cache.close()
            w = [b - a for a, b in w_runs]
            c = [b - a for a, b in c_runs]
            print()
            print_table(
                ("path", "runs", "median ms", "min ms", "max ms"),
                [
                    ("warm (restore)", len(w), fmt_ms(median(w)), fmt_ms(min(w)), fmt_ms(max(w))),
                    ("cold (start)", len(c), fmt_ms(median(c)), fmt_ms(min(c)), fmt_ms(max(c))),
                ],
                title=f"service ready after 'sleep 1': to the first 200, {n_warm} runs each, alternated",
            )
            print(
                f"first warm call (cold start + checkpoint + restore, once per session): {fmt_ms(first)} ms"
            )
            warm_ratio = median(w) / median(c)
            wlo, whi = ratio_ci(w, c)
            print(f"warm / cold: {warm_ratio:.3f}x, 95% CI [{wlo:.3f}, {whi:.3f}]")
    print()
    ratio_line("checkpoint+restore SDK / ctr (median)", ratio, TARGET_CKPT)
    ratio_line("service restore-to-ready / cold-start-to-ready (median)", warm_ratio, TARGET_WARM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
