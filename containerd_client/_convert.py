"""Conversions between the SDK's values and containerd's messages, written once."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import field_mask_pb2

from containerd_client.errors import InvalidArgumentError

# --- labels ---


def label_update(labels: Mapping[str, str]) -> tuple[dict[str, str], field_mask_pb2.FieldMask]:
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
    values = {k: v for k, v in labels.items() if v}
    return values, field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
