"""Bad WAL names through every entry point: the engine, WAL.Archive / WAL.Restore on the served
sidecar over a real grpclib channel, and the command-line tools. Each is refused with the name and
what a WAL name looks like, nothing is written (in the bucket, the spool or beside the
destination), and the sidecar goes on serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from barman_cloud.errors import InvalidInput
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage.factory import open_store
from barman_cloud.wal.archive import WalArchiver
from barman_cloud.wal.archive_ahead import ArchiveAhead
from barman_cloud.wal.prefetch import Prefetcher
from barman_cloud.wal.restore import WalRestorer
from plugin_grpc.proto import wal_pb2
from tests.badinput.conftest import SERVER_NAME, Sidecar, file_store_manifest, tree

GOOD = "000000010000000000000001"

# Names a file in pg_wal could have: no "/" (a path's last component).
BAD_FILE_NAMES = {
    "dot-dot": "..",
    "NUL": GOOD + "\x00",
    "NUL inside": GOOD[:10] + "\x00" + GOOD[11:],
    "trailing newline": GOOD + "\n",
    "one digit short": GOOD[:-1],
    "one digit long": GOOD + "0",
    "not hex": GOOD[:-1] + "G",
    "unicode digits": "\u0660" * 23 + "\u0661",
    "compression suffix": GOOD + ".gz",
    "history with segment": "00000001.history.partial",
    "RECOVERYXLOG": "RECOVERYXLOG",
    "spaces": f" {GOOD} ",
}
# Names as a restore request carries them: anything at all.
BAD_WAL_NAMES = {
    **BAD_FILE_NAMES,
    "empty": "",
    "slash": f"0000000100000000/{GOOD}",
    "parent": f"../{GOOD}",
    "absolute": f"/etc/{GOOD}",
    "directory": f"{GOOD}/",
}


def _refused(error: BaseException, name: str) -> None:
    message = str(error)
    assert "is not a WAL file name" in message, message
    assert repr(name) in message or repr(name[:200]) in message, message
    assert "expected a segment (24 hex digits)" in message  # what to do


@pytest.fixture
def layout() -> ServerLayout:
    return ServerLayout("", SERVER_NAME)


@pytest.mark.parametrize("name", list(BAD_FILE_NAMES.values()), ids=list(BAD_FILE_NAMES))
async def test_the_engine_refuses_to_archive_a_badly_named_file(
    sidecar: Sidecar, layout: ServerLayout, name: str
) -> None:
    store = open_store(f"file://{sidecar.bucket}")
    path = sidecar.pg_wal / name
    try:
        with pytest.raises(InvalidInput) as refused:
            await WalArchiver(store, layout).archive(path)
        _refused(refused.value, path.name)
        ahead = ArchiveAhead(WalArchiver(store, layout), sidecar.pg_wal, sidecar.root / "markers", 4)
        with pytest.raises(InvalidInput) as refused:
            await ahead.archive(path)
        _refused(refused.value, path.name)
        await ahead.close()
    finally:
        await store.close()
    assert tree(sidecar.bucket) == set()
    assert tree(sidecar.root / "markers") == set()


@pytest.mark.parametrize("name", list(BAD_WAL_NAMES.values()), ids=list(BAD_WAL_NAMES))
async def test_the_engine_refuses_to_restore_a_bad_name(
    sidecar: Sidecar, layout: ServerLayout, name: str
) -> None:
    store = open_store(f"file://{sidecar.bucket}")
    destination = sidecar.root / "restored" / "RECOVERYXLOG"
    before = tree(sidecar.root)
    try:
        with pytest.raises(InvalidInput) as refused:
            await WalRestorer(store, layout).restore(name, destination)
        _refused(refused.value, name)
        prefetcher = Prefetcher(WalRestorer(store, layout), sidecar.root / "spool", "key", depth=4)
        with pytest.raises(InvalidInput) as refused:
            await prefetcher.restore(name, destination)
        _refused(refused.value, name)
        await prefetcher.close()
    finally:
        await store.close()
    assert tree(sidecar.root) - before <= {"spool", "spool/key"}
    assert tree(sidecar.root / "spool") <= {"key"}


async def test_the_sidecar_answers_invalid_argument_and_keeps_serving(sidecar: Sidecar) -> None:
    segment = sidecar.pg_wal / GOOD
    segment.write_bytes(b"\x01" * 16 * 1024)
    sources = [str(sidecar.pg_wal / name) for name in BAD_FILE_NAMES.values()] + [
        # A good name reached through "..", or through a directory with a NUL.
        f"{sidecar.pg_wal}/../../../etc/{GOOD}",
        f"{sidecar.pg_wal}\x00/{GOOD}",
        "",
    ]
    for source in sources:
        with pytest.raises(GRPCError) as refused:
            await sidecar.wal.Archive(wal_pb2.WALArchiveRequest(source_file_name=source))
        assert refused.value.status is Status.INVALID_ARGUMENT, (source, refused.value)
        assert refused.value.message is not None
        assert "is not a WAL file name" in refused.value.message or "is not a usable file path" in (
            refused.value.message
        )
    assert tree(sidecar.bucket) == set()

    destination = sidecar.root / "restored"
    for name in BAD_WAL_NAMES.values():
        request = wal_pb2.WALRestoreRequest(source_wal_name=name, destination_file_name=str(destination))
        with pytest.raises(GRPCError) as refused:
            await sidecar.wal.Restore(request)
        assert refused.value.status is Status.INVALID_ARGUMENT, (name, refused.value)
        assert "is not a WAL file name" in (refused.value.message or "")
    for destination_name in ("", f"{sidecar.root}/a\x00b", f"{sidecar.root}/x/../../escaped"):
        request = wal_pb2.WALRestoreRequest(source_wal_name=GOOD, destination_file_name=destination_name)
        with pytest.raises(GRPCError) as refused:
            await sidecar.wal.Restore(request)
        assert refused.value.status is Status.INVALID_ARGUMENT
        assert "destination_file_name" in (refused.value.message or "")
    assert not destination.exists() and not (sidecar.root.parent / "escaped").exists()

    # Still serving: a good segment goes in and comes back.
    await sidecar.wal.Archive(wal_pb2.WALArchiveRequest(source_file_name=str(segment)))
    await sidecar.wal.Restore(
        wal_pb2.WALRestoreRequest(
            source_wal_name=GOOD,
            destination_file_name=str(destination),
            mode=wal_pb2.WALRestoreRequest.MODE_REWIND,
        )
    )
    assert destination.read_bytes() == segment.read_bytes()
    assert {p.name for p in sidecar.bucket.rglob("*") if p.is_file()} == {f"{GOOD}.gz"}


CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_tools_exit_3_for_a_bad_name(short_tmp: Path) -> None:
    bucket = short_tmp / "bucket"
    manifest = short_tmp / "store.yaml"
    manifest.write_text(file_store_manifest(bucket))
    source = ["-f", str(manifest), "--server-name", SERVER_NAME]
    good = short_tmp / GOOD
    good.write_bytes(b"\x02" * 1024)
    badly_named = short_tmp / f"{GOOD}\n"
    badly_named.write_bytes(b"\x03" * 1024)

    archive = _cli("wal-archive", *source, str(badly_named), str(short_tmp / "RECOVERYXLOG"))
    assert archive.returncode == 3, archive.stderr
    assert "is not a WAL file name" in archive.stderr and "expected a segment" in archive.stderr
    assert tree(bucket) == set()

    destination = short_tmp / "restored" / "RECOVERYXLOG"
    for name in ("..", f"{GOOD}\n", GOOD[:-1] + "G", f"/{GOOD}"):
        restore = _cli(
            "wal-restore",
            *source,
            "--parallel",
            "2",
            "--spool-dir",
            str(short_tmp / "spool"),
            name,
            str(destination),
        )
        assert restore.returncode == 3, (name, restore.stderr)
        assert f"{name!r} is not a WAL file name" in restore.stderr
    assert not destination.parent.exists()
    assert not [path for path in (short_tmp / "spool").rglob("*") if not path.is_dir()]
    assert tree(bucket) == set()
