"""What the fault tests did, counted: the table printed at the end of the session."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Row:
    injected: int = 0
    """Faults the proxy (or the test: kill -9, a full disk) injected."""
    attempted: int = 0
    """Operations tried while the faults were on (WAL archived or restored, backups, restores)."""
    acknowledged: int = 0
    """Of those, the ones reported successful to the caller."""
    missing: int = 0
    """Acknowledged but not complete and byte-identical afterwards: must be 0."""
    failed: int = 0
    """Reported failed to the caller while the faults were on."""
    recovered: int = 0
    """Failed ones that succeeded when retried once the faults were gone."""
    leaked: int = 0
    """Multipart uploads / uncommitted blocks left behind after the next run's cleanup."""


_rows: dict[tuple[str, str, str], Row] = {}
_lock = threading.Lock()


def record(scenario: str, fault: str, store: str, **counts: int) -> Row:
    """Add ``counts`` to the row of (scenario, fault, store) and return it."""
    with _lock:
        row = _rows.setdefault((scenario, fault, store), Row())
        for name, value in counts.items():
            setattr(row, name, getattr(row, name) + value)
        return row


def table() -> list[str]:
    with _lock:
        rows = sorted(_rows.items())
    if not rows:
        return []
    header = ("scenario", "fault", "store", "injected", "attempted", "acked", "acked-missing",
              "failed", "recovered", "leaked")  # fmt: skip
    body: list[tuple[str, ...]] = [
        (s, f, st, str(r.injected), str(r.attempted), str(r.acknowledged), str(r.missing), str(r.failed),
         str(r.recovered), str(r.leaked))
        for (s, f, st), r in rows
    ]  # fmt: skip
    totals = [sum(r.injected for _, r in rows), sum(r.attempted for _, r in rows),
              sum(r.acknowledged for _, r in rows), sum(r.missing for _, r in rows),
              sum(r.failed for _, r in rows), sum(r.recovered for _, r in rows),
              sum(r.leaked for _, r in rows)]  # fmt: skip
    body.append(("TOTAL", "", "", *(str(t) for t in totals)))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [fmt(header), rule, *(fmt(line) for line in body)]
