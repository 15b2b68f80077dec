"""The parsers of outside input, fuzzed: backup.info, WAL names, plugin parameters and Cluster
JSON, ObjectStore specs and manifests. Whatever they are given, they return a value that holds
their promises or raise our InvalidInput, never anything else."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.object_store import parse_object_store
from barman_cloud.errors import InvalidInput, NotFound
from barman_cloud.format import compression
from barman_cloud.format.backup_info import (
    FIELD_NAMES,
    STATUSES,
    BackupInfo,
    format_backup_info,
    parse_backup_info,
)
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WAL_NAME, WalKind, WalName, is_wal_name, segment_name
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.cluster import decode_object, parse_cluster
from tests.badinput.fuzzing import FUZZ

# --- backup.info ------------------------------------------------------------------------------------


def _one_line(text: str) -> bool:
    """What a backup.info value can hold and read back: one line, no surrounding blanks, not None."""
    return text == text.strip() and len(f"{text}x".splitlines()) == 1 and text not in ("", "None")


plain = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(_one_line)
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2999, 12, 31),
    timezones=st.builds(timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m)))
    | st.just(UTC),
)
integers = st.integers(0, 2**63)
backup_ids = st.datetimes(min_value=datetime(2000, 1, 1)).map(lambda d: d.strftime("%Y%m%dT%H%M%S"))
literal_values = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text
)

backup_infos = st.builds(
    BackupInfo,
    backup_label=st.none() | st.text(min_size=1, max_size=200),
    backup_name=st.none() | plain,
    begin_offset=st.none() | integers,
    begin_time=st.none() | moments,
    begin_wal=st.none() | plain,
    begin_xlog=st.none() | plain,
    children_backup_ids=st.none() | st.lists(backup_ids, min_size=1, max_size=3).map(tuple),
    cluster_size=st.none() | integers,
    compression=st.none() | plain,
    config_file=st.none() | plain,
    copy_stats=st.none() | st.dictionaries(any_text, literal_values, min_size=1, max_size=4),
    data_checksums=st.none() | plain,
    deduplicated_size=st.none() | integers,
    encryption=st.none() | plain,
    end_offset=st.none() | integers,
    end_time=st.none() | moments,
    end_wal=st.none() | plain,
    end_xlog=st.none() | plain,
    error=st.none() | plain,
    hba_file=st.none() | plain,
    ident_file=st.none() | plain,
    included_files=st.none() | st.lists(any_text, min_size=1, max_size=3).map(tuple),
    mode=st.none() | plain,
    parent_backup_id=st.none() | plain,
    pgdata=st.none() | plain,
    server_name=st.none() | plain,
    size=st.none() | integers,
    snapshots_info=st.none() | st.dictionaries(any_text, literal_values, min_size=1, max_size=3),
    status=st.sampled_from(STATUSES),
    summarize_wal=st.none() | plain,
    systemid=st.none() | plain,
    tablespaces=st.none()
    | st.lists(st.tuples(any_text, st.integers(0, 2**32), any_text), min_size=1, max_size=3).map(tuple),
    timeline=st.none() | st.integers(1, 2**31),
    version=st.none() | st.integers(90600, 190000),
    xlog_segment_size=st.none() | st.sampled_from([2**n for n in range(20, 31)]),
)


@FUZZ
@given(backup_infos)
def test_backup_info_we_write_reads_back_identical(info: BackupInfo) -> None:
    written = format_backup_info(info)
    assert parse_backup_info(written, where="base/X/backup.info") == info
    assert format_backup_info(parse_backup_info(written)) == written


@FUZZ
@given(
    backup_infos,
    st.sampled_from(["error", "backup_name", "pgdata", "begin_wal"]),
    st.sampled_from(["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]),
)
def test_backup_info_writer_refuses_any_line_break(info: BackupInfo, name: str, newline: str) -> None:
    """barman-cloud reads backup.info through codecs' StreamReader, which splits lines on every
    one of these: written, such a value would become a line of its own."""
    broken = BackupInfo(**{**info.__dict__, name: f"before{newline}after=1"})
    try:
        format_backup_info(broken)
    except InvalidInput as error:
        assert f"backup.info field {name} cannot contain a line break" in str(error)
    else:
        raise AssertionError("a line break was written")


values = (
    any_text
    | st.sampled_from(
        [
            "None",
            "[",
            "{}",
            "()",
            "[('a', 1e999, 'b')]",
            "[[[[[[[[[[]]]]]]]]]]",
            "1" * 5000,
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59-23:59",
            "__import__('os')",
            "{[]: 1}",
            "b'bytes'",
            "1_000",
            "-1",
            "0x10",
            "[" * 3000,
            "Mon Jan  1 00:00:00 1",
        ]
    )
    | st.builds(repr, literal_values | st.lists(literal_values) | st.tuples(literal_values, literal_values))
)
lines = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(FIELD_NAMES) | any_text, values) | any_text


@FUZZ
@given(st.lists(lines, max_size=12), st.sampled_from(["\n", "\r\n", "\r"]))
@example(["tablespaces=[('a', 1e999, 'b')]"], "\n")
@example(["status=DONE", "begin_time=0001-01-01 00:00:00+23:59"], "\n")
def test_backup_info_reader_raises_only_invalid_input(text_lines: list[str], newline: str) -> None:
    where = "s3://bucket/pg/base/20260101T000000/backup.info"
    try:
        info = parse_backup_info(newline.join(text_lines).encode(), where=where)
    except InvalidInput as error:
        assert str(error).startswith(where)
        return
    assert info.status in STATUSES
    assert all(isinstance(key, str) for key in info.unknown)


# --- WAL names -------------------------------------------------------------------------------------

segment_sizes = st.sampled_from([2**n for n in range(20, 31)])


@FUZZ
@given(st.integers(1, 2**32 - 1), st.integers(0, 2**40), segment_sizes)
def test_wal_segment_names_round_trip(timeline: int, number: int, size: int) -> None:
    per_log = 2**32 // size
    number %= per_log * 2**32
    name = segment_name(timeline, number, size)
    wal = WalName.parse(name)
    assert (wal.name, wal.kind, wal.timeline) == (name, WalKind.SEGMENT, timeline)
    assert wal.segment_number(size) == number
    assert WalName.parse(name.lower()) == wal
    for suffix, kind in ((".partial", WalKind.PARTIAL), (".00000028.backup", WalKind.BACKUP)):
        assert WalName.parse(name + suffix).kind is kind
        assert WalName.parse(name + suffix).segment == name


@FUZZ
@given(
    st.text(max_size=50)
    | st.builds(
        lambda a, b: a + b,
        st.sampled_from(["000000010000000000000001", "00000002.history"]),
        st.text(max_size=8),
    )
    | st.builds(lambda a, b: a + b, st.text(max_size=8), st.sampled_from(["000000010000000000000001"])),
    st.sampled_from([None, *compression.WAL_CODECS]),
)
def test_any_string_is_a_wal_name_or_refused_and_never_escapes(
    text: str, codec: compression.Codec | None
) -> None:
    try:
        wal = WalName.parse(text)
    except InvalidInput as error:
        assert "is not a WAL file name" in str(error)
        assert not is_wal_name(text)
        return
    assert is_wal_name(text) and WAL_NAME.fullmatch(wal.name)
    assert wal.name.upper() == text.upper() and len(wal.name) <= 40
    assert not set(wal.name) & {"/", "\\", "\x00", "\n", "\r"} and ".." not in wal.name
    layout = ServerLayout("prefix", "pg")
    key = layout.wal(wal, codec)
    assert key.startswith("prefix/pg/wals/") and ".." not in key.split("/")
    assert layout.parse_wal_key(key) == (wal, codec)


# --- plugin parameters and Cluster JSON ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
parameters = st.dictionaries(
    st.sampled_from(["barmanObjectName", "serverName", "sidecarImage"]) | st.text(max_size=10),
    json_values
    | st.text(max_size=30)
    | st.sampled_from(["minio-store", "a/b", "..", " pg", "pg\n", "x" * 300]),
    max_size=4,
)


def _cluster(plugin_entry: Any, external: Any, spec_extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"plugins": [plugin_entry], "externalClusters": [external]}
    if isinstance(spec_extra, dict):
        spec.update(spec_extra)
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": spec,
    }


plugin_entries = st.fixed_dictionaries(
    {"name": st.just(PLUGIN_NAME), "parameters": parameters},
    optional={"enabled": json_values, "isWALArchiver": json_values},
)
externals = st.fixed_dictionaries({"name": st.just("origin"), "plugin": plugin_entries}) | json_values
spec_extras = st.fixed_dictionaries(
    {},
    optional={
        "bootstrap": st.just({"recovery": {"source": "origin"}}) | json_values,
        "replica": st.just({"source": "origin"}) | json_values,
        "imagePullPolicy": json_values,
    },
)


@FUZZ
@given(plugin_entries | json_values, externals, spec_extras)
def test_cluster_json_parses_or_names_the_field(entry: Any, external: Any, extra: Any) -> None:
    document = _cluster(entry, external, extra)
    try:
        cluster = parse_cluster(json.dumps(document).encode())
    except InvalidInput as error:
        assert str(error).startswith(f"invalid Cluster db/pg (plugin {PLUGIN_NAME}): spec.")
        return
    for reference in cluster.plugin.references():
        assert reference.object_name and reference.object_name == reference.object_name.strip()
        assert "/" not in reference.object_name and len(reference.object_name) <= 253
        assert "/" not in reference.server_name and reference.server_name.isprintable()
        assert reference.field.endswith(".parameters.barmanObjectName")


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_as_cluster_json(data: bytes) -> None:
    try:
        document = decode_object(data, "the Cluster JSON")
    except InvalidInput as error:
        assert str(error).startswith("the Cluster JSON is")
        return
    assert isinstance(document, dict)
    try:
        parse_cluster(document)
    except InvalidInput as error:
        assert str(error).startswith("invalid Cluster ")


# --- ObjectStore specs and manifests -------------------------------------------------------------

configurations = st.fixed_dictionaries(
    {},
    optional={
        "destinationPath": st.sampled_from(
            ["s3://b/p", "gs://b", "file:///tmp/x", "http://[x/", "https://a:99999/x/y", "azure://x"]
        )
        | json_values,
        "endpointURL": json_values,
        "s3Credentials": st.fixed_dictionaries(
            {},
            optional={
                "accessKeyId": json_values | st.just({"name": "s", "key": "k"}),
                "secretAccessKey": json_values | st.just({"name": "s", "key": "k"}),
                "inheritFromIAMRole": json_values,
            },
        )
        | json_values,
        "wal": st.fixed_dictionaries({}, optional={"compression": json_values, "maxParallel": json_values})
        | json_values,
        "data": st.fixed_dictionaries({}, optional={"jobs": json_values, "compression": json_values})
        | json_values,
        "tags": json_values,
    },
)


@FUZZ
@given(configurations | json_values, json_values, json_values, json_values)
def test_object_store_specs_parse_or_name_the_field(
    configuration: Any, retention: Any, sidecar: Any, metadata: Any
) -> None:
    document = {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": metadata if isinstance(metadata, dict) and metadata else {"name": "store"},
        "spec": {
            "configuration": configuration,
            "retentionPolicy": retention,
            "instanceSidecarConfiguration": sidecar,
        },
    }
    try:
        store = parse_object_store(document)
    except InvalidInput as error:
        assert str(error).startswith("invalid ObjectStore ")
        return
    assert store.spec.configuration.destination_path


@FUZZ
@given(
    st.text(max_size=300)
    | json_values.map(
        lambda v: json.dumps(
            {"kind": "Secret", "apiVersion": "v1", **(v if isinstance(v, dict) else {"data": v})}
        )
    )
)
def test_manifests_parse_or_fail_cleanly(text: str) -> None:
    with contextlib.suppress(InvalidInput, NotFound):
        parse_manifests(text)
