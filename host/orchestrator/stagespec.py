"""A stored stage's request, decoded: the stage row keeps it as JSON beside node-only flags."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from c2d.compute.v1 import compute_pb2

NODE_KEYS = ("allowNetwork",)  # added by the node at admission; not part of the consumer's Stage


def encode(stage: compute_pb2.Stage, allow_network: bool) -> dict[str, Any]:
    return {**json_format.MessageToDict(stage), "allowNetwork": allow_network}


def decode(spec: dict[str, Any]) -> compute_pb2.Stage:
    return json_format.ParseDict({k: v for k, v in spec.items() if k not in NODE_KEYS}, compute_pb2.Stage())


def allows_network(spec: dict[str, Any]) -> bool:
    return bool(spec.get("allowNetwork"))
