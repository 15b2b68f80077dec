"""The deflate implementation of the engine: zlib-ng when installed, else Python's zlib.

zlib-ng (python-zlib-ng, same API as :mod:`zlib`) inflates about 3x faster than zlib and deflates
about 3x faster at the same level, with the same formats: gzip members, raw deflate with a preset
dictionary (the parallel backup compression), CRC-32. Readers cannot tell which one wrote a
stream; only the compressed bytes differ (zlib-ng's level 6 stored the 1 GiB pgbench backup in
62 MiB where zlib's took 59). A gzip restore is bounded by inflate (one stream per archive) and a
gzip backup by deflate: both got faster (bench/README.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same API: type-checked against Python's zlib
    import zlib
else:
    try:
        from zlib_ng import zlib_ng as zlib
    except ImportError:  # pragma: no cover - a dependency; kept for an install without its wheel
        import zlib

        logging.getLogger(__name__).warning(
            "zlib-ng is not installed: gzip is read and written with Python's zlib, about 3x slower"
        )

__all__ = ["IMPLEMENTATION", "deflate_level", "zlib"]

IMPLEMENTATION = "zlib-ng" if zlib.__name__.startswith("zlib_ng") else "zlib"


def deflate_level(level: int) -> int:
    """The level to ask of this implementation for what zlib does at ``level``.

    zlib-ng's level 1 is a different, much cruder algorithm (its "deflate_quick"): real WAL
    segments came out 30 % larger than with zlib's level 1, where zlib-ng's level 2 gives zlib's
    level-1 size, still ~3x faster. Barman's ``low`` gzip level is 1, so it maps to 2 here;
    other levels compress within a few percent of zlib's."""
    return 2 if level == 1 and IMPLEMENTATION == "zlib-ng" else level
