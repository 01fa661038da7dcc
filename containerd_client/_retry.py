"""The SDK's retry policy; tenacity stays behind it.

Only idempotent calls are retried, and only on UNAVAILABLE (the daemon is
restarting or the socket is not there yet). Once the client has talked to
the daemon, such a call keeps trying, with capped exponential backoff, until
its own deadline or the reconnect window (15 s) ends, whichever is first: a
daemon restart (which takes a second or two before the channel reconnects)
is ridden out, and a daemon that stays away still surfaces as
``UnavailableError``. A client that never reached its daemon (a wrong
address, no daemon yet) fails after ``attempts`` quick tries instead, so the
commonest first-day mistake is reported at once, not after the deadline.
tenacity is imported on the first retry, never on the success path, so it
costs nothing at import or per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from containerd_client.errors import RPCError, StatusCode

__all__ = ["NO_RETRY", "RetryPolicy", "poll"]

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How idempotent calls are retried.

    Attributes:
        attempts: Most attempts, the first included; 1 disables retries.
            With ``reconnect``, calls that have a deadline are bounded by
            that deadline instead.
        initial: First backoff in seconds.
        maximum: Largest backoff in seconds.
        jitter: Random extra backoff in seconds, to spread reconnect storms.
        codes: Status codes that are worth another attempt.
        reconnect: Keep retrying until the call's deadline or ``window``
            (a daemon restart takes seconds), not just ``attempts`` times,
            once the daemon has answered this client before.
        window: Longest time, in seconds from the first failure, spent
            riding out a reconnect.
        sleep: How to wait between attempts (tests inject a fake).
    """

    attempts: int = 4
    initial: float = 0.05
    maximum: float = 0.5
    jitter: float = 0.05
    codes: frozenset[StatusCode] = frozenset({StatusCode.UNAVAILABLE})
    reconnect: bool = True
    window: float = 15.0
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)

    def should_retry(self, exc: BaseException) -> bool:
        """Tell whether ``exc`` is one of the retryable statuses."""
        return isinstance(exc, RPCError) and exc.code in self.codes

    def call(
        self,
        fn: Callable[[float | None], T],
        first_error: RPCError,
        deadline: float | None = None,
        *,
        reconnecting: bool = True,
    ) -> T:
        """Retry ``fn`` after its first attempt failed with ``first_error``.

        Args:
            fn: One attempt; it gets the seconds left before ``deadline``
                (``None`` without one) to use as that attempt's own timeout.
            first_error: What the first attempt raised.
            deadline: ``time.monotonic()`` value after which no attempt
                starts; ``None`` for calls without a deadline (then
                ``attempts`` alone bounds the retries).
            reconnecting: Whether the daemon answered this client before, so
                an UNAVAILABLE means it is coming back; without that only
                ``attempts`` tries are made.

        Raises:
            RPCError: The last error once attempts or time run out, unchanged.
        """
        if self.attempts <= 1 or not self.should_retry(first_error):
            raise first_error
        import tenacity as _t

        ride_out = self.reconnect and reconnecting and deadline is not None
        attempts = 0 if ride_out else self.attempts
        if ride_out and deadline is not None:
            deadline = min(deadline, time.monotonic() + self.window)

        def remaining() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        def out_of_time(state: _t.RetryCallState) -> bool:
            if attempts and state.attempt_number >= attempts - 1:
                return True
            left = remaining()
            # The next wait would end past the deadline: give up now with the
            # real error rather than a DEADLINE_EXCEEDED of our own making.
            return left is not None and left <= min(self.maximum, self.initial * 2**state.attempt_number)

        def attempt() -> T:
            left = remaining()
            if left is not None and left <= 0:
                raise first_error
            return fn(left)

        left = remaining()
        if left is not None and left <= self.initial:
            raise first_error
        self.sleep(self.initial)  # the first attempt already failed: back off before the next
        retrying = _t.Retrying(
            stop=out_of_time,
            wait=_t.wait_exponential(multiplier=self.initial, max=self.maximum)
            + _t.wait_random(0, self.jitter),
            retry=_t.retry_if_exception(self.should_retry),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(attempt)


#: A policy that never retries; tests inject it to keep failures immediate.
NO_RETRY = RetryPolicy(attempts=1, initial=0.0, maximum=0.0, jitter=0.0)


def poll(
    check: Callable[[], bool],
    timeout: float,
    *,
    initial: float = 0.02,
    maximum: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call ``check`` until it returns true or ``timeout`` seconds have passed.

    The waits between calls grow exponentially from ``initial`` up to
    ``maximum``; ``check`` is called at least once.

    Args:
        check: One look at the condition; exceptions it raises propagate.
        timeout: Seconds after which no further call starts.
        initial: First wait, in seconds.
        maximum: Longest wait, in seconds.
        sleep: How to wait (tests inject a fake).

    Returns:
        Whether ``check`` returned true before the time ran out.
    """
    import tenacity as _t

    retrying = _t.Retrying(
        stop=_t.stop_after_delay(timeout),
        wait=_t.wait_exponential(multiplier=initial, max=maximum),
        retry=_t.retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda state: False,
        sleep=sleep,
    )
    return bool(retrying(check))


# -- retries on a caller's own notion of "transient" (the registry client) ---------------


def retry_transient(
    policy: RetryPolicy,
    fn: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    before_sleep: Callable[[float, BaseException], None] | None = None,
) -> T:
    """Call ``fn``; while it raises an error that ``transient`` accepts, call it again.

    For errors that are not gRPC statuses (a registry's 429 or 5xx answers,
    a refused connection): ``policy``'s attempts and backoff apply, its
    status codes do not. tenacity is imported on the first retry only.

    Args:
        policy: Attempts (the first included), backoff and how to sleep.
        fn: One attempt.
        transient: Whether an error is worth another attempt.
        before_sleep: Called with the coming backoff in seconds and the last
            error before each backoff; it may raise to stop (a deadline that
            would pass during the backoff).

    Raises:
        Exception: What the last attempt raised, unchanged, or what
            ``before_sleep`` raised.
    """
    try:
        return fn()
    except Exception as exc:
        if not transient(exc) or policy.attempts <= 1:
            raise
        first = exc
    if before_sleep is not None:
        before_sleep(policy.initial, first)
    policy.sleep(policy.initial)  # the first attempt already failed: back off before the next
    import tenacity as _t

    def on_backoff(state: _t.RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if before_sleep is not None and error is not None:
            before_sleep(state.next_action.sleep if state.next_action else 0.0, error)

    retrying = _t.Retrying(
        before_sleep=on_backoff,
        stop=_t.stop_after_attempt(policy.attempts - 1),
        wait=_t.wait_exponential(multiplier=policy.initial, max=policy.maximum)
        + _t.wait_random(0, policy.jitter),
        retry=_t.retry_if_exception(transient),
        sleep=policy.sleep,
        reraise=True,
    )
    return retrying(fn)
