"""The ``ObjectStore`` custom resource (``barmancloud.cnpg.io/v1``), parsed and validated.

Field names are the upstream plugin's (``api/v1/objectstore_types.go`` plus the embedded
``BarmanObjectStoreConfiguration``), so the YAML a user applies upstream parses here unchanged.
Validation covers the CRD's schema, its two CEL rules, the Azure credential combinations upstream
only documents (#705) and the REDUNDANCY retention form we add. Every problem is reported at once,
each with its field path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from barman_cloud.errors import InvalidInput
from barman_cloud.storage import Provider
from barman_cloud.storage.location import parse_destination

API_VERSION = "barmancloud.cnpg.io/v1"
KIND = "ObjectStore"

WAL_COMPRESSIONS = ("bzip2", "gzip", "lz4", "snappy", "xz", "zstd")
DATA_COMPRESSIONS = ("bzip2", "gzip", "lz4", "snappy")
ENCRYPTIONS = ("AES256", "aws:kms")
LOG_LEVELS = ("error", "warning", "info", "debug", "trace")
DEFAULT_RETENTION_INTERVAL = 1800

T = TypeVar("T")


class ConfigurationError(InvalidInput):
    """An ObjectStore (or another configuration) failed validation; ``problems`` lists each
    ``(field path, message)``."""

    def __init__(self, subject: str, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = "; ".join(f"{path}: {message}" for path, message in self.problems)
        super().__init__(f"invalid {subject}: {lines}")


@dataclass(frozen=True)
class SecretKeySelector:
    """A key of a Secret in the ObjectStore's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class S3CredentialsSpec:
    access_key_id: SecretKeySelector | None = None
    secret_access_key: SecretKeySelector | None = None
    region: SecretKeySelector | None = None
    session_token: SecretKeySelector | None = None
    inherit_from_iam_role: bool = False


@dataclass(frozen=True)
class AzureCredentialsSpec:
    connection_string: SecretKeySelector | None = None
    storage_account: SecretKeySelector | None = None
    storage_key: SecretKeySelector | None = None
    storage_sas_token: SecretKeySelector | None = None
    inherit_from_azure_ad: bool = False
    use_default_azure_credentials: bool = False


@dataclass(frozen=True)
class GoogleCredentialsSpec:
    application_credentials: SecretKeySelector | None = None
    gke_environment: bool = False


@dataclass(frozen=True)
class WalConfiguration:
    compression: str | None = None
    encryption: str | None = None
    max_parallel: int = 1
    """WAL files archived ahead and prefetched per call (``wal.maxParallel``, unset = 1)."""
    archive_additional_command_args: tuple[str, ...] = ()
    restore_additional_command_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataConfiguration:
    compression: str | None = None
    encryption: str | None = None
    jobs: int | None = None
    """Parallel uploads/downloads of a base backup (barman's default is 2)."""
    immediate_checkpoint: bool = False
    additional_command_args: tuple[str, ...] = ()
    restore_additional_command_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class BarmanObjectStoreConfiguration:
    destination_path: str
    endpoint_url: str | None = None
    endpoint_ca: SecretKeySelector | None = None
    s3_credentials: S3CredentialsSpec | None = None
    azure_credentials: AzureCredentialsSpec | None = None
    google_credentials: GoogleCredentialsSpec | None = None
    wal: WalConfiguration = field(default_factory=WalConfiguration)
    data: DataConfiguration = field(default_factory=DataConfiguration)
    tags: Mapping[str, str] = field(default_factory=dict)
    history_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def provider(self) -> Provider:
        return parse_destination(self.destination_path).provider

    def secret_references(self) -> list[SecretKeySelector]:
        """Every Secret key this configuration reads (for RBAC and for resolution)."""
        refs: list[SecretKeySelector | None] = [self.endpoint_ca]
        if self.s3_credentials:
            c = self.s3_credentials
            refs += [c.access_key_id, c.secret_access_key, c.region, c.session_token]
        if self.azure_credentials:
            a = self.azure_credentials
            refs += [a.connection_string, a.storage_account, a.storage_key, a.storage_sas_token]
        if self.google_credentials:
            refs.append(self.google_credentials.application_credentials)
        return [ref for ref in refs if ref is not None]


@dataclass(frozen=True)
class RetentionPolicy:
    """``30d``/``4w``/``3m`` (upstream: a recovery window) or ``REDUNDANCY n`` (ours, #677)."""

    kind: Literal["recovery_window", "redundancy"]
    value: int
    unit: Literal["d", "w", "m"] | None = None

    def __str__(self) -> str:
        if self.kind == "redundancy":
            return f"REDUNDANCY {self.value}"
        units = {"d": "DAYS", "w": "WEEKS", "m": "MONTHS"}
        return f"RECOVERY WINDOW OF {self.value} {units[self.unit or 'd']}"


