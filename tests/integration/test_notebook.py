"""examples/notebook.ipynb runs headlessly in a real kernel, and its outputs are the HTML reprs.

The notebook starts a containerd of its own (``CONTAINERD_BIN_DIR`` picks the
version, as for the session daemon), so this test runs once per daemon version.
"""

from __future__ import annotations

import html.parser
import os
import re
import runpy
import time
from pathlib import Path
from typing import Any

import pytest

from containerd_client import Client, network

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
execute = runpy.run_path(str(ROOT / "scripts" / "run_notebook"))["execute"]


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(markup: str) -> str:
    """The text of a repr's markup (the markup holds no script, link or image)."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    assert parser.tags <= {"div", "b", "i", "code", "table", "tr", "th", "td", "span", "pre"}, parser.tags
    return " ".join(parser.parts)


def by_tag(nb: Any) -> dict[str, list[Any]]:
    return {
        cell.metadata["tags"][0]: cell.outputs for cell in nb.cells if cell.get("metadata", {}).get("tags")
    }


def shown(outputs: list[Any], *parts: str) -> str:
    """The text of a cell result's HTML repr, which must hold each of ``parts`` (regexes)."""
    [result] = [o for o in outputs if o.output_type == "execute_result"]
    assert "text/html" in result.data, result.data.keys()
    assert len(result.data["text/plain"]) < 200, result.data["text/plain"]
    text = html_text(result.data["text/html"])
    for part in parts:
        assert re.search(part, text), (part, text)
    return text


def stdout(outputs: list[Any]) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


#: A running task; "(last known)" when the daemon did not answer the repr's one call in time.
RUNNING = r"status running( \(last known\))? pid \d+"


def check_tour(nb: Any) -> None:
    """The outputs of the tour show each object's state at a glance."""
    cells = by_tag(nb)
    shown(cells["client"], "Client", "state open", r"containerd \d+\.\d+")
    shown(cells["image"], "Image", "busybox", "sha256:[0-9a-f]{16}")
    shown(cells["run"], "ExecResult", "exit 3", "hello from busybox", "oops")
    shown(
        cells["container"],
        RUNNING,
        r"127\.0\.0\.1:\d+→80/tcp",
        "network bridge",
        r"age \d+ s",
    )
    assert stdout(cells["task"]).startswith("200 root:")
    shown(cells["task"], "Task", RUNNING, "busybox")
    shown(cells["metrics"], "Metrics", r"cpu \d+\.\d+ s", "memory .*B of", "pids 1")
    shown(cells["exec"], "exit 0 ok", "/etc/group")
    assert "response:200" in stdout(cells["logs"])
    shown(cells["stopped"], r"status stopped pid \d+ exit 137")
    shown(cells["events"], "/tasks/start", "/tasks/exit", "137")
    shown(cells["closed"], "state closed", "created here 0")
    for outputs in cells.values():
        assert all(o.output_type != "error" for o in outputs), outputs


@pytest.mark.skipif(os.geteuid() != 0, reason="containerd and CNI need root")
@pytest.mark.skipif(
    not any(os.path.exists(os.path.join(d, "bridge")) for d in network.NetworkConfig().plugin_dirs),
    reason="CNI plugins missing (apt-get install containernetworking-plugins)",
)
def test_the_notebook_tour_runs_and_shows_html_reprs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    started = time.monotonic()
    execute(nb, ROOT)
    elapsed = time.monotonic() - started
    check_tour(nb)
    assert elapsed < 60, elapsed


def test_the_stored_notebook_shows_the_reprs_and_no_host_name() -> None:
    import socket

    check_tour(nbformat.read(NOTEBOOK, as_version=4))
    assert socket.gethostname() not in NOTEBOOK.read_text()


def test_a_notebook_warns_of_unclosed_clients_draws_bar_widgets_and_names_leftovers_at_exit(
    tmp_path: Path,
) -> None:
    from nbformat.v4 import new_code_cell, new_notebook

    drop = "Client('/nonexistent/containerd.sock', 'ns')\ngc.collect()"
    leave = f"""
client = Client("/nonexistent/containerd.sock", "ns")
info = ContainerInfo("left-in-kernel", {{}}, "img", "io.containerd.runc.v2", None, "", "", None, None, {{}})
client._note_created(Container(client, info, owned=True, state_root={str(tmp_path)!r}))
"""
    imports = (
        "import gc\nfrom containerd_client import Client\n"
        "from containerd_client.containers import Container, ContainerInfo"
    )
    bars = """
from containerd_client.pull import ProgressEvent, tqdm_progress
with tqdm_progress() as bars:
    bars(ProgressEvent("layer-sha256:" + "ab" * 32, 0, 4096, "downloading", "transfer"))
    bars(ProgressEvent("layer-sha256:" + "ab" * 32, 0, 4096, "complete", "transfer"))
"""
    nb = new_notebook(
        cells=[
            new_code_cell(imports),
            new_code_cell(drop),
            new_code_cell(drop),
            new_code_cell(leave),
            new_code_cell(bars),
        ]
    )
    log = tmp_path / "kernel-stderr"
    with log.open("w") as stderr:
        execute(nb, ROOT, stderr=stderr)
    for cell in nb.cells[1:3]:
        shown = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        assert shown.count("unclosed containerd Client") == 1, cell.outputs
    # With ipywidgets, tqdm.auto draws a widget, not text on stderr (the bar is kept: leave=True).
    widget_outputs = [o for o in nb.cells[4].outputs if o.output_type == "display_data"]
    assert widget_outputs, nb.cells[4].outputs
    assert all("application/vnd.jupyter.widget-view+json" in o.data for o in widget_outputs)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    progress = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert [(p["value"], p["max"], p["bar_style"]) for p in progress] == [(4096, 4096, "success")], progress
    # At shutdown the notebook is gone: the kernel's own stderr (its log) says it.
    text = log.read_text()
    assert "UnclosedClientWarning: unclosed containerd Client" in text, text
    assert "ns/left-in-kernel" in text, text


@pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root")
def test_a_kernel_shutting_down_with_a_running_container_says_so(
    containerd: Client, busybox_rootfs: str, tmp_path: Path
) -> None:
    from nbformat.v4 import new_code_cell, new_notebook

    setup = f"""
from containerd_client import Client
client = Client({containerd.address!r}, {containerd.namespace_name!r})
container = client.create_container("kernel-left", rootfs={busybox_rootfs!r}, args=["sleep", "60"])
container.new_task().start()
"""
    log = tmp_path / "kernel-stderr"
    try:
        with log.open("w") as stderr:
            execute(new_notebook(cells=[new_code_cell(setup)]), ROOT, stderr=stderr)
        text = log.read_text()
        assert f"{containerd.namespace_name}/kernel-left" in text, text
        assert containerd.load_container("kernel-left").task().status().value == "running"
    finally:
        containerd.load_container("kernel-left").delete(force=True)
