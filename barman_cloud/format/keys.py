"""Object keys of one server in a destination: ``<P>/<S>/base/...`` and ``<P>/<S>/wals/...``.

Keys are POSIX joins of the base path ``<P>`` (trailing slashes stripped), the server name and the
rest. The one exception is barman's keep annotation, built as the string ``"<P>/" + ...``: with a
trailing slash in the destination URL barman writes it under ``<P>//<S>/...`` (format E-20), which
:meth:`ServerLayout.keep_annotation_keys` also returns so such annotations are honoured.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from barman_cloud.errors import InvalidInput
from barman_cloud.format.compression import Codec, split_suffix
from barman_cloud.format.wal import WalKind, WalName, is_wal_name


def check_server_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\x00" in name or name != name.strip():
        raise InvalidInput(
            f"invalid server name {name!r}", hint="a non-empty name without '/', such as the cluster's name"
        )
    return name


def _join(*parts: str) -> str:
    return posixpath.join(*[p for p in parts if p])


@dataclass(frozen=True)
class ServerLayout:
    """Where a server's backups and WAL live in a bucket."""

    raw_prefix: str
    """``<P>`` as parsed from the destination URL (may end with ``/``)."""
    server: str

    def __post_init__(self) -> None:
        check_server_name(self.server)

    @property
    def prefix(self) -> str:
        return self.raw_prefix.rstrip("/")

    @property
    def root(self) -> str:
        return _join(self.prefix, self.server) + "/"

    @property
    def base(self) -> str:
        """``<P>/<S>/base/``: one "directory" per backup ID."""
        return _join(self.prefix, self.server, "base") + "/"

    @property
    def wals(self) -> str:
        """``<P>/<S>/wals/``."""
        return _join(self.prefix, self.server, "wals") + "/"

    def backup_dir(self, backup_id: str) -> str:
        return f"{self.base}{backup_id}/"

    def backup_info(self, backup_id: str) -> str:
        return f"{self.backup_dir(backup_id)}backup.info"

    def backup_label(self, backup_id: str) -> str:
        """Snapshot backups only."""
        return f"{self.backup_dir(backup_id)}backup_label"

    def archive(self, backup_id: str, base_name: str, part: int, codec: Codec | None) -> str:
        """``data.tar[.gz]`` for part 0, then ``data_0001.tar[.gz]``...; tablespaces by decimal OID."""
        numbered = base_name if part == 0 else f"{base_name}_{part:04d}"
        return f"{self.backup_dir(backup_id)}{numbered}.tar{codec.suffix if codec else ''}"

    def keep_annotation(self, backup_id: str) -> str:
        return f"{self.backup_dir(backup_id)}annotations/keep"

    def keep_annotation_keys(self, backup_id: str) -> list[str]:
        """Where barman may have written the keep annotation (ours first, then the E-20 quirk)."""
        keys = [self.keep_annotation(backup_id)]
        if self.raw_prefix.endswith("/"):
            keys.append(f"{self.raw_prefix}/{self.server}/base/{backup_id}/annotations/keep")
        return keys

    def wal_dir(self, wal: WalName) -> str:
        """The listing prefix of a WAL's directory (``wals/`` itself for history files)."""
        return f"{self.wals}{wal.hash_dir}/" if wal.hash_dir else self.wals

    def wal(self, wal: WalName, codec: Codec | None) -> str:
        """``wals/TTTTTTTTLLLLLLLL/<name><suffix>``; history files directly under ``wals/``."""
        return f"{self.wal_dir(wal)}{wal.name}{codec.suffix if codec else ''}"

    def parse_wal_key(self, key: str) -> tuple[WalName, Codec | None] | None:
        """The WAL and codec of a key under ``wals/``, or None for anything barman would ignore."""
        if not key.startswith(self.wals):
            return None
        basename = key.rsplit("/", 1)[-1]
        name, codec = split_suffix(basename)
        if not is_wal_name(name):
            return None
        wal = WalName.parse(name)
        expected_dir = self.wals if wal.kind is WalKind.HISTORY else f"{self.wals}{wal.hash_dir}/"
        if key[: -len(basename)].upper() != expected_dir.upper():
            return None
        return wal, codec
