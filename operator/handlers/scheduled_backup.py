"""ScheduledBackup (``postgresql.cnpg.io/v1``), ``method: plugin`` with our plugin name only.

CloudNativePG owns these objects and creates the ``Backup`` objects from them; this handler never
writes to them and never creates a Backup. On every event (CloudNativePG updates the status at
each run, so a ScheduledBackup is seen again at least that often) it validates the
ScheduledBackup, its Cluster and the Cluster's ObjectStore, and records Events when the outcome
differs from the last one it reported (or the spec changed). A change of spec also wakes the
ObjectStores of the namespace, so that ``status.scheduledBackups`` follows at once. Whether the
backups really land is judged by the ObjectStore's maintenance cycle (``BackupsOnSchedule``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from barman_cloud.errors import BarmanCloudError
from barman_cloud_operator.context import ControllerContext, ScheduledBackupSeen
from barman_cloud_operator.freshness import is_ours
from barman_cloud_operator.reconcile import CNPG_API_VERSION, subject_of
from barman_cloud_operator.scheduled_backups import validate
from plugin_grpc.kube import CNPG_GROUP, CNPG_VERSION
from plugin_grpc.operator_side import events

log = logging.getLogger(__name__)

GROUP = CNPG_GROUP
VERSION = CNPG_VERSION
PLURAL = "scheduledbackups"


def _context(memo: Any) -> ControllerContext:
    context = memo.controller
    assert isinstance(context, ControllerContext)
    return context


async def watch(type: str, body: kopf.Body, uid: str, namespace: str | None, memo: Any, **_: Any) -> None:
    context = _context(memo)
    namespace = namespace or "default"
    document: Mapping[str, Any] = dict(body)
    if type == "DELETED" or not is_ours(document):
        if context.scheduled_backups.pop(uid, None) is not None:
            context.wake_namespace(namespace)  # drop it from the ObjectStore status
        return
    try:
        outcome = await validate(context.calls, document)
    except BarmanCloudError as error:
        where = {"namespace": namespace, "uid": uid, "error": str(error)}
        log.warning("cannot validate a ScheduledBackup; retried at its next event", extra=where)
        return
    generation = (document.get("metadata") or {}).get("generation")
    seen = ScheduledBackupSeen(generation if isinstance(generation, int) else None, outcome.problems)
    previous = context.scheduled_backups.get(uid)
    if previous == seen:
        return
    context.scheduled_backups[uid] = seen
    subject = subject_of(document, CNPG_API_VERSION, "ScheduledBackup")
    for reason, message in outcome.problems:
        await events.record(context.api, subject, "Warning", reason, message, key=reason)
    if not outcome.problems:
        await events.record(context.api, subject, "Normal", "Validated", outcome.summary, key="Validated")
    if previous is None or previous.generation != seen.generation:
        context.wake_namespace(namespace)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(watch)
