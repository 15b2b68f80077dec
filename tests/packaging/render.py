"""Print the chart's manifests, like ``helm template``, with no Helm binary and no cluster.

    .venv/bin/python -m tests.packaging.render [CHART] [-f values.yaml] [--set a.b=value]
        [--release NAME] [--namespace NS] [--objects]

It runs a real ``helm install`` (helm-sdkpy) into kmock's in-memory API server
(:mod:`tests.packaging.helm_runner`) and prints the release manifest, or with ``--objects`` the
objects the API server received (``crds/`` included). ``--set`` values are read as YAML
(``--set replicaCount=2`` is a number, ``--set 'additionalArgs=[--x]'`` a list).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.packaging import helm


def set_value(values: dict[str, Any], assignment: str) -> None:
    path, sep, text = assignment.partition("=")
    if not sep:
        raise SystemExit(f"--set {assignment!r}: expected KEY=VALUE")
    *parents, leaf = path.split(".")
    target = values
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.packaging.render", description=__doc__)
    parser.add_argument("chart", nargs="?", default=str(helm.CHART))
    parser.add_argument("-f", "--values", action="append", default=[], help="a values file (YAML)")
    parser.add_argument("--set", action="append", default=[], dest="assignments", metavar="KEY=VALUE")
    parser.add_argument("--release", default="barman-cloud")
    parser.add_argument("--namespace", default="cnpg-system")
    parser.add_argument("--objects", action="store_true", help="print the objects the API server received")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for file in args.values:
        values.update(yaml.safe_load(Path(file).read_text()) or {})
    for assignment in args.assignments:
        set_value(values, assignment)
    release = helm.install(values, chart=Path(args.chart), release=args.release, namespace=args.namespace)
    if release.error:
        print(release.error, file=sys.stderr)
        return 1
    if args.objects:
        print(yaml.safe_dump_all(release.objects, sort_keys=False), end="")
    else:
        print(release.manifest, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
