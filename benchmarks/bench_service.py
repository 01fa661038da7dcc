"""A service per test: busybox ``httpd`` with a published port, ours against testcontainers-python.

Run it as ``python benchmarks/bench_service.py [--quick]`` (as root).
Everything runs on this machine, on 127.0.0.1, and is started here:

* ours: a private containerd (:func:`_common.environment`), the busybox image
  of :func:`containerd_client.testing.build_busybox_archive` with
  ``/www/index.html`` and ``httpd -f -p 80 -h /www`` as its command, and per
  service ``create_container(network="bridge", ports={80: None})``,
  ``new_task()``, ``start()``, ``wait_for(wait.http(host_port(80)))``, then
  ``stop(timeout=0)`` (httpd as pid 1 ignores SIGTERM; testcontainers'
  ``stop()`` is ``remove(force=True)``, a SIGKILL too), task and container
  delete (which runs CNI DEL). The SDK's network uses a subnet and bridge of
  its own (``NET_SUBNET``/``NET_BRIDGE``), so it never shares IPAM data with
  tests running next to it.
* theirs: testcontainers-python 4.15 on Debian's dockerd 20.10 (docker.io),
  started here with its own roots, socket and containerd, bridge networking
  on a bridge this script creates (``ip link add``; dockerd's ``--bridge=NAME``
  needs it to exist), ``--iptables=true``, ``--ip=127.0.0.1`` (published
  ports answer on 127.0.0.1 only), ``TESTCONTAINERS_RYUK_DISABLED=true`` (its
  reaper image cannot be pulled here), ``DOCKER_HOST`` on that socket and
  ``TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1``. The same archive (docker-save
  format) is loaded into dockerd. Per service:
  ``DockerContainer(image).with_exposed_ports(80).waiting_for(HttpWaitStrategy(80))``,
  ``start()``, ``stop()``. Its poll interval is set to ``TC_POLL`` (10 ms;
  its default is 1 s), so neither side waits on a coarse timer.

Two tables:

1. one service, alternating (ours first on even rounds): time from asking
   for it to the first HTTP 200, and start plus stop (until deleted), medians
   and ratios; ours also per step (create, new_task, which waits for CNI ADD,
   start, first 200, stop, task delete, container delete with CNI DEL).
   Targets: ours <= 0.5x on both.
2. a 30-test pytest suite where every test gets a fresh httpd service (a
   function-scoped fixture), written once with the SDK and once with
   testcontainers, generated into a temp folder and run with a nested
   ``python -m pytest``, alternating; the wall time of each run. Target <= 0.4x.

At the end (also on errors and Ctrl-C): dockerd, both containerds (by PID),
the bridge made here, the SDK's benchmark bridge if it was not there before,
and the iptables chains and rules dockerd added (``DOCKER*`` and the bridge's
rules that were not there before) are removed. A missed target is printed,
never a failure; exit status 1 only on errors.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import version as dist_version
from types import ModuleType
from typing import Any

from _common import environment, fmt_ms, make_parser, median, now_ns, print_table, ratio_ci, ratio_line
from bench_run_vs_docker import _dockerd_pids, _ensure_docker_py, _ensure_dockerd, private_dockerd

from containerd_client import Client, network, wait
from containerd_client.network import NetworkConfig
from containerd_client.testing import ContainerdDaemon, build_busybox_archive

TARGET_READY = 0.5
TARGET_CYCLE = 0.5
TARGET_SUITE = 0.4
SUITE_TESTS = 30
IMAGE = "localhost/containerd-client/bench-httpd:1"
PAGE = b"hello from the benchmark\n"
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]
#: dockerd's bridge, made and removed here (name <= 15 characters).
DOCKER_BRIDGE = "ccbtcbr0"
DOCKER_BRIDGE_ADDR = "10.219.0.1/24"
#: The SDK's own bridge network for the benchmark, apart from the tests' default one.
NET_SUBNET = "10.218.0.0/16"
NET_BRIDGE = "ccbench0"
TC_POLL = 0.01
READY_TIMEOUT = 30.0
#: testcontainers' settings: no reaper, published ports on 127.0.0.1 through the mapped port
#: (this machine looks like a container to it, which would make it dial dockerd's gateway).
TC_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
    "TC_POOLING_INTERVAL": str(TC_POLL),
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- setup -----------------------------------------------------------------------


def _ensure_testcontainers() -> ModuleType:
    """testcontainers-python 4.15; installs it with pip when it is missing."""
    try:
        return importlib.import_module("testcontainers")
    except ImportError:
        pass
    print("testcontainers not found: installing it (pip install 'testcontainers==4.15.*') ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "testcontainers==4.15.*"],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    importlib.invalidate_caches()
    return importlib.import_module("testcontainers")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _iptables_rules() -> dict[str, list[str]]:
    """``iptables -S`` of the nat and filter tables."""
    out = {}
    for table in ("nat", "filter"):
        result = subprocess.run(
            ["iptables", "-t", table, "-S"],
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        out[table] = result.stdout.splitlines()
    return out


def _remove_docker_iptables(before: dict[str, list[str]]) -> list[str]:
    """Delete the rules and chains dockerd added (``DOCKER*`` or its bridge) since ``before``."""
    removed = []
    after = _iptables_rules()
    for table, lines in after.items():
        old = set(before.get(table, []))
        new = [line for line in lines if line not in old and ("DOCKER" in line or DOCKER_BRIDGE in line)]
        for line in reversed([line for line in new if line.startswith("-A ")]):
            args = shlex.split(line)
            args[0] = "-D"
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("iptables", "-t", table, *args)
                removed.append(f"{table}: {line}")
        for line in new:
            if line.startswith("-N "):
                chain = line.split()[1]
                with contextlib.suppress(subprocess.CalledProcessError):
                    _run("iptables", "-t", table, "-F", chain)
                    _run("iptables", "-t", table, "-X", chain)
                    removed.append(f"{table}: chain {chain}")
    return removed


@contextlib.contextmanager
def docker_bridge() -> Iterator[None]:
    """Create dockerd's bridge (dockerd's ``--bridge=NAME`` needs it); remove it after."""
    if _link_exists(DOCKER_BRIDGE):
        raise RuntimeError(f"a link {DOCKER_BRIDGE} exists already; not touching it")
    try:
        _run("ip", "link", "add", DOCKER_BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", DOCKER_BRIDGE_ADDR, "dev", DOCKER_BRIDGE)
        _run("ip", "link", "set", DOCKER_BRIDGE, "up")
        yield
    finally:
        if _link_exists(DOCKER_BRIDGE):
            _run("ip", "link", "del", DOCKER_BRIDGE)


@contextlib.contextmanager
def iptables_restored() -> Iterator[None]:
    """Remove dockerd's iptables chains and rules at the end."""
    before = _iptables_rules()
    try:
        yield
    finally:
        removed = _remove_docker_iptables(before)
        if removed:
            print(f"removed {len(removed)} iptables rules/chains dockerd left")


