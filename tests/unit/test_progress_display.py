"""tqdm progress: tqdm.auto, finished bars filled and kept; tqdm stays optional."""

from __future__ import annotations

import io
import logging
import sys
import types
from typing import Any

import pytest

from containerd_client.pull import ProgressEvent, TqdmProgress, tqdm_progress

LAYER = "layer-sha256:" + "cd" * 32


def test_a_finished_blob_is_shown_full_and_kept() -> None:
    pytest.importorskip("tqdm")
    out = io.StringIO()
    with tqdm_progress(file=out, mininterval=0, ascii=True) as progress:
        progress(ProgressEvent(LAYER, 0, 4096, "downloading", "transfer"))
        # The daemon's last word about a blob often carries no byte count.
        progress(ProgressEvent(LAYER, 0, 4096, "complete", "transfer"))
    screen = out.getvalue()
    last = screen.replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in last, screen
    assert "4.00k/4.00k" in last, screen


def test_an_existing_blob_is_shown_full() -> None:
    pytest.importorskip("tqdm")
    out = io.StringIO()
    progress = TqdmProgress(file=out, mininterval=0, ascii=True)
    progress(ProgressEvent(LAYER, 0, 2048, "exists"))
    progress.close()
    assert "100%" in out.getvalue().replace("\r", "\n").strip().splitlines()[-1]


def test_bars_come_from_tqdm_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class FakeBar:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            self.n = 0
            self.closed = False

        def update(self, n: int) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeBar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    progress = TqdmProgress()
    progress(ProgressEvent("import busybox.tar", 10, 100, "importing"))
    progress(ProgressEvent("import busybox.tar", 0, 100, "complete"))
    assert len(made) == 1
    assert made[0]["leave"] is True
    assert made[0]["desc"] == "import busybox.tar"


def test_without_tqdm_steps_are_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    progress = TqdmProgress()
    with caplog.at_level(logging.INFO, logger="containerd_client.pull"):
        progress(ProgressEvent(LAYER, 5, 10, "downloading"))
        progress(ProgressEvent(LAYER, 10, 10, "done"))
    assert caplog.messages == [f"{LAYER}: done"]
