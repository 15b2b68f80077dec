"""The engine: object stores, the barman-cloud format, WAL, backup, restore and retention.

It knows nothing of gRPC, Kopf or Kubernetes (checked by import-linter): the CNPG-I services in
``plugin_grpc`` and the controller in ``barman_cloud_operator`` call it with resolved configuration.
"""

__version__ = "0.1.0"
