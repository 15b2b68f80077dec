"""Our tar bytes are Python tarfile's PAX stream, byte for byte, as barman-cloud-backup writes it
(``tarfile.open(mode="w|", format=PAX_FORMAT)`` and ``add(path, arcname, recursive=False)``), and
files that change while they are read behave as barman's copy does."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from barman_cloud.backup.tarstream import NEW_PART, NewPart, TarStream
from barman_cloud.backup.walk import Member


def ours(members: Iterable[Member], chunk_size: int = 3 * 10240) -> bytes:
    stream = TarStream(lambda: False, chunk_size)
    out = [bytes(chunk) for chunk in stream.chunks(members) if not isinstance(chunk, NewPart)]
    return b"".join(out) + bytes(stream.end_of_archive())


def barmans(members: Iterable[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT, bufsize=64 << 10) as archive:
        for member in members:
            archive.add(member.source, arcname=member.arcname, recursive=False)
    return buffer.getvalue()


def tree(root: Path) -> list[Member]:
    root.mkdir()
    (root / "base/16384").mkdir(parents=True)
    (root / "PG_VERSION").write_text("16\n")
    (root / "empty").touch()
    (root / "base/16384/16385").write_bytes(os.urandom(100_003))
    (root / "base/16384/big").write_bytes(b"block" * 30_000)
    os.link(root / "base/16384/big", root / "base/16384/hardlink")
    os.symlink("../PG_VERSION", root / "base/link")
    (root / "ünïcødé file").write_bytes(b"data")
    long = "d" * 60 + "/" + "e" * 60 + "/" + "f" * 80
    (root / long).parent.mkdir(parents=True)
    (root / long).write_bytes(b"long")
    os.chmod(root / "PG_VERSION", 0o600)
    if os.geteuid() == 0:
        shutil.chown(root / "PG_VERSION", "postgres", "postgres")
    names = [".", "./PG_VERSION", "./empty", "./ünïcødé file", "base", "base/16384", "base/16384/16385",
             "base/16384/big", "base/16384/hardlink", "base/link", long]  # fmt: skip
    return [Member(str(root / name), name, is_dir=(root / name).is_dir()) for name in names]


def test_same_bytes_as_python_tarfile(tmp_path: Path) -> None:
    members = tree(tmp_path / "data")
    expected = barmans(members)
    assert ours(members) == expected
    assert ours(members, chunk_size=10240) == expected  # chunk boundaries change nothing
    with tarfile.open(fileobj=io.BytesIO(expected), mode="r|") as archive:
        infos = {m.name: m for m in archive}
    assert infos["base/16384/hardlink"].islnk() and infos["base/link"].issym()
    assert "mtime" in infos["./PG_VERSION"].pax_headers  # fractional mtime, as barman's
    assert len(expected) % tarfile.RECORDSIZE == 0


def read_while_changing(path: Path, change: Callable[[], None]) -> tuple[int, bytes]:
    """Archive one file, calling ``change`` once its first chunk is out."""
    stream = TarStream(lambda: False, chunk_size=10240)
    chunks = []
    for chunk in stream.chunks([Member(str(path), path.name)]):
        assert not isinstance(chunk, NewPart)
        chunks.append(bytes(chunk))
        if len(chunks) == 1:
            change()
    data = b"".join(chunks) + bytes(stream.end_of_archive())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        member = archive.next()
        assert member is not None
        extracted = archive.extractfile(member)
        assert extracted is not None
        return member.size, extracted.read()


def test_a_file_shrinking_while_read_is_padded_with_zeros(tmp_path: Path) -> None:
    path = tmp_path / "shrinking"
    path.write_bytes(b"s" * 100_000)
    assert read_while_changing(path, lambda: os.truncate(path, 30_000)) == (
        100_000,
        b"s" * 30_000 + bytes(70_000),
    )


def test_a_file_growing_while_read_keeps_its_first_size(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"g" * 50_000)

    def grow() -> None:
        with open(path, "ab") as handle:
            handle.write(b"x" * 10_000)

    assert read_while_changing(path, grow) == (50_000, b"g" * 50_000)


def test_vanished_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "kept").write_bytes(b"k")
    stream = TarStream(lambda: False)
    members = [Member(str(tmp_path / "gone"), "gone"), Member(str(tmp_path / "kept"), "kept"),
               Member(str(tmp_path / "ident"), "pg_ident.conf", optional=True)]  # fmt: skip
    data = b"".join(bytes(c) for c in stream.chunks(members) if not isinstance(c, NewPart))
    data += bytes(stream.end_of_archive())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        assert [m.name for m in archive] == ["kept"]
    assert stream.stats.skipped == ["gone"]


def test_parts_are_complete_archives(tmp_path: Path) -> None:
    for n in range(6):
        (tmp_path / f"f{n}").write_bytes(bytes([n]) * 30_000)
    stream: TarStream

    def split() -> bool:
        return stream.part_offset > 40_000

    stream = TarStream(split, chunk_size=10240)
    parts: list[list[bytes]] = [[]]
    for item in stream.chunks(Member(str(tmp_path / f"f{n}"), f"f{n}") for n in range(6)):
        if item is NEW_PART:
            parts.append([])
        else:
            assert not isinstance(item, NewPart)
            parts[-1].append(bytes(item))
    parts[-1].append(bytes(stream.end_of_archive()))
    names = []
    for part in parts:
        data = b"".join(part)
        assert len(data) % tarfile.RECORDSIZE == 0
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
            names.append([m.name for m in archive])
    # A file is never split; a part closes after the member that crossed the limit.
    assert names == [["f0", "f1"], ["f2", "f3"], ["f4", "f5"]]


def test_in_memory_member_as_barmans_backup_label(tmp_path: Path) -> None:
    stream = TarStream(lambda: False)
    label = b"START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\n"
    data = b"".join(bytes(c) for c in stream.add_bytes("backup_label", label, uid=26, gid=27))
    data += bytes(stream.end_of_archive())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        member = archive.next()
        assert member is not None
        extracted = archive.extractfile(member)
        assert extracted is not None and extracted.read() == label
    assert (member.name, member.mode, member.mtime, member.uid, member.gid) == (
        "backup_label",
        0o644,
        0,
        26,
        27,
    )
