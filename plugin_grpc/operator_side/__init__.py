"""What the operator-side endpoint does behind its CNPG-I services.

CloudNativePG sends the Cluster as JSON with every hook; :mod:`.cluster` reads the plugin's
configuration from it (which ObjectStores, which server names). From there:

- :mod:`.sidecar` and :mod:`.lifecycle`: the native sidecar injected into instance Pods and
  recovery Jobs, answered as an RFC 6902 JSON patch (``OperatorLifecycle.LifecycleHook``);
- :mod:`.rbac` and :mod:`.reconcile`: the per-cluster Role and RoleBinding that let the sidecar read
  its ObjectStores and their Secrets, and the requeue (with an Event) when an ObjectStore is
  missing (``ReconcilerHooks.Pre``);
- :mod:`.status`: the small JSON object stored in ``Cluster.status.pluginStatus``
  (``Operator.SetStatusInCluster``).

Kubernetes is reached through kubernetes-asyncio (:mod:`plugin_grpc.kube` for ObjectStores);
everything here answers within the caller's deadline (:mod:`.deadlines`).
"""
