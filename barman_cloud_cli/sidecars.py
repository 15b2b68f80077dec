"""The instance and restore sidecars as processes.

In a Pod they read the ObjectStores the Cluster names through the Kubernetes API (with the
environment upstream sets: ``POD_NAME``, ``NAMESPACE``, ``SPOOL_DIRECTORY``, ``PGDATA``).
For local runs (the quick start, benchmarks, e2e) ``-f FILE --server-name NAME`` pins them to one
ObjectStore from a manifests file, whatever the Cluster JSON says.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

DEFAULT_SPOOL = "/controller/wal-restore-spool"


def add_local_store_arguments(parser: argparse.ArgumentParser) -> None:
    local = parser.add_argument_group("local mode (no Kubernetes)")
    local.add_argument("-f", "--file", type=Path, help="YAML with the ObjectStore and its Secrets")
    local.add_argument("--object-store", help="which ObjectStore of the file (when it holds several)")
    local.add_argument("--server-name", help="server name in the bucket (required with --file)")
    parser.add_argument(
        "--postgres-conninfo",
        default=None,
        help="libpq connection string for base backups (default: libpq's PG* environment variables)",
    )
    parser.add_argument(
        "--spool-dir",
        type=Path,
        default=Path(os.environ.get("SPOOL_DIRECTORY", DEFAULT_SPOOL)),
        help=f"archive markers and prefetched WAL (default: $SPOOL_DIRECTORY or {DEFAULT_SPOOL})",
    )


def run_sidecar(args: argparse.Namespace, role_name: str) -> int:
    from barman_cloud.errors import InvalidInput
    from plugin_grpc.roles import Role, assemble
    from plugin_grpc.server import PluginServer, serve_until_signalled
    from plugin_grpc.status_writer import KubernetesStatus, StatusWriter
    from plugin_grpc.wal_targets import KubernetesWalTargets, StaticWalTargets, WalTargets

    async def serve() -> None:
        targets: WalTargets | None = None
        status: StatusWriter | None = None
        reader = None
        if not args.file:
            from plugin_grpc.kube import KubernetesReader

            pod_name = os.environ.get("POD_NAME", "")
            if not pod_name:
                raise InvalidInput(
                    "POD_NAME is not set",
                    hint="the sidecar needs it to know its role; use -f FILE for local runs",
                )
            reader = await KubernetesReader.connect()
            targets = KubernetesWalTargets(reader, args.spool_dir, pod_name)
            status = KubernetesStatus(reader)
        else:
            if not args.server_name:
                raise InvalidInput("--file needs --server-name")
            from barman_cloud.config.manifests import load_manifests
            from barman_cloud.config.secrets import resolve

            manifests = load_manifests(args.file)
            resolved = await resolve(manifests.object_store(args.object_store), manifests)
            targets = StaticWalTargets(resolved, args.server_name, args.spool_dir)
        assembly = assemble(
            Role(role_name), wal_targets=targets, status=status, postgres_conninfo=args.postgres_conninfo
        )
        server = PluginServer(assembly)
        try:
            await server.start_unix(args.socket)
            await serve_until_signalled(server)
        finally:
            if targets is not None:
                await targets.close()
            if reader is not None:
                await reader.close()

    asyncio.run(serve())
    return 0
