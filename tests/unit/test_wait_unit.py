"""containerd_client.wait without a daemon: a fake task, counting probes."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from containerd_client import errors, wait
from containerd_client.tasks import ExitStatus


class _Exit:
    def __init__(self) -> None:
        self.event = threading.Event()

    def wait_done(self, timeout: float | None) -> None:
        self.event.wait(timeout)


class _FakeTask:
    """What a WaitStrategy uses of a Task."""

    id = "fake"
    _log = None
    has_logs = False

    def __init__(self) -> None:
        self._exit = _Exit()
        self.exit_status: ExitStatus | None = None

    def _last_log_lines(self, n: int = 20) -> tuple[str, ...]:
        return ()

    def die(self, code: int) -> None:
        self.exit_status = ExitStatus(code)
        self._exit.event.set()


class _Counting(wait.WaitStrategy):
    """Met from its ``ready_at``-th probe on."""

    def __init__(self, name: str, ready_at: int | None) -> None:
        self.name = name
        self.ready_at = ready_at
        self.calls = 0

    def describe(self) -> str:
        return self.name

    def _begin(self, task: Any) -> wait.Probe:
        def probe(remaining: float) -> bool:
            self.calls += 1
            return self.ready_at is not None and self.calls >= self.ready_at

        return probe


def test_all_of_keeps_what_was_met_and_any_of_needs_one() -> None:
    task = _FakeTask()
    first, second = _Counting("a", 1), _Counting("b", 3)
    wait.all_of(first, second).wait(task, timeout=10)  # type: ignore[arg-type]
    assert (first.calls, second.calls) == (1, 3)  # "a" not asked again once met
    never, soon = _Counting("never", None), _Counting("soon", 2)
    (never | soon).wait(task, timeout=10)  # type: ignore[arg-type]
    assert soon.calls == 2


def test_timeout_names_what_was_awaited() -> None:
    task = _FakeTask()
    with pytest.raises(errors.WaitTimeoutError) as info:
        (_Counting("x", None) & _Counting("y", 1)).wait(task, timeout=0.05)  # type: ignore[arg-type]
    assert "all of (x; y) not met within 0.05 s" in str(info.value)
    assert "logs=True" in str(info.value)  # says how to see the output next time
    assert info.value.exit_code is None


def test_an_exit_ends_the_wait_before_its_timeout() -> None:
    task = _FakeTask()

    class _DiesOnSecondProbe(_Counting):
        def _begin(self, task: Any) -> wait.Probe:
            inner = super()._begin(task)

            def probe(remaining: float) -> bool:
                if self.calls == 1:
                    task.die(3)  # the service crashes between two looks
                return inner(remaining)

            return probe

    strategy = _DiesOnSecondProbe("never", None)
    with pytest.raises(errors.WaitTimeoutError) as info:
        strategy.wait(task, timeout=60)  # type: ignore[arg-type]
    assert info.value.exit_code == 3
    assert "exited with code 3 before never" in str(info.value)


def test_met_on_the_probe_after_the_exit_still_counts() -> None:
    # The line may reach the log only as the task exits: one last look is taken.
    task = _FakeTask()
    task.die(0)
    wait.any_of(_Counting("late", 1)).wait(task, timeout=1)  # type: ignore[arg-type]


def test_wait_timeout_error_pickles_with_its_fields() -> None:
    err = errors.WaitTimeoutError("m", logs=("a", "b"), exit_code=1)
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.logs, again.exit_code, again.code) == ("m", ("a", "b"), 1, err.code)
    assert isinstance(again, TimeoutError)
