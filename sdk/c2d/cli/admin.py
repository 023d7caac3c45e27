"""Operator commands (signed with the node's own key): assets and engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from c2d.cli.context import Context
from c2d.cli.errors import UsageError
from c2d.cli.render import health_name, to_dict
from c2d.client import as_asset
from c2d.compute.v1 import compute_pb2


def cmd_assets_register(ctx: Context) -> int:
    """Registers the asset in FILE, or each asset when FILE holds a list."""
    assets = [_asset(doc, f"{ctx.args.file}[{i}]") for i, doc in enumerate(_read_json_list(ctx.args.file))]
    client = ctx.client()
    for asset in assets:
        client.register_asset(asset, replace=ctx.args.replace)
    ctx.out.result(
        {"registered": [asset.did for asset in assets]},
        "\n".join(f"registered {asset.did}" for asset in assets),
    )
    return 0


def cmd_assets_list(ctx: Context) -> int:
    assets = ctx.client().list_assets()
    if ctx.out.json_mode:
        ctx.out.json([to_dict(asset) for asset in assets])
        return 0
    rows = [
        [asset.did, asset.name, ", ".join(_service(service) for service in asset.services)]
        for asset in assets
    ]
    ctx.out.table(("did", "name", "services"), rows)
    return 0


def cmd_assets_remove(ctx: Context) -> int:
    ctx.client().remove_asset(ctx.args.did)
    ctx.out.result({"removed": ctx.args.did}, f"removed {ctx.args.did}")
    return 0


def cmd_engines(ctx: Context) -> int:
    engines = ctx.client().engines()
    if ctx.out.json_mode:
        ctx.out.json([{**to_dict(engine), "health": health_name(engine.health)} for engine in engines])
        return 0
    rows = [
        [
            e.name,
            e.distribution_version or e.plugin_version,
            e.api_version,
            health_name(e.health),
            e.restarts,
            e.pid or None,
            e.health_description,
        ]
        for e in engines
    ]
    ctx.out.table(("name", "version", "api", "health", "restarts", "pid", "detail"), rows)
    return 0


def _service(service: compute_pb2.AssetService) -> str:
    kind = compute_pb2.AssetService.Kind.Name(service.kind).removeprefix("KIND_").lower()
    return f"{service.service_id} ({kind})"


def _read_json_list(path: str) -> list[Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    return data if isinstance(data, list) else [data]


def _asset(doc: Any, where: str) -> compute_pb2.Asset:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: an asset is a JSON object")
    try:
        asset = as_asset(doc)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if not asset.did:
        raise UsageError(f"{where}: the asset has no did")
    return asset
