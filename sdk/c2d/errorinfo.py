"""A google.rpc.ErrorInfo in a gRPC status's details: how the node and engines tell programs why.

A refusal's message is for people; its ErrorInfo ``reason`` (with ``metadata``) is for programs,
so no caller has to parse words. gRPC carries the google.rpc.Status that holds it in the
``grpc-status-details-bin`` trailer, which is what grpcio-status and every other stack read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def trailer(
    code: grpc.StatusCode, message: str, reason: str, domain: str, metadata: Mapping[str, str] | None = None
) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata that carries an ErrorInfo with ``reason`` for a status ``code``."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {})))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def read(trailing: Iterable[Any] | None) -> tuple[str, dict[str, str]]:
    """The first ErrorInfo in a call's trailing metadata, if any: (reason, metadata); ("", {}) if none."""
    for key, value in trailing or ():
        if key != STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, dict(info.metadata)
    return "", {}
