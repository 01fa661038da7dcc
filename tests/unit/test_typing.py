"""The public API as mypy sees it: a user's script type-checks, and common mistakes do not.

One ``mypy --strict`` run checks several small user files against this
checkout's package (not an installed copy): one that uses the API as the
README does and must pass, and one per mistake that must fail with the
expected error code on the marked line.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

import containerd_client

mypy_api = pytest.importorskip("mypy.api")

GOOD = """
    import attrs

    from containerd_client import (
        Client, ExecResult, ExitStatus, Image, Metrics, PullOptions, cio,
    )
    from containerd_client.events import Event, ExecutorStats, TaskExit


    def on_event(event: Event) -> None:
        if isinstance(event.payload, TaskExit):
            print(event.payload.exit_status, event.container_id)


    def main() -> None:
        with Client() as client:
            result: ExecResult = client.run("busybox", "echo hi", platform="linux/amd64")
            print(result.exit_code, result.stdout.decode())
            pull_options = PullOptions(via="client", timeout=60.0)
            client.run("busybox", ["sh", "-c", "exit 3"], pull_options=pull_options)
            image: Image = client.pull("busybox", platform="linux/arm64", plain_http=False, timeout=30.0)
            options = attrs.evolve(PullOptions(), unpack=False)
            print(options.unpack, image.name)
            with client.create_container("c1", image=image, args="sleep 5", labels={"a": "1"}) as c:
                labels: dict[str, str] = c.set_labels({"b": "2", "a": ""})
                out = cio.Capture()
                task = c.new_task(stdin=b"input", stdout=out, stderr=None)
                task.start()
                m: Metrics = task.stats()
                if m.memory is not None and m.cpu is not None:
                    print(m.memory.usage, m.memory.limit, m.cpu.usage_ns)
                exec_result = task.run("cat /etc/hostname")
                print(exec_result.exit_code)
                status: ExitStatus = task.wait(10)
                print(status.exit_code, status.ok, labels, out.getvalue())
            content_labels: dict[str, str] = client.content.set_labels("sha256:0", {"x": ""})
            snapshot_labels: dict[str, str] = client.snapshots().set_labels("key", {"x": "1"})
            image_labels: dict[str, str] = client.images.set_labels("busybox", {"x": "1"})
            namespace_labels: dict[str, str] = client.namespaces.set_labels("default", {"x": "1"})
            print(content_labels, snapshot_labels, image_labels, namespace_labels)
            client.events.add_handler(on_event)
            stats: ExecutorStats = client.events.stats()
            print(stats.pending, client.events.close(1.0))
"""

#: name -> (source, the mypy error code expected on the line marked ``# <-``)
BAD = {
    "stats_typo": (
        """
        from containerd_client import Task

        def f(task: Task) -> None:
            print(task.stats().memroy)  # <-
        """,
        "attr-defined",
    ),
    "platform_int": (
        """
        from containerd_client import Client

        def f(client: Client) -> None:
            client.run("busybox", ["true"], platform=12345)  # <-
        """,
        "arg-type",
    ),
    "create_platform_int": (
        """
        from containerd_client import Client

        def f(client: Client) -> None:
            client.create_container("c1", image="busybox", platform=12345)  # <-
        """,
        "arg-type",
    ),
    "run_args_int": (
        """
        from containerd_client import Client

        def f(client: Client) -> None:
            client.run("busybox", 12345)  # <-
        """,
        "arg-type",
    ),
    "pull_keyword_typo": (
        """
        from containerd_client import Client

        def f(client: Client) -> None:
            client.pull("busybox", platfrom="linux/arm64")  # <-
        """,
        "call-arg",
    ),
    "stdout_int": (
        """
        from containerd_client import Container

        def f(c: Container) -> None:
            c.new_task(stdout=1)  # <-
        """,
        "arg-type",
    ),
    "payload_unnarrowed": (
        """
        from containerd_client import Event

        def f(event: Event) -> None:
            print(event.payload.exit_status)  # <-
        """,
        "union-attr",
    ),
}

_LINE = re.compile(r"^(?P<file>[^:]+\.py):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, str]]]:
    """Run mypy once on every user file: file stem -> [(line, error code)]."""
    root = tmp_path_factory.mktemp("typing")
    files = [root / "good.py"]
    files[0].write_text(textwrap.dedent(GOOD))
    for name, (source, _) in BAD.items():
        path = root / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        files.append(path)
    config = root / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\n\n"
        "[mypy-containerd_client._pb.*]\nignore_errors = True\nfollow_imports = silent\n"
    )
    # This checkout's package, ahead of any installed copy.
    checkout = str(Path(containerd_client.__file__).resolve().parent.parent)
    old = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = checkout
    try:
        stdout, stderr, _ = mypy_api.run(
            ["--config-file", str(config), "--cache-dir", str(root / "cache"), "--no-error-summary"]
            + [str(f) for f in files]
        )
    finally:
        if old is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = old
    assert not stderr, stderr
    found: dict[str, list[tuple[int, str]]] = {p.stem: [] for p in files}
    for line in stdout.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        stem = Path(match["file"]).stem
        assert stem in found, f"mypy reported an error outside the user files: {line}"
        found[stem].append((int(match["line"]), match["code"]))
    return found


def test_normal_use_of_the_public_api_type_checks(
    mypy_errors: dict[str, list[tuple[int, str]]],
) -> None:
    assert mypy_errors["good"] == []


@pytest.mark.parametrize("name", BAD)
def test_a_mistake_fails_mypy_strict_where_it_is(
    name: str, mypy_errors: dict[str, list[tuple[int, str]]]
) -> None:
    source, code = BAD[name]
    marked = next(i for i, line in enumerate(textwrap.dedent(source).splitlines(), 1) if "# <-" in line)
    assert (marked, code) in mypy_errors[name], mypy_errors[name]
