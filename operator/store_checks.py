"""Is an ObjectStore usable? Its spec, its Secrets, and one delimited listing of its destination.

The listing both proves the store answers with these credentials and finds every server name
under the destination (``<P>/<S>/`` folders holding ``base/`` or ``wals/``, barman-cloud-format
1.1). The outcome is three conditions, each with a reason a user can act on:

- ``Ready``: True ``Ready``; False with the reason of the first failing check;
- ``CredentialsValid``: True ``CredentialsAccepted``; False ``SecretNotFound``,
  ``SecretKeyNotFound``, ``SecretNotReadable`` or ``CredentialsRejected``; Unknown ``NotChecked``;
- ``Reachable``: True ``Listed``; False ``AccessDenied``, ``BucketNotFound``, ``Unreachable`` or
  ``InvalidEndpoint``; Unknown ``NotChecked``.

An invalid spec makes ``Ready`` False with reason ``InvalidConfiguration`` and every field path in
the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from barman_cloud.config.object_store import ConfigurationError, ObjectStore, parse_object_store
from barman_cloud.config.secrets import ResolvedStore, SecretSource, resolve
from barman_cloud.errors import BarmanCloudError, Forbidden, InvalidInput, NotFound, Unavailable
from barman_cloud.format.keys import check_server_name
from barman_cloud.storage import CommonPrefix, ReadableStore, Store
from barman_cloud.storage.factory import open_store
from barman_cloud_operator import conditions
from barman_cloud_operator.conditions import CREDENTIALS_VALID, REACHABLE, READY, Condition

log = logging.getLogger(__name__)

StoreOpener = Callable[[ResolvedStore], Store]


def open_resolved(resolved: ResolvedStore) -> Store:
    return open_store(resolved.destination, resolved.credentials, resolved.options)


@dataclass
class StoreCheck:
    """The conditions; the parsed ObjectStore when its spec is valid; on success the open store
    (the caller closes it) and its servers."""

    ready: Condition
    credentials: Condition
    reachable: Condition
    object_store: ObjectStore | None = None
    store: Store | None = None
    servers: list[str] = field(default_factory=list)

    @property
    def conditions(self) -> list[Condition]:
        return [self.ready, self.credentials, self.reachable]


def _not_checked(kind: str, why: str) -> Condition:
    return conditions.unknown(kind, "NotChecked", why)


def _failed(
    reason: str,
    message: str,
    *,
    credentials: Condition,
    reachable: Condition,
    object_store: ObjectStore | None = None,
) -> StoreCheck:
    return StoreCheck(conditions.false(READY, reason, message), credentials, reachable, object_store)


def _secret_failure(error: BarmanCloudError) -> tuple[str, str]:
    if isinstance(error, NotFound):
        return "SecretNotFound", str(error)
    if isinstance(error, Forbidden):
        return "SecretNotReadable", f"{error} (the operator's ClusterRole must grant get on secrets)"
    if isinstance(error, InvalidInput):
        return "SecretKeyNotFound", str(error)
    return "SecretNotReadable", str(error)


def _listing_failure(error: BarmanCloudError) -> tuple[str, str, bool]:
    """(Reachable reason, message, whether the credentials were refused)."""
    if isinstance(error, Forbidden):
        return "AccessDenied", str(error), True
    if isinstance(error, NotFound):
        return "BucketNotFound", str(error), False
    if isinstance(error, Unavailable):
        return "Unreachable", str(error), False
    return "InvalidEndpoint", str(error), False


def listing_prefix(store: ReadableStore) -> str:
    """``<P>/``, or the bucket's root when the destination has no path."""
    prefix = store.location.prefix.strip("/")
    return f"{prefix}/" if prefix else ""


async def find_servers(store: ReadableStore) -> list[str]:
    """Server names under the destination: one delimited listing, then one per candidate folder
    to keep only those holding ``base/`` or ``wals/``."""
    root = listing_prefix(store)
    candidates = []
    async for entry in store.list(root, delimiter="/"):
        if isinstance(entry, CommonPrefix):
            name = entry.prefix[len(root) :].rstrip("/")
            try:
                candidates.append(check_server_name(name))
            except InvalidInput:
                continue
    servers = []
    for name in sorted(candidates):
        async for entry in store.list(f"{root}{name}/", delimiter="/"):
            if isinstance(entry, CommonPrefix) and entry.prefix.rsplit("/", 2)[-2] in ("base", "wals"):
                servers.append(name)
                break
    return servers


async def check_store(
    document: Mapping[str, Any], secrets: SecretSource, opener: StoreOpener = open_resolved
) -> StoreCheck:
    """Validate, resolve the Secrets, list the destination. Never raises for a user mistake."""
    try:
        object_store = parse_object_store(document)
    except ConfigurationError as error:
        problems = "; ".join(f"{path}: {message}" for path, message in error.problems)
        return _failed(
            "InvalidConfiguration",
            f"invalid spec: {problems}",
            credentials=_not_checked(CREDENTIALS_VALID, "the spec is invalid"),
            reachable=_not_checked(REACHABLE, "the spec is invalid"),
        )
    where = object_store.spec.configuration.destination_path
    try:
        resolved = await resolve(object_store, secrets)
    except BarmanCloudError as error:
        reason, message = _secret_failure(error)
        return _failed(
            reason,
            message,
            credentials=conditions.false(CREDENTIALS_VALID, reason, message),
            reachable=_not_checked(REACHABLE, "the credentials could not be read"),
            object_store=object_store,
        )
    try:
        store = opener(resolved)
    except BarmanCloudError as error:
        return _failed(
            "InvalidEndpoint",
            str(error),
            credentials=_not_checked(CREDENTIALS_VALID, "the store could not be opened"),
            reachable=conditions.false(REACHABLE, "InvalidEndpoint", str(error)),
            object_store=object_store,
        )
    try:
        servers = await find_servers(store)
    except BarmanCloudError as error:
        await store.close()
        reason, message, refused = _listing_failure(error)
        credentials = (
            conditions.false(CREDENTIALS_VALID, "CredentialsRejected", message)
            if refused
            else _not_checked(CREDENTIALS_VALID, f"{where} could not be listed")
        )
        return _failed(
            "CredentialsRejected" if refused else reason,
            message,
            credentials=credentials,
            reachable=conditions.false(REACHABLE, reason, message),
            object_store=object_store,
        )
    except BaseException:
        await store.close()
        raise
    listed = f"listed {where}: " + (
        f"{len(servers)} server(s): {', '.join(servers)}" if servers else "no server folders yet"
    )
    return StoreCheck(
        ready=conditions.true(READY, "Ready", f"configuration valid, credentials accepted, {listed}"),
        credentials=conditions.true(CREDENTIALS_VALID, "CredentialsAccepted", f"{where} accepted them"),
        reachable=conditions.true(REACHABLE, "Listed", listed),
        object_store=object_store,
        store=store,
        servers=servers,
    )