RETENTION_PATTERN = re.compile(r"^(?:([1-9][0-9]*)([dwm])|(?i:redundancy) ([1-9][0-9]*))$")


def parse_retention_policy(text: str) -> RetentionPolicy:
    match = RETENTION_PATTERN.match(text.strip())
    if not match:
        raise InvalidInput(
            f"invalid retention policy {text!r}",
            hint="use a recovery window such as 30d, 4w or 3m, or REDUNDANCY n (keep the last n backups)",
        )
    if match.group(3):
        return RetentionPolicy("redundancy", int(match.group(3)))
    units: dict[str, Literal["d", "w", "m"]] = {"d": "d", "w": "w", "m": "m"}
    return RetentionPolicy("recovery_window", int(match.group(1)), units[match.group(2)])


@dataclass(frozen=True)
class InstanceSidecarConfiguration:
    env: tuple[Mapping[str, Any], ...] = ()
    """Kubernetes EnvVar objects, passed through to the sidecar container as written."""
    resources: Mapping[str, Any] | None = None
    """Kubernetes ResourceRequirements, passed through as written."""
    retention_policy_interval_seconds: int = DEFAULT_RETENTION_INTERVAL
    additional_container_args: tuple[str, ...] = ()
    log_level: str = "info"


@dataclass(frozen=True)
class ObjectStoreSpec:
    configuration: BarmanObjectStoreConfiguration
    retention_policy: RetentionPolicy | None = None
    instance_sidecar_configuration: InstanceSidecarConfiguration = field(
        default_factory=InstanceSidecarConfiguration
    )


@dataclass(frozen=True)
class RecoveryWindow:
    first_recoverability_point: datetime | None = None
    last_successful_backup_time: datetime | None = None
    last_failed_backup_time: datetime | None = None

    def to_json(self) -> dict[str, str]:
        pairs = {
            "firstRecoverabilityPoint": self.first_recoverability_point,
            "lastSuccessfulBackupTime": self.last_successful_backup_time,
            "lastFailedBackupTime": self.last_failed_backup_time,
        }
        return {k: _rfc3339(v) for k, v in pairs.items() if v is not None}


