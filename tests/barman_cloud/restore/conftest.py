"""Every PITR target runs on PostgreSQL 15; on the other versions of the default run, the time,
name and immediate targets do (lsn, xid and the retry join them with FULL=1). The restore
engine's tests run on the filesystem store and on S3 (moto): ``store``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import StoreOptions
from tests.harness.object_stores import MotoS3
from tests.storage.backends.s3 import credentials

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


@pytest.fixture(params=["filesystem", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, ServerLayout]]:
    if request.param == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        prefix = f"restore-{uuid.uuid4().hex[:8]}"
        opened = open_store(
            f"s3://{moto.bucket}/{prefix}", credentials(moto), StoreOptions(endpoint_url=moto.endpoint)
        )
        layout = ServerLayout(prefix, "pg")
    else:
        opened = open_store(f"file://{tmp_path / 'bucket'}")
        layout = ServerLayout("", "pg")
    yield opened, layout
    await opened.close()
