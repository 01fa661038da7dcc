"""``WWW-Authenticate`` challenges (RFC 7235)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

# -- WWW-Authenticate ---------------------------------------------------------------


@attrs.frozen
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header.

    Attributes:
        scheme: Lowercase scheme (``"bearer"``, ``"basic"``).
        params: Parameters with lowercase names (``realm``, ``service``, ``scope``).
    """

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Split a ``WWW-Authenticate`` value into challenges (RFC 7235).

    Quoted values may hold commas and backslash escapes; several challenges
    may share one header, separated by commas.
    """
    out: list[Challenge] = []
    i, n = 0, len(header)
    scheme: str | None = None
    params: dict[str, str] = {}

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        m = _TOKEN_RE.match(header, i)
        if m is None:
            i += 1
            continue
        token = m.group(0)
        j = m.end()
        k = j
        while k < n and header[k] in " \t":
            k += 1
        if k < n and header[k] == "=" and scheme is not None:
            # A parameter of the current challenge.
            i = k + 1
            skip(" \t")
            if i < n and header[i] == '"':
                i += 1
                value = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(header[i])
                    i += 1
                i += 1
                params[token.lower()] = "".join(value)
            else:
                vm = _TOKEN_RE.match(header, i)
                params[token.lower()] = vm.group(0) if vm else ""
                i = vm.end() if vm else i
        else:
            if scheme is not None:
                out.append(Challenge(scheme, params))
            scheme, params = token.lower(), {}
            i = j
    if scheme is not None:
        out.append(Challenge(scheme, params))
    return out
