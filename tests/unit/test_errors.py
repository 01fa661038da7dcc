"""The error tree: one class per gRPC code, containerd's suffix rule, pickling."""

from __future__ import annotations

import pickle

import grpc
import pytest
from _fakes import FakeRpcError

from containerd_client import errors
from containerd_client._rpc import map_rpc_error
from containerd_client.errors import StatusCode

EXPECTED = {
    StatusCode.CANCELLED: errors.CancelledError,
    StatusCode.UNKNOWN: errors.UnknownError,
    StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceededError,
    StatusCode.NOT_FOUND: errors.NotFoundError,
    StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhaustedError,
    StatusCode.FAILED_PRECONDITION: errors.FailedPreconditionError,
    StatusCode.ABORTED: errors.AbortedError,
    StatusCode.OUT_OF_RANGE: errors.OutOfRangeError,
    StatusCode.UNIMPLEMENTED: errors.UnimplementedError,
    StatusCode.INTERNAL: errors.InternalError,
    StatusCode.UNAVAILABLE: errors.UnavailableError,
    StatusCode.DATA_LOSS: errors.DataLossError,
    StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
}


def test_every_non_ok_grpc_code_has_a_class() -> None:
    grpc_codes = {c.value[0] for c in grpc.StatusCode if c is not grpc.StatusCode.OK}
    assert grpc_codes == {int(c) for c in EXPECTED}


@pytest.mark.parametrize(("code", "cls"), EXPECTED.items(), ids=lambda v: getattr(v, "name", ""))
def test_mapping_of_each_code(code: StatusCode, cls: type[errors.RPCError]) -> None:
    grpc_code = next(c for c in grpc.StatusCode if c.value[0] == code)
    original = FakeRpcError(grpc_code, f"server says {code.name}")
    err = map_rpc_error(original)
    assert type(err) is cls
    assert err.code is code
    assert err.message == f"server says {code.name}"
    assert str(err) == f"server says {code.name}"
    assert isinstance(err, errors.ContainerdError)
    assert not isinstance(err, grpc.RpcError)


def test_conflict_suffix_rule() -> None:
    err = errors.error_for_status(9, 'lease "x" is in use: conflict')
    assert type(err) is errors.ConflictError
    assert isinstance(err, errors.FailedPreconditionError)
    assert isinstance(err, errors.AlreadyExistsError)
    assert err.code is StatusCode.FAILED_PRECONDITION


def test_not_modified_suffix_rule() -> None:
    err = errors.error_for_status(9, "image unchanged: not modified")
    assert type(err) is errors.NotModifiedError
    assert isinstance(err, errors.FailedPreconditionError)


def test_suffix_elsewhere_in_message_is_not_a_conflict() -> None:
    err = errors.error_for_status(9, "conflict: task must be stopped")
    assert type(err) is errors.FailedPreconditionError


def test_suffix_rule_applies_only_to_failed_precondition() -> None:
    assert type(errors.error_for_status(2, "boom: conflict")) is errors.UnknownError


def test_unknown_numeric_code_maps_to_unknown() -> None:
    err = errors.error_for_status(99, "from the future")
    assert type(err) is errors.UnknownError
    assert err.code is StatusCode.UNKNOWN


@pytest.mark.parametrize(
    "err",
    [
        errors.NotFoundError('container "x" not found', StatusCode.NOT_FOUND),
        errors.ConflictError("in use: conflict", StatusCode.FAILED_PRECONDITION),
        errors.InvalidIdError("bad id"),
        errors.NotSupportedError("transfer service", "1.7", "1.6.20"),
        errors.ClosedError("closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle(err: errors.ContainerdError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    if isinstance(err, errors.RPCError):
        assert isinstance(back, errors.RPCError)
        assert back.code is err.code
        assert back.message == err.message


def test_names_end_in_error_and_do_not_shadow_builtins() -> None:
    import builtins

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert name.endswith("Error"), name
            assert not hasattr(builtins, name), name


def test_not_supported_message_names_version() -> None:
    err = errors.NotSupportedError("pull through the transfer service", "1.7", "1.6.20")
    assert "1.7" in str(err)
    assert "1.6.20" in str(err)
