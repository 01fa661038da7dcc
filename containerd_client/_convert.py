"""Conversions between protobuf wire values and Python values.

Each conversion is written once here and used by every module that decodes
or builds a message, so that all of them agree on what "unset" means.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from containerd_client.errors import InvalidArgumentError

if TYPE_CHECKING:
    from google.protobuf.field_mask_pb2 import FieldMask
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


# -- labels -----------------------------------------------------------------------


def label_update(labels: Mapping[str, str]) -> tuple[dict[str, str], FieldMask]:
    """The labels to send and the update mask of an ``Update`` call that sets ``labels``.

    Every containerd store with labels (containers, images, content,
    snapshots, namespaces) reads a ``labels.<key>`` path as "give ``key`` the
    sent value", and a key sent without a value is removed. Labels not named
    keep their values.

    Args:
        labels: Label to value; an empty value removes that label. Must not
            be empty: an empty update mask would make containerd replace the
            whole record (callers skip the call instead).

    Raises:
        InvalidArgumentError: A key is empty or a key or value is not a
            string (before any RPC).
    """
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"label key {key!r} must be a non-empty string")
        if not isinstance(value, str):
            raise InvalidArgumentError(f"label {key!r}: value must be a string, not {type(value).__name__}")
    if not labels:
        raise ValueError("label_update needs at least one label")
    from google.protobuf import field_mask_pb2

    values = {k: v for k, v in labels.items() if v}
    return values, field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
