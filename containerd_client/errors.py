"""Errors raised by containerd-client.

Every exception the SDK raises derives from :class:`ContainerdError`. Errors
that come from the daemon carry the gRPC status code and containerd's own
message, and are chained (``__cause__``) to the original gRPC error; grpc's
exception types never reach callers.

The tree::

    ContainerdError
    ├── ClosedError                  use of a closed Client, executor or stream
    ├── NotSupportedError            the daemon lacks a feature (names the version needed)
    │   ├── MissingPackageError      this client lacks an optional Python package (also ImportError)
    │   └── network.PluginNotFoundError  a CNI plugin is not installed (also a NetworkError)
    ├── DaemonStartError             a private test daemon failed to start (testing module)
    ├── SSHError                     an ``ssh://`` address could not be reached (ssh's last stderr line kept)
    │   ├── SSHNotFoundError         no ``ssh`` program on PATH (also FileNotFoundError)
    │   ├── SSHConnectError          ssh exited: host refused or unreachable, authentication or
    │   │                            host key check failed, or the tunnel died and did not come back
    │   └── RemoteSocketError        ssh is up but containerd's socket on the host cannot be
    │                                opened (absent, nobody listening; also an UnavailableError)
    ├── CriuUnavailableError         criu is missing, does not run, or is too old for the kernel
    ├── CheckpointError              a checkpoint holds no CRIU image (empty, or not a checkpoint)
    ├── BlobTooLargeError            a blob is larger than the caller allowed (also ValueError)
    ├── cio.IOSetupError             a FIFO or its folder could not be made or opened
    ├── _typeurl.UnknownTypeError    an Any whose type URL is unknown or whose bytes do not decode
    ├── _registry.RegistryError      a registry answered with an unexpected status or was unreachable
    │   └── _registry.InvalidManifestError  a malformed or unsupported manifest, index or config
    ├── testing._registry.LocalRegistryError  the test registry or a tool it needs could not start
    ├── network.NetworkError         a network namespace, CNI configuration or CNI step failed
    │   └── network.CNIError         a CNI plugin failed (its code, msg and details kept)
    └── RPCError                     the daemon answered with a non-OK status
        ├── CancelledError           CANCELLED
        ├── UnknownError             UNKNOWN
        ├── InvalidArgumentError     INVALID_ARGUMENT
        │   ├── InvalidIdError       an id fails containerd's rules (checked before any RPC)
        │   ├── UnknownSignalError   a signal name or number this host does not know
        │   ├── InvalidSpecError     a spec option runc would refuse (checked before any RPC)
        │   ├── InvalidTimeoutError  a timeout or expiry that is negative, NaN, infinite or no number
        │   ├── InvalidAddressError  a malformed ``ssh://`` address (checked before anything starts)
        │   ├── files.InvalidPathError  a path in a container of the wrong kind (a file where a
        │   │                        folder is needed...), empty, or with too many symlinks
        │   ├── network.InvalidNetworkError  an unknown network, bad ports or subnet (before any RPC)
        │   ├── DecompressionBombError  data expands past its client-side limit (a gzip
        │   │                        or tar bomb, an oversized tar header); checked locally
        │   ├── _registry.InvalidReferenceError  a malformed or not fully qualified image reference
        │   └── images.ImageFormatError  a malformed or unsupported index, manifest or config
        │       └── images.ArchiveError  a malformed archive (not a tar, files missing, bad JSON)
        │           └── images.UnsafeArchiveError  a member escapes the archive (absolute, '..', links)
        ├── DeadlineExceededError    DEADLINE_EXCEEDED (also the builtin TimeoutError)
        │   └── WaitTimeoutError     a wait strategy was not met in time, or the task
        │                            exited first (carries the last log lines, exit code)
        ├── NotFoundError            NOT_FOUND
        │   └── images.PlatformNotFoundError  an image has no manifest for the platform asked
        ├── AlreadyExistsError       ALREADY_EXISTS
        │   └── ConflictError        ALREADY_EXISTS on create ("id already in use"), or
        │       │                    FAILED_PRECONDITION ending in ": conflict"
        │       └── network.PortInUseError  a host port to publish is taken (before any RPC)
        ├── PermissionDeniedError    PERMISSION_DENIED
        ├── ResourceExhaustedError   RESOURCE_EXHAUSTED
        ├── FailedPreconditionError  FAILED_PRECONDITION
        │   ├── NotModifiedError     FAILED_PRECONDITION ending in ": not modified"
        │   └── DigestMismatchError  data that does not match its digest or size
        ├── AbortedError             ABORTED
        ├── OutOfRangeError          OUT_OF_RANGE
        ├── UnimplementedError       UNIMPLEMENTED
        ├── InternalError            INTERNAL
        ├── UnavailableError         UNAVAILABLE
        ├── DataLossError            DATA_LOSS
        └── UnauthenticatedError     UNAUTHENTICATED
            └── _registry.CredentialsError  the credentials callable raised or gave something else

A ``module.Name`` entry lives beside the code that raises it, in that module
of ``containerd_client``. Classes checked on the client before any RPC also
derive from the builtin a Python caller expects: the ``InvalidArgumentError``
family and ``BlobTooLargeError`` are ``ValueError``s, ``UnknownTypeError`` is
a ``LookupError``, ``MissingPackageError`` an ``ImportError`` and
``DeadlineExceededError`` is a ``TimeoutError``, so ``except TimeoutError``
catches a call that ran out of time.

``ConflictError`` is both an ``AlreadyExistsError`` and a
``FailedPreconditionError`` so that either ``except`` clause catches it,
mirroring containerd's ``errdefs.IsConflict``.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "BlobTooLargeError",
    "CancelledError",
    "CheckpointError",
    "ClosedError",
    "ConflictError",
    "ContainerdError",
    "CriuUnavailableError",
    "DaemonStartError",
    "DataLossError",
    "DeadlineExceededError",
    "DecompressionBombError",
    "DigestMismatchError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidAddressError",
    "InvalidArgumentError",
    "InvalidIdError",
    "InvalidSpecError",
    "InvalidTimeoutError",
    "MissingPackageError",
    "NotFoundError",
    "NotModifiedError",
    "NotSupportedError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RPCError",
    "RemoteSocketError",
    "ResourceExhaustedError",
    "SSHConnectError",
    "SSHError",
    "SSHNotFoundError",
    "StatusCode",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "UnknownSignalError",
    "WaitTimeoutError",
    "error_for_status",
]


class StatusCode(enum.IntEnum):
    """gRPC status codes, mirrored so callers need not import grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ContainerdError(Exception):
    """Base class of every error raised by containerd-client."""


