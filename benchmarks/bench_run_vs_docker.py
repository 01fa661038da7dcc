"""``Client.run(image, ["true"])`` against docker-py's ``containers.run`` on a private dockerd.

Run it as ``python benchmarks/bench_run_vs_docker.py [--quick]`` (as root).
Everything runs on this machine and is started here:

* the SDK's side: a private containerd (:func:`_common.environment`), the
  busybox image of :func:`containerd_client.testing.build_busybox_archive`
  imported into its namespace with ``client.images.import_archive``, and
  ``client.run(image, ["true"])`` per call: look the image up, create the
  container and its snapshot, a task with captured stdout/stderr, start,
  wait, delete everything.
* docker's side: Debian's ``dockerd`` (docker.io, 20.10), started by hand with
  its own ``--data-root``, ``--exec-root``, ``-H unix://<tmp>/docker.sock``,
  ``--pidfile``, a ``--config-file`` of its own (which also keeps its trust
  key out of ``/etc/docker``), ``--bridge=none --iptables=false
  --ip6tables=false``, and ``--containerd`` pointing at a second private
  containerd of the same binary. The same archive file (``docker save``
  format, which dockerd 20.10 loads) goes in with ``images.load``; each call
  is ``docker.DockerClient(...).containers.run(image, ["true"], remove=True)``.
  Both sides give the container a new network namespace with only ``lo``.

dockerd gets a containerd of its own rather than sharing the SDK's (it would
stay in its namespace ``moby``, so sharing works): two daemons keep each
side's metadata database, event fan-out, garbage collection and shims apart,
so neither side's bookkeeping is charged to the other, and each daemon is
stopped with exactly its own shims and containers.

After a warm-up the two alternate (SDK first on even rounds, docker first on
odd ones), 30 calls each (``--quick``: 8); the table gives the median and
p90 per call, and the SDK/docker ratio of medians with a bootstrap interval
over the alternating pairs. Target: SDK <= 0.4x docker-py.

Setup installs what is missing, and says so: Debian's ``docker.io`` (with
``apt-get``; policy-rc.d keeps its service from starting, and the script
checks that no dockerd it did not start appeared, leaving any such one alone)
and docker-py (``pip install docker``; it is no dependency of the package).
At the end dockerd is stopped by its PID, then both containerds (by PID, with
their shims), and the host folders dockerd creates outside its roots
(``/run/docker``, the ``docker`` cgroups) are removed if they were not there
before and are empty. A missed target is printed, never a failure; exit
status 1 only on errors.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

from _common import environment, fmt_ms, make_parser, median, now_ns, print_table, ratio_ci, ratio_line

from containerd_client import Client
from containerd_client.testing import ContainerdDaemon, build_busybox_archive
from containerd_client.testing._reaper import _mounts_under, _umount_detach

TARGET = 0.4
ARGS = ["true"]
IMAGE = "localhost/containerd-client/bench-busybox:1"
# dockerd's fixed host paths outside --data-root/--exec-root (the plugin
# socket folder and the cgroup parent of its containers on cgroup v1).
DOCKER_RUN_DIR = "/run/docker"
CGROUP_ROOT = "/sys/fs/cgroup"
DOCKER_START_TIMEOUT = 60.0
DOCKER_STOP_TIMEOUT = 30.0


# -- setup ---------------------------------------------------------------------


def _dockerd_pids() -> set[int]:
    """PIDs of every process named dockerd on the machine."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm", encoding="utf-8") as f:
                if f.read().strip() == "dockerd":
                    pids.add(int(entry))
    return pids


def _ensure_dockerd() -> str:
    """The dockerd binary; installs Debian's docker.io when there is none."""
    found = shutil.which("dockerd")
    if found:
        return found
    print("dockerd not found: installing Debian's docker.io (apt-get install -y docker.io) ...", flush=True)
    before = _dockerd_pids()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "docker.io"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        print("apt-get install failed; running apt-get update once and trying again ...", flush=True)
        subprocess.run(
            ["apt-get", "update"], capture_output=True, env=env, stdin=subprocess.DEVNULL, check=False
        )
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"apt-get install docker.io failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    started = _dockerd_pids() - before
    if started:
        print(
            f"note: installing docker.io started a system dockerd (pid {sorted(started)}); "
            "it is left alone, this benchmark uses a dockerd and socket of its own"
        )
    else:
        print("docker.io installed; its service did not start (policy-rc.d), no system dockerd runs")
    found = shutil.which("dockerd")
    if not found:
        raise RuntimeError("docker.io is installed but dockerd is not on PATH")
    return found


