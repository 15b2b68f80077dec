"""Kubernetes API failures as engine errors, each saying what was attempted and what to do."""

from __future__ import annotations

import json

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from barman_cloud.errors import BarmanCloudError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable

OPERATOR_PERMISSIONS = (
    "roles and rolebindings: get, create, patch; events: get, create, patch; objectstores: get"
)


def _message(error: ApiException) -> str:
    """The API server's own explanation (a ``Status`` object's ``message``), if it sent one."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def from_api_exception(error: ApiException, action: str) -> BarmanCloudError:
    """``action`` reads like "create Role db/pg1-barman-cloud"."""
    status = error.status or 0
    detail = _message(error) or f"HTTP {status} {error.reason or ''}".strip()
    if status in (401, 403):
        return Forbidden(
            f"not allowed to {action} ({detail})",
            hint=f"the plugin's ClusterRole must grant {OPERATOR_PERMISSIONS}",
        )
    if status == 404:
        return NotFound(f"cannot {action}: {detail}")
    if status == 409:
        return Conflict(f"cannot {action}: {detail}")
    if status in (400, 422):
        return InvalidInput(f"the API server rejected the request to {action}: {detail}")
    return Unavailable(f"cannot {action}: {detail}", hint="the Kubernetes API server may be overloaded")


def from_transport_error(error: aiohttp.ClientError | OSError, action: str) -> Unavailable:
    return Unavailable(f"cannot {action}: the Kubernetes API server is unreachable ({error})")
