"""What the sidecar counts while it works, for the Metrics service: per operation (archive,
restore, backup) the number of calls, failures, bytes and seconds; the last WAL archived and when."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

OPERATIONS = ("archive", "restore", "backup")


@dataclass
class OperationStats:
    calls: int = 0
    failures: int = 0
    bytes: int = 0
    seconds: float = 0.0
    last_seconds: float = 0.0


@dataclass
class SidecarStats:
    operations: dict[str, OperationStats] = field(default_factory=lambda: defaultdict(OperationStats))
    last_archived_wal: str | None = None
    last_archived_at: float | None = None
    """Unix time of the last archive call that succeeded."""

    def record(self, operation: str, seconds: float, size: int = 0, *, ok: bool = True) -> None:
        stats = self.operations[operation]
        stats.calls += 1
        stats.seconds += seconds
        stats.last_seconds = seconds
        if ok:
            stats.bytes += size
        else:
            stats.failures += 1

    def archived(self, name: str) -> None:
        self.last_archived_wal = name
        self.last_archived_at = time.time()
