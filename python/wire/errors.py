"""Wire's exceptions, one tree for every way of reaching a cluster.

A call through an in-process :class:`wire.Node` and the same call through a
:class:`wire.Client` raise the same class, chosen by the code the engine gives the
error (the ``error`` field of an HTTP error answer)::

    >>> import wire
    >>> issubclass(wire.InvalidSpecError, ValueError)
    True
    >>> try:
    ...     wire.Pipeline("bad name!").spec_json()
    ... except wire.InvalidSpecError as e:
    ...     print(e.errors[0]["path"])
    name
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Type

__all__ = [
    "WireError",
    "InvalidRequestError",
    "InvalidSpecError",
    "InvalidConfigError",
    "TooLargeError",
    "NotFoundError",
    "ConflictError",
    "UnavailableError",
    "ShutdownError",
    "TransportError",
    "StorageError",
    "InternalError",
    "PipelineFailedError",
    "UnauthenticatedError",
    "ForbiddenError",
]


class WireError(Exception):
    """Any error Wire reports. ``code`` is the engine's error code, ``detail`` its text."""

    code: str = "internal"

    def __init__(self, detail: str, *, code: Optional[str] = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed if tried again later."""
        return False


class InvalidRequestError(WireError, ValueError):
    """The caller asked for something invalid: a bad key, value, limit or argument."""

    code = "bad_request"


class InvalidSpecError(InvalidRequestError):
    """A pipeline spec is invalid. ``errors`` lists every problem as
    ``{"path": ..., "message": ...}``, the path naming the place in the spec
    (``transforms[1].config.filter``)."""

    code = "invalid_spec"

    def __init__(
        self, detail: str, *, code: Optional[str] = None, errors: Optional[List[Dict[str, str]]] = None
    ) -> None:
        super().__init__(detail, code=code)
        self.errors: List[Dict[str, str]] = list(errors or [])


class InvalidConfigError(InvalidRequestError):
    """A node's options are invalid; the message names every problem."""

    code = "invalid_config"


class TooLargeError(InvalidRequestError):
    """A value, transaction or request body is larger than the engine accepts."""

    code = "too_large"


class NotFoundError(WireError, LookupError):
    """The named key, pipeline or member does not exist."""

    code = "not_found"


class ConflictError(WireError):
    """The request conflicts with the cluster's state (a pipeline that already exists)."""

    code = "conflict"


class UnavailableError(WireError):
    """The cluster cannot serve the call now (no leader, quorum lost). Retry shortly."""

    code = "unavailable"

    @property
    def retryable(self) -> bool:
        return True


class ShutdownError(UnavailableError):
    """The node is stopped or shutting down."""

    code = "shutting_down"

    @property
    def retryable(self) -> bool:
        return False


class TransportError(UnavailableError, ConnectionError):
    """A :class:`wire.Client` could not reach the node (refused, timed out, bad answer)."""

    code = "transport"


class StorageError(WireError):
    """The node's storage failed."""

    code = "storage"


class InternalError(WireError):
    """An unexpected failure inside the engine; the node's log has the details."""

    code = "internal"


class UnauthenticatedError(WireError, PermissionError):
    """The node has users and the call showed none, or credentials that are no user's
    (``code`` is ``unauthenticated`` or ``bad_credentials``): give ``wire.Client`` a
    ``user`` and ``password`` or a ``token``."""

    code = "unauthenticated"


class ForbiddenError(WireError, PermissionError):
    """The user may not make this call; the message names the permission it lacks."""

    code = "forbidden"


class PipelineFailedError(WireError):
    """A pipeline being waited for failed and will not be retried. ``status`` is its
    last status."""

    code = "pipeline_failed"

    def __init__(self, detail: str, *, status: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(detail)
        self.status: Dict[str, Any] = dict(status or {})


_BY_CODE: Dict[str, Type[WireError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        InvalidSpecError,
        InvalidConfigError,
        TooLargeError,
        NotFoundError,
        ConflictError,
        UnavailableError,
        ShutdownError,
        StorageError,
        InternalError,
        UnauthenticatedError,
        ForbiddenError,
    )
}
_BY_CODE["bad_credentials"] = UnauthenticatedError
# An I/O failure of the node (binding an address, creating its data dir): the exception
# keeps the code "io".
_BY_CODE["io"] = InternalError
_BY_CODE["method_not_allowed"] = InvalidRequestError
_BY_CODE["unsupported_media_type"] = InvalidRequestError


def _from_code(code: str, detail: str, errors: Optional[str] = None) -> WireError:
    """The exception for an engine error code (called by the native module and the client)."""
    cls = _BY_CODE.get(code, WireError)
    if cls is InvalidSpecError:
        listed = json.loads(errors) if errors else []
        return InvalidSpecError(detail, code=code, errors=listed)
    return cls(detail, code=code)
