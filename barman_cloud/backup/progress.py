"""A log line at a fixed interval while a backup runs: bytes done, rate, estimated time left."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("barman_cloud.backup")

MiB = 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    done: int
    """Bytes read from the cluster (tar bytes compressed and handed to the store)."""
    uploaded: int
    """Compressed bytes handed to the store."""
    total: int | None
    """Expected bytes (the cluster size from pg_tablespace_size), when known."""
    elapsed: float

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None when the total or the rate is unknown)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def fields(self) -> dict[str, object]:
        eta = self.eta
        return {
            "bytes_done": self.done,
            "bytes_total": self.total,
            "percent": min(100.0, round(100 * self.done / self.total, 1)) if self.total else None,
            "bytes_uploaded": self.uploaded,
            "rate_mib_s": round(self.rate / MiB, 1),
            "eta_seconds": None if eta is None else round(eta),
            "elapsed_seconds": round(self.elapsed, 1),
        }


async def report(
    backup_id: str, measure: Callable[[], tuple[int, int]], total: int | None, interval: float
) -> None:
    """Log progress every ``interval`` seconds until cancelled."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        done, uploaded = measure()
        snapshot = Snapshot(done, uploaded, total, time.monotonic() - started)
        eta = snapshot.eta
        left = f", about {eta:.0f}s left" if eta is not None else ""
        log.info(
            f"backup {backup_id}: {done / MiB:.0f} MiB read at {snapshot.rate / MiB:.1f} MiB/s{left}",
            extra={"backup_id": backup_id, **snapshot.fields()},
        )
