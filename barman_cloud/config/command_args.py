"""barman-cloud command-line options users put in ``additionalCommandArgs`` upstream, mapped to
our store options so that an ObjectStore tuned for the upstream plugin behaves the same here.

Upstream passes each list element as one argv token, so ``"--read-timeout 120"`` (one element)
was silently ignored there (#428); we accept both ``--opt=value`` and ``--opt value`` in one
element, and ``--opt`` followed by its value as the next element.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def apply_command_args(options: StoreOptions, args: Sequence[str]) -> StoreOptions:
    """Fold the options we understand into ``options``; log (without values) the ones we ignore."""
    encryption = options.encryption
    for name, value in _pairs(args):
        try:
            if name == "--addressing-style" and value in _ADDRESSING_STYLES:
                options = replace(options, s3_addressing_style=_ADDRESSING_STYLES[value])
            elif name == "--read-timeout" and value:
                options = replace(options, read_timeout=float(value))
            elif name == "--max-concurrency" and value:
                options = replace(options, max_concurrency=max(1, int(value)))
            elif name == "--max-single-put-size" and value:
                options = replace(options, single_put_max=max(1, int(value)))
            elif name == "--max-block-size" and value:
                options = replace(options, part_size=max(1, int(value)))
            elif name == "--sse-kms-key-id" and value:
                encryption = replace(encryption, s3_kms_key_id=value)
            elif name == "--encryption-scope" and value:
                encryption = replace(encryption, azure_encryption_scope=value)
            elif name == "--kms-key-name" and value:
                encryption = replace(encryption, gcs_kms_key_name=value)
            elif name.startswith("-"):
                log.info("additional command argument not used by this plugin", extra={"argument": name})
        except ValueError:
            raise InvalidInput(
                f"additional command argument {name} needs a number", hint=f"got {value!r}"
            ) from None
    return replace(options, encryption=encryption)
