from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from barman_cloud import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    previous = logging.getLogger().handlers[:], logging.getLogger().level
    logs.configure("debug", stream)
    yield stream
    logging.getLogger().handlers[:], level = previous
    logging.getLogger().setLevel(level)


def test_each_record_is_one_json_line_with_its_extras(captured: io.StringIO) -> None:
    logging.getLogger("barman_cloud.test").info(
        "archived %s", "000000010000000000000001", extra={"bytes": 42}
    )
    (line,) = captured.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "barman_cloud.test"
    assert entry["msg"] == "archived 000000010000000000000001"
    assert entry["bytes"] == 42
    assert entry["ts"].endswith("+00:00")


def test_values_named_like_credentials_are_redacted(captured: io.StringIO) -> None:
    logging.getLogger("t").warning(
        "credentials",
        extra={
            "secret_access_key": "AKIA-SECRET",
            "connection_string": "AccountKey=abc",
            "settings": {"sessionToken": "tok", "region": "eu-west-1"},
        },
    )
    entry = json.loads(captured.getvalue())
    assert entry["secret_access_key"] == logs.REDACTED
    assert entry["connection_string"] == logs.REDACTED
    assert entry["settings"] == {"sessionToken": logs.REDACTED, "region": "eu-west-1"}
    assert "AKIA-SECRET" not in captured.getvalue() and "tok" not in captured.getvalue()


def test_level_names_are_upstreams(captured: io.StringIO) -> None:
    assert [logs.parse_level(name) for name in ("error", "warning", "info", "debug", "trace")] == [
        logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, logs.TRACE,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        logs.parse_level("verbose")
