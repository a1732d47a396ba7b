"""The exception tree of expboard. Every class carries the HTTP status the tracking server answers with,
so the HTTP client can raise the same class again.

    ExpboardError (500)
    ├── ConfigError (500)              no or broken workspace configuration
    ├── ValidationError (400)          a bad name, value, file path or argument
    ├── AuthError (401)                missing or wrong token
    │   └── ForbiddenError (403)       a valid token whose scope does not allow the request
    ├── NotFoundError (404)            no such experiment, run or file
    ├── ConflictError (409)            a property overwritten, a file appended at the wrong offset
    ├── PayloadTooLargeError (413)     a request or snapshot over its size limit
    ├── StoreUnavailableError (503)    the store cannot be reached (server down, database locked)
    ├── ComputeUnavailableError (503)  a compute target (a Ray cluster) cannot be reached
    ├── CorruptEventFileError (422)    an event file record that fails its CRC or does not parse (file, offset)
    └── RunFailedError (500)           wait_for_completion() on a run that ended Failed
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ComputeUnavailableError",
    "ConfigError",
    "ConflictError",
    "CorruptEventFileError",
    "ExpboardError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RunFailedError",
    "StoreUnavailableError",
    "ValidationError",
    "error_class",
]


class ExpboardError(Exception):
    """Base class of every error expboard raises on purpose.

    ``rest_stored`` is True on a store's refusal of part of a metric batch when it has stored every other
    part already (the HTTP store finds the refused metrics itself): the caller must not send the rest again."""

    status_code: int = 500
    rest_stored: bool = False


class ConfigError(ExpboardError):
    status_code = 500


class ValidationError(ExpboardError, ValueError):
    status_code = 400


class AuthError(ExpboardError):
    status_code = 401


class ForbiddenError(AuthError):
    status_code = 403


class NotFoundError(ExpboardError, KeyError):
    status_code = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(ExpboardError):
    status_code = 409


class PayloadTooLargeError(ExpboardError):
    status_code = 413


class StoreUnavailableError(ExpboardError):
    status_code = 503


class ComputeUnavailableError(ExpboardError):
    status_code = 503


class CorruptEventFileError(ExpboardError):
    """A TensorBoard event file record whose CRC does not match, or whose payload is not a valid Event.

    ``path`` is the file, ``offset`` the byte offset of the damaged record (-1 when unknown, e.g. raised
    again from a server's message), ``reason`` what is wrong with it. Records before ``offset`` are intact.
    """

    status_code = 422

    def __init__(self, path: object, offset: int = -1, reason: str = "") -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        if offset < 0 and not reason:  # just a message (as the HTTP client raises errors again)
            super().__init__(self.path)
        else:
            super().__init__(f"corrupt event file {self.path} at byte offset {offset}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes with its three fields
        return (type(self), (self.path, self.offset, self.reason))


class RunFailedError(ExpboardError):
    status_code = 500


def error_class(name: str) -> type[ExpboardError]:
    """The error class called ``name`` (as sent by the server), or ``ExpboardError`` if unknown."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, ExpboardError):
        return cls
    return ExpboardError
