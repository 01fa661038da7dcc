"""Conversions between protobuf wire values and Python values.

Each conversion is written once here and used by every module that decodes
or builds a message, so that all of them agree on what "unset" means.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

# -- timestamps -------------------------------------------------------------------


def from_timestamp(ts: Timestamp | None) -> _dt.datetime | None:
    """A ``google.protobuf.Timestamp`` as an aware UTC datetime; ``None`` when unset.

    An unset message field reads as the zero timestamp, so the zero timestamp
    (the Unix epoch) also stands for "unset": containerd never sends it as a
    real time.
    """
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)