@contextlib.contextmanager
def sdk_bridge_removed() -> Iterator[None]:
    """Remove the SDK's benchmark bridge at the end if it was not there before."""
    existed = _link_exists(NET_BRIDGE)
    try:
        yield
    finally:
        if not existed and _link_exists(NET_BRIDGE):
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "link", "del", NET_BRIDGE)


@contextlib.contextmanager
def sdk_leftovers_removed(client: Client, state_dir: str) -> Iterator[None]:
    """At the end, also after an error: clean up every container of ours and detach every network.

    The private daemon's teardown kills shims and removes the state folder, but
    it runs no CNI DEL: without this, a run that failed midway left its
    containers' iptables rules (a DNAT for the picked host port, which a later
    run may pick again and never reach), veths and namespace mounts behind.
    """
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            for container in client.containers():
                try:
                    container.cleanup()
                except Exception as exc:  # report and go on with the rest
                    print(f"cleanup of {container.id} failed: {exc!r}")
        for namespace, container_id in network.attachments(state_dir):
            try:
                network.detach(state_dir, namespace, container_id)
            except Exception as exc:
                print(f"network detach of {namespace}/{container_id} failed: {exc!r}")


def _docker_socket(pid: int) -> str:
    """The unix socket dockerd ``pid`` was told to serve (``-H unix://...``)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().decode().split("\0")
    return args[args.index("-H") + 1]


# -- one service -----------------------------------------------------------------

STEPS = ("create", "new_task (+CNI ADD)", "start", "first 200", "stop", "task delete", "delete (+CNI DEL)")


def _ours(client: Client, n: int, steps: dict[str, list[int]]) -> tuple[int, int]:
    """One service with the SDK: (ns to the first 200, ns until deleted, or stopped when the
    client tears down in the background)."""
    t0 = now_ns()
    container = client.create_container(f"svc-{n}", image=IMAGE, network="bridge", ports={80: None})
    t1 = now_ns()
    task = container.new_task()
    t2 = now_ns()
    task.start()
    t3 = now_ns()
    task.wait_for(wait.http(container.host_port(80)), timeout=READY_TIMEOUT)
    t4 = now_ns()
    task.stop(timeout=0)
    t5 = now_ns()

    def finish() -> None:
        t6 = now_ns()
        task.delete()
        t7 = now_ns()
        container.delete()
        t8 = now_ns()
        steps.setdefault(STEPS[5], []).append(t7 - t6)
        steps.setdefault(STEPS[6], []).append(t8 - t7)

    for name, a, b in zip(STEPS[:5], (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
        steps.setdefault(name, []).append(b - a)
    if client.background_teardown and client._submit_teardown(container.id, f"delete {container.id}", finish):
        return t4 - t0, t5 - t0
    finish()
    return t4 - t0, now_ns() - t0


def _theirs(tc: Any, client: Client) -> tuple[int, int]:
    """One service with testcontainers: (ns to the first 200, ns until removed)."""
    failures = client.join_teardowns()  # ours' background deletions, untimed, never overlapping this side
    if failures:
        raise RuntimeError(f"background teardown failed: {failures}")
    t0 = now_ns()
    container = (
        tc.DockerContainer(IMAGE)
        .with_exposed_ports(80)
        .waiting_for(tc.HttpWaitStrategy(80).with_poll_interval(TC_POLL).with_startup_timeout(READY_TIMEOUT))
    )
    container.start()
    t1 = now_ns()
    container.stop()
    t2 = now_ns()
    return t1 - t0, t2 - t0


@contextlib.contextmanager
def cni_timed(times: dict[str, list[int]]) -> Iterator[None]:
    """Time CNI ADD (whole, on its thread), DEL (``network.detach``) and each plugin run, in process.

    Wraps ``PendingAttachment._run``, ``network.detach`` and ``network._cni._exec``
    for the duration (the benchmark's own process only; the package is unchanged).
    """
    from containerd_client import network
    from containerd_client.network import _cni

    run, detach, exec_ = network.PendingAttachment._run, network.detach, _cni._exec

    def timed_run(self: Any) -> None:
        start = now_ns()
        try:
            run(self)
        finally:
            times.setdefault("CNI ADD (thread, all plugins)", []).append(now_ns() - start)

    def timed_detach(*args: Any, **kwargs: Any) -> bool:
        start = now_ns()
        try:
            return detach(*args, **kwargs)
        finally:
            times.setdefault("CNI DEL + netns removal", []).append(now_ns() - start)

    def timed_exec(plugin: str, binary: str, conf: Any, env: Any) -> Any:
        start = now_ns()
        try:
            return exec_(plugin, binary, conf, env)
        finally:
            times.setdefault(f"  {env['CNI_COMMAND']} {plugin}", []).append(now_ns() - start)

    network.PendingAttachment._run = timed_run  # type: ignore[method-assign]
    network.detach = timed_detach
    _cni._exec = timed_exec
    try:
        yield
    finally:
        network.PendingAttachment._run = run  # type: ignore[method-assign]
        network.detach = detach
        _cni._exec = exec_


def _alternate(n: int, ours: Callable[[int], Any], theirs: Callable[[], Any]) -> tuple[list[Any], list[Any]]:
    a: list[Any] = []
    b: list[Any] = []
    for i in range(n):
        if i % 2 == 0:
            a.append(ours(i))
            b.append(theirs())
        else:
            b.append(theirs())
            a.append(ours(i))
    return a, b


# -- the suite -------------------------------------------------------------------

OUR_SUITE = """
import os
import urllib.request

import pytest

from containerd_client import Client, wait
from containerd_client.network import NetworkConfig
from containerd_client.testing import start_service

IMAGE = {image!r}


@pytest.fixture(scope="session")
def client():
    config = NetworkConfig(
        subnet={subnet!r}, bridge={bridge!r}, port_forwarding=os.environ["BENCH_FORWARDING"],
        namespace_pool=int(os.environ["BENCH_NETNS_POOL"]),
    )
    with Client(
        os.environ["BENCH_ADDRESS"], os.environ["BENCH_NAMESPACE"],
        state_dir=os.environ["BENCH_STATE"], network_config=config,
        background_teardown=os.environ["BENCH_TEARDOWN"] == "background",
    ) as client:
        yield client
        assert client.join_teardowns() == []


@pytest.fixture
def httpd(client, request):
    # The plugin's containerd_service fixture is this on a daemon of its own.
    name = request.node.name.replace("[", "-").strip("]")
    with start_service(client, IMAGE, name=name, ports=[80], wait=wait.http(80), stop_timeout=0) as svc:
        yield svc.url(80)


@pytest.mark.parametrize("n", range({tests}))
def test_page(httpd, n):
    with urllib.request.urlopen(httpd, timeout=10) as response:
        assert response.read() == {page!r}
"""

THEIR_SUITE = """
import urllib.request

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

IMAGE = {image!r}


@pytest.fixture
def httpd():
    strategy = HttpWaitStrategy(80).with_poll_interval({poll!r}).with_startup_timeout(30)
    with DockerContainer(IMAGE).with_exposed_ports(80).waiting_for(strategy) as container:
        yield f"http://{{container.get_container_host_ip()}}:{{container.get_exposed_port(80)}}/"


@pytest.mark.parametrize("n", range({tests}))
def test_page(httpd, n):
    with urllib.request.urlopen(httpd, timeout=10) as response:
        assert response.read() == {page!r}
"""


def _write_suites(folder: str, tests: int) -> tuple[str, str]:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "pytest.ini"), "w", encoding="utf-8") as f:
        f.write("[pytest]\n")
    ours = os.path.join(folder, "test_ours.py")
    theirs = os.path.join(folder, "test_testcontainers.py")
    fields = {"image": IMAGE, "page": PAGE, "tests": tests}
    with open(ours, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(OUR_SUITE).format(subnet=NET_SUBNET, bridge=NET_BRIDGE, **fields))
    with open(theirs, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(THEIR_SUITE).format(poll=TC_POLL, **fields))
    return ours, theirs


_DURATION = re.compile(r"^([0-9.]+)s (setup|call|teardown) ")


def _pytest(path: str, env: dict[str, str], tests: int, phases: dict[str, list[float]]) -> int:
    """Run one generated suite with a nested pytest; its wall time in ns.

    Each test's setup/call/teardown seconds (pytest's ``--durations=0``) are
    added to ``phases``; the sum of all three per run goes in ``phases["in tests"]``.
    """
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:containerd_client",
        "--durations=0", "--durations-min=0", path,
    ]  # fmt: skip
    start = now_ns()
    result = subprocess.run(
        cmd,
        cwd=os.path.dirname(path),
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = now_ns() - start
    if result.returncode != 0 or f"{tests} passed" not in result.stdout:
        raise RuntimeError(
            f"{os.path.basename(path)} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )
    total = 0.0
    for line in result.stdout.splitlines():
        match = _DURATION.match(line)
        if match:
            phases.setdefault(match.group(2), []).append(float(match.group(1)))
            total += float(match.group(1))
    phases.setdefault("in tests", []).append(total)
    return elapsed


# -- main ------------------------------------------------------------------------


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--runs", type=int, default=0, help="services per side (default 20, quick 6)")
    parser.add_argument("--suite-runs", type=int, default=0, help="suite runs per side (default 3, quick 1)")
    parser.add_argument(
        "--teardown",
        choices=("inline", "background"),
        default="background",
        help="ours: delete task and container (with CNI DEL) on the client's background teardown "
        "pool after stop (default; what the pytest plugin's service fixture does; start+stop then "
        "ends when stop returns), or inline",
    )
    parser.add_argument(
        "--forwarding",
        choices=("proxy", "portmap"),
        default="proxy",
        help="ours: published ports through the in-process proxy (default; the pytest plugin's "
        "networks use it) or the portmap CNI plugin's iptables DNAT",
    )
    parser.add_argument(
        "--netns-pool",
        type=int,
        default=4,
        help="ours: attached network namespaces kept for the next service (NetworkConfig."
        "namespace_pool; default 4, as the pytest plugin's session client; 0 attaches each anew; "
        "pooling needs --forwarding proxy)",
    )
    args = parser.parse_args()
    runs = args.runs or (6 if args.quick else 20)
    suite_runs = args.suite_runs or (1 if args.quick else 3)
    warmup = 2

    if os.geteuid() != 0:
        print("bench_service.py needs root (it runs containerd, dockerd and CNI)", file=sys.stderr)
        return 1
    dockerd = _ensure_dockerd()
    docker_py = _ensure_docker_py()
    os.environ.update(TC_ENV)  # testcontainers reads its settings when imported
    _ensure_testcontainers()
    foreign = _dockerd_pids()
    if foreign:
        print(f"note: a dockerd not started here runs (pid {sorted(foreign)}); left alone")

    network_args = (
        f"--bridge={DOCKER_BRIDGE}",
        "--iptables=true",
        "--ip6tables=false",
        "--ip=127.0.0.1",
    )
    with (
        iptables_restored(),
        sdk_bridge_removed(),
        docker_bridge(),
        environment(rootfs=False) as env,
        Client(
            env.address,
            env.namespace,
            state_dir=env.state_dir,
            network_config=NetworkConfig(
                subnet=NET_SUBNET,
                bridge=NET_BRIDGE,
                port_forwarding=args.forwarding,
                namespace_pool=args.netns_pool,
            ),
            background_teardown=args.teardown == "background",
        ) as client,
        sdk_leftovers_removed(client, env.state_dir),
        ContainerdDaemon(bin_dir=os.environ.get("CONTAINERD_BIN_DIR")) as docker_containerd,
        private_dockerd(dockerd, docker_containerd.address, docker_py, network_args) as (
            docker_client,
            dockerd_pid,
        ),
    ):
        version = docker_client.version()
        print(
            f"dockerd {version.get('Version')} (pid {dockerd_pid}, bridge {DOCKER_BRIDGE}, iptables) "
            f"on its own containerd {docker_containerd.version} (pid {docker_containerd.pid})"
        )
        print(
            f"testcontainers {dist_version('testcontainers')}, docker-py {docker_py.__version__}, "
            f"Python {platform.python_version()}; "
            f"load average {os.getloadavg()[0]:.2f} (2 shared cores: expect noise)"
        )
        archive = build_busybox_archive(
            os.path.join(env.tmp, "httpd-docker.tar"),
            name=IMAGE,
            fmt="docker",
            cmd=HTTPD,
            extra_layers=[{"/www/index.html": PAGE}],
        )
        client.images.import_archive(archive.path)
        with open(archive.path, "rb") as f:
            docker_client.images.load(f)
        if docker_client.images.get(IMAGE).id != archive.config_digest:
            raise RuntimeError("dockerd loaded a different image")

        sock = _docker_socket(dockerd_pid)
        tc_env = {**TC_ENV, "DOCKER_HOST": sock}
        os.environ.update(tc_env)
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import HttpWaitStrategy

        tc = type("tc", (), {"DockerContainer": DockerContainer, "HttpWaitStrategy": HttpWaitStrategy})
        print(f"testcontainers on {sock}, ryuk disabled, poll {TC_POLL * 1000:.0f} ms")

        # -- 1: one service --
        steps: dict[str, list[int]] = {}
        counter = iter(range(10**6))
        _alternate(warmup, lambda i: _ours(client, next(counter), {}), lambda: _theirs(tc, client))
        load_before = os.getloadavg()[0]
        cni: dict[str, list[int]] = {}
        with cni_timed(cni):
            ours, theirs = _alternate(
                runs, lambda i: _ours(client, next(counter), steps), lambda: _theirs(tc, client)
            )
        if client.join_teardowns():
            raise RuntimeError("background teardown failed")
        load_after = os.getloadavg()[0]
        left = [c.id for c in client.containers()] + [c.id for c in docker_client.containers.list(all=True)]
        if left:
            raise RuntimeError(f"containers left behind: {left}")

        ready_ours = [r for r, _ in ours]
        ready_theirs = [r for r, _ in theirs]
        cycle_ours = [c for _, c in ours]
        cycle_theirs = [c for _, c in theirs]
        print()
        print_table(
            (
                "busybox httpd, port 80 published",
                "runs",
                "ready median ms",
                "ready min ms",
                "start+stop median ms",
            ),
            [
                (
                    "ours (SDK, CNI bridge)",
                    runs,
                    fmt_ms(median(ready_ours)),
                    fmt_ms(min(ready_ours)),
                    fmt_ms(median(cycle_ours)),
                ),
                (
                    "testcontainers 4.15 on dockerd 20.10",
                    runs,
                    fmt_ms(median(ready_theirs)),
                    fmt_ms(min(ready_theirs)),
                    fmt_ms(median(cycle_theirs)),
                ),
            ],
            title=f"one service, {warmup} warm-up + {runs} each, alternating, "
            f"ours' teardown {args.teardown}, ports by {args.forwarding}, "
            f"netns pool {args.netns_pool} "
            f"(load {load_before:.1f} -> {load_after:.1f})",
        )
        print()
        print_table(
            ("ours, step", "median ms", "min ms"),
            [(name, fmt_ms(median(steps[name])), fmt_ms(min(steps[name]))) for name in STEPS]
            + [(name, fmt_ms(median(cni[name])), fmt_ms(min(cni[name]))) for name in cni],
            title="ours per step (new_task waits for CNI ADD, run alongside the record and Tasks.Create)",
        )
        print()
        r_ready = median(ready_ours) / median(ready_theirs)
        r_cycle = median(cycle_ours) / median(cycle_theirs)
        lo, hi = ratio_ci(ready_ours, ready_theirs)
        print(f"ready ratio 95% CI {lo:.2f}x-{hi:.2f}x; start+stop ", end="")
        lo, hi = ratio_ci(cycle_ours, cycle_theirs)
        print(f"ratio 95% CI {lo:.2f}x-{hi:.2f}x (bootstrap over run pairs)")

        # -- 2: the suite --
        folder = os.path.join(env.tmp, "suites")
        our_file, their_file = _write_suites(folder, SUITE_TESTS)
        nested_env = {
            **os.environ,
            **tc_env,
            "PYTHONPATH": ROOT,
            "BENCH_ADDRESS": env.address,
            "BENCH_NAMESPACE": env.namespace,
            "BENCH_STATE": env.state_dir,
            "BENCH_TEARDOWN": args.teardown,
            "BENCH_FORWARDING": args.forwarding,
            "BENCH_NETNS_POOL": str(args.netns_pool),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        our_phases: dict[str, list[float]] = {}
        their_phases: dict[str, list[float]] = {}
        suite_ours, suite_theirs = _alternate(
            suite_runs,
            lambda i: _pytest(our_file, nested_env, SUITE_TESTS, our_phases),
            lambda: _pytest(their_file, nested_env, SUITE_TESTS, their_phases),
        )
        left = [c.id for c in client.containers()] + [c.id for c in docker_client.containers.list(all=True)]
        if left:
            raise RuntimeError(f"containers left behind by the suites: {left}")
        print()
        print_table(
            ("pytest suite, 30 tests, fresh httpd each", "runs", "median s", "min s"),
            [
                (
                    "ours (start_service fixture helper)",
                    suite_runs,
                    f"{median(suite_ours) / 1e9:.2f}",
                    f"{min(suite_ours) / 1e9:.2f}",
                ),
                (
                    "testcontainers 4.15 on dockerd 20.10",
                    suite_runs,
                    f"{median(suite_theirs) / 1e9:.2f}",
                    f"{min(suite_theirs) / 1e9:.2f}",
                ),
            ],
            title="whole nested `python -m pytest` runs (start, collection, 30 services), alternating, "
            f"ours' teardown {args.teardown}, ports by {args.forwarding}, netns pool {args.netns_pool}",
        )
        print(
            "each run (s): ours "
            + " ".join(f"{t / 1e9:.2f}" for t in suite_ours)
            + "; testcontainers "
            + " ".join(f"{t / 1e9:.2f}" for t in suite_theirs)
        )
        print()
        print_table(
            ("per test (pytest --durations)", "ours median ms", "testcontainers median ms"),
            [
                (
                    phase,
                    f"{median(our_phases.get(phase, [])) * 1e3:.0f}",
                    f"{median(their_phases.get(phase, [])) * 1e3:.0f}",
                )
                for phase in ("setup", "call", "teardown")
            ]
            + [
                (
                    "sum of all phases per run (s)",
                    f"{median(our_phases['in tests']):.2f}",
                    f"{median(their_phases['in tests']):.2f}",
                )
            ],
        )
        print()
        ratio_line("service ready: ours / testcontainers (median)", r_ready, TARGET_READY)
        ratio_line("service start+stop: ours / testcontainers (median)", r_cycle, TARGET_CYCLE)
        r_suite = median(suite_ours) / median(suite_theirs)
        ratio_line("30-test service suite: ours / testcontainers (median)", r_suite, TARGET_SUITE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
