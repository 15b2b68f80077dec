"""``barman-cloud-plugin``: one console script, one sub-command per process or tool.

Processes: ``operator`` (Deployment), ``instance`` (sidecar in PostgreSQL Pods), ``restore``
(sidecar in recovery Jobs), and ``healthcheck unix`` (their startup probe). ``demo`` is the local
quick start. The tools that work straight on a bucket are listed with the issue that brings them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from barman_cloud import __version__, logs
from barman_cloud.errors import BarmanCloudError
from plugin_grpc.metadata import DEFAULT_PLUGIN_DIR, DEFAULT_SOCKET_PATH


def _add_socket(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        default=DEFAULT_SOCKET_PATH,
        help=f"unix socket to serve on (default {DEFAULT_SOCKET_PATH}, which CloudNativePG dials)",
    )


SIDECARS = ("instance", "restore")


def _go_bool(text: str) -> bool:
    """A Go boolean flag value (``--leader-elect=false``)."""
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (use true or false)")


def _add_operator_controller_flags(parser: argparse.ArgumentParser) -> None:
    """Upstream's controller-runtime flags (plugin-barman-cloud ``internal/cmd/operator``)."""
    parser.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        help="address of the /healthz and /readyz probes (default :8081; 0 disables them)",
    )
    parser.add_argument(
        "--leader-elect",
        nargs="?",
        const=True,
        default=False,
        type=_go_bool,
        help="several replicas, one active controller (Kopf peering); every replica serves CNPG-I",
    )
    parser.add_argument(
        "--metrics-bind-address", default="0", help="accepted for compatibility; metrics are not served (0)"
    )
    for flag in ("--metrics-secure", "--enable-http2"):
        parser.add_argument(flag, nargs="?", const=True, default=None, type=_go_bool, help=argparse.SUPPRESS)
    _add_sidecar_log_level(parser)  # upstream's Deployment passes --log-level after the sub-command


def _add_sidecar_log_level(parser: argparse.ArgumentParser) -> None:
    # The injected sidecar gets `instance <additionalContainerArgs> --log-level=<logLevel>`, as
    # upstream: accept the level after the sub-command too.
    parser.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=list(logs.LEVELS), help=argparse.SUPPRESS
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barman-cloud-plugin",
        description="Native asyncio Barman Cloud plugin for CloudNativePG (CNPG-I).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=list(logs.LEVELS), help="error, warning, info, debug or trace"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    operator = commands.add_parser("operator", help="operator-side endpoint (Deployment): mTLS gRPC server")
    operator.add_argument(
        "--server-address",
        default="",
        help="host:port for TCP with mutual TLS (e.g. :9090); unix socket when empty",
    )
    operator.add_argument(
        "--server-cert", default="", help="server certificate (tls.crt of the server Secret)"
    )
    operator.add_argument(
        "--server-key", default="", help="server private key (tls.key of the server Secret)"
    )
    operator.add_argument("--client-cert", default="", help="CA bundle client certificates must chain to")
    operator.add_argument(
        "--plugin-path", default=DEFAULT_PLUGIN_DIR, help="directory of the unix socket when not on TCP"
    )
    operator.add_argument(
        "--sidecar-image",
        default=os.environ.get("SIDECAR_IMAGE", ""),
        help="image injected as the sidecar of PostgreSQL Pods and recovery Jobs "
        "(default: $SIDECAR_IMAGE; required)",
    )
    operator.add_argument(
        "--kubeconfig",
        default="",
        help="kubeconfig file (default: the Pod's service account, else $KUBECONFIG or ~/.kube/config)",
    )
    _add_operator_controller_flags(operator)

    from barman_cloud_cli.sidecars import add_local_store_arguments

    instance = commands.add_parser("instance", help="sidecar of PostgreSQL Pods: WAL, Backup, Metrics")
    _add_socket(instance)
    _add_sidecar_log_level(instance)
    add_local_store_arguments(instance)
    restore = commands.add_parser(
        "restore",
        help="without arguments: the sidecar of recovery Jobs (RestoreJobHooks, WAL restore); "
        "with BACKUP_ID DEST: restore a backup from a bucket into DEST",
    )
    _add_socket(restore)
    _add_sidecar_log_level(restore)
    add_local_store_arguments(restore)
    from barman_cloud_cli.catalog_tools import add_catalog_commands, add_restore_tool_arguments

    add_restore_tool_arguments(restore)

    health = commands.add_parser("healthcheck", help="startup probe of the sidecars")
    health_kinds = health.add_subparsers(dest="kind", required=True, metavar="KIND")
    unix = health_kinds.add_parser("unix", help="ask grpc.health.v1.Health on the unix socket")
    _add_socket(unix)
    unix.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")

    demo = commands.add_parser(
        "demo", help="local quick start: archive, back up and recover a local PostgreSQL through the sidecars"
    )
    demo.add_argument(
        "-f", "--file", type=Path, help="an ObjectStore (and its Secrets) to use instead of a local directory"
    )

    from barman_cloud_cli.backup_tools import add_backup_commands
    from barman_cloud_cli.bucket_tools import add_wal_commands
    from barman_cloud_cli.verify_tool import add_verify_command

    add_wal_commands(commands)
    add_backup_commands(commands)
    add_catalog_commands(commands)
    add_verify_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # Upstream sidecar flags users put in instanceSidecarConfiguration.additionalContainerArgs
    # (e.g. --pprof-server=...) must not keep the sidecar from starting: they are ignored, loudly.
    if unknown and not (args.command in SIDECARS and all(arg.startswith("--") for arg in unknown[:1])):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logs.configure(args.log_level)
    if unknown:
        logging.getLogger("barman_cloud_cli").warning(
            "ignoring sidecar arguments this plugin does not use", extra={"arguments": unknown}
        )
    if tool := getattr(args, "tool", None):
        return int(tool(args))
    if args.command == "restore" and getattr(args, "backup_id", None):
        from barman_cloud_cli.catalog_tools import run_restore_tool

        return run_restore_tool(args)
    # Imported here so that `healthcheck` (run every second by the startup probe) stays light.
    from barman_cloud_cli import commands

    runners: dict[str, Callable[[argparse.Namespace], int]] = {
        "operator": commands.run_operator,
        "instance": commands.run_instance,
        "restore": commands.run_restore,
        "healthcheck": commands.run_healthcheck,
        "demo": commands.run_demo,
    }
    try:
        return runners[args.command](args)
    except BarmanCloudError as error:
        print(f"barman-cloud-plugin {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
