"""``_retry.poll``: the backoff loop ``Client.wait_ready`` uses, tenacity kept behind it."""

from __future__ import annotations

import pytest

from containerd_client._retry import poll


def test_poll_backs_off_exponentially_until_the_check_holds() -> None:
    answers = iter([False, False, False, True])
    waits: list[float] = []
    assert poll(lambda: next(answers), 60.0, initial=0.02, maximum=0.05, sleep=waits.append)
    assert waits == pytest.approx([0.02, 0.04, 0.05])


def test_poll_gives_up_false_when_the_time_is_over() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        return False

    assert poll(check, 0.0, sleep=lambda s: None) is False
    assert len(calls) == 1  # the check runs at least once


def test_poll_lets_the_check_errors_through() -> None:
    def check() -> bool:
        raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        poll(check, 60.0, sleep=lambda s: None)
