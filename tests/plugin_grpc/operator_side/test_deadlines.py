"""CloudNativePG gives every call to a TCP plugin 30 s (and the handshake, with plugin loading,
5 s): every test in this folder calls with those deadlines. Here the Kubernetes API (kmock's
KubernetesEmulator over HTTP) stops answering, and the hook must still answer, with an error
that says what was slow, before CloudNativePG's deadline would cut it off with a bare
DEADLINE_EXCEEDED. No wall-clock assertions: only which answer arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from plugin_grpc.operator_side.deadlines import MARGIN, time_limit
from tests.plugin_grpc.operator_side.conftest import Connect, Kube, load


@pytest.fixture
async def stalled_api(kube: Kube) -> AsyncIterator[None]:
    """Reads of ObjectStores hang until the test ends."""
    release = asyncio.Event()

    async def hang() -> None:
        await release.wait()

    kube.emulator["get /apis/barmancloud.cnpg.io/v1/namespaces/db/objectstores/minio-store"] << hang
    try:
        yield
    finally:
        release.set()


@pytest.mark.usefixtures("stalled_api")
async def test_a_stalled_api_fails_the_hooks_before_the_deadline(connect: Connect) -> None:
    cnpg = await connect(hook_budget=1.0)
    with pytest.raises(GRPCError) as failure:
        await cnpg.evaluate(load("cluster.json"), load("pod-instance.json"))
    assert failure.value.status is Status.UNAVAILABLE
    assert "OperatorLifecycle.LifecycleHook did not finish within 1.0s" in str(failure.value.message)
    with pytest.raises(GRPCError) as failure:
        await cnpg.pre(load("cluster.json"))
    assert failure.value.status is Status.UNAVAILABLE
    assert "ReconcilerHooks.Pre did not finish" in str(failure.value.message)
    with pytest.raises(GRPCError) as failure:
        await cnpg.set_status(load("cluster.json"))
    assert failure.value.status is Status.UNAVAILABLE


def test_the_time_limit_leaves_a_margin_before_the_callers_deadline() -> None:
    assert time_limit(None, 20.0) == 20.0
    assert time_limit(Deadline.from_timeout(30.0), 20.0) == 20.0
    assert time_limit(Deadline.from_timeout(10.0), 20.0) == pytest.approx(10.0 - MARGIN, abs=0.5)
    assert 0.0 < time_limit(Deadline.from_timeout(1.0), 20.0) <= 0.5
