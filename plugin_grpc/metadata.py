"""Who we are on the wire. CloudNativePG matches plugins by ``PLUGIN_NAME``: it must equal the
unix socket's file name, the Service label ``cnpg.io/pluginName`` and ``Cluster.spec.plugins[].name``.
"""

from __future__ import annotations

from barman_cloud import __version__
from plugin_grpc.proto import identity_pb2

PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
DEFAULT_PLUGIN_DIR = "/plugins"
DEFAULT_SOCKET_PATH = f"{DEFAULT_PLUGIN_DIR}/{PLUGIN_NAME}"

DISPLAY_NAME = "Barman Cloud (native asyncio)"
DESCRIPTION = (
    "Continuous physical backup, WAL archiving and recovery of CloudNativePG clusters to S3, "
    "Azure Blob Storage and Google Cloud Storage, in barman-cloud's bucket layout."
)
# The user-facing API (ObjectStore, Cluster parameters) is the upstream plugin's.
PROJECT_URL = "https://cloudnative-pg.io/plugin-barman-cloud/"
LICENSE = "Apache-2.0"
LICENSE_URL = "https://www.apache.org/licenses/LICENSE-2.0"
MATURITY = "alpha"


def plugin_metadata() -> identity_pb2.GetPluginMetadataResponse:
    """The answer to ``Identity.GetPluginMetadata``; the same for every process role."""
    return identity_pb2.GetPluginMetadataResponse(
        name=PLUGIN_NAME,
        version=__version__,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        project_url=PROJECT_URL,
        license=LICENSE,
        license_url=LICENSE_URL,
        maturity=MATURITY,
        manifest={"implementation": "python-asyncio", "cnpgi": "v0.6.0"},
    )
