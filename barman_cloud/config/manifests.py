"""ObjectStores and Secrets from a YAML stream, as a user would ``kubectl apply`` them: the
configuration of the local tools and the quick start, no Kubernetes needed."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from barman_cloud.config.object_store import API_VERSION, KIND, ObjectStore, parse_object_store
from barman_cloud.errors import InvalidInput, NotFound


@dataclass
class Manifests:
    object_stores: dict[tuple[str, str], ObjectStore] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict, repr=False)
    """Secret values: never in a ``repr`` (an error or a debug log line may show this object)."""

    async def get_secret(self, namespace: str, name: str) -> Mapping[str, bytes]:
        try:
            return self.secrets[(namespace, name)]
        except KeyError:
            raise NotFound(f"Secret {namespace}/{name} is not in the manifests") from None

    def object_store(self, name: str | None = None) -> ObjectStore:
        """The ObjectStore called ``name`` (any namespace), or the only one when ``name`` is None."""
        candidates = [s for s in self.object_stores.values() if name is None or s.name == name]
        if len(candidates) == 1:
            return candidates[0]
        known = ", ".join(sorted(f"{ns}/{n}" for ns, n in self.object_stores)) or "none"
        if not candidates:
            raise NotFound(
                f"no ObjectStore {name or ''} in the manifests".replace("  ", " "), hint=f"found: {known}"
            )
        raise InvalidInput("several ObjectStores in the manifests", hint=f"choose one of {known}")


def _section(document: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}: {key} must be a mapping of keys to values, not {type(value).__name__}")
    return value


def _yaml_error(error: yaml.YAMLError) -> str:
    """Where and what, without the snippet of the offending line PyYAML quotes (a Secret's value)."""
    if isinstance(error, yaml.MarkedYAMLError):
        parts = [
            f"line {mark.line + 1}, column {mark.column + 1}: {text}" if mark is not None else text
            for text, mark in ((error.context, error.context_mark), (error.problem, error.problem_mark))
            if text
        ]
        return "; ".join(parts) or type(error).__name__
    return type(error).__name__


def _secret(document: Mapping[str, Any], where: str) -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    for key, value in _section(document, "data", where).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"{where}: data.{key} is not valid base64", hint="use stringData for plain text"
            ) from None
    for key, value in _section(document, "stringData", where).items():
        values[str(key)] = str(value).encode()
    return values


def parse_manifests(text: str, *, default_namespace: str = "default") -> Manifests:
    """Read every ObjectStore and Secret in a YAML stream; other kinds are ignored."""
    manifests = Manifests()
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as error:
        raise InvalidInput(f"the manifests are not valid YAML ({_yaml_error(error)})") from None
    for index, document in enumerate(documents):
        if not isinstance(document, Mapping):
            raise InvalidInput(f"document {index + 1} of the manifests is not an object")
        metadata = document.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidInput(f"document {index + 1} of the manifests: metadata must be a mapping")
        namespace = metadata.get("namespace") or default_namespace
        name = metadata.get("name")
        if not isinstance(namespace, str):
            raise InvalidInput(f"document {index + 1} of the manifests: metadata.namespace must be a string")
        if document.get("kind") == KIND and document.get("apiVersion") == API_VERSION:
            doc = {**document, "metadata": {**metadata, "namespace": namespace}}
            store = parse_object_store(doc)
            manifests.object_stores[(store.namespace, store.name)] = store
        elif document.get("kind") == "Secret" and document.get("apiVersion") == "v1":
            if not name or not isinstance(name, str):
                raise InvalidInput(f"document {index + 1}: a Secret without metadata.name")
            manifests.secrets[(namespace, name)] = _secret(document, f"Secret {namespace}/{name}")
    return manifests


def load_manifests(path: Path, *, default_namespace: str = "default") -> Manifests:
    try:
        text = path.read_text()
    except OSError as error:
        raise NotFound(f"cannot read {path}", hint=str(error)) from None
    return parse_manifests(text, default_namespace=default_namespace)
