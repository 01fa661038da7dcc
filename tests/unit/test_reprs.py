"""Plain and notebook (``_repr_html_``) reprs: short, escaped, and never a hanging RPC."""

from __future__ import annotations

import datetime as _dt
import html.parser
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerd_client import Client, _html
from containerd_client._retry import NO_RETRY
from containerd_client.containers import Container, ContainerInfo
from containerd_client.events import Event, EventDispatcher
from containerd_client.images import MEDIA_TYPE_OCI_INDEX, Image
from containerd_client.metrics import CPUStats, MemoryStats, Metrics, PidsStats
from containerd_client.network import NETWORK_LABEL, PORTS_LABEL
from containerd_client.tasks import REPR_TIMEOUT, ExecResult, ExitStatus, Process, Task
from containerd_client.types import Descriptor

NOWHERE = "/nonexistent/containerd-client-test.sock"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\''
DIGEST = "sha256:" + "ab" * 32

#: The only elements and attributes the reprs may produce.
ALLOWED_TAGS = {"div", "b", "i", "code", "table", "tr", "th", "td", "span", "pre"}
ALLOWED_ATTRS = {"style", "colspan"}


class _Markup(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> _Markup:
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return parser


def assert_safe(markup: str, *texts: str) -> str:
    """The markup holds only the repr's own elements, and ``texts`` as text; returns the text."""
    parsed = parse(markup)
    assert parsed.tags <= ALLOWED_TAGS, parsed.tags - ALLOWED_TAGS
    assert parsed.attrs <= ALLOWED_ATTRS, parsed.attrs - ALLOWED_ATTRS
    text = "".join(parsed.text)
    for t in texts:
        assert t in text
    return text


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1) as c:
        yield c


def _container(
    client: Client, tmp_path: Path, *, image: str = "example.test/img:1", **labels: str
) -> Container:
    created = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=3)
    info = ContainerInfo(
        "web-1", labels, image, "io.containerd.runc.v2", None, "overlayfs", "web-1", created, created, {}
    )
    return Container(client, info, owned=False, state_root=str(tmp_path))


# -- helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (59, "59 s"), (61, "1 min"), (7200, "2 h"), (3 * 86400 + 5, "3 d")]
)
def test_age_is_coarse(seconds: int, text: str) -> None:
    now = _dt.datetime(2026, 1, 2, tzinfo=_dt.timezone.utc)
    assert _html.age(now - _dt.timedelta(seconds=seconds), now) == text


def test_human_bytes_and_shorten() -> None:
    assert _html.human_bytes(512) == "512 B"
    assert _html.human_bytes(1536) == "1.5 KiB"
    assert _html.human_bytes(None) == _html.UNKNOWN
    assert _html.shorten("abcdef", 4) == "abc…"
    assert _html.short_digest(DIGEST) == "sha256:" + "ab" * 6


# -- plain reprs stay short ----------------------------------------------------------


def test_image_repr_is_short_whatever_its_labels() -> None:
    labels = {f"org.example.label-{i}": "v" * 40 for i in range(20)}
    image = Image(
        "registry.example.test:5000/" + "team/" * 30 + "app:1",
        Descriptor(MEDIA_TYPE_OCI_INDEX, DIGEST, 1234),
        labels,
    )
    text = repr(image)
    assert len(text) <= 140, text
    assert DIGEST[:19] in text


def _metrics() -> Metrics:
    now = _dt.datetime.now(_dt.timezone.utc)
    return Metrics(
        "web-1",
        now,
        2,
        CPUStats(1_500_000_000, 1_000_000_000, 500_000_000, 10, 2, 1000),
        MemoryStats(3 << 20, (1 << 63) - 1, 4 << 20, 1 << 20, 2 << 20),
        PidsStats(3, 100),
        object(),
    )


def test_metrics_repr_is_short() -> None:
    text = repr(_metrics())
    assert len(text) <= 100, text
    assert "cpu=1.500s" in text
    assert "mem=3.0 MiB" in text


def test_container_info_repr_leaves_out_the_spec_and_labels() -> None:
    labels = {f"label-{i}": "v" * 50 for i in range(30)}
    spec = {"process": {"args": ["x"] * 500}}
    info = ContainerInfo("web-1", labels, "img:1", "io.containerd.runc.v2", None, "", "", None, None, spec)
    text = repr(info)
    assert len(text) <= 120, text
    assert "labels=30" in text


def test_exec_result_repr_cuts_long_output() -> None:
    result = ExecResult(0, b"x" * 1_000_000, b"oops\n")
    text = repr(result)
    assert len(text) <= 200, text
    assert "1000000 bytes" in text
    assert "oops" in text


