"""Small, escaped HTML and text pieces for the objects' notebook reprs.

Every ``_repr_html_`` of the SDK is built from these helpers, so that one
place escapes what comes from the daemon (ids, labels, image names, output):
a value is never put into markup without :func:`esc`. The reprs are small
tables with inline styles (no CSS or script is injected into the page), and
render the same in JupyterLab, classic notebooks and VS Code.

Nothing here talks to containerd: callers pass values they already hold.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Iterable, Sequence

__all__ = [
    "UNKNOWN",
    "age",
    "badge",
    "card",
    "code",
    "esc",
    "exit_badge",
    "grid",
    "human_bytes",
    "pre",
    "short_digest",
    "shorten",
]

#: What a repr shows for a value it could not learn quickly.
UNKNOWN = "unknown"

_BOX = (
    "display:inline-block;border:1px solid #8884;border-radius:4px;padding:4px 8px;"
    "font-family:system-ui,sans-serif;font-size:12px"
)
_TABLE = '<table style="border-collapse:collapse;margin:0">'
_TH = "text-align:left;padding:0 1em 0 0;color:#777;font-weight:normal"
_TD = "text-align:left;padding:0 1em 0 0"
_COLORS = {
    "running": "#1a7f37",
    "ok": "#1a7f37",
    "open": "#1a7f37",
    "serving": "#1a7f37",
    "created": "#9a6700",
    "paused": "#9a6700",
    "pausing": "#9a6700",
    "stopped": "#57606a",
    "exited": "#57606a",
    "deleted": "#57606a",
    "closed": "#57606a",
    "failed": "#cf222e",
    "error": "#cf222e",
}


def esc(value: object) -> str:
    """``value`` as text that is safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with ``…`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def short_digest(digest: str, length: int = 12) -> str:
    """``sha256:0123456789abcdef…`` -> ``sha256:0123456789ab``."""
    algorithm, sep, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:length]}" if sep else digest[:length]


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> :data:`UNKNOWN`."""
    if n is None:
        return UNKNOWN
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def age(when: _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """How long ago ``when`` was, coarsely: ``"4 s"``, ``"3 min"``, ``"2 h"``, ``"5 d"``."""
    if when is None:
        return UNKNOWN
    if now is None:
        now = _dt.datetime.now(when.tzinfo or _dt.timezone.utc)
    seconds = max(0, int((now - when).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def badge(status: str, tone: str | None = None) -> str:
    """A coloured status word (``running`` green, ``stopped`` grey, ...).

    The colour follows ``tone`` (``"ok"``, ``"failed"``...) when given, else
    the first word of ``status``.
    """
    color = _COLORS.get(tone or status.split(" ", 1)[0], "#57606a")
    return f'<span style="color:{color};font-weight:600">{esc(status)}</span>'


def exit_badge(code: int) -> str:
    """An exit code, green when 0, red otherwise."""
    return badge(f"{code} ok" if code == 0 else f"{code}", "ok" if code == 0 else "failed")


def code(value: object) -> str:
    """``value`` in a monospace span."""
    return f"<code>{esc(value)}</code>"


def pre(data: bytes | str, limit: int = 2000) -> str:
    """Program output in a small scrolling block, cut to ``limit`` characters."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else data
    style = "margin:2px 0;max-height:12em;overflow:auto;font-size:11px;white-space:pre-wrap"
    return f'<pre style="{style}">{esc(shorten(text, limit))}</pre>'


def card(kind: str, title: str, rows: Iterable[tuple[str, str]]) -> str:
    """One object: its kind and name, then a two-column table of fields.

    ``kind`` and ``title`` are escaped here; the row values are markup
    already (built with :func:`esc`, :func:`badge`, :func:`code`...), the row
    names are escaped.
    """
    body = "".join(
        f'<tr><th style="{_TH}">{esc(name)}</th><td style="{_TD}">{value}</td></tr>' for name, value in rows
    )
    return f'<div style="{_BOX}"><div><b>{esc(kind)}</b> {code(title)}</div>{_TABLE}{body}</table></div>'


def grid(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: str = "", empty: str = "none"
) -> str:
    """A table with a header row; cells are markup already (headers are escaped)."""
    head = "".join(f'<th style="{_TH}">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_TD}">{cell}</td>' for cell in row) + "</tr>" for row in rows
    )
    if not body:
        body = f'<tr><td style="{_TD}" colspan="{len(headers)}"><i>{esc(empty)}</i></td></tr>'
    caption = f"<div><b>{esc(title)}</b></div>" if title else ""
    table = f"{_TABLE}<tr>{head}</tr>{body}</table>"
    return f'<div style="{_BOX}">{caption}{table}</div>'
