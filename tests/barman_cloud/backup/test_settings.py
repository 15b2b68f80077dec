"""Backup settings from an ObjectStore, as the upstream plugin passes them to barman-cloud-backup."""

from __future__ import annotations

import pytest

from barman_cloud.backup import backup, progress
from barman_cloud.config.object_store import BarmanObjectStoreConfiguration, parse_object_store
from barman_cloud.errors import InvalidInput
from barman_cloud.format import compression
from barman_cloud.storage.options import StoreOptions


def configuration(
    data: str, destination: str = "s3://bucket/path", tags: str = "{}"
) -> BarmanObjectStoreConfiguration:
    import yaml

    document = yaml.safe_load(
        f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: store, namespace: default}}
spec:
  configuration:
    destinationPath: {destination}
    data: {data}
    tags: {tags}
"""
    )
    return parse_object_store(document).spec.configuration


def test_settings_from_the_data_section() -> None:
    config = configuration(
        "{compression: bzip2, jobs: 4, immediateCheckpoint: true,"
        " additionalCommandArgs: ['--max-archive-size 2GB']}",
        tags="{team: db}",
    )
    settings = backup.settings_from(config, backup_name="nightly")
    assert (settings.compression, settings.jobs, settings.immediate_checkpoint) == (
        compression.BZIP2,
        4,
        True,
    )
    assert settings.max_archive_size == 2 * 1024**3 and settings.backup_name == "nightly"
    assert dict(settings.tags) == {"team": "db"}
    defaults = backup.settings_from(configuration("{}"))
    assert (defaults.compression, defaults.jobs, defaults.immediate_checkpoint) == (None, 2, False)
    assert defaults.max_archive_size == 100 * 1024**3
    equals_form = configuration("{additionalCommandArgs: ['-S=512MB']}")
    assert backup.settings_from(equals_form).max_archive_size == 512 * 1024**2


def test_store_options_for_backups() -> None:
    config = configuration("{encryption: 'aws:kms', jobs: 3}")
    options = backup.backup_store_options(StoreOptions(), config, 3)
    assert options.encryption.s3 == "aws:kms" and options.max_concurrency == 3
    assert options.part_size == backup.UPLOAD_PART_SIZE
    tuned = backup.backup_store_options(StoreOptions(part_size=32 << 20), config, 1)
    assert tuned.part_size == 32 << 20 and tuned.max_concurrency == 1
    gcs = configuration("{encryption: AES256}", destination="gs://bucket/path")
    on_gcs = backup.backup_store_options(StoreOptions(), gcs, 2)
    assert on_gcs.encryption.s3 is None and on_gcs.part_size is None


@pytest.mark.parametrize("text", ["", "GB", "-1", "1.5XB", "lots"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidInput):
        backup.parse_size(text)


def test_progress_estimates() -> None:
    snapshot = progress.Snapshot(done=300 * 2**20, uploaded=100 * 2**20, total=1200 * 2**20, elapsed=3.0)
    assert snapshot.rate == 100 * 2**20
    assert snapshot.eta == pytest.approx(9.0)
    assert snapshot.fields()["percent"] == 25.0 and snapshot.fields()["eta_seconds"] == 9
    unknown = progress.Snapshot(done=10, uploaded=5, total=None, elapsed=1.0)
    assert unknown.eta is None and unknown.fields()["percent"] is None
