"""One maintenance cycle of an ObjectStore: check it, maintain its servers, write its status.

1. :func:`store_checks.check_store`: the spec, the Secrets, one listing of the destination
   (``Ready``, ``CredentialsValid``, ``Reachable``);
2. when the spec's generation changed: the per-cluster Roles naming this ObjectStore get rules
   for its current Secrets (upstream-plugin.md 4.3);
3. when reachable, for every server found: retention, then the catalog and recovery window
   (``RetentionApplied``, ``status.serverRecoveryWindow``, a ``RetentionPolicyFailed`` Warning per
   failing server); the ``Backup`` objects of Clusters archiving here whose backup left the
   catalog are deleted; each ScheduledBackup of those Clusters is compared with the catalog
   (``status.scheduledBackups``, ``BackupsOnSchedule``);
4. the status is written with one JSON merge patch on the status subresource, only the fields
   that changed (nothing at all when nothing did), and Events are recorded for what changed.

Safe to run again at any time: every step converges on what the bucket and the spec say.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from barman_cloud.config.object_store import ConfigurationError, ObjectStore, RetentionPolicy
from barman_cloud.errors import BarmanCloudError, InvalidInput, NotFound
from barman_cloud_operator import conditions, maintenance
from barman_cloud_operator.conditions import BACKUPS_ON_SCHEDULE, READY, RETENTION_APPLIED, Condition
from barman_cloud_operator.context import NOT_READY_RECHECK, ControllerContext, StoreState
from barman_cloud_operator.freshness import Freshness, assess, is_ours, parse_scheduled_backup
from barman_cloud_operator.store_checks import StoreCheck, check_store
from plugin_grpc.kube import CNPG_GROUP, CNPG_VERSION
from plugin_grpc.operator_side import events, rbac
from plugin_grpc.operator_side.cluster import Cluster, parse_cluster

log = logging.getLogger(__name__)

STORE_API_VERSION = "barmancloud.cnpg.io/v1"
CNPG_API_VERSION = f"{CNPG_GROUP}/{CNPG_VERSION}"


def subject_of(document: Mapping[str, Any], api_version: str, kind: str) -> events.Subject:
    metadata = document.get("metadata") or {}
    return events.Subject(
        api_version=api_version,
        kind=kind,
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata.get("name") or "?"),
        uid=metadata.get("uid") if isinstance(metadata.get("uid"), str) else None,
    )


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386, for the status we just wrote."""
    result = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply_merge_patch(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = apply_merge_patch({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def status_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``current`` into ``desired`` for the keys ``desired`` names
    (``None`` removes a key); empty when nothing would change."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        before = current.get(key)
        if value is None:
            if key in current:
                patch[key] = None
        elif isinstance(value, Mapping) and isinstance(before, Mapping):
            if inner := status_changes(before, value):
                patch[key] = inner
        elif before != value:
            patch[key] = value
    return patch


def assess_schedules(
    documents: Sequence[Mapping[str, Any]],
    clusters: Mapping[str, Cluster],
    results: Mapping[str, maintenance.ServerResult],
    now: datetime,
) -> tuple[list[tuple[Mapping[str, Any], Freshness]], set[str]]:
    """Freshness of our ScheduledBackups whose Cluster archives here; and the names of those
    that cannot be judged this time (their server's catalog could not be read)."""
    assessed: list[tuple[Mapping[str, Any], Freshness]] = []
    undecided: set[str] = set()
    for document in documents:
        if not is_ours(document):
            continue
        try:
            scheduled = parse_scheduled_backup(document)
        except ConfigurationError:
            continue  # reported on the ScheduledBackup by its own handler
        cluster = clusters.get(scheduled.cluster)
        if cluster is None or cluster.plugin.archive is None:
            continue
        server = cluster.plugin.archive.server_name
        result = results.get(server)
        if result is not None and result.catalog is None:
            undecided.add(scheduled.name)
            continue
        assessed.append((document, assess(scheduled, server, result.catalog if result else None, now)))
    return assessed, undecided


@dataclass
class Cycle:
    """What one cycle found, to be written as status and Events."""

    document: Mapping[str, Any]
    state: StoreState
    conditions: list[Condition] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    records: list[tuple[events.Subject, events.EventType, str, str, str]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return str((self.document.get("metadata") or {}).get("namespace") or "default")

    @property
    def name(self) -> str:
        return str((self.document.get("metadata") or {}).get("name") or "?")

    @property
    def subject(self) -> events.Subject:
        return subject_of(self.document, STORE_API_VERSION, "ObjectStore")

    def event(self, kind: events.EventType, reason: str, message: str, *, key: str = "") -> None:
        self.records.append((self.subject, kind, reason, message, key))


class ObjectStoreReconciler:
    def __init__(self, context: ControllerContext) -> None:
        self.context = context

    async def reconcile(self, document: Mapping[str, Any], state: StoreState) -> float:
        """Run one cycle; returns the seconds to wait before the next one."""
        metadata = document.get("metadata") or {}
        version = metadata.get("resourceVersion")
        if state.written is not None and state.written[0] == version:
            document = {**document, "status": state.written[1]}
        generation = metadata.get("generation") if isinstance(metadata.get("generation"), int) else None
        state.checked_generation = generation
        cycle = Cycle(document, state)
        check = await check_store(document, self.context.secrets)
        cycle.conditions += check.conditions
        interval = NOT_READY_RECHECK
        try:
            if check.object_store is not None:
                sidecar = check.object_store.spec.instance_sidecar_configuration
                interval = float(sidecar.retention_policy_interval_seconds)
                await self._refresh_roles(cycle, check.object_store, generation, state)
            if check.store is not None:
                await self._maintain(cycle, check)
            else:
                interval = min(interval, NOT_READY_RECHECK)
                why = "the ObjectStore is not Ready"
                cycle.conditions.append(conditions.unknown(RETENTION_APPLIED, "NotChecked", why))
                cycle.conditions.append(conditions.unknown(BACKUPS_ON_SCHEDULE, "NotChecked", why))
        finally:
            if check.store is not None:
                await check.store.close()
        await self._write(cycle, generation)
        state.cycles += 1
        log.info(
            "ObjectStore maintained",
            extra={"namespace": cycle.namespace, "object_store": cycle.name, "generation": generation,
                   "ready": check.ready.status, "reason": check.ready.reason, "next_in_seconds": interval},
        )  # fmt: skip
        return interval

    # --- RBAC ---------------------------------------------------------------------------------

    async def _refresh_roles(
        self, cycle: Cycle, store: ObjectStore, generation: int | None, state: StoreState
    ) -> None:
        """Rules of the Roles naming this store, for its current Secrets (once per generation)."""
        if generation is not None and state.rbac_generation == generation:
            return
        try:
            roles = await self.context.calls.list_roles(cycle.namespace, {rbac.CLUSTER_LABEL: None})
            for role in roles:
                names = rbac.object_store_names(role)
                if store.name not in names:
                    continue
                stores = await self._stores_named(cycle.namespace, names, store)
                role_name = (role.get("metadata") or {}).get("name")
                if stores is None or not isinstance(role_name, str):
                    continue
                await rbac.refresh_role_rules(self.context.api, cycle.namespace, role_name, stores)
        except BarmanCloudError as error:
            cycle.event("Warning", "RoleUpdateFailed", f"cannot update the plugin's Roles: {error}")
            return
        state.rbac_generation = generation

    async def _stores_named(
        self, namespace: str, names: list[str], this: ObjectStore
    ) -> list[ObjectStore] | None:
        """The ObjectStores a Role names (missing ones left out); None when one cannot be read,
        so that a Role never loses the rules of a store we failed to parse."""
        stores = []
        for name in names:
            if name == this.name:
                stores.append(this)
                continue
            try:
                stores.append(await self.context.secrets.get_object_store(namespace, name))
            except NotFound:
                continue
            except BarmanCloudError as error:  # a ConfigurationError too
                log.warning(
                    "not updating a Role: another ObjectStore it names cannot be read",
                    extra={"namespace": namespace, "object_store": name, "error": str(error)},
                )
                return None
        return stores

    # --- maintenance --------------------------------------------------------------------------

    async def _maintain(self, cycle: Cycle, check: StoreCheck) -> None:
        assert check.store is not None and check.object_store is not None
        policy = check.object_store.spec.retention_policy
        results: dict[str, maintenance.ServerResult] = {}
        for server in check.servers:
            results[server] = await maintenance.maintain_server(
                check.store, check.store.location.prefix, server, policy
            )
        cycle.conditions.append(self._retention(cycle, policy, results))
        windows = (cycle.document.get("status") or {}).get("serverRecoveryWindow") or {}
        desired_windows = {}
        for server, result in results.items():
            if result.window is None:
                continue  # the catalog could not be read: keep what the status says
            entry = maintenance.window_entry(result.window, windows.get(server))
            if server in windows or any(value is not None for value in entry.values()):
                desired_windows[server] = entry
        if desired_windows:
            cycle.status["serverRecoveryWindow"] = desired_windows
        clusters = await self._clusters(cycle)
        if clusters is not None:
            await self._delete_obsolete_backups(cycle, clusters, results)
        cycle.conditions.append(await self._schedules(cycle, clusters, results))

    def _retention(
        self, cycle: Cycle, policy: RetentionPolicy | None, results: Mapping[str, maintenance.ServerResult]
    ) -> Condition:
        if policy is None:
            return conditions.true(
                RETENTION_APPLIED, "NoRetentionPolicy", "no retentionPolicy: nothing is deleted"
            )
        failed = {server: r.retention_error for server, r in results.items() if r.retention_error}
        for server, error in failed.items():
            cycle.event(
                "Warning", "RetentionPolicyFailed", f"{policy} on server {server}: {error}", key=server
            )
        for server, result in results.items():
            if result.deleted:
                cycle.event(
                    "Normal",
                    "BackupsDeleted",
                    f"{policy} on server {server} deleted backup(s) {', '.join(result.deleted)}",
                    key=server,
                )
        if failed:
            details = "; ".join(f"{server}: {error}" for server, error in sorted(failed.items()))
            return conditions.false(RETENTION_APPLIED, "RetentionFailed", f"{policy} failed on {details}")
        if not results:
            return conditions.true(RETENTION_APPLIED, "RetentionApplied", f"{policy}: no server folders yet")
        servers = ", ".join(sorted(results))
        return conditions.true(RETENTION_APPLIED, "RetentionApplied", f"{policy} applied to {servers}")

    async def _clusters(self, cycle: Cycle) -> dict[str, Cluster] | None:
        """The Clusters of the namespace archiving into this ObjectStore, by name."""
        try:
            documents = await self.context.calls.list_clusters(cycle.namespace)
        except BarmanCloudError as error:
            log.warning("cannot list Clusters", extra={"namespace": cycle.namespace, "error": str(error)})
            return None
        found: dict[str, Cluster] = {}
        for document in documents:
            try:
                cluster = parse_cluster(document)
            except InvalidInput:
                continue  # the operator side reports a malformed Cluster at its next hook
            archive = cluster.plugin.archive
            if archive is not None and archive.object_name == cycle.name:
                found[cluster.identity.name] = cluster
        return found

    async def _delete_obsolete_backups(
        self, cycle: Cycle, clusters: Mapping[str, Cluster], results: Mapping[str, maintenance.ServerResult]
    ) -> None:
        if not clusters:
            return
        try:
            backups = await self.context.calls.list_backups(cycle.namespace, {})
            for name, cluster in sorted(clusters.items()):
                assert cluster.plugin.archive is not None
                result = results.get(cluster.plugin.archive.server_name)
                if result is None or result.catalog is None:
                    continue
                for backup in maintenance.obsolete_backup_objects(
                    backups, name, cluster.identity.uid, result.catalog
                ):
                    meta = backup.get("metadata") or {}
                    backup_name = str(meta.get("name"))
                    if await self.context.calls.delete_backup(cycle.namespace, backup_name, meta.get("uid")):
                        backup_id = (backup.get("status") or {}).get("backupId")
                        cycle.event(
                            "Normal",
                            "BackupObjectDeleted",
                            f"deleted Backup {backup_name}: backup {backup_id} of Cluster {name} is "
                            f"no longer in the bucket (server {result.server})",
                            key=backup_name,
                        )
        except BarmanCloudError as error:
            where = {"namespace": cycle.namespace, "error": str(error)}
            log.warning("cannot clean up Backup objects", extra=where)

    async def _schedules(
        self,
        cycle: Cycle,
        clusters: Mapping[str, Cluster] | None,
        results: Mapping[str, maintenance.ServerResult],
    ) -> Condition:
        if clusters is None:
            return conditions.unknown(BACKUPS_ON_SCHEDULE, "NotChecked", "the Clusters could not be listed")
        try:
            documents = await self.context.calls.list_scheduled_backups(cycle.namespace)
        except BarmanCloudError as error:
            return conditions.unknown(
                BACKUPS_ON_SCHEDULE, "NotChecked", f"the ScheduledBackups could not be listed: {error}"
            )
        assessed, undecided = assess_schedules(documents, clusters, results, datetime.now(UTC))
        previous = (cycle.document.get("status") or {}).get("scheduledBackups") or {}
        entries: dict[str, Any] = {name: None for name in previous if name not in undecided}
        for document, fresh in assessed:
            name = fresh.scheduled_backup.name
            entries[name] = fresh.to_json()
            was_overdue = bool((previous.get(name) or {}).get("overdue"))
            if fresh.overdue and not was_overdue:
                cycle.records.append(
                    (subject_of(document, CNPG_API_VERSION, "ScheduledBackup"), "Warning", "BackupOverdue",
                     f"{fresh.describe()}, and it is not in the bucket of ObjectStore {cycle.name}",
                     fresh.deadline.isoformat() if fresh.deadline else "")
                )  # fmt: skip
        if entries:
            cycle.status["scheduledBackups"] = entries
        overdue = [fresh for _, fresh in assessed if fresh.overdue]
        if overdue:
            return conditions.false(
                BACKUPS_ON_SCHEDULE, "BackupOverdue", "; ".join(fresh.describe() for fresh in overdue)
            )
        if not assessed:
            return conditions.true(
                BACKUPS_ON_SCHEDULE,
                "NoScheduledBackups",
                "no ScheduledBackup (method plugin) targets a Cluster archiving into this ObjectStore",
            )
        names = ", ".join(sorted(fresh.scheduled_backup.name for _, fresh in assessed))
        return conditions.true(BACKUPS_ON_SCHEDULE, "OnSchedule", f"on schedule: {names}")

    # --- status and Events --------------------------------------------------------------------

    def _transition_events(self, cycle: Cycle, before: Mapping[str, dict[str, Any]]) -> None:
        for condition in cycle.conditions:
            if condition.type not in (READY, BACKUPS_ON_SCHEDULE):
                continue  # the others are told by Ready's reason, or by per-server Events
            previous = before.get(condition.type)
            if condition.status == "False" and not conditions.same(previous, condition):
                cycle.event("Warning", condition.reason, condition.message, key=condition.type)
            elif (
                condition.is_true
                and (previous is None or previous.get("status") != "True")
                and (condition.type == READY or previous is not None)
            ):
                cycle.event("Normal", condition.reason, condition.message, key=condition.type)

    async def _write(self, cycle: Cycle, generation: int | None) -> None:
        status = cycle.document.get("status") or {}
        before = conditions.current(status)
        self._transition_events(cycle, before)
        desired = dict(cycle.status)
        desired["conditions"] = conditions.merge(status.get("conditions"), cycle.conditions, generation)
        if generation is not None:
            desired["observedGeneration"] = generation
        # Events first: whoever sees the new status finds the Events that explain it. (A status
        # write that fails is retried next cycle, which may count an Event twice.)
        for subject, kind, reason, message, key in cycle.records:
            await events.record(self.context.api, subject, kind, reason, message, key=key)
        # merge() keeps lastTransitionTime for unchanged conditions: an unchanged status is no patch.
        patch = status_changes(status, desired)
        if patch:
            try:
                await self.context.calls.patch_object_store_status(cycle.namespace, cycle.name, patch)
                version = (cycle.document.get("metadata") or {}).get("resourceVersion")
                if isinstance(version, str):
                    cycle.state.written = (version, apply_merge_patch(status, patch))
            except NotFound:
                return  # deleted meanwhile
            except BarmanCloudError as error:
                log.warning(
                    "cannot write the ObjectStore status; retried at the next cycle",
                    extra={"namespace": cycle.namespace, "object_store": cycle.name, "error": str(error)},
                )
