"""What a backup asks of S3 beyond the bytes (moto): the ObjectStore's tags on every object and
``data.encryption`` as server-side encryption, as barman-cloud-backup sets them."""

from __future__ import annotations

import uuid
from typing import Any

from barman_cloud.backup import backup
from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from tests.barman_cloud.backup.helpers import object_keys
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer


async def test_tags_and_encryption_on_every_object(
    postgres: PostgresServer, moto_s3: MotoS3, s3: Any
) -> None:
    manifest = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: tagged}}
spec:
  configuration:
    destinationPath: s3://{moto_s3.bucket}/tagged-{uuid.uuid4().hex[:8]}
    endpointURL: {moto_s3.endpoint}
    s3Credentials:
      accessKeyId: {{name: aws, key: ID}}
      secretAccessKey: {{name: aws, key: SECRET}}
    data: {{compression: snappy, encryption: AES256}}
    tags: {{team: databases, "cost center": "42"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws}}
stringData: {{ID: {moto_s3.access_key}, SECRET: {moto_s3.secret_key}}}
"""
    manifests = parse_manifests(manifest)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    configuration = resolved.object_store.spec.configuration
    settings = backup.settings_from(configuration, wait_for_archive=False, immediate_checkpoint=True)
    options = backup.backup_store_options(resolved.options, configuration, settings.jobs)
    store = open_store(resolved.destination, resolved.credentials, options)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, "pg")
    try:
        result = await backup.take_backup(store, layout, postgres.conninfo, settings)
        keys = await object_keys(store, layout.backup_dir(result.backup_id))
    finally:
        await store.close()
    assert [key.rsplit("/", 1)[1] for key in keys] == ["backup.info", "bcp_checksums.json", "data.tar.snappy"]
    for key in keys:
        tags = s3.get_object_tagging(Bucket=moto_s3.bucket, Key=key)["TagSet"]
        assert {tag["Key"]: tag["Value"] for tag in tags} == {"team": "databases", "cost center": "42"}
        assert s3.head_object(Bucket=moto_s3.bucket, Key=key)["ServerSideEncryption"] == "AES256"
