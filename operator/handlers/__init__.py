"""The Kopf handlers, thin: parse, call the engine, write status (STYLE 11).

- :mod:`.object_store`: one maintenance loop per ObjectStore (a Kopf daemon, stopped when the
  operator is paused by peering) and a watch that wakes it when the spec changes;
- :mod:`.scheduled_backup`: validation of CloudNativePG ScheduledBackups that use this plugin.

:func:`register` puts them in a registry; the operator process runs that registry only.
"""

from __future__ import annotations

import kopf

from barman_cloud_operator.handlers import object_store, scheduled_backup


def register(registry: kopf.OperatorRegistry) -> kopf.OperatorRegistry:
    object_store.register(registry)
    scheduled_backup.register(registry)
    return registry
