"""WAL archive and restore through the engine under each fault class, on each store.

A seeded fraction of every request to the store gets the fault (a bounded number of times).
Invariants: every WAL the archiver acknowledged is in the bucket, complete and byte-identical
(checked straight on the emulator, not through the proxy); every WAL the restorer acknowledged is
byte-identical on disk, with no temporary file left; every operation that failed under the fault
succeeds when retried once the fault is gone (PostgreSQL's own retry).
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.compression import codec_named
from barman_cloud.format.wal import WalName
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver, read_object, variants
from barman_cloud.wal.restore import WalRestorer
from tests.faults import ledger
from tests.faults.conftest import MAX_ATTEMPTS, STORES, Target
from tests.harness.fault_proxy import Fault, Rule

SEGMENTS = 6
SEGMENT_SIZE = 1024 * 1024
PROBABILITY = 0.4
# Stalls cost a client timeout each: fewer of them.
BUDGET = {Fault.STALL: 3, Fault.STALL_RESPONSE: 3}
DEFAULT_BUDGET = 8

# The default run: every fault class once, spread over the stores and over archive and restore;
# the rest with --run-slow.
FAST_ARCHIVE = {
    (Fault.RESET_REQUEST, "s3"),
    (Fault.STALL, "gcs"),
    (Fault.HTTP_500, "azure"),
    (Fault.THROTTLE, "s3"),
}
FAST_RESTORE = {
    (Fault.RESET_RESPONSE, "azure"),
    (Fault.STALL_RESPONSE, "s3"),
    (Fault.HTTP_503, "gcs"),
    (Fault.TRUNCATE, "gcs"),
}
# Where the retries once failed to absorb a short run of faults (Azure, fixed), and one more.
FAST_SHORT = {(Fault.RESET_RESPONSE, "azure"), (Fault.TRUNCATE, "azure"), (Fault.THROTTLE, "s3")}


def matrix(fast: set[tuple[Fault, str]]) -> list[object]:
    return [
        pytest.param(fault, store, marks=() if (fault, store) in fast else pytest.mark.slow)
        for fault in Fault
        for store in STORES
    ]


def segments(tmp_path: Path, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    found = {}
    for number in range(1, SEGMENTS + 1):
        name = f"0000000100000000000000{number:02X}"
        # Half random (incompressible), half zeros: compression does real work.
        data = rng.randbytes(SEGMENT_SIZE // 2) + bytes(SEGMENT_SIZE // 2)
        (tmp_path / name).write_bytes(data)
        found[name] = data
    return found


def rule(fault: Fault, seed: int) -> Rule:
    return Rule(fault, first=1, probability=PROBABILITY, seed=seed, times=BUDGET.get(fault, DEFAULT_BUDGET))


async def in_bucket(target: Target, name: str, data: bytes) -> bool:
    """The WAL is in the bucket under exactly one key, complete and byte-identical."""
    store = target.store(via_proxy=False)
    found = await variants(store, target.layout, WalName.parse(name))
    if len(found) != 1:
        return False
    key, codec = next(iter(found.items()))
    return await read_object(store, key, codec) == data


@pytest.mark.parametrize(("fault", "store"), matrix(FAST_ARCHIVE))
async def test_wal_archive_under_fault(fault: Fault, store: str, target: Target, tmp_path: Path) -> None:
    seed = zlib.crc32(f"{fault.name}/{store}".encode())
    wals = segments(tmp_path, seed)
    archiver = WalArchiver(target.store(), target.layout, ArchiveSettings(codec=codec_named("lz4")))
    acknowledged, failed, errors = [], [], []
    with target.proxy.faults(rule(fault, seed)) as (active,):
        for name in wals:
            try:
                await archiver.archive(tmp_path / name)
            except BarmanCloudError as error:
                failed.append(name)
                errors.append(f"{name}: {error}")
            else:
                acknowledged.append(name)
    missing = [name for name in acknowledged if not await in_bucket(target, name, wals[name])]
    # PostgreSQL retries what failed, once the store answers again.
    recovered = []
    for name in failed:
        await archiver.archive(tmp_path / name)
        recovered.append(name)
    ledger.record(
        "WAL archive (engine)", fault.value, store, injected=active.injected, attempted=len(wals),
        acknowledged=len(acknowledged), missing=len(missing), failed=len(failed), recovered=len(recovered),
    )  # fmt: skip
    assert active.injected > 0, "the fault was never injected: the scenario tested nothing"
    assert missing == [], f"acknowledged but not in the bucket byte for byte: {missing}"
    for name, data in wals.items():
        assert await in_bucket(target, name, data), f"{name} is not in the bucket after the retries"


@pytest.mark.parametrize(("fault", "store"), matrix(FAST_RESTORE))
async def test_wal_restore_under_fault(fault: Fault, store: str, target: Target, tmp_path: Path) -> None:
    seed = zlib.crc32(f"{fault.name}/{store}/restore".encode())
    source = tmp_path / "pg_wal"
    source.mkdir()
    wals = segments(source, seed)
    direct = WalArchiver(target.store(via_proxy=False), target.layout, ArchiveSettings(codec_named("gzip")))
    for name in wals:
        await direct.archive(source / name)
    restored = tmp_path / "restored"
    restored.mkdir()
    restorer = WalRestorer(target.store(), target.layout)
    acknowledged, failed, errors = [], [], []
    with target.proxy.faults(rule(fault, seed)) as (active,):
        for name in wals:
            try:
                await restorer.restore(name, restored / name)
            except BarmanCloudError as error:
                failed.append(name)
                errors.append(f"{name}: {error}")
            else:
                acknowledged.append(name)
    wrong = [n for n in acknowledged if (restored / n).read_bytes() != wals[n]]
    recovered = []
    for name in failed:
        await restorer.restore(name, restored / name)
        recovered.append(name)
    ledger.record(
        "WAL restore (engine)", fault.value, store, injected=active.injected, attempted=len(wals),
        acknowledged=len(acknowledged), missing=len(wrong), failed=len(failed), recovered=len(recovered),
    )  # fmt: skip
    assert active.injected > 0, "the fault was never injected: the scenario tested nothing"
    assert wrong == [], f"restored but not byte-identical: {wrong}"
    assert {p.name for p in restored.iterdir()} == set(wals), "a temporary file was left behind"
    for name, data in wals.items():
        assert (restored / name).read_bytes() == data


@pytest.mark.parametrize(("fault", "store"), matrix(FAST_SHORT))
async def test_a_fault_shorter_than_the_retries_is_not_seen(
    fault: Fault, store: str, target: Target, tmp_path: Path
) -> None:
    """Every request of an archive and of a restore fails ``MAX_ATTEMPTS - 1`` times in a row:
    the store's retries must absorb it, so both operations succeed (a retry that never happens,
    an error mapped to "not transient", shows up here as a failure)."""
    data = random.Random(7).randbytes(SEGMENT_SIZE // 2) + bytes(SEGMENT_SIZE // 2)  # noqa: S311
    name = "000000010000000000000042"
    (tmp_path / name).write_bytes(data)
    archiver = WalArchiver(target.store(), target.layout, ArchiveSettings(codec=codec_named("gzip")))
    restorer = WalRestorer(target.store(), target.layout)
    attempted = acknowledged = injected = 0
    errors = []
    for operation in ("archive", "restore"):
        # Every request fails the first MAX_ATTEMPTS - 1 times it is sent.
        with target.proxy.faults(Rule(fault, times=MAX_ATTEMPTS - 1)) as (active,):
            attempted += 1
            try:
                if operation == "archive":
                    await archiver.archive(tmp_path / name)
                else:
                    await restorer.restore(name, tmp_path / "restored")
            except BarmanCloudError as error:
                errors.append(f"{operation}: {error}")
            else:
                acknowledged += 1
        injected += active.injected
    missing = 0 if await in_bucket(target, name, data) else 1
    ledger.record(
        "retries absorb a short fault", fault.value, store, injected=injected, attempted=attempted,
        acknowledged=acknowledged, missing=missing, failed=len(errors),
    )  # fmt: skip
    assert errors == []
    assert missing == 0 and (tmp_path / "restored").read_bytes() == data


MIDWAY = [Fault.RESET_RESPONSE, Fault.HTTP_500, Fault.TRUNCATE]


@pytest.mark.parametrize(
    ("fault", "store"),
    [
        pytest.param(f, s, marks=() if (f, s) == (Fault.HTTP_500, "azure") else pytest.mark.slow)
        for f in MIDWAY
        for s in STORES
    ],
)
async def test_a_wal_read_interrupted_midway_resumes(
    fault: Fault, store: str, target: Target, tmp_path: Path
) -> None:
    """A 16 MiB segment (Azure reads it in several ranged GETs: the fault lands on a later one; S3
    and GCS in one GET: the fault cuts it) whose reads fail fewer times in a row than the retries:
    the restore succeeds, byte-identical. Azure once gave up at the first failed ranged GET after
    the first: PostgreSQL got an error for a WAL that was there."""
    data = random.Random(16).randbytes(8 * 1024 * 1024) + bytes(8 * 1024 * 1024)  # noqa: S311
    name = "000000010000000000000043"
    (tmp_path / name).write_bytes(data)
    await WalArchiver(target.store(via_proxy=False), target.layout).archive(tmp_path / name)
    restorer = WalRestorer(target.store(), target.layout)
    # The object's own GETs (not the listing, whose query names the segment too).
    own = rf"(/|%2F){name}(\.[a-z0-9]+)?($|\?)"
    reads = Rule(fault, method="GET", path=own, skip=1 if store == "azure" else 0, times=MAX_ATTEMPTS - 1)
    errors = []
    with target.proxy.faults(reads):
        try:
            await restorer.restore(name, tmp_path / "restored")
        except BarmanCloudError as error:
            errors.append(str(error))
    identical = not errors and (tmp_path / "restored").read_bytes() == data
    ledger.record(
        "WAL read interrupted midway (16 MiB)", fault.value, store, injected=reads.injected, attempted=1,
        acknowledged=int(not errors), missing=int(not errors and not identical), failed=len(errors),
    )  # fmt: skip
    assert reads.injected > 0
    assert errors == []
    assert identical
