"""``containerd-client run --rm busybox true`` as a whole process, against ``ctr`` and ``docker``.

Run it as ``python benchmarks/bench_cli.py [--quick] [--runs N]`` (as root).
Each call is a new process, timed from ``fork`` to its exit, so Python's start,
the imports, the connection, the run and the deletion all count:

* ours: ``python -m containerd_client -a <sock> -n <ns> run --rm <image> true``
  on a private containerd (:func:`_common.environment`);
* ctr: ``ctr --address <sock> --namespace <ns> run --rm <image> <id> true`` on
  the same daemon, namespace and image (the daemon's own ``ctr`` when its
  ``bin_dir`` has one);
* docker: ``docker -H unix://<sock> run --rm <image> true`` on a private
  dockerd 20.10 (``bench_run_vs_docker.private_dockerd``: own roots and
  socket, no bridge, its own containerd of the same binary).

All three give the container a fresh network namespace with only ``lo`` and
no TTY. The same busybox archive (docker-save format) is imported into both
daemons. After a warm-up the three alternate, each round in a rotated order;
the table gives medians, p90, the ratios of medians and the CPU time
(user + system) of the client process alone (its own work, apart from the
daemon's and from the machine's load). Targets: ours <=
1.25x ctr and <= 0.6x docker. Also printed, for the budget: a bare
``python -c pass``, ``python -m containerd_client --help`` and ``version``.
A missed target is printed, never a failure; exit status 1 only on errors.
dockerd and both containerds are stopped by their PIDs at the end.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import environment, fmt_ms, make_parser, median, now_ns, print_table, ratio_line
from bench_run_vs_docker import _dockerd_pids, _ensure_docker_py, _ensure_dockerd, private_dockerd

from containerd_client.testing import ContainerdDaemon, build_busybox_archive

IMAGE = "localhost/containerd-client/bench-cli-busybox:1"
TARGET_CTR = 1.25
TARGET_DOCKER = 0.6
ROOT = Path(__file__).resolve().parent.parent


#: CPU time (user + system, ns) of each timed process, by command name: the
#: client's own work, apart from the daemon's and the machine's load.
CPU: dict[str, list[int]] = {}


def _time(cmd: Sequence[str], env: dict[str, str] | None = None, *, key: str = "") -> int:
    start = now_ns()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = now_ns() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode()[-2000:]}")
    if key:
        CPU.setdefault(key, []).append(int((usage.ru_utime + usage.ru_stime) * 1e9))
    return elapsed


def p90(values: list[int]) -> float:
    if len(values) < 2:
        return float(values[0]) if values else 0.0
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="calls per side (default 20, quick 6)")
    args = parser.parse_args()
    runs = args.runs or (6 if args.quick else 20)
    warmup = 2
    if os.geteuid() != 0:
        print("bench_cli.py needs root (it runs containerd and dockerd)", file=sys.stderr)
        return 1
    dockerd = _ensure_dockerd()
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        print("the docker command line is missing (apt-get install docker.io)", file=sys.stderr)
        return 1
    docker_py = _ensure_docker_py()
    if _dockerd_pids():
        print("note: a dockerd not started here runs; left alone, ours has its own socket")

    with (
        environment(rootfs=False) as env,
        env.client() as client,
        ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR")) as docker_containerd,
        private_dockerd(dockerd, docker_containerd.address, docker_py) as (docker_client, dockerd_pid),
    ):
        ctr = os.path.join(env.daemon.bin_dir, "ctr")
        if not os.path.isfile(ctr):
            ctr = shutil.which("ctr") or "ctr"
        # private_dockerd listens on the socket its command line names (-H unix://...).
        with open(f"/proc/{dockerd_pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        docker_sock = next((a.decode() for a in argv if a.startswith(b"unix://")), None)
        if docker_sock is None:
            raise RuntimeError("could not find the private dockerd's socket")
        version = docker_client.version()
        cli_version = subprocess.run([docker_cli, "--version"], capture_output=True, text=True, check=False)
        print(f"dockerd {version.get('Version')} (pid {dockerd_pid}); {cli_version.stdout.strip()}")
        print(f"ctr {ctr}; Python {platform.python_version()} ({sys.executable})")

        archive = build_busybox_archive(os.path.join(env.tmp, "busybox-docker.tar"), name=IMAGE, fmt="docker")
        client.images.import_archive(archive.path)
        with open(archive.path, "rb") as f:
            docker_client.images.load(f)

        # As after `pip install` (which compiles the package): byte code cached,
        # here under a folder of our own (this machine sets PYTHONDONTWRITEBYTECODE).
        ours_env = {**os.environ, "CONTAINERD_CLIENT_STATE_DIR": env.state_dir}
        ours_env.pop("PYTHONDONTWRITEBYTECODE", None)
        ours_env["PYTHONPYCACHEPREFIX"] = os.path.join(env.tmp, "pycache")
        ours = [sys.executable, "-m", "containerd_client", "-a", env.address, "-n", env.namespace]
        counter = iter(range(1_000_000))

        def run_ours() -> int:
            return _time([*ours, "run", "--rm", IMAGE, "true"], ours_env, key="ours")

        def run_ctr() -> int:
            cid = f"bench-ctr-{next(counter)}"
            where = ["--address", env.address, "--namespace", env.namespace]
            return _time([ctr, *where, "run", "--rm", IMAGE, cid, "true"], key="ctr")

        def run_docker() -> int:
            return _time([docker_cli, "-H", docker_sock, "run", "--rm", IMAGE, "true"], key="docker")

        sides = [("ours", run_ours), ("ctr", run_ctr), ("docker", run_docker)]
        times: dict[str, list[int]] = {name: [] for name, _ in sides}
        for i in range(warmup + runs):
            order = sides[i % 3 :] + sides[: i % 3]
            for name, fn in order:
                elapsed = fn()
                if i >= warmup:
                    times[name].append(elapsed)

        # The budget: what a process costs before any container work.
        extra = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import containerd_client'": [sys.executable, "-c", "import containerd_client"],
            "python -m containerd_client --help": [*ours, "--help"],
            "python -m containerd_client version": [*ours, "version"],
        }
        n = max(5, runs // 2)
        budget = {name: [_time(cmd, ours_env, key=name) for _ in range(n)] for name, cmd in extra.items()}

        left = [c.id for c in client.containers()]
        left_docker = [c.id for c in docker_client.containers.list(all=True)]
        if left or left_docker:
            raise RuntimeError(f"containers left behind: ours/ctr {left}, docker {left_docker}")

    base_ctr, base_docker = median(times["ctr"]), median(times["docker"])
    rows = [
        (
            label,
            len(times[name]),
            fmt_ms(median(times[name])),
            fmt_ms(p90(times[name])),
            fmt_ms(min(times[name])),
            f"{median(times[name]) / base_ctr:.2f}x",
            f"{median(times[name]) / base_docker:.2f}x",
            fmt_ms(median(CPU[name][warmup:])),
        )
        for name, label in (
            ("ours", "containerd-client run --rm"),
            ("ctr", "ctr run --rm"),
            ("docker", "docker run --rm"),
        )
    ]
    print()
    print_table(
        ("process", "runs", "median ms", "p90 ms", "min ms", "vs ctr", "vs docker", "client CPU ms"),
        rows,
        title=f"run --rm busybox true, whole process, {warmup} warm-up + {runs} rounds, rotating order",
    )
    print()
    print_table(
        ("budget", "runs", "median ms", "min ms", "CPU ms"),
        [
            (name, len(v), fmt_ms(median(v)), fmt_ms(min(v)), fmt_ms(median(CPU[name])))
            for name, v in budget.items()
        ],
    )
    print()
    ours_median = median(times["ours"])
    ratio_line("run --rm true: containerd-client / ctr (median)", ours_median / base_ctr, TARGET_CTR)
    ratio_line("run --rm true: containerd-client / docker (median)", ours_median / base_docker, TARGET_DOCKER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
