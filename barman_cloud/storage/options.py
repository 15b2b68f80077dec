"""Resolved inputs of a backend: credentials (secret values already read) and client options.

The engine never reads a Kubernetes Secret itself: the edges (the sidecar's adapter, the operator,
the YAML file reader) resolve the ObjectStore's secret references into these objects. ``repr``
never shows a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MiB = 1024 * 1024


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    inherit_from_iam_role: bool = False
    """Use the default provider chain (environment, web identity / IRSA, instance metadata)."""


@dataclass(frozen=True)
class AzureCredentials:
    connection_string: str | None = field(default=None, repr=False)
    storage_account: str | None = None
    storage_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    inherit_from_azure_ad: bool = False
    """Managed identity (azure-identity ManagedIdentityCredential)."""
    use_default_azure_credentials: bool = False
    """azure-identity DefaultAzureCredential (environment, workload identity, managed identity...)."""


@dataclass(frozen=True)
class GoogleCredentials:
    application_credentials: str | None = field(default=None, repr=False)
    """Service-account (or external-account) JSON; None = application default credentials."""
    gke_environment: bool = False
    """Workload identity: credentials from the metadata server."""


Credentials = S3Credentials | AzureCredentials | GoogleCredentials | None


@dataclass(frozen=True)
class Encryption:
    """Server-side encryption of uploaded objects."""

    s3: Literal["AES256", "aws:kms"] | None = None
    s3_kms_key_id: str | None = None
    azure_encryption_scope: str | None = None
    gcs_kms_key_name: str | None = None


@dataclass(frozen=True)
class StoreOptions:
    endpoint_url: str | None = None
    """``endpointURL``: S3-compatible endpoint, Azurite, a GCS emulator."""
    endpoint_ca: bytes | None = field(default=None, repr=False)
    """``endpointCA``: PEM bundle trusted for TLS to the endpoint (instead of the system store)."""
    s3_addressing_style: Literal["auto", "virtual", "path"] = "auto"
    s3_checksums: Literal["when_required", "when_supported"] = "when_required"
    """S3 request/response checksums: only when the operation requires one by default, because
    several S3-compatible stores reject or mangle the default CRC32 trailers (upstream #393)."""
    encryption: Encryption = field(default_factory=Encryption)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Seconds without progress on one request before it is retried."""
    max_attempts: int = 5
    """Tries per request (throttling, 5xx, resets, timeouts), with exponential backoff and jitter."""
    max_concurrency: int = 8
    """Parts of one object in flight at once (memory: about ``max_concurrency + 1`` parts)."""
    single_put_max: int = 64 * MiB
    """Objects up to this size (when the size is known or the stream ends before it) go in one request."""
    part_size: int | None = None
    """Fixed part size; None adapts it to the size hint within the provider's limits."""
