"""Ocean's compute request bodies (JSON) as this node's Workflow: one stage, its datasets and
algorithm, the environment, resources and limits.

Only the shape is checked here (types, presence, what this node does not support); what the
values may be (sizes, registered assets, the environment's limits) is checked by the same
planning the gRPC face uses, on the Workflow this builds. Fields this node does not act on are
refused rather than dropped, so a consumer never believes an option took effect when it did not.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from c2d.compute.v1 import compute_pb2
from host.errors import check_numbers, invalid

MAX_DATASETS = 64
MAX_RESOURCES = 32
MAX_VIEWERS = 64
UINT32 = 2**32
# Deepest nesting of a free-form object (userdata, algocustomdata, metadata): protobuf's own
# parser stops at 100 on the gRPC face; JSON objects are bounded well before Python's recursion.
MAX_DEPTH = 32
# Fields ocean-node acts on that this node does not (yet): naming them is refused.
UNSUPPORTED = ("output", "outputBucketId", "encryptedDockerRegistryAuth", "policyServer")
JSONObject = dict[str, Any]


def _object(value: object, where: str) -> JSONObject:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a JSON object")
    return value


def _text(value: object, where: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise invalid(f'missing parameter: "{where}"')
        return ""
    if not isinstance(value, str):
        raise invalid(f"{where} must be a string")
    return value


def _count(value: object, where: str) -> int:
    """A whole number of seconds in 0..2^32-1 (JSON numbers and decimal strings, not booleans)."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < UINT32:
        raise invalid(f"{where} must be a whole number from 0 to {UINT32 - 1}")
    return value


