"""WarmCache: one checkpoint per key, made once even under concurrent calls, deleted on close."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from containerd_client.errors import ContainerdError
from containerd_client.testing import WarmCache


class FakeCheckpoint:
    def __init__(self, name: str, fail_delete: bool = False) -> None:
        self.container_id = name
        self.deleted = 0
        self.fail_delete = fail_delete

    def delete(self) -> None:
        self.deleted += 1
        if self.fail_delete:
            raise ContainerdError("boom")


def test_one_maker_per_key_under_concurrent_calls() -> None:
    cache = WarmCache()
    made: list[str] = []
    release = threading.Event()
    start = threading.Barrier(4)
    results: list[tuple[Any, bool]] = []
    lock = threading.Lock()

    def make() -> Any:
        made.append("a")
        assert release.wait(10)
        return FakeCheckpoint("a")

    def call() -> None:
        start.wait(10)
        got = cache.get(("a",), make)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    # The first caller makes; the others wait for it rather than making their own.
    release.set()
    for t in threads:
        t.join(10)
    assert made == ["a"]
    assert len({id(cp) for cp, _ in results}) == 1
    assert sorted(fresh for _, fresh in results) == [False, False, False, True]
    assert len(cache) == 1


def test_a_failed_make_is_not_kept_and_keys_are_apart() -> None:
    cache = WarmCache()

    def fail() -> Any:
        raise ContainerdError("not ready")

    with pytest.raises(ContainerdError):
        cache.get(("k",), fail)
    assert len(cache) == 0
    a, fresh_a = cache.get(("k",), lambda: FakeCheckpoint("k"))
    b, fresh_b = cache.get(("other",), lambda: FakeCheckpoint("other"))
    assert fresh_a
    assert fresh_b
    assert a is not b


def test_close_deletes_every_checkpoint_even_when_one_fails() -> None:
    cache = WarmCache()
    bad = FakeCheckpoint("bad", fail_delete=True)
    good = FakeCheckpoint("good")
    cache.get(("bad",), lambda: bad)
    cache.get(("good",), lambda: good)
    cache.close()
    assert bad.deleted == 1
    assert good.deleted == 1
    assert len(cache) == 0
    cache.close()  # idempotent: nothing deleted twice
    assert good.deleted == 1