class ClosedError(ContainerdError):
    """The client, stream or executor was used after it was closed."""


class NotSupportedError(ContainerdError):
    """The connected containerd lacks a feature this call needs.

    Attributes:
        feature: What was asked for.
        needed: The containerd version that first offers it, if known.
        server_version: The version of the connected daemon, if known.
    """

    def __init__(self, feature: str, needed: str = "", server_version: str = "") -> None:
        msg = f"{feature} is not supported by this containerd"
        if server_version:
            msg += f" ({server_version})"
        if needed:
            msg += f"; it needs containerd {needed} or newer"
        super().__init__(msg)
        self.feature = feature
        self.needed = needed
        self.server_version = server_version

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.feature, self.needed, self.server_version))


class MissingPackageError(NotSupportedError, ImportError):
    """The client lacks an optional Python package that this call needs.

    A :class:`NotSupportedError` (the feature is not available here) whose
    fix is on the client's side: the message names the package and the
    extra that installs it.

    Attributes:
        feature: What was asked for.
        package: The missing Python package.
        extra: The ``containerd-client`` extra that installs it.
    """

    def __init__(self, feature: str, package: str, extra: str, alternative: str = "") -> None:
        ContainerdError.__init__(
            self,
            f"{feature} needs the Python package {package}{alternative}, which this client lacks: "
            f"pip install 'containerd-client[{extra}]'",
        )
        self.feature = feature
        self.needed = ""
        self.server_version = ""
        self.package = package
        self.extra = extra
        self.alternative = alternative

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.feature, self.package, self.extra, self.alternative))


class DaemonStartError(ContainerdError):
    """A private containerd started by :mod:`containerd_client.testing` did not come up."""


class CriuUnavailableError(ContainerdError):
    """Checkpoint or restore cannot work: criu is missing, broken or too old for this kernel.

    The message says which, and what is needed (criu 4.0 or newer on kernels
    6.13 and newer). Raised by :func:`containerd_client.check_criu` and, with
    the daemon's own message appended, when the daemon's checkpoint or
    restore failed because of criu.

    Attributes:
        path: The criu binary that was judged, if one was found.
        version: Its version (``"3.17.1"``), if it printed one.
        kernel: The kernel release it was judged against.
    """

    def __init__(self, message: str, *, path: str = "", version: str = "", kernel: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.version = version
        self.kernel = kernel

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_criu_unavailable, (self.message, self.path, self.version, self.kernel))