def _list(value: object, where: str, most: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{where} must be a JSON array")
    if len(value) > most:
        raise invalid(f"{where} has {len(value)} entries; at most {most} are accepted")
    return value


def _depth(value: object) -> int:
    """How deeply ``value`` nests (without recursing: a hostile body may nest thousands deep)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, level + 1) for child in children)
    return deepest


def _struct(value: object, where: str) -> struct_pb2.Struct | None:
    if value is None:
        return None
    if _depth(value) > MAX_DEPTH:
        raise invalid(f"{where} nests deeper than {MAX_DEPTH} levels")
    struct = struct_pb2.Struct()
    try:
        json_format.ParseDict(_object(value, where), struct)
    except (json_format.ParseError, RecursionError, ValueError, TypeError):
        raise invalid(f"{where} is not an object this node can keep (too deep, or not JSON values)") from None
    return struct


def _no_unsupported(body: JSONObject, where: str, names: tuple[str, ...]) -> None:
    for name in names:
        if body.get(name) not in (None, "", {}, []):
            raise invalid(f"{where}{name} is not supported by this node (docs/ocean-compatibility.md)")


def _dataset(value: object, position: int) -> compute_pb2.StageInput:
    where = f"datasets[{position}]"
    dataset = _object(value, where)
    _no_unsupported(dataset, f"{where}.", ("fileObject", "transferTxId"))
    entry = compute_pb2.StageInput(
        index=position,
        did=_text(dataset.get("documentId"), f"{where}.documentId", required=True),
        service_id=_text(dataset.get("serviceId"), f"{where}.serviceId"),
    )
    user_data = _struct(dataset.get("userdata"), f"{where}.userdata")
    if user_data is not None:
        entry.user_data.CopyFrom(user_data)
    return entry


def _algorithm(value: object) -> compute_pb2.Algorithm:
    algorithm = _object(value, "algorithm")
    _no_unsupported(algorithm, "algorithm.", ("fileObject", "transferTxId", "envs"))
    chosen = compute_pb2.Algorithm(
        did=_text(algorithm.get("documentId"), "algorithm.documentId"),
        service_id=_text(algorithm.get("serviceId"), "algorithm.serviceId"),
    )
    meta = algorithm.get("meta")
    if meta is not None:
        meta = _object(meta, "algorithm.meta")
        chosen.rawcode = _text(meta.get("rawcode"), "algorithm.meta.rawcode")
        container = _object(meta.get("container") or {}, "algorithm.meta.container")
        chosen.container.SetInParent()
        for name in ("entrypoint", "image", "tag", "checksum"):
            setattr(chosen.container, name, _text(container.get(name), f"algorithm.meta.container.{name}"))
    if not chosen.did and not chosen.rawcode:
        raise invalid("algorithm must name a registered algorithm (documentId) or bring meta.rawcode")
    custom = _struct(algorithm.get("algocustomdata"), "algorithm.algocustomdata")
    if custom is not None:
        chosen.custom_data.CopyFrom(custom)
    return chosen


def _resources(value: object) -> list[dict[str, Any]]:
    requested = []
    for position, entry in enumerate(_list(value, "resources", MAX_RESOURCES)):
        resource = _object(entry, f"resources[{position}]")
        amount = resource.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise invalid(f"resources[{position}].amount must be a number")
        requested.append(
            {"id": _text(resource.get("id"), f"resources[{position}].id", required=True), "amount": amount}
        )
    return requested


def workflow(body: JSONObject, *, resources: object = None) -> compute_pb2.Workflow:
    """The one-stage workflow of a freeCompute or initializeCompute body (its numbers checked)."""
    _no_unsupported(body, "", UNSUPPORTED)
    datasets = body.get("datasets")
    if datasets is None and body.get("dataset") is not None:  # ocean.js's field before C2D v2
        datasets = [body["dataset"]]
    stage = compute_pb2.Stage(
        index=0,
        input=[_dataset(d, i) for i, d in enumerate(_list(datasets, "datasets", MAX_DATASETS))],
        algorithm=_algorithm(body.get("algorithm")),
    )
    flow = compute_pb2.Workflow(
        stages=[stage],
        environment_id=_text(body.get("environment"), "environment", required=True),
        max_duration_seconds=_count(body.get("maxJobDuration"), "maxJobDuration"),
        max_queue_seconds=_count(body.get("queueMaxWaitTime"), "queueMaxWaitTime"),
        viewers=[
            _text(v, f"additionalViewers[{i}]").lower()
            for i, v in enumerate(_list(body.get("additionalViewers"), "additionalViewers", MAX_VIEWERS))
        ],
    )
    for grant in _resources(body.get("resources") if resources is None else resources):
        flow.resources.add(id=grant["id"], amount=grant["amount"])
    checked(flow)
    return flow


def payment(body: JSONObject) -> tuple[compute_pb2.Payment | None, object]:
    """initializeCompute's ``payment`` block: the Payment to quote (None when it names no chain and
    token: then only validate), and the resources ocean.js sends inside it."""
    block = body.get("payment")
    if block is None:
        return None, None
    block = _object(block, "payment")
    chain_id = block.get("chainId")
    token = _text(block.get("token"), "payment.token")
    resources = block.get("resources")
    if chain_id in (None, "") or not token:
        return None, resources
    if isinstance(chain_id, str) and chain_id.isdigit() and len(chain_id) <= 19:
        chain_id = int(chain_id)
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**63:
        raise invalid("payment.chainId must be a positive whole number")
    return compute_pb2.Payment(chain_id=chain_id, token_address=token), resources


def start_request(body: JSONObject, flow: compute_pb2.Workflow) -> compute_pb2.FreeStartComputeRequest:
    """The FreeStartComputeRequest of a freeCompute body (for :func:`host.metadata.accepted_metadata`)."""
    request = compute_pb2.FreeStartComputeRequest(workflow=flow)
    _metadata(body, request)
    return request


def paid_start_request(body: JSONObject, flow: compute_pb2.Workflow) -> compute_pb2.StartComputeRequest:
    """The StartComputeRequest of a paid compute body: ocean.js names the chain and token in its
    ``payment`` block (and the chain again as ``chainId``); the amount is the node's quote, never
    the consumer's."""
    chosen, _ = payment(body)
    if chosen is None:
        raise invalid('a paid start names its payment: "payment": {"chainId": ..., "token": "0x..."}')
    top = body.get("chainId")
    if top not in (None, "") and str(top) != str(chosen.chain_id):
        raise invalid(f"chainId {top} and payment.chainId {chosen.chain_id} differ")
    request = compute_pb2.StartComputeRequest(workflow=flow, payment=chosen)
    _metadata(body, request)
    return request


def _metadata(body: JSONObject, request: Message) -> None:
    """The body's ``metadata`` into the start request, whose numbers are then checked."""
    metadata = _struct(body.get("metadata"), "metadata")
    if metadata is not None:
        request.metadata.CopyFrom(metadata)  # type: ignore[attr-defined]
    checked(request)


def checked(message: Message) -> None:
    """The numbers check every gRPC request gets as it enters (finite, in range)."""
    check_numbers(message)
