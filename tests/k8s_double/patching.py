"""PATCH bodies: JSON merge patch, a strategic merge patch approximation, and JSON patch.

The official client sends ``application/strategic-merge-patch+json`` for a dict body and
``application/json-patch+json`` for a list. Strategic merge is approximated: it is a JSON merge patch
(RFC 7386) except that lists of objects that all carry a ``name`` (containers, env, volumes...) are
merged item by item on that name, which is the merge key of nearly every such list in the core API.
``$patch`` directives and ``$setElementOrder`` are not understood. Server-side apply
(``application/apply-patch+yaml``) is refused with 415.
"""

from __future__ import annotations

import copy
from typing import Any

from . import errors

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def apply(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """The patched copy of ``target``; 400 for a malformed patch, 415 for an unknown patch type."""
    media = content_type.split(";")[0].strip().lower()
    if media in (MERGE, STRATEGIC):
        if not isinstance(patch, dict):
            raise errors.bad_request("the patch body must be a JSON object for a merge patch")
        return merge(target, patch, by_name=media == STRATEGIC)
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.bad_request("the patch body must be a JSON array for a JSON patch")
        return json_patch(target, patch)
    raise errors.unsupported_media_type(content_type)


def merge(target: Any, patch: Any, *, by_name: bool = False) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if isinstance(patch, list) and by_name and isinstance(target, list) and _named(patch) and _named(target):
        return _merge_named_lists(target, patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value, by_name=by_name)
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _merge_named_lists(target: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = [copy.deepcopy(item) for item in target]
    index = {item["name"]: i for i, item in enumerate(result)}
    for item in patch:
        if item["name"] in index:
            result[index[item["name"]]] = merge(result[index[item["name"]]], item, by_name=True)
        else:
            result.append(copy.deepcopy(item))
    return result


# RFC 6902 ------------------------------------------------------------------------------------


def json_patch(target: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """Apply add/remove/replace/move/copy/test operations to a copy of ``target``."""
    document: Any = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise errors.bad_request(f"invalid JSON patch operation: {operation!r}")
        document = _apply_operation(document, operation)
    return document


def _apply_operation(document: Any, operation: dict[str, Any]) -> Any:
    op, path = operation["op"], operation["path"]
    if op == "test":
        if _get(document, path) != operation.get("value"):
            raise errors.ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: testing value {path} failed",
            )
        return document
    if op == "remove":
        return _remove(document, path)
    if op in ("add", "replace"):
        if op == "replace":
            _get(document, path)  # must exist
        return _add(document, path, copy.deepcopy(operation.get("value")), replace=op == "replace")
    if op in ("move", "copy"):
        value = copy.deepcopy(_get(document, operation["from"]))
        if op == "move":
            document = _remove(document, operation["from"])
        return _add(document, path, value, replace=False)
    raise errors.bad_request(f"unknown JSON patch operation {op!r}")


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"JSON pointer must start with '/': {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _get(document: Any, path: str) -> Any:
    current = document
    for token in _tokens(path):
        try:
            current = current[int(token)] if isinstance(current, list) else current[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request: path {path} does not exist"
            ) from None
    return current


def _add(document: Any, path: str, value: Any, *, replace: bool) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _get(document, "/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in tokens[:-1]))
    last = tokens[-1]
    if isinstance(parent, list):
        position = len(parent) if last == "-" else int(last)
        if replace:
            parent[position] = value
        else:
            parent.insert(position, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise errors.ApiError(422, "Invalid", f"the server rejected our request: cannot add at {path}")
    return document


def _remove(document: Any, path: str) -> Any:
    tokens = _tokens(path)
    _get(document, path)
    parent = _get(document, "/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in tokens[:-1]))
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return document
