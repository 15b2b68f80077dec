"""Secrets referenced by an ObjectStore, read from a manifests file (as a user applies them)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from barman_cloud.config.manifests import load_manifests, parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.errors import InvalidInput, NotFound
from barman_cloud.storage.options import AzureCredentials, GoogleCredentials, S3Credentials


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


KEY_ID_B64 = b64("AKIAEXAMPLE\n")  # with the newline `echo ... | base64` leaves

S3_MANIFESTS = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: minio-store
  namespace: db
spec:
  configuration:
    destinationPath: s3://backups/pg
    endpointURL: https://minio.db.svc:9000
    endpointCA: {{name: minio-ca, key: ca.crt}}
    s3Credentials:
      accessKeyId: {{name: minio, key: ACCESS_KEY_ID}}
      secretAccessKey: {{name: minio, key: ACCESS_SECRET_KEY}}
      region: {{name: minio, key: REGION}}
    wal:
      archiveAdditionalCommandArgs: ["--read-timeout 120", "--addressing-style=path"]
---
apiVersion: v1
kind: Secret
metadata: {{name: minio, namespace: db}}
data:
  ACCESS_KEY_ID: {KEY_ID_B64}
stringData:
  ACCESS_SECRET_KEY: s3cr3t-value
  REGION: eu-west-1
---
apiVersion: v1
kind: Secret
metadata: {{name: minio-ca, namespace: db}}
stringData:
  ca.crt: "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ignored}}
"""


async def test_s3_credentials_and_options_from_a_manifests_file(tmp_path: Path) -> None:
    path = tmp_path / "store.yaml"
    path.write_text(S3_MANIFESTS)
    manifests = load_manifests(path)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    assert resolved.destination == "s3://backups/pg"
    assert resolved.credentials == S3Credentials(
        access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t-value", region="eu-west-1"
    )
    assert resolved.options.endpoint_url == "https://minio.db.svc:9000"
    assert resolved.options.endpoint_ca is not None and resolved.options.endpoint_ca.startswith(b"-----BEGIN")
    assert resolved.options.read_timeout == 120.0  # "--read-timeout 120" in one element (#428)
    assert resolved.options.s3_addressing_style == "path"
    assert resolved.options.s3_checksums == "when_required"
    assert "s3cr3t" not in repr(resolved)


async def test_checksums_follow_the_aws_variables_upstream_documents() -> None:
    manifests = parse_manifests(S3_MANIFESTS)
    environ = {"AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_SUPPORTED"}
    resolved = await resolve(manifests.object_store(), manifests, environ=environ)
    assert resolved.options.s3_checksums == "when_supported"


async def test_missing_secret_is_named() -> None:
    manifests = parse_manifests(
        S3_MANIFESTS.split("---\napiVersion: v1\nkind: Secret\nmetadata: {name: minio,")[0]
    )
    with pytest.raises(NotFound, match=r"Secret db/minio referenced by ObjectStore db/minio-store"):
        await resolve(manifests.object_store(), manifests, environ={})


async def test_missing_key_lists_the_keys_without_values() -> None:
    manifests = parse_manifests(S3_MANIFESTS.replace("REGION: eu-west-1", "AREA: eu-west-1"))
    with pytest.raises(InvalidInput) as failure:
        await resolve(manifests.object_store(), manifests, environ={})
    message = str(failure.value)
    assert "has no key 'REGION'" in message and "ACCESS_KEY_ID, ACCESS_SECRET_KEY, AREA" in message
    assert "s3cr3t" not in message and "eu-west-1" not in message


async def test_azure_and_google_credentials() -> None:
    manifests = parse_manifests(
        """
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {name: az}
spec:
  configuration:
    destinationPath: http://127.0.0.1:10000/devstoreaccount1/backups
    azureCredentials:
      connectionString: {name: azure, key: AZURE_CONNECTION_STRING}
---
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {name: gcs}
spec:
  configuration:
    destinationPath: gs://bucket/path
    googleCredentials:
      applicationCredentials: {name: google, key: credentials.json}
---
apiVersion: v1
kind: Secret
metadata: {name: azure}
stringData: {AZURE_CONNECTION_STRING: "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1"}
---
apiVersion: v1
kind: Secret
metadata: {name: google}
stringData: {credentials.json: "{\\"type\\": \\"service_account\\"}\\n"}
"""
    )
    azure = await resolve(manifests.object_store("az"), manifests, environ={})
    assert azure.credentials == AzureCredentials(
        connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1"
    )
    google = await resolve(manifests.object_store("gcs"), manifests, environ={})
    assert google.credentials == GoogleCredentials(application_credentials='{"type": "service_account"}\n')
    with pytest.raises(InvalidInput, match="several ObjectStores"):
        manifests.object_store()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "not valid YAML"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '***'}", "not valid base64"),
        ("- just\n- a list", "is not an object"),
    ],
)
def test_bad_manifests(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_manifests(text)


async def test_restore_command_args_reach_the_store_options() -> None:
    """``restoreAdditionalCommandArgs`` (wal and data) were accepted but unused: the sidecar's one
    client per store also serves restores, so their store-level options apply, later lists win."""
    text = S3_MANIFESTS.replace(
        '      archiveAdditionalCommandArgs: ["--read-timeout 120", "--addressing-style=path"]\n',
        '      archiveAdditionalCommandArgs: ["--read-timeout 120"]\n'
        '      restoreAdditionalCommandArgs: ["--addressing-style=path"]\n'
        "    data:\n"
        '      restoreAdditionalCommandArgs: ["--read-timeout=300"]\n',
    )
    manifests = parse_manifests(text)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    assert resolved.options.s3_addressing_style == "path"
    assert resolved.options.read_timeout == 300.0
