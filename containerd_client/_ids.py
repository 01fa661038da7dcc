"""Checks made on arguments before any RPC or path is built from them.

containerd (``pkg/identifiers``) accepts 1 to 76 characters: letters and
digits, with single ``.``, ``_`` or ``-`` between them, starting and ending
with a letter or digit. Checking here keeps ids such as ``../x`` out of the
FIFO paths the SDK builds from them.

Timeouts are seconds: a finite number, not negative (and, where a call
needs one, above zero), at most what ``threading`` can wait for.
"""

from __future__ import annotations

import math
import numbers
import re
import threading

from containerd_client.errors import InvalidIdError, InvalidTimeoutError

__all__ = ["MAX_ID_LENGTH", "MAX_TIMEOUT", "validate_id", "validate_timeout"]

MAX_ID_LENGTH = 76
#: The longest wait the standard library can express (about 292 years).
MAX_TIMEOUT = float(threading.TIMEOUT_MAX)
_ID_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def validate_id(value: object, *, what: str = "id") -> str:
    """Return ``value`` if it is a valid containerd identifier.

    Raises:
        InvalidIdError: It is not a string, is empty, too long, or has
            characters containerd refuses.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIdError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdError(f"{what} {value[:20]!r}... is longer than {MAX_ID_LENGTH} characters")
    if not _ID_RE.fullmatch(value):
        raise InvalidIdError(
            f"{what} {value!r} is invalid: use letters and digits separated by single '.', '_' or '-'"
        )
    return value


def validate_timeout(
    value: object, *, what: str = "timeout", allow_none: bool = True, positive: bool = False
) -> float | None:
    """Return ``value`` as float seconds (or None) if it is a usable timeout.

    Args:
        value: The caller's value.
        what: Names the argument in the message.
        allow_none: Whether None ("no limit") is accepted.
        positive: Refuse zero too.

    Raises:
        InvalidTimeoutError: It is not a real number (bools and strings are
            not), or is NaN, infinite, negative (zero with ``positive``), or
            longer than :data:`MAX_TIMEOUT`.
    """
    if value is None:
        if allow_none:
            return None
        raise InvalidTimeoutError(f"{what} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTimeoutError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidTimeoutError(f"{what} must be a finite number of seconds, not {seconds}")
    if seconds < 0 or (positive and seconds == 0):
        bound = "above zero" if positive else "zero or more"
        raise InvalidTimeoutError(f"{what} must be {bound} seconds, not {seconds:g}")
    if seconds > MAX_TIMEOUT:
        raise InvalidTimeoutError(f"{what} of {seconds:g} s is longer than a wait can be ({MAX_TIMEOUT:g})")
    return seconds