def _ensure_docker_py() -> ModuleType:
    """docker-py; installs it with pip when it is missing."""
    try:
        return importlib.import_module("docker")
    except ImportError:
        pass
    print("docker-py not found: installing it (pip install docker) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "docker"], check=True, stdin=subprocess.DEVNULL
    )
    print(
        "hint: docker-py is no dependency of containerd-client; "
        "install it with `pip install docker` (a `bench` extra would carry it)"
    )
    importlib.invalidate_caches()
    return importlib.import_module("docker")


# -- a private dockerd ------------------------------------------------------------


def _tail(path: str, lines: int = 40) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])
    return "(no log)"


def _cgroup_dirs() -> list[str]:
    """dockerd's cgroup parent: ``<controller>/docker`` on cgroup v1, ``docker`` on v2."""
    dirs = [os.path.join(CGROUP_ROOT, "docker")]
    with contextlib.suppress(OSError):
        dirs += [os.path.join(CGROUP_ROOT, c, "docker") for c in sorted(os.listdir(CGROUP_ROOT))]
    return dirs


@contextlib.contextmanager
def private_dockerd(
    binary: str,
    containerd_address: str,
    docker_py: ModuleType,
    network_args: Sequence[str] = ("--bridge=none", "--iptables=false", "--ip6tables=false"),
) -> Iterator[tuple[Any, int]]:
    """Start dockerd on its own roots and socket; yield ``(DockerClient, pid)``; stop it by PID.

    ``network_args`` replaces the default no-network options (``bench_service.py``
    gives a bridge of its own and ``--iptables=true``).
    """
    base = tempfile.mkdtemp(prefix="ccbench-dockerd-", dir="/tmp")
    sock = os.path.join(base, "docker.sock")
    log_path = os.path.join(base, "dockerd.log")
    config = os.path.join(base, "daemon.json")
    with open(config, "w", encoding="utf-8") as f:
        # dockerd 20.10 writes a trust key to /etc/docker/key.json unless told
        # otherwise; this key exists only in the config file.
        json.dump({"deprecated-key-path": os.path.join(base, "key.json")}, f)
    host_dirs = [DOCKER_RUN_DIR, *_cgroup_dirs()]
    new_host_dirs = [d for d in host_dirs if not os.path.exists(d)]
    cmd = [
        binary,
        "--data-root", os.path.join(base, "data"),
        "--exec-root", os.path.join(base, "exec"),
        "-H", f"unix://{sock}",
        "--pidfile", os.path.join(base, "dockerd.pid"),
        "--config-file", config,
        *network_args,
        "--containerd", containerd_address,
    ]  # fmt: skip
    proc = None
    client = None
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C must not reach it before we stop it
            )
        deadline = time.monotonic() + DOCKER_START_TIMEOUT
        while client is None:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"dockerd exited with code {code} before serving; its log:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dockerd did not serve within {DOCKER_START_TIMEOUT:.0f}s; its log:\n{_tail(log_path)}"
                )
            if os.path.exists(sock):
                with contextlib.suppress(docker_py.errors.DockerException):
                    candidate = docker_py.DockerClient(base_url=f"unix://{sock}", timeout=120)
                    candidate.ping()
                    client = candidate
            if client is None:
                time.sleep(0.1)
        yield client, proc.pid
    finally:
        if client is not None:
            client.close()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=DOCKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"dockerd {proc.pid} still runs {DOCKER_STOP_TIMEOUT:.0f}s after SIGTERM; killing it")
                proc.kill()
                proc.wait(timeout=10)
        for point in _mounts_under([base]):
            with contextlib.suppress(OSError):
                _umount_detach(point)
        shutil.rmtree(base, ignore_errors=True)
        # Only what this dockerd created, and only when empty (rmdir fails otherwise).
        for path in sorted(new_host_dirs, key=len, reverse=True):
            for sub in (os.path.join(path, "plugins"), path) if path == DOCKER_RUN_DIR else (path,):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)


# -- measurement -----------------------------------------------------------------


def _sdk_run(client: Client) -> int:
    start = now_ns()
    result = client.run(IMAGE, ARGS)
    elapsed = now_ns() - start
    if result.exit_code != 0:
        raise RuntimeError(f"Client.run exited with {result.exit_code}: {result.stderr!r}")
    return elapsed


