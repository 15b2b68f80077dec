"""One operator process: ObjectStores with good and bad credentials get conditions and Events,
while the same process serves CNPG-I and its probes.

Runs against kmock's KubernetesEmulator (no schema validation, no RBAC, no label selectors: see
tests/harness/kubernetes.py), moto's S3 server (which accepts any credentials, so a *refused*
credential is shown with Azurite, which checks the shared key) and Azurite.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import aiohttp
from grpclib.client import Channel

from plugin_grpc.cnpg_caller import handshake
from tests.harness.kubernetes import secret
from tests.harness.object_stores import AZURITE_ACCOUNT, Azurite, MotoS3
from tests.harness.operator_process import OperatorProcess, eventually
from tests.operator.conftest import NAMESPACE, OBJECT_STORES, SECRETS, Api, Operators, aws_secret, s3_store

HANDSHAKE_TIMEOUT = 10.0


def cycles(process: OperatorProcess, store: str) -> int:
    return sum(
        1 for entry in process.messages("ObjectStore maintained") if entry.get("object_store") == store
    )


def azurite_store(name: str, azurite: Azurite) -> dict[str, Any]:
    return {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "configuration": {
                "destinationPath": f"{azurite.endpoint}/{azurite.container}/rejected",
                "azureCredentials": {
                    "connectionString": {"name": "azure-wrong-key", "key": "AZURE_CONNECTION"}
                },
            },
            "instanceSidecarConfiguration": {"retentionPolicyIntervalSeconds": 1},
        },
    }


def wrong_connection_string(azurite: Azurite) -> str:
    wrong_key = base64.b64encode(b"not the account key of devstoreaccount1, 64 bytes long.........").decode()
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={wrong_key};"
        f"BlobEndpoint={azurite.endpoint};"
    )


async def test_conditions_and_events_follow_credentials(
    api: Api, operators: Operators, moto_s3: MotoS3, azurite: Azurite
) -> None:
    prefix = f"conditions-{uuid.uuid4().hex[:8]}"
    await api.create(SECRETS, aws_secret(moto_s3))
    await api.create(
        SECRETS, secret(NAMESPACE, "azure-wrong-key", {"AZURE_CONNECTION": wrong_connection_string(azurite)})
    )
    await api.create(OBJECT_STORES, s3_store("good", moto_s3, prefix))
    await api.create(OBJECT_STORES, s3_store("later", moto_s3, prefix, credentials="created-later"))
    await api.create(OBJECT_STORES, azurite_store("rejected", azurite))
    invalid = s3_store("invalid", moto_s3, prefix)
    invalid["spec"]["configuration"]["wal"] = {"compression": "rar"}
    await api.create(OBJECT_STORES, invalid)
    operator = await operators.start()
    procs = (operator,)

    ready = await eventually(
        lambda: api.condition("good", "Ready"), what="good's Ready condition", processes=procs
    )
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Ready", 1)
    conditions = {c["type"]: c for c in api.status("good")["conditions"]}
    assert (conditions["CredentialsValid"]["status"], conditions["CredentialsValid"]["reason"]) == (
        "True", "CredentialsAccepted"
    )  # fmt: skip
    assert (conditions["Reachable"]["status"], conditions["Reachable"]["reason"]) == ("True", "Listed")
    assert conditions["RetentionApplied"]["reason"] == "NoRetentionPolicy"
    assert conditions["BackupsOnSchedule"]["reason"] == "NoScheduledBackups"
    assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] for c in conditions.values())
    assert api.status("good")["observedGeneration"] == 1
    assert (api.event("ObjectStore", "good", "Ready") or {}).get("type") == "Normal"

    # A Secret that does not exist yet: False with the Secret named, then True once it exists.
    missing = await eventually(lambda: api.condition("later", "CredentialsValid"), what="later's credentials")
    assert (missing["status"], missing["reason"]) == ("False", "SecretNotFound")
    assert f"Secret {NAMESPACE}/created-later" in missing["message"]
    assert api.condition("later", "Ready")["reason"] == "SecretNotFound"  # type: ignore[index]
    assert api.condition("later", "Reachable")["status"] == "Unknown"  # type: ignore[index]
    warning = api.event("ObjectStore", "later", "SecretNotFound")
    assert warning is not None and warning["type"] == "Warning" and "created-later" in warning["message"]
    await api.create(SECRETS, aws_secret(moto_s3, "created-later"))
    await eventually(
        lambda: (api.condition("later", "Ready") or {}).get("status") == "True",
        what="later Ready",
        processes=procs,
    )
    assert api.event("ObjectStore", "later", "Ready") is not None

    # Credentials the store refuses.
    rejected = await eventually(
        lambda: api.condition("rejected", "CredentialsValid"), what="rejected", processes=procs
    )
    assert (rejected["status"], rejected["reason"]) == ("False", "CredentialsRejected")
    assert (api.condition("rejected", "Reachable") or {}).get("reason") == "AccessDenied"
    assert (api.event("ObjectStore", "rejected", "CredentialsRejected") or {}).get("type") == "Warning"

    # An invalid spec: every problem with its field path, nothing else attempted.
    invalid_ready = await eventually(
        lambda: api.condition("invalid", "Ready"), what="invalid's Ready", processes=procs
    )
    assert (invalid_ready["status"], invalid_ready["reason"]) == ("False", "InvalidConfiguration")
    assert "spec.configuration.wal.compression" in invalid_ready["message"]
    assert (api.condition("invalid", "CredentialsValid") or {}).get("status") == "Unknown"
    assert api.event("ObjectStore", "invalid", "InvalidConfiguration") is not None

    # A spec change is seen at once: every condition carries the new generation.
    await api.patch(OBJECT_STORES, "good", {"spec": {"configuration": {"wal": {"compression": "gzip"}}}})
    assert (api.get(OBJECT_STORES, "good") or {})["metadata"]["generation"] == 2
    await eventually(
        lambda: (
            api.status("good").get("observedGeneration") == 2
            and all(c["observedGeneration"] == 2 for c in api.status("good")["conditions"])
        ),
        what="observedGeneration 2",
        processes=procs,
    )

    # Deleting an ObjectStore ends its loop (there is no finalizer to wait for).
    await api.delete(OBJECT_STORES, "rejected")
    await eventually(
        lambda: any(
            (entry.get("k8s_ref") or {}).get("name") == "rejected"
            for entry in operator.messages("Daemon 'maintenance' succeeded")
        ),
        what="rejected's loop ending",
        processes=procs,
    )
    done = cycles(operator, "rejected")
    seen = cycles(operator, "good")
    await eventually(
        lambda: cycles(operator, "good") >= seen + 2, what="more cycles of good", processes=procs
    )
    assert cycles(operator, "rejected") == done

    # Only the status is ours: no finalizer, no Kopf annotation on the ObjectStores.
    for store in api.all(OBJECT_STORES):
        assert not store["metadata"].get("finalizers"), store["metadata"]
        assert not store["metadata"].get("annotations"), store["metadata"]

    # The same process serves CNPG-I on its socket and answers its probes.
    channel = Channel(path=str(operator.socket))
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            result = await handshake(channel)
    finally:
        channel.close()
    assert result is not None
    async with aiohttp.ClientSession() as session:
        for probe in ("healthz", "readyz"):
            async with session.get(f"http://127.0.0.1:{operator.health_port}/{probe}") as response:
                assert response.status == 200, probe

    assert await operator.stop() == 0
    assert operator.messages("shutting down")
