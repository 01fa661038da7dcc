"""Task metrics decoded into typed values, for cgroup v1 and v2 hosts alike.

containerd sends ``io.containerd.cgroups.v1.Metrics`` on cgroup v1 hosts and
``io.containerd.cgroups.v2.Metrics`` on cgroup v2 hosts; :func:`from_proto`
turns either into the same :class:`Metrics` value (the decoded message stays
reachable as ``raw``).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import attrs

from containerd_client import _html, _typeurl
from containerd_client._convert import from_timestamp

__all__ = ["CPUStats", "MemoryStats", "Metrics", "PidsStats", "from_proto"]

# cgroups report "no limit" as the largest page-aligned 64-bit value (or max int64).
_UNLIMITED = 1 << 62


@attrs.frozen
class CPUStats:
    """CPU time used by the task, in nanoseconds, and CFS throttling."""

    usage_ns: int
    user_ns: int
    kernel_ns: int
    periods: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0


@attrs.frozen
class MemoryStats:
    """Memory use in bytes. ``limit`` is 0 or a huge number when unlimited."""

    usage: int
    limit: int
    max_usage: int = 0
    cache: int = 0
    rss: int = 0


@attrs.frozen
class PidsStats:
    """Number of processes, and the limit (0: none)."""

    current: int
    limit: int


@attrs.frozen
class Metrics:
    """One sample of a task's cgroup metrics."""

    id: str
    timestamp: _dt.datetime | None
    cgroup_version: int
    cpu: CPUStats | None
    memory: MemoryStats | None
    pids: PidsStats | None
    raw: Any = attrs.field(repr=False, eq=False)

    def __repr__(self) -> str:
        parts = [f"<Metrics {self.id[:64]!r}"]
        if self.cpu is not None:
            parts.append(f"cpu={self.cpu.usage_ns / 1e9:.3f}s")
        if self.memory is not None:
            parts.append(f"mem={_html.human_bytes(self.memory.usage)}")
        if self.pids is not None:
            parts.append(f"pids={self.pids.current}")
        return " ".join(parts) + f" cgroup=v{self.cgroup_version}>"

    def _repr_html_(self) -> str:
        rows: list[tuple[str, str]] = []
        if self.cpu is not None:
            c = self.cpu
            cpu = f"{c.usage_ns / 1e9:.3f} s (user {c.user_ns / 1e9:.3f} s, kernel {c.kernel_ns / 1e9:.3f} s)"
            if c.throttled_periods:
                cpu += f", throttled {c.throttled_periods}/{c.periods} periods"
            rows.append(("cpu", _html.esc(cpu)))
        if self.memory is not None:
            m = self.memory
            limit = "unlimited" if not m.limit or m.limit >= _UNLIMITED else _html.human_bytes(m.limit)
            rows.append(("memory", _html.esc(f"{_html.human_bytes(m.usage)} of {limit}")))
        if self.pids is not None:
            p = self.pids
            rows.append(("pids", _html.esc(f"{p.current}" + (f" of {p.limit}" if p.limit else ""))))
        rows.append(("sampled", _html.esc(_html.age(self.timestamp)) + " ago" if self.timestamp else "-"))
        rows.append(("cgroup", _html.esc(f"v{self.cgroup_version}")))
        return _html.card("Metrics", self.id, rows)


def from_proto(metric: Any) -> Metrics:
    """Decode a ``containerd.types.Metric`` (its ``data`` is an ``Any``)."""
    ts = from_timestamp(metric.timestamp)
    data = _typeurl.unpack(metric.data)
    name = data.DESCRIPTOR.full_name
    if name == "io.containerd.cgroups.v1.Metrics":
        return _from_v1(metric.id, ts, data)
    if name == "io.containerd.cgroups.v2.Metrics":
        return _from_v2(metric.id, ts, data)
    return Metrics(metric.id, ts, 0, None, None, None, data)


def _from_v1(task_id: str, ts: _dt.datetime | None, m: Any) -> Metrics:
    cpu = mem = pids = None
    if m.HasField("cpu"):
        u, t = m.cpu.usage, m.cpu.throttling
        cpu = CPUStats(u.total, u.user, u.kernel, t.periods, t.throttled_periods, t.throttled_time)
    if m.HasField("memory"):
        mm = m.memory
        mem = MemoryStats(mm.usage.usage, mm.usage.limit, mm.usage.max, mm.cache, mm.rss)
    if m.HasField("pids"):
        pids = PidsStats(m.pids.current, m.pids.limit)
    return Metrics(task_id, ts, 1, cpu, mem, pids, m)


def _from_v2(task_id: str, ts: _dt.datetime | None, m: Any) -> Metrics:
    cpu = mem = pids = None
    if m.HasField("cpu"):
        c = m.cpu
        cpu = CPUStats(
            c.usage_usec * 1000,
            c.user_usec * 1000,
            c.system_usec * 1000,
            c.nr_periods,
            c.nr_throttled,
            c.throttled_usec * 1000,
        )
    if m.HasField("memory"):
        mm = m.memory
        mem = MemoryStats(mm.usage, mm.usage_limit, mm.max_usage, mm.file, mm.anon)
    if m.HasField("pids"):
        pids = PidsStats(m.pids.current, m.pids.limit)
    return Metrics(task_id, ts, 2, cpu, mem, pids, m)