def _make_criu_unavailable(message: str, path: str, version: str, kernel: str) -> CriuUnavailableError:
    return CriuUnavailableError(message, path=path, version=version, kernel=kernel)


class CheckpointError(ContainerdError):
    """A checkpoint holds no CRIU image: the daemon gave none, or the folder or image is not one.

    Never is an empty checkpoint reported as a success (libcontainerd did).
    """


_BY_CODE: dict[StatusCode, type[RPCError]] = {}


class SSHError(ContainerdError):
    """A containerd behind an ``ssh://`` address could not be reached.

    Attributes:
        message: What went wrong and what to check.
        destination: ``user@host:port`` as given (never a password).
        stderr: The last line ssh wrote to its stderr ("" if none).
        returncode: ssh's exit status if it exited, else None.
    """

    def __init__(
        self, message: str, *, destination: str = "", stderr: str = "", returncode: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.destination = destination
        self.stderr = stderr
        self.returncode = returncode

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_ssh_error, (type(self), self.message, self.destination, self.stderr, self.returncode))


def _make_ssh_error(
    cls: type[SSHError], message: str, destination: str, stderr: str, returncode: int | None
) -> SSHError:
    return cls(message, destination=destination, stderr=stderr, returncode=returncode)


class SSHNotFoundError(SSHError, FileNotFoundError):
    """No ``ssh`` program on PATH (install OpenSSH's client, Debian's ``openssh-client``)."""


class SSHConnectError(SSHError):
    """ssh exited before its tunnel came up, or the tunnel died and could not be started again.

    The host refused or could not be reached, authentication failed, or the
    host key was unknown or changed; :attr:`stderr` holds ssh's own words.
    """


class RPCError(ContainerdError):
    """The daemon answered a call with a non-OK gRPC status.

    Attributes:
        code: The gRPC status code.
        message: containerd's own message, unchanged.
    """

    #: The status code a subclass stands for; subclasses register themselves.
    status_code: ClassVar[StatusCode] = StatusCode.UNKNOWN

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only the first class for a code is the default for it: refinements
        # such as ConflictError are chosen by error_for_status, not by code.
        code = cls.__dict__.get("status_code")
        if code is not None and code not in _BY_CODE:
            _BY_CODE[code] = cls

    def __init__(self, message: str, code: StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = StatusCode(code) if code is not None else type(self).status_code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.code))


class CancelledError(RPCError):
    """The call was cancelled (CANCELLED)."""

    status_code = StatusCode.CANCELLED


class UnknownError(RPCError):
    """containerd reported an error without a more precise code (UNKNOWN)."""

    status_code = StatusCode.UNKNOWN


class InvalidArgumentError(RPCError):
    """A request was malformed (INVALID_ARGUMENT)."""

    status_code = StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(RPCError, TimeoutError):
    """The call did not finish before its deadline (DEADLINE_EXCEEDED).

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """

    status_code = StatusCode.DEADLINE_EXCEEDED


class WaitTimeoutError(DeadlineExceededError):
    """A wait strategy (:mod:`containerd_client.wait`) was not met within its timeout.

    Also raised before the timeout when the task exited, since it can then
    never become ready; :attr:`exit_code` says so.

    Attributes:
        logs: The last lines of the task's kept log (empty without ``logs=True``).
        exit_code: The task's exit code if it exited, else None.
    """

    def __init__(
        self,
        message: str,
        code: StatusCode | None = None,
        *,
        logs: tuple[str, ...] = (),
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message, code)
        self.logs = tuple(logs)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_wait_timeout, (self.message, self.code, self.logs, self.exit_code))


def _make_wait_timeout(
    message: str, code: StatusCode, logs: tuple[str, ...], exit_code: int | None
) -> WaitTimeoutError:
    return WaitTimeoutError(message, code, logs=logs, exit_code=exit_code)


class NotFoundError(RPCError):
    """The object does not exist (NOT_FOUND)."""

    status_code = StatusCode.NOT_FOUND


class AlreadyExistsError(RPCError):
    """An object with that name already exists (ALREADY_EXISTS)."""

    status_code = StatusCode.ALREADY_EXISTS


