from __future__ import annotations

import pytest
from grpclib.const import Status

from barman_cloud import errors
from plugin_grpc.errors import to_grpc_error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotFound("WAL 000000010000000000000009 is not in the archive"), Status.NOT_FOUND),
        (errors.InvalidInput("bad WAL name"), Status.INVALID_ARGUMENT),
        (errors.Unavailable("S3 answered 503 SlowDown"), Status.UNAVAILABLE),
        (errors.Conflict("a different object exists under that key"), Status.ALREADY_EXISTS),
        (errors.FailedPrecondition("the WAL archive is not empty"), Status.FAILED_PRECONDITION),
        (errors.Corrupt("wals/0000000100000000/000000010000000000000009 is corrupt"), Status.DATA_LOSS),
        (errors.BarmanCloudError("unexpected"), Status.INTERNAL),
    ],
)
def test_engine_errors_map_to_grpc_statuses(error: errors.BarmanCloudError, status: Status) -> None:
    mapped = to_grpc_error(error)
    assert mapped.status is status
    assert mapped.message == str(error)


def test_message_carries_the_hint() -> None:
    error = errors.NotFound("ObjectStore minio-store not found", hint="create it in namespace db")
    assert str(to_grpc_error(error).message) == "ObjectStore minio-store not found: create it in namespace db"
