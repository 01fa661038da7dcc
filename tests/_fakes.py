"""Small fakes and helpers shared by the test suites."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc


class FakeRpcError(grpc.RpcError):
    """What grpc raises for a failed call: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` on a daemon thread; its result lands in ``out["value"]`` or ``out["error"]``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def service_key(method: Any) -> str:
    """The short name of a method descriptor's service: ``api.Tasks.Wait`` -> ``"tasks"``."""
    return str(method.service).rsplit(".", 1)[1].lower()
