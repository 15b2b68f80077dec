"""``wal.encryption`` reaches the WAL uploads (S3 server-side encryption, as barman-cloud-wal-archive
``--encryption``), and ``data.encryption`` stays the base backups' own setting."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest

from tests.harness.object_stores import MotoS3

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


@pytest.mark.parametrize(("wal", "expected"), [("encryption: AES256", "AES256"), ("compression: gzip", None)])
def test_wal_objects_carry_the_wal_encryption(
    moto_s3: MotoS3, tmp_path: Path, wal: str, expected: str | None
) -> None:
    prefix = f"sse-{uuid.uuid4().hex[:8]}"
    (tmp_path / "store.yaml").write_text(moto_s3.manifest(prefix, wal=wal))
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(b"\x01" * 1024 * 1024)
    result = subprocess.run(
        [CLI, "wal-archive", "-f", str(tmp_path / "store.yaml"), "--server-name", "pg", str(segment)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    s3 = boto3.client(
        "s3", endpoint_url=moto_s3.endpoint, region_name=moto_s3.region,
        aws_access_key_id=moto_s3.access_key, aws_secret_access_key=moto_s3.secret_key,
    )  # fmt: skip
    listed = s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=f"{prefix}/pg/wals/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert len(keys) == 1 and keys[0].split("/")[-1].startswith("000000010000000000000001")
    head = s3.head_object(Bucket=moto_s3.bucket, Key=keys[0])
    assert head.get("ServerSideEncryption") == expected
