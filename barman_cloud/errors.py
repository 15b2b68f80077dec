"""One exception hierarchy for the engine.

Callers map these to gRPC status codes (``plugin_grpc.errors``) and to Kubernetes conditions and
events (the operator). A message says what failed, on which object, and what to do about it.
"""

from __future__ import annotations


class BarmanCloudError(Exception):
    """Base of every error the engine raises on purpose.

    ``hint`` says what the user can do; it is appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)


class NotFound(BarmanCloudError):
    """The object, backup, WAL segment or resource asked for does not exist."""


class InvalidInput(BarmanCloudError):
    """Input from outside (a request, a spec, a name, a file) is malformed; retrying won't help."""


class Unavailable(BarmanCloudError):
    """A transient failure (network, throttling, a service starting); retrying may help."""


class Conflict(BarmanCloudError):
    """The operation would overwrite or contradict something that already exists."""


class FailedPrecondition(BarmanCloudError):
    """The system is not in a state that allows the operation (permissions, a non-empty archive)."""


class Forbidden(FailedPrecondition):
    """The credentials were refused, or lack a permission the operation needs."""


class Corrupt(BarmanCloudError):
    """An object's bytes do not match the checksum recorded when it was written, or its content
    cannot be what its name says (a truncated archive, a WAL segment of another cluster).
    Retrying will not help: the object itself is damaged (gRPC ``DATA_LOSS``)."""
