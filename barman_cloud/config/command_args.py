"""barman-cloud command-line options users put in ``additionalCommandArgs`` upstream, mapped to
our store options so that an ObjectStore tuned for the upstream plugin behaves the same here.

Upstream passes each list element as one argv token, so ``"--read-timeout 120"`` (one element)
was silently ignored there (#428); we accept both ``--opt=value`` and ``--opt value`` in one
element, and ``--opt`` followed by its value as the next element.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from barman_cloud.errors import InvalidInput
from barman_cloud.storage.options import StoreOptions

log = logging.getLogger(__name__)

_ADDRESSING_STYLES: dict[str, Literal["auto", "virtual", "path"]] = {
    "auto": "auto",
    "virtual": "virtual",
    "path": "path",
}
_TAKES_VALUE = {
    "--compression-level",
    "--addressing-style",
    "--read-timeout",
    "--sse-kms-key-id",
    "--encryption-scope",
    "--kms-key-name",
    "--max-concurrency",
    "--max-block-size",
    "--max-single-put-size",
}


def _pairs(args: Sequence[str]) -> list[tuple[str, str | None]]:
    tokens: list[str] = []
    for arg in args:
        tokens += (
            arg.split(None, 1)
            if arg.startswith("--") and " " in arg and "=" not in arg.split(" ")[0]
            else [arg]
        )
    pairs: list[tuple[str, str | None]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, sep, value = token.partition("=")
        if not sep and name in _TAKES_VALUE and index + 1 < len(tokens):
            value = tokens[index + 1]
            index += 1
            sep = "="
        pairs.append((name, value if sep else None))
        index += 1
    return pairs


def _addressing_style(options: StoreOptions, value: str) -> StoreOptions:
    if value not in _ADDRESSING_STYLES:
        raise ValueError(value)
    return replace(options, s3_addressing_style=_ADDRESSING_STYLES[value])


_SETTERS: dict[str, Callable[[StoreOptions, str], StoreOptions]] = {
    "--addressing-style": _addressing_style,
    "--read-timeout": lambda o, v: replace(o, read_timeout=float(v)),
    "--max-concurrency": lambda o, v: replace(o, max_concurrency=max(1, int(v))),
    "--max-single-put-size": lambda o, v: replace(o, single_put_max=max(1, int(v))),
    "--max-block-size": lambda o, v: replace(o, part_size=max(1, int(v))),
    "--sse-kms-key-id": lambda o, v: replace(o, encryption=replace(o.encryption, s3_kms_key_id=v)),
    "--encryption-scope": lambda o, v: replace(o, encryption=replace(o.encryption, azure_encryption_scope=v)),
    "--kms-key-name": lambda o, v: replace(o, encryption=replace(o.encryption, gcs_kms_key_name=v)),
}
# Read elsewhere: the WAL compression level (compression_level()).
_HANDLED_ELSEWHERE = {"--compression-level"}


def apply_command_args(options: StoreOptions, args: Sequence[str]) -> StoreOptions:
    """Fold the options we understand into ``options``; log (without values) the ones we ignore."""
    for name, value in _pairs(args):
        if name in _SETTERS and value:
            try:
                options = _SETTERS[name](options, value)
            except ValueError:
                raise InvalidInput(
                    f"invalid value for additional command argument {name}", hint=f"got {value!r}"
                ) from None
        elif name.startswith("-") and name not in _HANDLED_ELSEWHERE:
            log.info("additional command argument not used by this plugin", extra={"argument": name})
    return options


def compression_level(args: Sequence[str]) -> str | None:
    """barman-cloud-wal-archive's ``--compression-level`` (a number, low, medium or high), if given."""
    level = None
    for name, value in _pairs(args):
        if name == "--compression-level" and value:
            level = value
    return level
