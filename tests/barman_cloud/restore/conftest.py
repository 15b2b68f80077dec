"""Every PITR target runs on PostgreSQL 15; on the other versions of the default run, the time,
name and immediate targets do (lsn, xid and the retry join them with FULL=1)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SLOW_ELSEWHERE = {"lsn", "xid", "retry"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if params is None or Path(str(item.fspath)).parent != HERE:
            continue
        version = params.params.get("pg_version")
        kind = params.params.get("kind", "retry" if "failed_attempt" in item.name else None)
        if version not in (None, 15) and kind in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)