@dataclass(frozen=True)
class ObjectStoreStatus:
    server_recovery_window: Mapping[str, RecoveryWindow] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectStore:
    name: str
    namespace: str
    spec: ObjectStoreSpec
    status: ObjectStoreStatus = field(default_factory=ObjectStoreStatus)
    uid: str | None = None
    generation: int | None = None
    unknown_fields: tuple[str, ...] = ()
    """Paths of fields we do not know (ignored, like the API server prunes them)."""


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class _Parser:
    """Walks a JSON document, collecting every problem with its path instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.unknown: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(
        self, value: Any, path: str, known: Sequence[str] = (), *, required: bool = False
    ) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.fail(path, "required")
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, not {type(value).__name__}")
            return {}
        if known:
            self.unknown += [f"{path}.{k}" for k in value if k not in known]
        return value

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(f"{path}.{key}", "required")
            return None
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"must be a string, not {type(value).__name__}")
            return None
        if required and not value:
            self.fail(f"{path}.{key}", "must not be empty")
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str) -> bool:
        value = obj.get(key, False)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, not {value!r}")
            return False
        return value

    def integer(self, obj: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be an integer, not {value!r}")
            return None
        if value < minimum:
            self.fail(f"{path}.{key}", f"must be at least {minimum}, not {value}")
            return None
        return value

    def choice(self, obj: Mapping[str, Any], key: str, path: str, choices: Sequence[str]) -> str | None:
        value = self.string(obj, key, path)
        if value is not None and value not in choices:
            self.fail(f"{path}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return None
        return value

    def strings(self, obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f"{path}.{key}", "must be a list of strings")
            return ()
        return tuple(value)

    def string_map(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        value = obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.fail(f"{path}.{key}", "must map strings to strings")
            return {}
        return {str(k): v for k, v in value.items()}

    def selector(self, obj: Mapping[str, Any], key: str, path: str) -> SecretKeySelector | None:
        if obj.get(key) is None:
            return None
        raw = self.mapping(obj[key], f"{path}.{key}", ("name", "key"))
        name = self.string(raw, "name", f"{path}.{key}", required=True)
        secret_key = self.string(raw, "key", f"{path}.{key}", required=True)
        return SecretKeySelector(name, secret_key) if name and secret_key else None

    def timestamp(self, obj: Mapping[str, Any], key: str, path: str) -> datetime | None:
        value = self.string(obj, key, path)
        if not value:
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{path}.{key}", f"must be an RFC 3339 date-time, not {value!r}")
            return None

    def optional(
        self, obj: Mapping[str, Any], key: str, path: str, build: Callable[[Mapping[str, Any], str], T]
    ) -> T | None:
        if obj.get(key) is None:
            return None
        return build(obj[key], f"{path}.{key}")


def parse_object_store(document: Mapping[str, Any]) -> ObjectStore:
    """Parse an ObjectStore as the API server returns it or a user writes it (JSON or YAML)."""
    p = _Parser()
    doc = p.mapping(
        document, "ObjectStore", ("apiVersion", "kind", "metadata", "spec", "status"), required=True
    )
    if doc.get("kind", KIND) != KIND:
        p.fail("kind", f"expected {KIND}, got {doc.get('kind')!r}")
    if doc.get("apiVersion", API_VERSION) != API_VERSION:
        p.fail("apiVersion", f"expected {API_VERSION}, got {doc.get('apiVersion')!r}")
    metadata = p.mapping(doc.get("metadata"), "metadata", required=True)
    name = p.string(metadata, "name", "metadata", required=True) or ""
    namespace = p.string(metadata, "namespace", "metadata") or "default"
    spec_doc = p.mapping(
        doc.get("spec"),
        "spec",
        ("configuration", "retentionPolicy", "instanceSidecarConfiguration"),
        required=True,
    )
    configuration = _configuration(p, spec_doc.get("configuration"), "spec.configuration")
    retention = None
    if spec_doc.get("retentionPolicy") is not None:
        text = p.string(spec_doc, "retentionPolicy", "spec")
        if text is not None:
            try:
                retention = parse_retention_policy(text)
            except InvalidInput as error:
                p.fail("spec.retentionPolicy", str(error))
    sidecar = _sidecar(p, spec_doc.get("instanceSidecarConfiguration"), "spec.instanceSidecarConfiguration")
    status = _status(p, doc.get("status"), "status")
    if p.problems or configuration is None:
        raise ConfigurationError(f"ObjectStore {namespace}/{name or '?'}", p.problems)
    generation = metadata.get("generation")
    return ObjectStore(
        name=name,
        namespace=namespace,
        spec=ObjectStoreSpec(configuration, retention, sidecar),
        status=status,
        uid=metadata.get("uid") if isinstance(metadata.get("uid"), str) else None,
        generation=generation if isinstance(generation, int) else None,
        unknown_fields=tuple(p.unknown),
    )


_CONFIGURATION_FIELDS = (
    "destinationPath", "endpointURL", "endpointCA", "serverName", "s3Credentials", "azureCredentials",
    "googleCredentials", "wal", "data", "tags", "historyTags",
)  # fmt: skip


def _configuration(p: _Parser, value: Any, path: str) -> BarmanObjectStoreConfiguration | None:
    raw = p.mapping(value, path, _CONFIGURATION_FIELDS, required=True)
    if not raw:
        return None
    if "serverName" in raw:
        # CEL rule of the upstream CRD (0.4.0, #336).
        p.fail(f"{path}.serverName", "use the 'serverName' plugin parameter in the Cluster resource")
    destination = p.string(raw, "destinationPath", path, required=True)
    provider = None
    if destination:
        try:
            provider = parse_destination(destination).provider
        except InvalidInput as error:
            p.fail(f"{path}.destinationPath", str(error))
    s3 = p.optional(raw, "s3Credentials", path, lambda v, at: _s3(p, v, at))
    azure = p.optional(raw, "azureCredentials", path, lambda v, at: _azure(p, v, at))
    google = p.optional(raw, "googleCredentials", path, lambda v, at: _google(p, v, at))
    _check_provider(p, path, provider, s3, azure, google)
    wal = p.optional(raw, "wal", path, lambda v, at: _wal(p, v, at)) or WalConfiguration()
    data = p.optional(raw, "data", path, lambda v, at: _data(p, v, at)) or DataConfiguration()
    if not destination:
        return None
    return BarmanObjectStoreConfiguration(
        destination_path=destination,
        endpoint_url=p.string(raw, "endpointURL", path),
        endpoint_ca=p.selector(raw, "endpointCA", path),
        s3_credentials=s3,
        azure_credentials=azure,
        google_credentials=google,
        wal=wal,
        data=data,
        tags=p.string_map(raw, "tags", path),
        history_tags=p.string_map(raw, "historyTags", path),
    )


def _check_provider(
    p: _Parser,
    path: str,
    provider: Provider | None,
    s3: S3CredentialsSpec | None,
    azure: AzureCredentialsSpec | None,
    google: GoogleCredentialsSpec | None,
) -> None:
    given = {
        name: section
        for name, section in (
            ("s3Credentials", s3),
            ("azureCredentials", azure),
            ("googleCredentials", google),
        )
        if section is not None
    }
    if len(given) > 1:
        p.fail(path, f"only one credentials section may be set, found {', '.join(given)}")
        return
    expected = {
        Provider.S3: "s3Credentials",
        Provider.AZURE: "azureCredentials",
        Provider.GCS: "googleCredentials",
    }
    if provider is None or provider is Provider.FILESYSTEM:
        if provider is Provider.FILESYSTEM and given:
            p.fail(path, f"a file:// destination takes no credentials, found {', '.join(given)}")
        return
    wanted = expected[provider]
    for name in given:
        if name != wanted:
            p.fail(f"{path}.{name}", f"does not match destinationPath ({provider.value}): use {wanted}")
    if provider is Provider.AZURE and not given:
        p.fail(f"{path}.azureCredentials", "required for an Azure destination")


def _s3(p: _Parser, value: Any, path: str) -> S3CredentialsSpec:
    raw = p.mapping(
        value, path, ("accessKeyId", "secretAccessKey", "region", "sessionToken", "inheritFromIAMRole")
    )
    spec = S3CredentialsSpec(
        access_key_id=p.selector(raw, "accessKeyId", path),
        secret_access_key=p.selector(raw, "secretAccessKey", path),
        region=p.selector(raw, "region", path),
        session_token=p.selector(raw, "sessionToken", path),
        inherit_from_iam_role=p.boolean(raw, "inheritFromIAMRole", path),
    )
    keys = (spec.access_key_id is not None, spec.secret_access_key is not None)
    if spec.inherit_from_iam_role and any(keys):
        p.fail(path, "inheritFromIAMRole excludes accessKeyId and secretAccessKey")
    elif keys[0] != keys[1]:
        p.fail(path, "accessKeyId and secretAccessKey go together")
    elif not spec.inherit_from_iam_role and not any(keys):
        p.fail(path, "set accessKeyId and secretAccessKey, or inheritFromIAMRole: true")
    return spec


def _azure(p: _Parser, value: Any, path: str) -> AzureCredentialsSpec:
    raw = p.mapping(
        value,
        path,
        ("connectionString", "storageAccount", "storageKey", "storageSasToken", "inheritFromAzureAD",
         "useDefaultAzureCredentials"),
    )  # fmt: skip
    spec = AzureCredentialsSpec(
        connection_string=p.selector(raw, "connectionString", path),
        storage_account=p.selector(raw, "storageAccount", path),
        storage_key=p.selector(raw, "storageKey", path),
        storage_sas_token=p.selector(raw, "storageSasToken", path),
        inherit_from_azure_ad=p.boolean(raw, "inheritFromAzureAD", path),
        use_default_azure_credentials=p.boolean(raw, "useDefaultAzureCredentials", path),
    )
    # The combinations barman-cloud accepts (upstream documents them only, #705): a connection
    # string alone, or exactly one of key / SAS token (each with storageAccount) / Azure AD
    # managed identity / DefaultAzureCredential.
    methods = [
        name
        for name, on in (
            ("connectionString", spec.connection_string is not None),
            ("storageKey", spec.storage_key is not None),
            ("storageSasToken", spec.storage_sas_token is not None),
            ("inheritFromAzureAD", spec.inherit_from_azure_ad),
            ("useDefaultAzureCredentials", spec.use_default_azure_credentials),
        )
        if on
    ]
    accepted = (
        "use connectionString alone, or storageAccount with exactly one of storageKey or storageSasToken, "
        "or inheritFromAzureAD: true, or useDefaultAzureCredentials: true"
    )
    if len(methods) != 1:
        found = ", ".join(methods) if methods else "none"
        p.fail(path, f"exactly one way to authenticate is needed (found {found}): {accepted}")
    elif methods[0] == "connectionString" and spec.storage_account is not None:
        p.fail(f"{path}.storageAccount", f"not used with connectionString: {accepted}")
    elif methods[0] in ("storageKey", "storageSasToken") and spec.storage_account is None:
        p.fail(f"{path}.storageAccount", f"required with {methods[0]}")
    return spec


def _google(p: _Parser, value: Any, path: str) -> GoogleCredentialsSpec:
    raw = p.mapping(value, path, ("applicationCredentials", "gkeEnvironment"))
    spec = GoogleCredentialsSpec(
        application_credentials=p.selector(raw, "applicationCredentials", path),
        gke_environment=p.boolean(raw, "gkeEnvironment", path),
    )
    if spec.application_credentials is not None and spec.gke_environment:
        p.fail(path, "applicationCredentials and gkeEnvironment exclude each other")
    return spec


def _wal(p: _Parser, value: Any, path: str) -> WalConfiguration:
    raw = p.mapping(
        value, path, ("compression", "encryption", "maxParallel", "archiveAdditionalCommandArgs",
                      "restoreAdditionalCommandArgs"),
    )  # fmt: skip
    return WalConfiguration(
        compression=p.choice(raw, "compression", path, WAL_COMPRESSIONS),
        encryption=p.choice(raw, "encryption", path, ENCRYPTIONS),
        max_parallel=p.integer(raw, "maxParallel", path, minimum=1) or 1,
        archive_additional_command_args=p.strings(raw, "archiveAdditionalCommandArgs", path),
        restore_additional_command_args=p.strings(raw, "restoreAdditionalCommandArgs", path),
    )


def _data(p: _Parser, value: Any, path: str) -> DataConfiguration:
    raw = p.mapping(
        value, path, ("compression", "encryption", "jobs", "immediateCheckpoint", "additionalCommandArgs",
                      "restoreAdditionalCommandArgs"),
    )  # fmt: skip
    return DataConfiguration(
        compression=p.choice(raw, "compression", path, DATA_COMPRESSIONS),
        encryption=p.choice(raw, "encryption", path, ENCRYPTIONS),
        jobs=p.integer(raw, "jobs", path, minimum=1),
        immediate_checkpoint=p.boolean(raw, "immediateCheckpoint", path),
        additional_command_args=p.strings(raw, "additionalCommandArgs", path),
        restore_additional_command_args=p.strings(raw, "restoreAdditionalCommandArgs", path),
    )


def _sidecar(p: _Parser, value: Any, path: str) -> InstanceSidecarConfiguration:
    raw = p.mapping(
        value,
        path,
        ("env", "resources", "retentionPolicyIntervalSeconds", "additionalContainerArgs", "logLevel"),
    )
    env = raw.get("env") or []
    if not isinstance(env, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("name"), str) for e in env
    ):
        p.fail(f"{path}.env", "must be a list of environment variables, each with a name")
        env = []
    resources = raw.get("resources")
    if resources is not None and not isinstance(resources, Mapping):
        p.fail(f"{path}.resources", "must be an object (requests, limits)")
        resources = None
    args = p.strings(raw, "additionalContainerArgs", path)
    for index, arg in enumerate(args):
        if arg.startswith("--log-level"):
            # CEL rule of the upstream CRD (0.7.0, #520).
            p.fail(f"{path}.additionalContainerArgs[{index}]", "use logLevel instead of --log-level")
    interval = p.integer(raw, "retentionPolicyIntervalSeconds", path, minimum=1)
    return InstanceSidecarConfiguration(
        env=tuple(env),
        resources=resources,
        retention_policy_interval_seconds=DEFAULT_RETENTION_INTERVAL if interval is None else interval,
        additional_container_args=args,
        log_level=p.choice(raw, "logLevel", path, LOG_LEVELS) or "info",
    )


def _status(p: _Parser, value: Any, path: str) -> ObjectStoreStatus:
    raw = p.mapping(value, path)
    windows_raw = p.mapping(raw.get("serverRecoveryWindow"), f"{path}.serverRecoveryWindow")
    windows = {}
    for server, window in windows_raw.items():
        at = f"{path}.serverRecoveryWindow.{server}"
        w = p.mapping(window, at)
        # Before upstream 0.6.0 the field was misspelled (#462): read both.
        last_ok = p.timestamp(w, "lastSuccessfulBackupTime", at) or p.timestamp(
            w, "lastSuccussfulBackupTime", at
        )
        windows[str(server)] = RecoveryWindow(
            first_recoverability_point=p.timestamp(w, "firstRecoverabilityPoint", at),
            last_successful_backup_time=last_ok,
            last_failed_backup_time=p.timestamp(w, "lastFailedBackupTime", at),
        )
    return ObjectStoreStatus(server_recovery_window=windows)