class PermissionDeniedError(RPCError):
    """The daemon refused the call (PERMISSION_DENIED)."""

    status_code = StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(RPCError):
    """A limit was hit, such as the gRPC message size (RESOURCE_EXHAUSTED)."""

    status_code = StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(RPCError):
    """The object is not in a state that allows the call (FAILED_PRECONDITION)."""

    status_code = StatusCode.FAILED_PRECONDITION


class AbortedError(RPCError):
    """The operation was aborted (ABORTED)."""

    status_code = StatusCode.ABORTED


class OutOfRangeError(RPCError):
    """A read went past the end of an object (OUT_OF_RANGE)."""

    status_code = StatusCode.OUT_OF_RANGE


class UnimplementedError(RPCError):
    """The daemon does not implement the method (UNIMPLEMENTED)."""

    status_code = StatusCode.UNIMPLEMENTED


class InternalError(RPCError):
    """The daemon failed internally (INTERNAL)."""

    status_code = StatusCode.INTERNAL


class UnavailableError(RPCError):
    """The daemon cannot be reached or is shutting down (UNAVAILABLE)."""

    status_code = StatusCode.UNAVAILABLE


class RemoteSocketError(SSHError, UnavailableError):
    """The ssh tunnel is up, but containerd's socket on the remote host cannot be opened.

    The socket is absent, nobody listens on it, or the ssh user may not open
    it. Also an :class:`UnavailableError` (its :attr:`code` is UNAVAILABLE), as
    the same fault on a local socket is.
    """


class DataLossError(RPCError):
    """Data was lost or corrupted (DATA_LOSS)."""

    status_code = StatusCode.DATA_LOSS


class UnauthenticatedError(RPCError):
    """Credentials were missing or refused (UNAUTHENTICATED), also used for registry auth."""

    status_code = StatusCode.UNAUTHENTICATED


class ConflictError(AlreadyExistsError, FailedPreconditionError):
    """The object is in use or already exists under that id."""

    # Not registered as the default of any code (see __init_subclass__).


class NotModifiedError(FailedPreconditionError):
    """The object was not modified (FAILED_PRECONDITION ending in ": not modified")."""


class DigestMismatchError(FailedPreconditionError):
    """Data did not match the digest or size it was expected to have.

    Raised when containerd refuses to commit a write (it verifies both), and
    when the SDK itself finds a blob of the wrong size or digest.
    """


class BlobTooLargeError(ContainerdError, ValueError):
    """A blob is larger than the caller allowed it to be (see ``ContentStore.read_all``)."""


class InvalidIdError(InvalidArgumentError, ValueError):
    """An identifier does not follow containerd's rules; checked before any RPC."""


class UnknownSignalError(InvalidArgumentError, ValueError):
    """A signal name or number that this host does not know."""


class InvalidSpecError(InvalidArgumentError, ValueError):
    """A spec option has a value runc or the kernel would refuse; checked before any RPC."""


class InvalidTimeoutError(InvalidArgumentError, ValueError):
    """A timeout or lease expiry is negative, NaN, infinite, too large or not a number."""


class InvalidAddressError(InvalidArgumentError, ValueError):
    """A malformed ``ssh://`` address (no host, a bad port, a password); nothing was started."""


class DecompressionBombError(InvalidArgumentError, ValueError):
    """Compressed or archived data expands past the limit set for it on the client.

    Raised while reading image layers and archives: a gzip or zstd stream that
    inflates beyond its ceiling, a tar with more entries or a larger header
    than any image needs. Nothing is kept of the data read so far.
    """


def error_for_status(code: int, message: str) -> RPCError:
    """Build the exception for a gRPC status, applying containerd's suffix rule.

    containerd sends conflicts and "not modified" as FAILED_PRECONDITION with
    a fixed message suffix (``errgrpc.ToNative``); that suffix is the only text
    we interpret.

    Args:
        code: The numeric gRPC status code.
        message: The status message from the daemon.

    Returns:
        An instance of the matching :class:`RPCError` subclass (not raised).
    """
    try:
        status = StatusCode(code)
    except ValueError:
        status = StatusCode.UNKNOWN
    if status is StatusCode.FAILED_PRECONDITION:
        if message.endswith(": conflict"):
            return ConflictError(message, status)
        if message.endswith(": not modified"):
            return NotModifiedError(message, status)
    cls = _BY_CODE.get(status, UnknownError)
    return cls(message, status)
