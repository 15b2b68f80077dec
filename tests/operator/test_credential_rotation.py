"""When an ObjectStore's credentials move to another Secret, the per-cluster Roles naming it get
rules for the new Secret (upstream-plugin.md 4.3): only the rules, never the labels or owners,
and never a Role that does not name the store. The emulator does not enforce RBAC itself."""

from __future__ import annotations

import uuid
from typing import Any

from barman_cloud.config.object_store import parse_object_store
from plugin_grpc.operator_side import rbac
from tests.harness.object_stores import MotoS3
from tests.harness.operator_process import eventually
from tests.operator.conftest import (
    NAMESPACE,
    OBJECT_STORES,
    ROLES,
    SECRETS,
    Api,
    Operators,
    aws_secret,
    s3_store,
)


def role(name: str, cluster: str, stores: list[dict[str, Any]]) -> dict[str, Any]:
    """A Role as the operator side's ReconcilerHooks.Pre leaves it (plus a label of someone else)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {rbac.CLUSTER_LABEL: cluster, "team": "dba"},
            "ownerReferences": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": cluster,
                                 "uid": "cluster-uid", "controller": True}],
        },
        "rules": rbac.role_rules(parse_object_store(store) for store in stores),
    }  # fmt: skip


def secrets_rule(api: Api, name: str) -> list[str]:
    found = api.get(ROLES, name) or {}
    for rule in found.get("rules") or []:
        if rule.get("resources") == ["secrets"]:
            return list(rule.get("resourceNames") or [])
    return []


async def test_roles_follow_a_credentials_change(api: Api, operators: Operators, moto_s3: MotoS3) -> None:
    prefix = f"rotation-{uuid.uuid4().hex[:8]}"
    await api.create(SECRETS, aws_secret(moto_s3, "old-creds"))
    await api.create(SECRETS, aws_secret(moto_s3, "other-creds"))
    rotating = s3_store("rotating", moto_s3, prefix, credentials="old-creds")
    other = s3_store("other", moto_s3, prefix, credentials="other-creds")
    await api.create(OBJECT_STORES, rotating)
    await api.create(OBJECT_STORES, other)
    await api.create(ROLES, role("pg1-barman-cloud", "pg1", [other, rotating]))
    await api.create(ROLES, role("pg2-barman-cloud", "pg2", [other]))
    unlabelled = role("unrelated", "pg3", [rotating])
    del unlabelled["metadata"]["labels"]
    await api.create(ROLES, unlabelled)
    before = {name: api.get(ROLES, name) for name in ("pg1-barman-cloud", "pg2-barman-cloud", "unrelated")}

    operator = await operators.start()
    procs = (operator,)
    await eventually(
        lambda: (api.condition("rotating", "Ready") or {}).get("status") == "True",
        what="rotating Ready",
        processes=procs,
    )
    assert api.get(ROLES, "pg1-barman-cloud") == before["pg1-barman-cloud"]  # already right: untouched

    await api.create(SECRETS, aws_secret(moto_s3, "new-creds"))
    await api.patch(
        OBJECT_STORES,
        "rotating",
        {"spec": {"configuration": {"s3Credentials": {
            "accessKeyId": {"name": "new-creds"}, "secretAccessKey": {"name": "new-creds"},
            "region": {"name": "new-creds"},
        }}}},
    )  # fmt: skip
    await eventually(
        lambda: secrets_rule(api, "pg1-barman-cloud") == ["new-creds", "other-creds"],
        what="pg1's Role granting the new Secret",
        processes=procs,
    )
    updated = api.get(ROLES, "pg1-barman-cloud") or {}
    assert updated["metadata"]["labels"] == before["pg1-barman-cloud"]["metadata"]["labels"]  # type: ignore[index]
    assert updated["metadata"]["ownerReferences"] == before["pg1-barman-cloud"]["metadata"]["ownerReferences"]  # type: ignore[index]
    assert [r["resourceNames"] for r in updated["rules"][:2]] == [
        ["other", "rotating"],
        ["other", "rotating"],
    ]
    await eventually(
        lambda: (api.condition("rotating", "Ready") or {}).get("observedGeneration") == 2,
        what="the new generation checked",
        processes=procs,
    )
    assert api.get(ROLES, "pg2-barman-cloud") == before["pg2-barman-cloud"]  # does not name the store
    assert api.get(ROLES, "unrelated") == before["unrelated"]  # not one of the plugin's Roles
