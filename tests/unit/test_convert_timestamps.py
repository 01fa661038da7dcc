"""``_convert.from_timestamp``: the one protobuf Timestamp -> datetime conversion."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from containerd_client._convert import from_timestamp
from containerd_client._pb.containerd.types.task import task_pb2


def test_a_set_timestamp_becomes_an_aware_utc_datetime() -> None:
    got = from_timestamp(Timestamp(seconds=1_700_000_000, nanos=123_456_000))
    assert got == dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.timezone.utc)
    assert got is not None
    assert got.utcoffset() == dt.timedelta(0)


def test_unset_and_missing_timestamps_are_none() -> None:
    assert from_timestamp(None) is None
    assert from_timestamp(Timestamp()) is None
    # An unset message field reads as the zero timestamp.
    process = task_pb2.Process(pid=1)
    assert not process.HasField("exited_at")
    assert from_timestamp(process.exited_at) is None


def test_nanoseconds_inside_the_first_second_still_count() -> None:
    assert from_timestamp(Timestamp(seconds=0, nanos=1000)) == dt.datetime(
        1970, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc
    )
