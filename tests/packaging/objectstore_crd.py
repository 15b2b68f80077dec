"""The ObjectStore CustomResourceDefinition (``objectstores.barmancloud.cnpg.io``), built here.

This module is the source of the two YAML files that ship the CRD: ``crds/`` (for
``kubectl apply``) and the chart's ``templates/crds/objectstores.yaml``. Regenerate both with
``make chart`` (``python -m tests.packaging.objectstore_crd``); ``tests/packaging`` fails when a
file differs from what this module builds, and checks the schema against the Python model
(``barman_cloud.config.object_store``): enums come from the model's constants, and every field the
parser reads is in the schema and the other way round.

The schema is upstream's (plugin-barman-cloud ``api/v1``: group, version, kind, plural, scope,
fields, types, defaults, the two CEL rules) plus our additions, all in ``status`` except the
``REDUNDANCY n`` form of ``spec.retentionPolicy`` and ``minimum: 1`` on
``retentionPolicyIntervalSeconds`` (which our parser requires anyway):

- ``status.conditions``: Kubernetes conditions (``metav1.Condition``): ``Ready``,
  ``CredentialsValid``, ``Reachable``, ``RetentionApplied``, ``BackupsOnSchedule``;
- ``status.observedGeneration``: the generation the controller last looked at;
- ``status.scheduledBackups``: by ScheduledBackup name, whether its backups arrive in the store on
  time (the controller, ``barman_cloud_operator.freshness``).

The printer columns read ``status.serverRecoveryWindow.*``: with one server per store (the usual
case) they show its times; with several, one of them (``kubectl get -o yaml`` shows all).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from barman_cloud.config.object_store import (
    API_VERSION,
    DATA_COMPRESSIONS,
    DEFAULT_RETENTION_INTERVAL,
    ENCRYPTIONS,
    KIND,
    LOG_LEVELS,
    WAL_COMPRESSIONS,
)

Schema = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "objectstores.barmancloud.cnpg.io.yaml"
CHART_CRD_TEMPLATE = ROOT / "charts" / "barman-cloud" / "templates" / "crds" / "objectstores.yaml"

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "objectstores"
NAME = f"{PLURAL}.{GROUP}"

RETENTION_PATTERN = (
    "^([1-9][0-9]*[dwm]|" + "".join(f"[{c.upper()}{c}]" for c in "redundancy") + " [1-9][0-9]*)$"
)
"""``30d``, ``4w``, ``3m`` (upstream) or ``REDUNDANCY n`` in any case (ours, upstream #677): the
language of the model's ``RETENTION_PATTERN``, spelled without inline flags so that every regular
expression engine (Go's RE2 in the API server, ECMAScript in editors) reads it the same way."""

SERVER_NAME_RULE = "!has(self.serverName)"
LOG_LEVEL_ARG_RULE = "!self.exists(a, a.startsWith('--log-level'))"

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|"
    r"(\.[0-9]+))))?$"
)
CONDITION_REASON_PATTERN = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)


# --- schema builders ------------------------------------------------------------------------------


def string(description: str, **extra: Any) -> Schema:
    return {"description": description, "type": "string", **extra}


def boolean(description: str, **extra: Any) -> Schema:
    return {"description": description, "type": "boolean", **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"description": description, "type": "integer", **extra}


def date_time(description: str) -> Schema:
    return string(description, format="date-time")


def strings(description: str, **extra: Any) -> Schema:
    return {"description": description, "type": "array", "items": {"type": "string"}, **extra}


def string_map(description: str) -> Schema:
    return {"description": description, "type": "object", "additionalProperties": {"type": "string"}}