# -- HTML reprs: state at a glance, escaped ------------------------------------------


def test_exec_result_html_shows_exit_and_escaped_output() -> None:
    text = assert_safe(ExecResult(3, HOSTILE.encode(), b"")._repr_html_(), HOSTILE)
    assert "3" in text
    assert "stderr" not in text  # empty streams are left out


def test_image_html_escapes_a_hostile_name() -> None:
    image = Image(HOSTILE, Descriptor(MEDIA_TYPE_OCI_INDEX, DIGEST, 1), {HOSTILE: HOSTILE})
    text = assert_safe(image._repr_html_(), HOSTILE, "index", "sha256:" + "ab" * 8)
    assert "labels" in text


def test_metrics_html_shows_cpu_memory_pids() -> None:
    text = assert_safe(_metrics()._repr_html_(), "1.500 s", "3.0 MiB of unlimited", "3 of 100", "v2")
    assert "web-1" in text


def test_container_html_has_status_image_ports_age_escaped(client: Client, tmp_path: Path) -> None:
    ports = f"80/tcp={HOSTILE}:32768"
    container = _container(client, tmp_path, image=HOSTILE, **{NETWORK_LABEL: "bridge", PORTS_LABEL: ports})
    started = time.monotonic()
    text = assert_safe(container._repr_html_(), "web-1", HOSTILE, "32768→80/tcp", "bridge", "3 min")
    assert time.monotonic() - started < 5 * REPR_TIMEOUT
    # No daemon at this address: the task's state is unknown, not an error.
    assert _html.UNKNOWN in text


def test_task_html_shows_pid_and_exit_without_asking(client: Client, tmp_path: Path) -> None:
    container = _container(client, tmp_path)
    task = Task(container, 4242, None, started=True)
    task._exit.set(ExitStatus(137))
    text = assert_safe(task._repr_html_(), "web-1", "4242", "stopped", "137", "example.test/img:1")
    assert _html.UNKNOWN not in text


def test_process_html(client: Client, tmp_path: Path) -> None:
    container = _container(client, tmp_path)
    proc = Process(Task(container, 1, None, started=True), "exec-1", None)
    proc._exit.set(ExitStatus(0))
    assert_safe(proc._repr_html_(), "exec-1", "web-1", "0 ok")


def test_client_html_names_the_containers_it_created(client: Client, tmp_path: Path) -> None:
    container = _container(client, tmp_path)
    client._note_created(container)
    text = assert_safe(client._repr_html_(), NOWHERE, "ns", "open", "ns/web-1", _html.UNKNOWN)
    assert "containerd" in text
    client.close(cleanup=False)
    assert_safe(client._repr_html_(), "closed")


def test_events_html_shows_recent_events_escaped(client: Client) -> None:
    from containerd_client._pb.containerd.events.task_pb2 import TaskExit

    dispatcher = EventDispatcher(client)
    try:
        now = _dt.datetime.now(_dt.timezone.utc)
        for i in range(60):
            dispatcher._dispatch(Event(f"/containers/update{i}", "ns", now, None))
        dispatcher._dispatch(
            Event("/tasks/exit", "ns", now, TaskExit(container_id=HOSTILE, id=HOSTILE, pid=7, exit_status=2))
        )
        recent = dispatcher.recent()
        assert len(recent) == 50  # bounded
        assert recent[-1].topic == "/tasks/exit"
        assert dispatcher.recent(2)[0].topic == "/containers/update59"
        text = assert_safe(dispatcher._repr_html_(), HOSTILE, "/tasks/exit", "2")
        assert "update59" in text
        assert "update0<" not in dispatcher._repr_html_()
        assert len(repr(dispatcher)) < 100
    finally:
        dispatcher.close()


def test_a_repr_does_not_hang_on_a_daemon_that_never_answers(tmp_path: Path) -> None:
    # A socket that accepts connections and never speaks HTTP/2.
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)
    try:
        with Client(path, "ns", timeout=30) as silent:
            container = _container(silent, tmp_path)
            started = time.monotonic()
            text = assert_safe(container._repr_html_(), "web-1")
            text += assert_safe(silent._repr_html_())
            # A task this object started shows what it last knew.
            task = Task(container, 4242, None, started=True)
            assert_safe(task._repr_html_(), "running (last known)", "4242")
            elapsed = time.monotonic() - started
        assert _html.UNKNOWN in text
        assert elapsed < 3 * REPR_TIMEOUT + 1.0, elapsed
    finally:
        server.close()
