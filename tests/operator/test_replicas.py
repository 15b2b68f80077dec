"""Two replicas with ``--leader-elect``: the second stays passive (no maintenance at all) while
the first runs, and takes over as soon as the first stops; both serve CNPG-I all along.

Peering goes through the ClusterKopfPeering object the operator creates. What the emulator does
not check here: RBAC on that object, and resourceVersion-based watch resumption (a re-watch gets
every object again, which Kopf handles as a re-list).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from grpclib.client import Channel

from plugin_grpc.cnpg_caller import handshake
from tests.harness.object_stores import MotoS3
from tests.harness.operator_process import OperatorProcess, eventually
from tests.operator.conftest import OBJECT_STORES, PEERINGS, SECRETS, Api, Operators, aws_secret, s3_store

PEERING = "barman-cloud.cloudnative-pg.io"
HANDSHAKE_TIMEOUT = 10.0


def cycles(process: OperatorProcess, store: str) -> int:
    return sum(
        1 for entry in process.messages("ObjectStore maintained") if entry.get("object_store") == store
    )


def peers(api: Api) -> dict[str, Any]:
    found = api.get(PEERINGS, PEERING, namespace=None) or {}
    return dict(found.get("status") or {})


async def serves_cnpg_i(process: OperatorProcess) -> bool:
    channel = Channel(path=str(process.socket))
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await handshake(channel)
    finally:
        channel.close()
    return True


async def test_second_replica_stays_passive_until_the_first_stops(
    api: Api, operators: Operators, moto_s3: MotoS3
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    await api.create(SECRETS, aws_secret(moto_s3))
    await api.create(OBJECT_STORES, s3_store("shared", moto_s3, prefix))

    first = await operators.start("replica-a", leader_elect=True)
    await eventually(lambda: cycles(first, "shared") >= 1, what="replica-a maintaining", processes=(first,))
    assert "replica-a" in peers(api)

    second = await operators.start("replica-b", leader_elect=True)
    both = (first, second)
    await eventually(lambda: "replica-b" in peers(api), what="replica-b in the peering", processes=both)
    assert peers(api)["replica-a"]["priority"] > peers(api)["replica-b"]["priority"]  # older first
    # The first keeps working after the second joined; the second does nothing meanwhile.
    seen = cycles(first, "shared")
    await eventually(lambda: cycles(first, "shared") >= seen + 3, what="replica-a going on", processes=both)
    assert cycles(second, "shared") == 0, second.tail()
    assert await serves_cnpg_i(second)  # passive for the controller, active for CNPG-I

    assert await first.stop() == 0
    assert "replica-a" not in peers(api)  # left the peering on its way out
    await eventually(lambda: cycles(second, "shared") >= 1, what="replica-b taking over", processes=(second,))
    assert second.messages("Resuming operations")

    # New work goes to the replica that is left.
    await api.create(OBJECT_STORES, s3_store("after", moto_s3, prefix))
    ready = await eventually(
        lambda: (c := api.condition("after", "Ready")) and c["status"] == "True" and c,
        what="after Ready",
        processes=(second,),
    )
    assert ready["reason"] == "Ready"
    assert cycles(first, "after") == 0