def obj(
    description: str, properties: dict[str, Schema], *, required: tuple[str, ...] = (), **extra: Any
) -> Schema:
    schema: Schema = {"description": description, "type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def secret_key_selector(description: str) -> Schema:
    return obj(
        description,
        {"key": string("The key to select"), "name": string("Name of the referent.")},
        required=("key", "name"),
    )


def quantity() -> Schema:
    return {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }


def forbidden(rule: str, message: str, **extra: Any) -> list[Schema]:
    return [{"rule": rule, "message": message, "reason": "FieldValueForbidden", **extra}]


# --- Kubernetes types embedded by upstream, spelled out ------------------------------------------


def env_var() -> Schema:
    atomic = {"x-kubernetes-map-type": "atomic"}
    key_ref = {
        "key": string("The key to select."),
        "name": string("Name of the referent.", default=""),
        "optional": boolean("Specify whether the object or its key must be defined"),
    }
    return obj(
        "EnvVar represents an environment variable present in a Container.",
        {
            "name": string("Name of the environment variable."),
            "value": string('The value; $(VAR_NAME) references are expanded. Defaults to "".'),
            "valueFrom": obj(
                "Source for the environment variable's value. Cannot be used if value is not empty.",
                {
                    "configMapKeyRef": obj(
                        "Selects a key of a ConfigMap.", key_ref, required=("key",), **atomic
                    ),
                    "fieldRef": obj(
                        "Selects a field of the pod.",
                        {
                            "apiVersion": string("Version of the schema the FieldPath is written in."),
                            "fieldPath": string("Path of the field to select in the specified API version."),
                        },
                        required=("fieldPath",),
                        **atomic,
                    ),
                    "fileKeyRef": obj(
                        "Selects a key of an env file (EnvFiles feature gate).",
                        {
                            "key": string("The key within the env file."),
                            "optional": boolean("Whether the file or its key must exist.", default=False),
                            "path": string("The path within the volume from which to select the file."),
                            "volumeName": string("The name of the volume mount containing the env file."),
                        },
                        required=("key", "path", "volumeName"),
                        **atomic,
                    ),
                    "resourceFieldRef": obj(
                        "Selects a resource of the container (limits and requests).",
                        {
                            "containerName": string(
                                "Container name: required for volumes, optional for env."
                            ),
                            "divisor": {
                                "description": 'The output format of the exposed resources, defaults to "1"',
                                **quantity(),
                            },
                            "resource": string("Required: resource to select"),
                        },
                        required=("resource",),
                        **atomic,
                    ),
                    "secretKeyRef": obj(
                        "Selects a key of a secret in the pod's namespace",
                        key_ref,
                        required=("key",),
                        **atomic,
                    ),
                },
            ),
        },
        required=("name",),
    )


def resource_requirements() -> Schema:
    quantities = {"type": "object", "additionalProperties": quantity()}
    return obj(
        "Resources define cpu/memory requests and limits for the sidecar that runs in the instance pods.",
        {
            "claims": {
                "description": "Names of resources, defined in spec.resourceClaims, used by this container.",
                "type": "array",
                "items": obj(
                    "ResourceClaim references one entry in PodSpec.ResourceClaims.",
                    {
                        "name": string("Name of one entry in pod.spec.resourceClaims."),
                        "request": string("The name of a request in the referenced claim."),
                    },
                    required=("name",),
                ),
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-list-type": "map",
            },
            "limits": {"description": "The maximum amount of compute resources allowed.", **quantities},
            "requests": {"description": "The minimum amount of compute resources required.", **quantities},
        },
    )


def condition() -> Schema:
    return obj(
        "A Kubernetes condition (metav1.Condition).",
        {
            "lastTransitionTime": date_time("When the condition last changed status."),
            "message": string("Human-readable details about the transition.", maxLength=32768),
            "observedGeneration": integer(
                "The .metadata.generation the condition was set from.", format="int64", minimum=0
            ),
            "reason": string(
                "Programmatic identifier of the last transition (CamelCase).",
                maxLength=1024,
                minLength=1,
                pattern=CONDITION_REASON_PATTERN,
            ),
            "status": string("Status of the condition.", enum=["True", "False", "Unknown"]),
            "type": string(
                "Type of the condition, e.g. Ready.", maxLength=316, pattern=CONDITION_TYPE_PATTERN
            ),
        },
        required=("lastTransitionTime", "message", "reason", "status", "type"),
    )


# --- ObjectStore ----------------------------------------------------------------------------------


def configuration() -> Schema:
    extra_args = "Extra arguments, one per element, as for the barman-cloud command it names."
    return obj(
        "The configuration for the barman-cloud tool suite",
        {
            "azureCredentials": obj(
                "The credentials to use to upload data to Azure Blob Storage",
                {
                    "connectionString": secret_key_selector("The connection string to be used"),
                    "inheritFromAzureAD": boolean("Use the Azure AD managed identity, without keys."),
                    "storageAccount": secret_key_selector("The storage account where to upload data"),
                    "storageKey": secret_key_selector("The storage account key (with storageAccount)"),
                    "storageSasToken": secret_key_selector("A shared access signature (with storageAccount)"),
                    "useDefaultAzureCredentials": boolean(
                        "Use DefaultAzureCredential (environment, workload identity, managed identity)."
                    ),
                },
            ),
            "data": obj(
                "How base backups are written (uncompressed and bucket-policy encryption when not set).",
                {
                    "additionalCommandArgs": strings(f"{extra_args} (barman-cloud-backup)"),
                    "compression": string(
                        "Compression of the base backup tar files.", enum=list(DATA_COMPRESSIONS)
                    ),
                    "encryption": string("Server-side encryption to force.", enum=list(ENCRYPTIONS)),
                    "immediateCheckpoint": boolean("Ask PostgreSQL for an immediate checkpoint at start."),
                    "jobs": integer("Parallel uploads of a backup (default 2).", format="int32", minimum=1),
                    "restoreAdditionalCommandArgs": strings(f"{extra_args} (barman-cloud-restore)"),
                },
            ),
            "destinationPath": string(
                "Where backups and WAL go: s3://bucket/path, gs://bucket/path, "
                "https://<account>.blob.core.windows.net/<container>/path, or file:///path",
                minLength=1,
            ),
            "endpointCA": secret_key_selector("The CA bundle of the endpoint (self-signed certificates)"),
            "endpointURL": string("Endpoint overriding the provider's (S3-compatible stores, Azurite)"),
            "googleCredentials": obj(
                "The credentials to use to upload data to Google Cloud Storage",
                {
                    "applicationCredentials": secret_key_selector("A service account JSON key"),
                    "gkeEnvironment": boolean("Use GKE workload identity, without a key."),
                },
            ),
            "historyTags": string_map("Tags set on WAL history files (barman's --history-tags)."),
            "s3Credentials": obj(
                "The credentials to use to upload data to S3",
                {
                    "accessKeyId": secret_key_selector("The reference to the access key id"),
                    "inheritFromIAMRole": boolean(
                        "Use the Pod's IAM role (IRSA, Pod Identity), without keys."
                    ),
                    "region": secret_key_selector("The reference to the secret containing the region name"),
                    "secretAccessKey": secret_key_selector("The reference to the secret access key"),
                    "sessionToken": secret_key_selector("The references to the session key"),
                },
            ),
            "serverName": string(
                "Not allowed: use the 'serverName' parameter of the plugin in the Cluster resource."
            ),
            "tags": string_map("Tags set on WAL files and backups (barman's --tags)."),
            "wal": obj(
                "How WAL files are written (uncompressed and bucket-policy encryption when not set).",
                {
                    "archiveAdditionalCommandArgs": strings(f"{extra_args} (barman-cloud-wal-archive)"),
                    "compression": string("Compression of each WAL file.", enum=list(WAL_COMPRESSIONS)),
                    "encryption": string("Server-side encryption to force.", enum=list(ENCRYPTIONS)),
                    "maxParallel": integer(
                        "WAL files archived ahead, or prefetched, per PostgreSQL call (unset: 1).", minimum=1
                    ),
                    "restoreAdditionalCommandArgs": strings(f"{extra_args} (barman-cloud-wal-restore)"),
                },
            ),
        },
        required=("destinationPath",),
        **{
            "x-kubernetes-validations": forbidden(
                SERVER_NAME_RULE,
                "use the 'serverName' plugin parameter in the Cluster resource",
                fieldPath=".serverName",
            )
        },
    )


def instance_sidecar_configuration() -> Schema:
    return obj(
        "The configuration for the sidecar that runs in the instance pods",
        {
            "additionalContainerArgs": strings(
                "Arguments appended to the sidecar's command line.",
                **{
                    "x-kubernetes-validations": forbidden(
                        LOG_LEVEL_ARG_RULE,
                        "do not set --log-level in additionalContainerArgs; "
                        "use spec.instanceSidecarConfiguration.logLevel",
                    )
                },
            ),
            "env": {
                "description": "The environment to be explicitly passed to the sidecar",
                "type": "array",
                "items": env_var(),
            },
            "logLevel": string("The log level of the sidecar.", default="info", enum=list(LOG_LEVELS)),
            "resources": resource_requirements(),
            "retentionPolicyIntervalSeconds": integer(
                "Seconds between two runs of the retention and catalog maintenance.",
                default=DEFAULT_RETENTION_INTERVAL,
                minimum=1,
            ),
        },
    )


def recovery_window() -> Schema:
    return obj(
        "The time span during which a server's data can be restored.",
        {
            "firstRecoverabilityPoint": date_time(
                "The earliest point in time the server can be restored to."
            ),
            "lastFailedBackupTime": date_time("The last failed backup time"),
            "lastSuccessfulBackupTime": date_time("The last successful backup time"),
        },
    )


def scheduled_backup() -> Schema:
    return obj(
        "Whether the backups of a ScheduledBackup arrive in the store on time.",
        {
            "cluster": string("The Cluster the ScheduledBackup backs up."),
            "deadline": date_time("When the expected backup is late: nextExpectedTime plus a grace time."),
            "lastBackupID": string("The newest completed backup of that server in the store."),
            "lastBackupTime": date_time("When that backup ended."),
            "nextExpectedTime": date_time("When the next backup is due to start."),
            "nextScheduleTime": date_time("The schedule's next run."),
            "overdue": boolean("True when the deadline has passed without a new backup in the store."),
            "schedule": string("The ScheduledBackup's schedule, as written there."),
            "serverName": string("The folder under destinationPath its backups go to."),
            "suspended": boolean("The ScheduledBackup is suspended: it is never overdue."),
        },
    )


def status() -> Schema:
    return obj(
        "Most recently observed status of the ObjectStore. Populated by the system. Read-only.",
        {
            "conditions": {
                "description": "Ready, CredentialsValid, Reachable, RetentionApplied, BackupsOnSchedule...",
                "type": "array",
                "items": condition(),
                "x-kubernetes-list-map-keys": ["type"],
                "x-kubernetes-list-type": "map",
            },
            "observedGeneration": integer(
                "The .metadata.generation the controller last reconciled.", format="int64", minimum=0
            ),
            "scheduledBackups": {
                "description": "By ScheduledBackup name: are its backups arriving in this store on time.",
                "type": "object",
                "additionalProperties": scheduled_backup(),
            },
            "serverRecoveryWindow": {
                "description": "ServerRecoveryWindow maps each server to its recovery window",
                "type": "object",
                "additionalProperties": recovery_window(),
            },
        },
    )


def open_api_schema() -> Schema:
    return obj(
        "ObjectStore is the Schema for the objectstores API.",
        {
            "apiVersion": string(
                "APIVersion defines the versioned schema of this representation of an object."
            ),
            "kind": string("Kind is a string value representing the REST resource this object represents."),
            "metadata": {"type": "object"},
            "spec": obj(
                "Specification of the desired behavior of the ObjectStore.",
                {
                    "configuration": configuration(),
                    "instanceSidecarConfiguration": instance_sidecar_configuration(),
                    "retentionPolicy": string(
                        "Retention of backups and WAL: a recovery window (30d, 4w, 3m: days, weeks, months) "
                        "or REDUNDANCY n (keep the n newest backups).",
                        pattern=RETENTION_PATTERN,
                    ),
                },
                required=("configuration",),
            ),
            "status": status(),
        },
        required=("metadata", "spec"),
    )


PRINTER_COLUMNS = [
    {"name": "Destination", "type": "string", "jsonPath": ".spec.configuration.destinationPath"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Last Backup", "type": "date",
     "jsonPath": ".status.serverRecoveryWindow.*.lastSuccessfulBackupTime"},
    {"name": "First Recoverability Point", "type": "date",
     "jsonPath": ".status.serverRecoveryWindow.*.firstRecoverabilityPoint"},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
     "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]  # fmt: skip


def crd_spec() -> Schema:
    return {
        "group": GROUP,
        "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": KIND.lower()},
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": open_api_schema()},
                "subresources": {"status": {}},
            }
        ],
    }


def crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": crd_spec(),
    }


# --- the two files --------------------------------------------------------------------------------

HEADER = "# Generated by `make chart` from tests/packaging/objectstore_crd.py (edit that file, not this).\n"


def dump(document: Schema) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True)


def crd_file_text() -> str:
    return HEADER + dump(crd())


def chart_template_text() -> str:
    body = dump({"spec": crd_spec()})
    if "{{" in body or "}}" in body:
        raise ValueError("the CRD contains template delimiters: Helm would interpret them")
    return (
        "{{- if .Values.crds.create }}\n" + HEADER + "apiVersion: apiextensions.k8s.io/v1\n"
        "kind: CustomResourceDefinition\n"
        "metadata:\n"
        f"  name: {NAME}\n"
        "  labels:\n"
        '    {{- include "barman-cloud.labels" . | nindent 4 }}\n'
        "  {{- if or .Values.crds.keep .Values.commonAnnotations }}\n"
        "  annotations:\n"
        "    {{- if .Values.crds.keep }}\n"
        "    helm.sh/resource-policy: keep\n"
        "    {{- end }}\n"
        "    {{- with .Values.commonAnnotations }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "  {{- end }}\n" + body + "{{- end }}\n"
    )


def outputs() -> dict[Path, str]:
    return {CRD_FILE: crd_file_text(), CHART_CRD_TEMPLATE: chart_template_text()}


def main() -> int:
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
