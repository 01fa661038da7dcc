"""containerd's identifier rules, checked before any RPC or path is built.

containerd (``pkg/identifiers``) accepts 1 to 76 characters: letters and
digits, with single ``.``, ``_`` or ``-`` between them, starting and ending
with a letter or digit. Checking here keeps ids such as ``../x`` out of the
FIFO paths the SDK builds from them.
"""

from __future__ import annotations

import re

from containerd_client.errors import InvalidIdError

__all__ = ["MAX_ID_LENGTH", "validate_id"]

MAX_ID_LENGTH = 76
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
