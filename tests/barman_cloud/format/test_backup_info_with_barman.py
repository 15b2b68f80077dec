"""Our backup.info against barman 3.19's own reader and writer (barman's infofile module, run in
its own virtual environment): barman loads what we write and writes back the same bytes."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from barman_cloud.format.backup_info import BackupInfo, format_backup_info, parse_backup_info
from tests.harness.tools import barman_cloud_bin

# Load with barman.infofile.BackupInfo, then save: prints what barman itself would write.
BARMAN_ROUND_TRIP = """
import io, sys
import barman.output  # noqa: imported first, as barman itself does (circular imports)
from barman.infofile import BackupInfo
info = BackupInfo(backup_id="20240506T070809")
info.load(file_object=io.BytesIO(sys.stdin.buffer.read()))
out = io.BytesIO()
info.save(file_object=out)
sys.stdout.buffer.write(out.getvalue())
"""


def barman_rewrite(data: bytes) -> bytes:
    python = barman_cloud_bin("barman-cloud-backup").parent / "python"
    result = subprocess.run(
        [str(python), "-c", BARMAN_ROUND_TRIP], input=data, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


CASES = [
    BackupInfo(status="STARTED", begin_time=datetime(2026, 11, 24, 6, 3, 27, tzinfo=UTC), timeline=1),
    BackupInfo(
        status="DONE",
        backup_name="nightly run",
        backup_label="START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\nLABEL: it's 'quoted'\n",
        begin_offset=40,
        begin_time=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2))),
        end_time=datetime(2024, 5, 6, 7, 9, 10, tzinfo=timezone(timedelta(hours=-5))),
        begin_wal="000000010000000000000009",
        end_wal="00000001000000000000000A",
        begin_xlog="0/9000028",
        end_xlog="0/A000138",
        cluster_size=987654321,
        copy_stats={"total_time": 0.5, "number_of_workers": 2, "copy_time_per_item": {"data": 0.25}},
        data_checksums="on",
        pgdata="/var/lib/postgresql/data/pgdata",
        systemid="7312345678901234567",
        tablespaces=(("tbs1", 16385, "/tbs/one"), ("tbs2", 16386, "/tbs/two")),
        included_files=("/etc/postgresql/extra.conf",),
        timeline=2,
        version=180000,
        xlog_segment_size=64 * 1024 * 1024,
        summarize_wal="off",
        children_backup_ids=("20240507T000000", "20240508T000000"),
    ),
    BackupInfo(status="FAILED", error="failure uploading data (connection reset)"),
]


@pytest.mark.parametrize("info", CASES, ids=["started", "done", "failed"])
def test_barman_reads_ours_and_writes_the_same_bytes(info: BackupInfo) -> None:
    ours = format_backup_info(info)
    assert barman_rewrite(ours) == ours


def test_we_read_what_barman_writes() -> None:
    example = (Path(__file__).parents[2] / "data/barman/backup.info").read_bytes()
    rewritten = barman_rewrite(example)
    assert format_backup_info(parse_backup_info(rewritten)) == rewritten
