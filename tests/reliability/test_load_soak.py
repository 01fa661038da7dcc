"""Load and soak: many threads on one Client, and many lifecycles in a row, leave nothing behind.

Counts come from :mod:`containerd_client.testing._census` (fds, Python and OS
threads, RSS, FIFOs and bundle folders under the client's state folder, and
the containers, tasks, images, leases, snapshots, content and unfinished
writes of the namespace). Each test prints its before/after table (shown
without ``-s`` too) and appends it to ``$CONTAINERD_SOAK_REPORT`` when set.

Sizes:
- ``CONTAINERD_SOAK_CYCLES``: sequential lifecycles (default 1000 on the
  machine's containerd 1.6, 100 on the other versions, which the matrix
  runs too: 1,000 take about a minute each).
- ``CONTAINERD_SOAK_IMAGE_CYCLES``: lifecycles from an image (snapshot, lease
  and content each time; default 50 on 1.6, 20 on the other versions).
- ``CONTAINERD_LOAD_THREADS`` (default 32) x ``CONTAINERD_LOAD_CYCLES``
  (default 2) lifecycles, each with execs fed from stdin.
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import gc
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from containerd_client import Client, cio
from containerd_client.testing import ContainerdDaemon, build_busybox_archive
from containerd_client.testing._census import census, differences, format_table

#: Growth of resident memory accepted over the soak: allocator arenas and
#: caches settle at some size; a leak of one object per cycle does not.
RSS_BOUND_KIB = 32 * 1024

#: The whole 32-thread run must end within this; a deadlock does not.
LOAD_DEADLINE = 240.0

#: Counts allowed to differ: memory (bounded above) and grpcio's own C threads,
#: which its thread pools start and stop as they please.
NOT_EXACT = ("rss_kib", "os_threads")


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        sys.stdout.write("\n" + text + "\n")
    path = os.environ.get("CONTAINERD_SOAK_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")


def _settled_census(client: Client, settle: float = 5.0) -> dict[str, int]:
    """A census once threads and fds stop changing (work of earlier tests winding down).

    Two readings 0.1 s apart must agree, within ``settle`` seconds; a thread
    or fd that stays is counted, one that is just finishing is not.
    """
    deadline = time.monotonic() + settle
    gc.collect()
    last = census(client)
    while time.monotonic() < deadline:
        time.sleep(0.1)  # a poll interval, not synchronisation: the readings decide
        gc.collect()
        now = census(client)
        if all(now[k] == last[k] for k in ("threads", "fds")):
            return now
        last = now
    return last


def _check(before: dict[str, int], after: dict[str, int]) -> None:
    assert differences(before, after, ignore=NOT_EXACT) == {}
    growth = after["rss_kib"] - before["rss_kib"]
    assert growth < RSS_BOUND_KIB, f"RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"


def _lifecycle(client: Client, rootfs: str | None, cid: str, image: str | None = None) -> None:
    out = cio.Capture()
    if image:
        container = client.create_container(cid, image=image, args=["echo", cid])
    else:
        container = client.create_container(cid, rootfs=rootfs, args=["echo", cid])
    with container as c:
        task = c.new_task(stdout=out)
        task.start()
        assert task.wait(timeout=60).exit_code == 0
        assert task.delete().exit_code == 0
    assert out.getvalue() == f"{cid}\n".encode()


def test_sequential_lifecycles_leak_nothing(
    containerd: Client,
    containerd_daemon: ContainerdDaemon,
    busybox_rootfs: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    own_version = containerd_daemon.version_info[:2] == (1, 6)
    cycles = _int_env("CONTAINERD_SOAK_CYCLES", 1000 if own_version else 100)
    # Warm up: the first lifecycles create what lives as long as the client
    # (the channel, grpcio's pools, the namespace's state folder).
    for i in range(5):
        _lifecycle(containerd, busybox_rootfs, f"warm{i}")
    before = _settled_census(containerd)
    started = time.monotonic()
    for i in range(cycles):
        _lifecycle(containerd, busybox_rootfs, f"soak{i}")
    took = time.monotonic() - started
    after = _settled_census(containerd)
    title = (
        f"{cycles} sequential lifecycles on containerd {containerd_daemon.version} "
        f"in {took:.1f} s ({took / max(cycles, 1) * 1000:.0f} ms each)"
    )
    _report(capsys, format_table(before, after, title=title))
    _check(before, after)


@pytest.mark.containerd_leaks_ok("images", reason="the image is the test's setup")
def test_lifecycles_from_an_image_leak_nothing(
    containerd: Client,
    containerd_daemon: ContainerdDaemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    own_version = containerd_daemon.version_info[:2] == (1, 6)
    cycles = _int_env("CONTAINERD_SOAK_IMAGE_CYCLES", 50 if own_version else 20)
    archive = build_busybox_archive(tmp_path / "busybox.tar", name="localhost/soak/busybox:1")
    [image] = containerd.images.import_archive(archive.path)
    _lifecycle(containerd, None, "warm", image=image.name)
    before = _settled_census(containerd)
    started = time.monotonic()
    for i in range(cycles):
        _lifecycle(containerd, None, f"img{i}", image=image.name)
    took = time.monotonic() - started
    after = _settled_census(containerd)
    title = (
        f"{cycles} lifecycles from an image on containerd {containerd_daemon.version} "
        f"in {took:.1f} s ({took / max(cycles, 1) * 1000:.0f} ms each)"
    )
    _report(capsys, format_table(before, after, title=title))
    assert before["images"] == 1
    assert before["snapshots"] >= 1  # the unpacked layer, there before and after
    _check(before, after)


def test_32_threads_on_one_client_with_execs_and_stdin(
    containerd: Client,
    containerd_daemon: ContainerdDaemon,
    busybox_rootfs: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    threads = _int_env("CONTAINERD_LOAD_THREADS", 32)
    cycles = _int_env("CONTAINERD_LOAD_CYCLES", 2)
    execs = 2
    _lifecycle(containerd, busybox_rootfs, "warm")
    before = _settled_census(containerd)
    # The load runs on a Client of its own: the threads it starts (event
    # dispatch, exit checks, stdio copiers) must all be gone once it is closed.
    client = Client(containerd_daemon.address, containerd.namespace_name)
    start_together = threading.Barrier(threads)

    def worker(n: int) -> int:
        start_together.wait(30)
        done = 0
        for k in range(cycles):
            cid = f"w{n}-{k}"
            with client.create_container(cid, rootfs=busybox_rootfs, args=["sleep", "300"]) as c:
                task = c.new_task()
                task.start()
                for e in range(execs):
                    # Different for every exec, so a mixed-up stream shows.
                    payload = f"{cid}/{e}:".encode() * 2000 + os.urandom(4096)
                    out = cio.Capture()
                    with task.exec(f"cat{e}", ["cat"], stdin=payload, stdout=out) as proc:
                        proc.start()
                        assert proc.wait(timeout=60).exit_code == 0
                    assert out.getvalue() == payload, (cid, e)
                task.kill("KILL")
                assert task.wait(timeout=60).exit_code == 137
                task.delete()
            done += 1
        return done

    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="load") as pool:
            futures = [pool.submit(worker, n) for n in range(threads)]
            finished, pending = concurrent.futures.wait(futures, timeout=LOAD_DEADLINE)
            if pending:
                faulthandler.dump_traceback(sys.stderr)
                pytest.fail(f"{len(pending)} of {threads} threads still running after {LOAD_DEADLINE:.0f} s")
            completed = sum(f.result() for f in finished)
        took = time.monotonic() - started
    finally:
        client.close()
    after = _settled_census(containerd)
    title = (
        f"{threads} threads x {cycles} lifecycles x {execs} execs with stdin on one Client, "
        f"containerd {containerd_daemon.version}: {completed}/{threads * cycles} in {took:.1f} s"
    )
    _report(capsys, format_table(before, after, title=title))
    assert completed == threads * cycles
    _check(before, after)


@pytest.mark.containerd_leaks_ok(reason="leaks on purpose, to show the census sees it")
def test_census_catches_a_leaky_lifecycle(containerd: Client, busybox_rootfs: str) -> None:
    _lifecycle(containerd, busybox_rootfs, "warm")
    before = _settled_census(containerd)
    release = threading.Event()
    stray = threading.Thread(target=release.wait, name="stray")
    stray.start()
    try:
        # A lifecycle that forgets the task and the container (stdout still attached).
        c = containerd.create_container("forgotten", rootfs=busybox_rootfs, args=["echo", "x"])
        task = c.new_task(stdout=cio.Capture())
        task.start()
        task.wait(timeout=60)
        containerd.leases.create(expire=600)
        after = _settled_census(containerd)
    finally:
        release.set()
        stray.join(10)
    changed = differences(before, after, ignore=NOT_EXACT)
    for key in ("threads", "containers", "tasks", "leases", "bundles", "fifos"):
        assert key in changed, (key, changed)
    with pytest.raises(AssertionError):
        _check(before, after)
    task.delete()
    c.delete()
