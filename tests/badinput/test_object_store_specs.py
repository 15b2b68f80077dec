"""Invalid ObjectStore specs, missing Secrets and missing keys, as a user hands them to the tools
(``-f FILE``) and to the sidecar's resolution: each error names the field path (or the Secret and
key) and what to do, exits 3 from the tools, and never shows a secret value.

tests/barman_cloud/config covers the model field by field; here the same mistakes arrive whole,
through the manifests reader and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from barman_cloud.config.manifests import Manifests, parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.errors import InvalidInput, NotFound

SECRET = "Sup3r-S3cret-Valu3"

STORE = """
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: store, namespace: db}}
spec:
  configuration:
{configuration}
"""
S3 = """    destinationPath: s3://bucket/pg
    endpointURL: http://127.0.0.1:1
    s3Credentials:
      accessKeyId: {name: creds, key: ACCESS_KEY_ID}
      secretAccessKey: {name: creds, key: ACCESS_SECRET_KEY}"""
SECRET_DOC = f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: db}}
stringData:
  ACCESS_KEY_ID: AKIA-{SECRET}
  ACCESS_SECRET_KEY: {SECRET}
"""

INVALID_SPECS = {
    "no destination": ("    wal: {compression: gzip}", "spec.configuration.destinationPath: required"),
    "destination not a URL": (
        "    destinationPath: 'http://[bucket/pg'",
        "spec.configuration.destinationPath: destinationPath 'http://[bucket/pg' is not a valid URL",
    ),
    "unsupported scheme": (
        "    destinationPath: ftp://host/pg",
        "spec.configuration.destinationPath: destinationPath 'ftp://host/pg' has an unsupported scheme",
    ),
    "compression unknown": (
        "    destinationPath: file:///tmp/x\n    wal: {compression: rar}",
        "spec.configuration.wal.compression: must be one of bzip2, gzip, lz4, snappy, xz, zstd, not 'rar'",
    ),
    "maxParallel a string": (
        "    destinationPath: file:///tmp/x\n    wal: {maxParallel: 'four'}",
        "spec.configuration.wal.maxParallel: must be an integer, not 'four'",
    ),
    "jobs zero": (
        "    destinationPath: file:///tmp/x\n    data: {jobs: 0}",
        "spec.configuration.data.jobs: must be at least 1, not 0",
    ),
    "credentials of another provider": (
        "    destinationPath: s3://bucket/pg\n    googleCredentials: {gkeEnvironment: true}",
        "spec.configuration.googleCredentials: does not match destinationPath (aws-s3): use s3Credentials",
    ),
    "half a key pair": (
        "    destinationPath: s3://bucket/pg\n    s3Credentials:\n      accessKeyId: {name: creds, key: ID}",
        "spec.configuration.s3Credentials: accessKeyId and secretAccessKey go together",
    ),
    "selector without key": (
        "    destinationPath: s3://b/p\n    s3Credentials:\n      accessKeyId: {name: creds}\n"
        "      secretAccessKey: {name: creds, key: K}",
        "spec.configuration.s3Credentials.accessKeyId.key: required",
    ),
    "tags not strings": (
        "    destinationPath: file:///tmp/x\n    tags: {team: 7}",
        "spec.configuration.tags: must map strings to strings",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_SPECS), ids=list(INVALID_SPECS))
def test_invalid_specs_name_the_field(case: str) -> None:
    configuration, message = INVALID_SPECS[case]
    with pytest.raises(InvalidInput) as refused:
        parse_manifests(STORE.format(configuration=configuration) + SECRET_DOC)
    assert str(refused.value).startswith("invalid ObjectStore db/store: ")
    assert message in str(refused.value)


async def _resolve(text: str) -> None:
    manifests: Manifests = parse_manifests(text)
    await resolve(manifests.object_store(), manifests, environ={})


