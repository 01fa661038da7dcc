"""Output of the command line: aligned tables for people, JSON for scripts.

Pure functions on plain values (no SDK object, no I/O beyond the stream given),
so they are unit-tested without a daemon.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

__all__ = ["age", "human_size", "print_json", "short_digest", "table"]


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An aligned text table: a header of ``columns``, then one line per row.

    Cells are ``str()``-ed; None shows as ``-``; the last column is not padded.
    """
    cells = [[str(c) for c in columns]]
    for row in rows:
        cells.append(["-" if v is None else str(v).replace("\n", " ") for v in row])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for line in cells:
        padded = [v.ljust(w) for v, w in zip(line[:-1], widths[:-1], strict=True)] + [line[-1]]
        out.append("   ".join(padded).rstrip())
    return "\n".join(out) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def print_json(value: Any, stream: IO[str], *, lines: bool = False) -> None:
    """Write ``value`` as JSON: indented, or on one line (``lines``, for JSON Lines streams)."""
    if lines:
        stream.write(json.dumps(value, default=_default, sort_keys=True) + "\n")
    else:
        stream.write(json.dumps(value, default=_default, sort_keys=True, indent=2) + "\n")
    stream.flush()


def human_size(nbytes: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"-"``."""
    if nbytes is None or nbytes < 0:
        return "-"
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def age(when: _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """How long ago ``when`` was, docker style: ``"5 seconds ago"``, ``"3 hours ago"``."""
    if when is None:
        return "-"
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


def short_digest(digest: str, length: int = 12) -> str:
    """``sha256:abcdef...`` -> the first ``length`` hex digits."""
    return digest.partition(":")[2][:length] if ":" in digest else digest[:length]


def labels_text(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` (sorted), or ``""``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