def _docker_run(docker_client: Any) -> int:
    start = now_ns()
    docker_client.containers.run(IMAGE, ARGS, remove=True)  # raises ContainerError on a non-zero exit
    return now_ns() - start


def _alternate(n: int, sdk: Callable[[], int], docker: Callable[[], int]) -> tuple[list[int], list[int]]:
    """Run both ``n`` times, the SDK first on even rounds and docker first on odd ones."""
    sdk_times: list[int] = []
    docker_times: list[int] = []
    for i in range(n):
        if i % 2 == 0:
            sdk_times.append(sdk())
            docker_times.append(docker())
        else:
            docker_times.append(docker())
            sdk_times.append(sdk())
    return sdk_times, docker_times


def p90(values: list[int]) -> float:
    """The 90th percentile, interpolated between samples."""
    if len(values) < 2:
        return float(values[0]) if values else 0.0
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="calls per side (default 30, quick 8)")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 30)
    warmup = 2 if args.quick else 3

    if os.geteuid() != 0:
        print("bench_run_vs_docker.py needs root (it runs containerd and dockerd)", file=sys.stderr)
        return 1
    dockerd = _ensure_dockerd()
    docker_py = _ensure_docker_py()
    foreign = _dockerd_pids()
    if foreign:
        print(
            f"note: a dockerd not started here runs (pid {sorted(foreign)}); "
            "left alone, ours has its own socket"
        )

    with (
        environment(rootfs=False) as env,
        env.client() as client,
        ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR")) as docker_containerd,
        private_dockerd(dockerd, docker_containerd.address, docker_py) as (docker_client, dockerd_pid),
    ):
        version = docker_client.version()
        info = docker_client.info()
        print(
            f"dockerd {version.get('Version')} (API {version.get('ApiVersion')}, pid {dockerd_pid}, "
            f"{info.get('Driver')}, cgroups {info.get('CgroupDriver')}) on its own containerd "
            f"{docker_containerd.version} (pid {docker_containerd.pid})"
        )
        print(f"docker-py {docker_py.__version__}, Python {platform.python_version()}")

        # One archive for both sides: docker-save format, which dockerd 20.10 loads and the SDK imports.
        archive = build_busybox_archive(os.path.join(env.tmp, "busybox-docker.tar"), name=IMAGE, fmt="docker")
        (image,) = client.images.import_archive(archive.path)
        with open(archive.path, "rb") as f:
            loaded = docker_client.images.load(f)
        docker_image = docker_client.images.get(IMAGE)
        if docker_image.id != archive.config_digest:
            raise RuntimeError(
                f"dockerd loaded {docker_image.id}, expected {archive.config_digest} ({loaded})"
            )
        print(f"image {image.name}: config {archive.config_digest[:19]} in both (docker-save archive)")

        _alternate(warmup, lambda: _sdk_run(client), lambda: _docker_run(docker_client))
        sdk_times, docker_times = _alternate(
            runs, lambda: _sdk_run(client), lambda: _docker_run(docker_client)
        )

        left_sdk = [c.id for c in client.containers()]
        left_docker = [c.id for c in docker_client.containers.list(all=True)]
        if left_sdk or left_docker:
            raise RuntimeError(f"containers left behind: SDK {left_sdk}, docker {left_docker}")

    ratio = median(sdk_times) / median(docker_times)
    low, high = ratio_ci(sdk_times, docker_times)
    rows = [
        (
            name,
            len(times),
            fmt_ms(median(times)),
            fmt_ms(p90(times)),
            fmt_ms(min(times)),
            f"{median(times) / median(docker_times):.3f}x",
        )
        for name, times in (
            ("containerd-client Client.run", sdk_times),
            ("docker-py containers.run(remove=True)", docker_times),
        )
    ]
    print()
    print_table(
        ("path", "calls", "median ms", "p90 ms", "min ms", "vs docker-py"),
        rows,
        title=f"run {' '.join(ARGS)!r} in busybox, {warmup} warm-up + {runs} calls each, alternating",
    )
    print()
    print(f"p90 SDK / docker-py: {p90(sdk_times) / p90(docker_times):.3f}x")
    print(f"median SDK / docker-py: {ratio:.3f}x, 95% CI {low:.3f}x-{high:.3f}x (bootstrap over call pairs)")
    ratio_line("run true: Client.run / docker-py containers.run (median)", ratio, TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
