"""ObjectStore (``barmancloud.cnpg.io/v1``): one maintenance loop per object.

- a Kopf *daemon* runs :meth:`ObjectStoreReconciler.reconcile` at once (creation, or the
  operator starting or resuming after a peering pause), then every
  ``instanceSidecarConfiguration.retentionPolicyIntervalSeconds`` (1800 s by default; at most
  60 s while the store is not Ready), and at once again when woken;
- a Kopf *event* handler wakes it when ``metadata.generation`` changes (a spec change; status
  writes do not wake it) and ends it when the object is deleted.

Nothing is written on the ObjectStore but its status: no finalizer (deleting an ObjectStore
never waits for this operator, as upstream), no Kopf annotations (event handlers and daemons
keep no state in the object). Kopf adds a finalizer for every daemon, so the daemon is
registered with that requirement removed; its loop ends on the deletion event instead.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from barman_cloud_operator.context import ERROR_RETRY, ControllerContext, StoreState
from barman_cloud_operator.reconcile import ObjectStoreReconciler
from plugin_grpc.kube import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

CANCELLATION_BACKOFF = 5.0
"""Seconds a running cycle gets to finish when the operator pauses or stops, before it is
cancelled (a deletion cut short is safe: ``backup.info`` goes last and is found again)."""
CANCELLATION_TIMEOUT = 10.0


def _context(memo: Any) -> ControllerContext:
    context = memo.controller
    assert isinstance(context, ControllerContext)
    return context


def _generation(body: Mapping[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("generation")
    return value if isinstance(value, int) else None


async def watch(
    type: str, body: kopf.Body, uid: str, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    context = _context(memo)
    if type == "DELETED":
        context.forget_store(uid)
        return
    state = context.store(uid, namespace or "default", name)
    if state.checked_generation is not None and _generation(body) != state.checked_generation:
        state.wakeup.set()


async def _pause(stopped: kopf.DaemonStopped, state: StoreState, seconds: float) -> None:
    """Until the next cycle is due, the store changes, or the loop must end."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(until_stopped()), asyncio.ensure_future(state.wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def maintain(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    uid: str,
    namespace: str | None,
    name: str,
    memo: Any,
    **_: Any,
) -> None:
    context = _context(memo)
    state = context.store(uid, namespace or "default", name)
    reconciler = ObjectStoreReconciler(context)
    while not stopped and not state.gone.is_set():
        state.wakeup.clear()
        document = copy.deepcopy(dict(body))  # the live body changes under us: work on a copy
        try:
            interval = await reconciler.reconcile(document, state)
        except Exception:
            where = {"namespace": namespace, "object_store": name}
            log.exception("ObjectStore maintenance failed; retrying", extra=where)
            interval = ERROR_RETRY
        await _pause(stopped, state, interval)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(watch)
    scratch = kopf.OperatorRegistry()
    kopf.daemon(
        GROUP, VERSION, PLURAL, id="maintenance", registry=scratch,
        cancellation_backoff=CANCELLATION_BACKOFF, cancellation_timeout=CANCELLATION_TIMEOUT,
    )(maintain)  # fmt: skip
    for handler in scratch._spawning.get_all_handlers():
        registry._spawning.append(dataclasses.replace(handler, requires_finalizer=False))
