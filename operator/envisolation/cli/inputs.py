"""Reading what users feed the offline commands: manifests, `kubectl get` output, lists.

A file is YAML or JSON, one document or many (a YAML stream, or JSON documents one after
another); `List` and typed lists (`PodList`,
`NetworkPolicyList`, ... as the API and `kubectl get -o json` print them) are flattened,
their items taking the list's kind when they carry none.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts


class InputError(Exception):
    """Bad input for an offline command: printed as `error: ...`, exit code 2."""


def _json_stream(text: str) -> list[Any] | None:
    """Concatenated JSON documents, or None when the text is not that."""
    decoder, i = json.JSONDecoder(), 0
    docs: list[Any] = []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        try:
            doc, i = decoder.raw_decode(text, i)
        except ValueError:
            return None
        docs.append(doc)


def _documents(path: str) -> Iterator[Mapping[str, Any]]:
    """Every object in a YAML/JSON file: multi-document streams and `List` kinds flattened."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from e
    docs: list[Any] | None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        docs = _json_stream(text)  # `kubectl get -o json` outputs appended, jq's output
        if docs is None:
            raise InputError(f"{path}: not valid YAML: {e}") from e
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise InputError(f"{path}: expected Kubernetes objects, found {type(doc).__name__}")
        kind = str(doc.get("kind", ""))
        if kind.endswith("List") and isinstance(doc.get("items"), list):
            # a typed list (PodList, NetworkPolicyList, ... as the API and `kubectl get -o
            # json` of one kind print them) gives its items their kind when they carry none
            item_kind = kind.removesuffix("List")
            for item in doc["items"]:
                if isinstance(item, Mapping):
                    yield (
                        {**item, "kind": item_kind} if item_kind and not item.get("kind") else item
                    )
        else:
            yield doc


def load_isolations(path: str) -> list[EnvironmentIsolation]:
    out = []
    for doc in _documents(path):
        if doc.get("kind") != c.KIND:
            continue
        try:
            out.append(EnvironmentIsolation.from_body(doc))
        except InvalidSpec as e:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise InputError(f"{path}: EnvironmentIsolation {name}: {e}") from e
    if not out:
        raise InputError(f"{path}: no EnvironmentIsolation found")
    return out


def load_namespaces(path: str) -> list[NamespaceFacts]:
    out = []
    for i, doc in enumerate(_documents(path)):
        if doc.get("kind") not in ("Namespace", None):
            continue
        if not (doc.get("metadata") or {}).get("name"):
            raise InputError(f"{path}: object {i} has no metadata.name")
        out.append(NamespaceFacts.from_body(doc))
    return out


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_files(root: str) -> list[tuple[Path, list[Mapping[str, Any]]]]:
    """Every object of every .yaml, .yml and .json file under `root`, file by file."""
    base = Path(root)
    if not base.exists():
        raise InputError(f"{root}: no such file or directory")
    files = (
        [base]
        if base.is_file()
        else sorted(p for p in base.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
    )
    return [(f, [d for d in _documents(str(f)) if d.get("kind")]) for f in files]


def read_dir(root: str) -> list[Mapping[str, Any]]:
    """Every object in every .yaml, .yml and .json file under `root`, recursively."""
    return [obj for _, objs in read_files(root) for obj in objs]


def live_objects(pods: bool = False) -> list[Mapping[str, Any]]:
    """The cluster's objects through the current kubeconfig (verify; explain with pods)."""
    from envisolation.runtime.api import ApiError
    from envisolation.runtime.client import Kube

    async def fetch() -> list[Mapping[str, Any]]:
        kube = Kube()
        try:
            return await kube.list_for_verify(pods=pods)
        finally:
            await kube.aclose()

    try:
        return asyncio.run(fetch())
    except ApiError as e:
        raise InputError(f"reading the cluster failed: {e}") from e
    except Exception as e:  # no kubeconfig, unreachable server, ...
        raise InputError(f"cannot reach the cluster: {e}") from e
