"""Configuration and clients of the operator-side services, built once by the operator process."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client

from plugin_grpc.kube import KubernetesReader

DEFAULT_REQUEUE_AFTER = 10
"""Seconds before CloudNativePG reconciles a Cluster again when one of its ObjectStores is
missing: short enough that creating the ObjectStore right after the Cluster costs little."""

DEFAULT_HOOK_BUDGET = 20.0
"""Most seconds one hook may take, whatever the caller's deadline (CloudNativePG gives 30 s over
TCP and none over a unix socket): a slow API server then fails the hook with a clear message
instead of CloudNativePG's bare DEADLINE_EXCEEDED."""


@dataclass(frozen=True)
class OperatorSide:
    """What the OperatorLifecycle, ReconcilerHooks and Operator services share."""

    sidecar_image: str
    """Image injected as the sidecar (``SIDECAR_IMAGE``) unless a Cluster names another one."""
    kubernetes: KubernetesReader
    """ObjectStores are read through it (with its short cache); its API client writes the
    Roles, RoleBindings and Events."""
    requeue_after: int = DEFAULT_REQUEUE_AFTER
    hook_budget: float = DEFAULT_HOOK_BUDGET

    @property
    def api(self) -> client.ApiClient:
        return self.kubernetes.api