MISSING = {
    "no such Secret": (
        SECRET_DOC.replace("name: creds", "name: other"),
        NotFound,
        "Secret db/creds referenced by ObjectStore db/store (spec.configuration.s3Credentials.accessKeyId) "
        "does not exist: create it, or fix the reference",
    ),
    "Secret in another namespace": (
        SECRET_DOC.replace("namespace: db", "namespace: elsewhere"),
        NotFound,
        "Secret db/creds referenced by ObjectStore db/store",
    ),
    "no such key": (
        SECRET_DOC.replace("ACCESS_SECRET_KEY:", "SECRET_ACCESS_KEY:"),
        InvalidInput,
        "Secret db/creds has no key 'ACCESS_SECRET_KEY' (ObjectStore db/store "
        "(spec.configuration.s3Credentials.secretAccessKey)): its keys are: ACCESS_KEY_ID, SECRET_ACCESS_KEY",
    ),
    "value not UTF-8": (
        SECRET_DOC.replace("stringData:", "data:\n  ACCESS_SECRET_KEY: //79/Q==\nstringData:").replace(
            f"  ACCESS_SECRET_KEY: {SECRET}\n", ""
        ),
        InvalidInput,
        "Secret db/creds key ACCESS_SECRET_KEY is not UTF-8 text "
        "(spec.configuration.s3Credentials.secretAccessKey)",
    ),
    "data not base64": (
        SECRET_DOC.replace("stringData:", "data:\n  TOKEN: 'not base64!'\nstringData:"),
        InvalidInput,
        "Secret db/creds: data.TOKEN is not valid base64: use stringData for plain text",
    ),
    "stringData a list": (
        SECRET_DOC.replace(
            f"  ACCESS_KEY_ID: AKIA-{SECRET}\n  ACCESS_SECRET_KEY: {SECRET}\n", f"  - {SECRET}\n"
        ),
        InvalidInput,
        "Secret db/creds: stringData must be a mapping of keys to values, not list",
    ),
    "metadata a list": (
        SECRET_DOC.replace("metadata: {name: creds, namespace: db}", "metadata: [creds]"),
        InvalidInput,
        "document 2 of the manifests: metadata must be a mapping",
    ),
    "YAML broken on the secret's line": (
        SECRET_DOC.replace(f"ACCESS_SECRET_KEY: {SECRET}", f'ACCESS_SECRET_KEY: "{SECRET}'),
        InvalidInput,
        "the manifests are not valid YAML (line ",
    ),
}


@pytest.mark.parametrize("case", list(MISSING), ids=list(MISSING))
async def test_missing_secrets_and_keys_are_named_without_values(case: str) -> None:
    secret_doc, kind, message = MISSING[case]
    with pytest.raises(kind) as refused:
        await _resolve(STORE.format(configuration=S3) + secret_doc)
    assert message in str(refused.value)
    assert SECRET not in str(refused.value) and SECRET not in repr(refused.value)


CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


@pytest.mark.parametrize(
    ("case", "manifest", "message"),
    [
        (
            "invalid spec",
            STORE.format(configuration=INVALID_SPECS["maxParallel a string"][0]),
            INVALID_SPECS["maxParallel a string"][1],
        ),
        (
            "missing key",
            STORE.format(configuration=S3) + MISSING["no such key"][0],
            MISSING["no such key"][2],
        ),
        (
            "broken YAML",
            STORE.format(configuration=S3) + MISSING["YAML broken on the secret's line"][0],
            "the manifests are not valid YAML (line 19, column 22: while scanning a quoted scalar; "
            "line 20, column 1: found unexpected end of stream)",
        ),
    ],
)
def test_the_tools_exit_3_naming_the_field(tmp_path: Path, case: str, manifest: str, message: str) -> None:
    path = tmp_path / "store.yaml"
    path.write_text(manifest)
    result = subprocess.run(
        [
            CLI,
            "wal-restore",
            "-f",
            str(path),
            "--server-name",
            "pg",
            "000000010000000000000001",
            str(tmp_path / "RECOVERYXLOG"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert message in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert not (tmp_path / "RECOVERYXLOG").exists()
