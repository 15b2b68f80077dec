"""Hypothesis settings of the parser fuzz tests: no deadline (a loaded CI machine is slow, not
wrong), a moderate number of examples, and derandomized under CI so that a run is reproducible."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "bcp-fuzz",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("bcp-fuzz-ci", parent=settings.get_profile("bcp-fuzz"), derandomize=True)

FUZZ = settings.get_profile("bcp-fuzz-ci" if os.environ.get("CI") else "bcp-fuzz")
