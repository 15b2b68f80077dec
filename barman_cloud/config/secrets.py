"""From an ObjectStore's secret references to the engine's resolved credentials and options.

The engine asks a :class:`SecretSource` for Secrets; the edges provide one (the Kubernetes API
through kubernetes-asyncio in ``plugin_grpc.kubernetes``, or a YAML file in
:mod:`barman_cloud.config.manifests`). Values never appear in errors or logs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from barman_cloud import logs
from barman_cloud.config.command_args import apply_command_args
from barman_cloud.config.object_store import ObjectStore, SecretKeySelector
from barman_cloud.errors import InvalidInput, NotFound
from barman_cloud.storage import Provider
from barman_cloud.storage.options import (
    AzureCredentials,
    Credentials,
    GoogleCredentials,
    S3Credentials,
    StoreOptions,
)

_S3_ENCRYPTION: dict[str, Literal["AES256", "aws:kms"]] = {"AES256": "AES256", "aws:kms": "aws:kms"}


class SecretSource(Protocol):
    async def get_secret(self, namespace: str, name: str) -> Mapping[str, bytes]:
        """The Secret's data (decoded). Raise NotFound when it does not exist."""
        ...


@dataclass(frozen=True)
class ResolvedStore:
    """Everything needed to open the ObjectStore's Store, secrets read."""

    object_store: ObjectStore
    credentials: Credentials
    options: StoreOptions

    @property
    def destination(self) -> str:
        return self.object_store.spec.configuration.destination_path

    @property
    def wal_options(self) -> StoreOptions:
        """``options`` for WAL uploads: with ``wal.encryption`` (S3 server-side encryption, as
        barman-cloud-wal-archive ``--encryption``; base backups use ``data.encryption``)."""
        configuration = self.object_store.spec.configuration
        encryption = _S3_ENCRYPTION.get(configuration.wal.encryption or "")
        if encryption is None or configuration.provider is not Provider.S3:
            return self.options
        return replace(self.options, encryption=replace(self.options.encryption, s3=encryption))


class _Reader:
    def __init__(self, store: ObjectStore, secrets: SecretSource) -> None:
        self.store = store
        self.secrets = secrets
        self.cache: dict[str, Mapping[str, bytes]] = {}

    async def raw(self, selector: SecretKeySelector | None, field_path: str) -> bytes | None:
        if selector is None:
            return None
        where = f"ObjectStore {self.store.namespace}/{self.store.name} ({field_path})"
        if selector.name not in self.cache:
            try:
                self.cache[selector.name] = await self.secrets.get_secret(self.store.namespace, selector.name)
            except NotFound:
                raise NotFound(
                    f"Secret {self.store.namespace}/{selector.name} referenced by {where} does not exist",
                    hint="create it, or fix the reference",
                ) from None
        data = self.cache[selector.name]
        if selector.key not in data:
            raise InvalidInput(
                f"Secret {self.store.namespace}/{selector.name} has no key {selector.key!r} ({where})",
                hint=f"its keys are: {', '.join(sorted(data)) or 'none'}",
            )
        return data[selector.key]

    async def text(
        self, selector: SecretKeySelector | None, field_path: str, *, strip: bool = True
    ) -> str | None:
        value = await self.raw(selector, field_path)
        if value is None:
            return None
        try:
            decoded = value.decode()
        except UnicodeDecodeError:
            raise InvalidInput(
                f"Secret {self.store.namespace}/{selector.name if selector else '?'} key "
                f"{selector.key if selector else '?'} is not UTF-8 text ({field_path})"
            ) from None
        # `echo value | base64` leaves a newline that no key, token or region ever contains.
        return decoded.strip() if strip else decoded


def _register_secrets(credentials: Credentials) -> None:
    """Keep the credentials' values out of every log line (:func:`barman_cloud.logs.scrub`)."""
    if isinstance(credentials, S3Credentials):
        values: list[str | None] = [
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
        ]
    elif isinstance(credentials, AzureCredentials):
        values = [credentials.connection_string, credentials.storage_key, credentials.sas_token]
        for part in (credentials.connection_string or "").split(";"):
            name, _, part_value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                values.append(part_value)
    elif isinstance(credentials, GoogleCredentials):
        values = [credentials.application_credentials]
        try:
            document = json.loads(credentials.application_credentials or "null")
        except ValueError:
            document = None
        if isinstance(document, dict):
            values += [str(document.get(k)) for k in ("private_key", "private_key_id", "client_secret",
                                                       "refresh_token") if document.get(k)]  # fmt: skip
    else:
        values = []
    for value in values:
        logs.register_secret(value)


async def resolve(
    store: ObjectStore, secrets: SecretSource, *, environ: Mapping[str, str] | None = None
) -> ResolvedStore:
    """Read every Secret the ObjectStore references and build the Store's inputs."""
    environ = os.environ if environ is None else environ
    configuration = store.spec.configuration
    at = "spec.configuration"
    read = _Reader(store, secrets)
    credentials: Credentials = None
    if (s3 := configuration.s3_credentials) is not None:
        credentials = S3Credentials(
            access_key_id=await read.text(s3.access_key_id, f"{at}.s3Credentials.accessKeyId"),
            secret_access_key=await read.text(s3.secret_access_key, f"{at}.s3Credentials.secretAccessKey"),
            session_token=await read.text(s3.session_token, f"{at}.s3Credentials.sessionToken"),
            region=await read.text(s3.region, f"{at}.s3Credentials.region"),
            inherit_from_iam_role=s3.inherit_from_iam_role,
        )
    elif (azure := configuration.azure_credentials) is not None:
        credentials = AzureCredentials(
            connection_string=await read.text(
                azure.connection_string, f"{at}.azureCredentials.connectionString"
            ),
            storage_account=await read.text(azure.storage_account, f"{at}.azureCredentials.storageAccount"),
            storage_key=await read.text(azure.storage_key, f"{at}.azureCredentials.storageKey"),
            sas_token=await read.text(azure.storage_sas_token, f"{at}.azureCredentials.storageSasToken"),
            inherit_from_azure_ad=azure.inherit_from_azure_ad,
            use_default_azure_credentials=azure.use_default_azure_credentials,
        )
    elif (google := configuration.google_credentials) is not None:
        credentials = GoogleCredentials(
            application_credentials=await read.text(
                google.application_credentials, f"{at}.googleCredentials.applicationCredentials", strip=False
            ),
            gke_environment=google.gke_environment,
        )
    _register_secrets(credentials)
    options = StoreOptions(
        endpoint_url=configuration.endpoint_url or None,
        endpoint_ca=await read.raw(configuration.endpoint_ca, f"{at}.endpointCA"),
    )
    # The AWS SDK variables upstream documents as the workaround for S3-compatible stores, set
    # through instanceSidecarConfiguration.env, keep working; "when_required" is our default.
    if (
        environ.get("AWS_REQUEST_CHECKSUM_CALCULATION", "").lower() == "when_supported"
        or environ.get("AWS_RESPONSE_CHECKSUM_VALIDATION", "").lower() == "when_supported"
    ):
        options = replace(options, s3_checksums="when_supported")
    # One client serves archiving, backups and restores of a store: the store-level options of
    # every list apply (a value given in two lists: the later list wins).
    options = apply_command_args(
        options,
        [
            *configuration.wal.archive_additional_command_args,
            *configuration.data.additional_command_args,
            *configuration.wal.restore_additional_command_args,
            *configuration.data.restore_additional_command_args,
        ],
    )
    return ResolvedStore(store, credentials, options)
