"""Restore a base backup from a bucket, ready for PostgreSQL to recover to a target.

- :mod:`.targets`: recovery targets and the choice of the backup (as upstream chooses it);
- :mod:`.engine`: :func:`restore_backup`, parallel streaming extraction, safe to retry;
- :mod:`.extract`: safe tar extraction (nothing outside the target, no devices);
- :mod:`.download`: ordered parallel ranged downloads handed to worker threads;
- :mod:`.recovery_config`: ``restore_command``, ``recovery_target_*``, ``recovery.signal``;
- :mod:`.recover`: the whole recovery preparation (choose, check WAL, restore, configure).
"""

from __future__ import annotations

from barman_cloud.restore.engine import RestoreResult, restore_backup

__all__ = ["RestoreResult", "restore_backup"]
