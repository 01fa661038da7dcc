"""The SDK's retry policy; tenacity stays behind it.

Only idempotent calls are retried, and only on UNAVAILABLE (the daemon is
restarting or the socket is not there yet). tenacity is imported on the first
retry, never on the success path, so it costs nothing at import or per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from containerd_client.errors import RPCError, StatusCode

__all__ = ["NO_RETRY", "RetryPolicy"]

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How idempotent calls are retried.

    Attributes:
        attempts: Total attempts, the first included; 1 disables retries.
        initial: First backoff in seconds.
        maximum: Largest backoff in seconds.
        jitter: Random extra backoff in seconds, to spread reconnect storms.
        codes: Status codes that are worth another attempt.
    """

    attempts: int = 4
    initial: float = 0.05
    maximum: float = 1.0
    jitter: float = 0.05
    codes: frozenset[StatusCode] = frozenset({StatusCode.UNAVAILABLE})

    def should_retry(self, exc: BaseException) -> bool:
        """Tell whether ``exc`` is one of the retryable statuses."""
        return isinstance(exc, RPCError) and exc.code in self.codes

    def call(self, fn: Callable[[], T], first_error: RPCError) -> T:
        """Retry ``fn`` after its first attempt failed with ``first_error``.

        Raises:
            RPCError: The last error once attempts run out, unchanged.
        """
        if self.attempts <= 1 or not self.should_retry(first_error):
            raise first_error
        import tenacity as _t

        time.sleep(self.initial)  # the first attempt already failed: back off before the next
        retrying = _t.Retrying(
            stop=_t.stop_after_attempt(self.attempts - 1),
            wait=_t.wait_exponential(multiplier=self.initial, max=self.maximum)
            + _t.wait_random(0, self.jitter),
            retry=_t.retry_if_exception(self.should_retry),
            reraise=True,
        )
        return retrying(fn)


#: A policy that never retries; tests inject it to keep failures immediate.
NO_RETRY = RetryPolicy(attempts=1, initial=0.0, maximum=0.0, jitter=0.0)
