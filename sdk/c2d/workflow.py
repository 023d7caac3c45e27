"""The seed's JSON workflow format, to and from ``c2d.compute.v1.Workflow``.

Consumers write workflows by hand, so parsing is strict: an unknown key or a
value of the wrong type is a :class:`WorkflowFormatError` naming where it is
(``stages[1].algorithm.contaner: unknown key``) instead of a field silently
dropped. Only the format is checked here; what a workflow means (references,
cycles, environments, limits) is for the node to judge, as it is the only one
that knows.

Accepted forms: a JSON list of stages, or an object
``{"stages": [...], "environment", "resources", "maxJobDuration", "queueMaxWaitTime", "viewers"}``
(``queueMaxWaitTime``: the seconds each stage may wait for capacity; the environment caps it).
A stage is ``{"index", "runAfter", "input", "algorithm", "environment",
"resources", "maxJobDuration"}``; ``runAfter`` is null, a stage index, a job id
or a list of those. ``files``, ``userdata`` and ``customData`` are free JSON
objects (``google.protobuf.Struct``). ``null`` means "not set" everywhere.

An algorithm's ``container`` may carry the credentials of its image's registry, either in the
clear, ``"registryAuth": {"username", "password", "server"?}``, which is encrypted here to the
node's public key (``node_key``, asked for only then) so that the password never leaves in the
clear, or already encrypted, ``"encryptedRegistryAuth": "0x<hex>"`` (see :mod:`c2d.registry_auth`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from google.protobuf import json_format, struct_pb2

from c2d import registry_auth
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2

UINT32_MAX = 2**32 - 1
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

WORKFLOW_KEYS = ("stages", "environment", "resources", "maxJobDuration", "queueMaxWaitTime", "viewers")
STAGE_KEYS = ("index", "runAfter", "input", "algorithm", "environment", "resources", "maxJobDuration")
INPUT_KEYS = ("index", "did", "serviceId", "files", "userdata")
ALGORITHM_KEYS = ("did", "serviceId", "files", "rawcode", "container", "customData")
CONTAINER_KEYS = ("entrypoint", "image", "tag", "checksum", "dockerfile")
CONTAINER_AUTH_KEYS = ("registryAuth", "encryptedRegistryAuth")
# A container built from its dockerfile may carry more files for the build: name -> text.
CONTAINER_FILES = "additionalFiles"
NodeKey = Callable[[], bytes]  # the node's public key, fetched only when a workflow needs it
RESOURCE_KEYS = ("id", "amount")


class WorkflowFormatError(ValueError):
    """A workflow document that does not follow the format; ``path`` says where."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'workflow'}: {problem}")
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------- JSON -> protobuf


def load_workflow(
    path: str | Path, environment_id: str | None = None, node_key: NodeKey | None = None
) -> compute_pb2.Workflow:
    """Reads a workflow file; a file that is not JSON is a WorkflowFormatError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowFormatError("", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFormatError("", f"{path} is not JSON: {exc}") from None
    return parse_workflow(data, environment_id, node_key)


def parse_workflow(
    data: Any, environment_id: str | None = None, node_key: NodeKey | None = None
) -> compute_pb2.Workflow:
    """Converts parsed JSON (either form) to a Workflow; ``environment_id`` overrides the document's.
    ``node_key``: where a ``registryAuth`` is encrypted to (without one, such a workflow is refused)."""
    if isinstance(data, list):
        data = {"stages": data}
    doc = _object(data, "", WORKFLOW_KEYS, what='a list of stages or an object with "stages"')
    workflow = compute_pb2.Workflow()
    stages = doc.get("stages")
    if stages is None:
        raise WorkflowFormatError("stages", "missing: a workflow needs at least one stage")
    for i, stage in enumerate(_list(stages, "stages")):
        workflow.stages.append(_stage(stage, f"stages[{i}]", default_index=i, node_key=node_key))
    if not workflow.stages:
        raise WorkflowFormatError("stages", "empty: a workflow needs at least one stage")
    _check_unique_indexes(workflow)
    workflow.environment_id = _opt_str(doc, "environment", "")
    workflow.resources.extend(_resources(doc.get("resources"), "resources"))
    workflow.max_duration_seconds = _opt_uint(doc, "maxJobDuration", "")
    workflow.max_queue_seconds = _opt_uint(doc, "queueMaxWaitTime", "")
    workflow.viewers.extend(_viewers(doc.get("viewers"), "viewers"))
    if environment_id:
        workflow.environment_id = environment_id
    return workflow


def _stage(value: Any, path: str, default_index: int, node_key: NodeKey | None = None) -> compute_pb2.Stage:
    doc = _object(value, path, STAGE_KEYS)
    index = default_index if doc.get("index") is None else _opt_uint(doc, "index", path)
    stage = compute_pb2.Stage(index=index)
    stage.run_after.extend(_run_after(doc.get("runAfter"), _join(path, "runAfter")))
    for i, item in enumerate(_list(doc.get("input") or [], _join(path, "input"))):
        stage.input.append(_input(item, f"{_join(path, 'input')}[{i}]", default_index=i))
    if doc.get("algorithm") is None:
        raise WorkflowFormatError(_join(path, "algorithm"), "missing: every stage runs an algorithm")
    stage.algorithm.CopyFrom(_algorithm(doc["algorithm"], _join(path, "algorithm"), node_key))
    stage.environment_id = _opt_str(doc, "environment", path)
    stage.resources.extend(_resources(doc.get("resources"), _join(path, "resources")))
    stage.max_duration_seconds = _opt_uint(doc, "maxJobDuration", path)
    return stage


def _run_after(value: Any, path: str) -> list[compute_pb2.StageDependency]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    deps = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]" if isinstance(value, list) else path
        if isinstance(item, str):
            if not item.strip():
                raise WorkflowFormatError(item_path, "empty job id")
            deps.append(compute_pb2.StageDependency(job_id=item))
        elif _is_number(item):
            deps.append(compute_pb2.StageDependency(stage_index=_uint(item, item_path)))
        else:
            raise WorkflowFormatError(
                item_path, f"must be a stage index, a job id or a list of those, not {_kind(item)}"
            )
    return deps


def _input(value: Any, path: str, default_index: int) -> compute_pb2.StageInput:
    doc = _object(value, path, INPUT_KEYS)
    item = compute_pb2.StageInput(
        index=default_index if doc.get("index") is None else _opt_uint(doc, "index", path),
        did=_opt_str(doc, "did", path),
        service_id=_opt_str(doc, "serviceId", path),
    )
    _opt_struct(doc, "files", path, item.files)
    _opt_struct(doc, "userdata", path, item.user_data)
    return item


def _algorithm(value: Any, path: str, node_key: NodeKey | None = None) -> compute_pb2.Algorithm:
    doc = _object(value, path, ALGORITHM_KEYS)
    algorithm = compute_pb2.Algorithm(
        did=_opt_str(doc, "did", path),
        service_id=_opt_str(doc, "serviceId", path),
        rawcode=_opt_str(doc, "rawcode", path),
    )
    _opt_struct(doc, "files", path, algorithm.files)
    _opt_struct(doc, "customData", path, algorithm.custom_data)
    if doc.get("container") is not None:
        container_path = _join(path, "container")
        container = _object(
            doc["container"], container_path, (*CONTAINER_KEYS, *CONTAINER_AUTH_KEYS, CONTAINER_FILES)
        )
        algorithm.container.CopyFrom(
            compute_pb2.AlgorithmContainer(
                **{field: _opt_str(container, field, container_path) for field in CONTAINER_KEYS},
                encrypted_registry_auth=_registry_auth(container, container_path, node_key),
                additional_files=_text_files(
                    container.get(CONTAINER_FILES), _join(container_path, CONTAINER_FILES)
                ),
            )
        )
    return algorithm


def _registry_auth(container: Mapping[str, Any], path: str, node_key: NodeKey | None) -> bytes:
    """The container's encrypted credentials: as given in hex, or ``registryAuth`` encrypted now."""
    clear, sealed = container.get("registryAuth"), container.get("encryptedRegistryAuth")
    if clear is not None and sealed is not None:
        raise WorkflowFormatError(path, "give registryAuth or encryptedRegistryAuth, not both")
    if sealed is not None:
        where = _join(path, "encryptedRegistryAuth")
        if not isinstance(sealed, str):
            raise WorkflowFormatError(where, f"must be a hex string, not {_kind(sealed)}")
        try:
            return bytes.fromhex(sealed.removeprefix("0x"))
        except ValueError:
            raise WorkflowFormatError(where, "is not hex") from None
    if clear is None:
        return b""
    where = _join(path, "registryAuth")
    doc = _object(clear, where, registry_auth.FIELDS)
    try:
        credentials = registry_auth.parse(doc)
    except registry_auth.RegistryAuthError as exc:
        raise WorkflowFormatError(where, str(exc).replace("it needs", "needs")) from None
    if node_key is None:
        raise WorkflowFormatError(where, "needs the node's public key to be encrypted to (pass node_key)")
    return registry_auth.encrypt(node_key(), credentials.username, credentials.password, credentials.server)


def _text_files(value: Any, path: str) -> dict[str, bytes]:
    """``additionalFiles``: an object of file name -> text, sent as the text's UTF-8 bytes."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WorkflowFormatError(path, f"must be an object of file name -> text, not {_kind(value)}")
    files = {}
    for name, text in value.items():
        if not isinstance(text, str):
            raise WorkflowFormatError(_join(path, str(name)), f"must be text, not {_kind(text)}")
        files[str(name)] = text.encode()
    return files


def _resources(value: Any, path: str) -> list[common_pb2.ResourceRequest]:
    requests = []
    for i, item in enumerate(_list(value or [], path)):
        item_path = f"{path}[{i}]"
        doc = _object(item, item_path, RESOURCE_KEYS)
        resource_id = _opt_str(doc, "id", item_path)
        if not resource_id:
            raise WorkflowFormatError(_join(item_path, "id"), "missing: name the resource (cpu, ram, ...)")
        amount = doc.get("amount")
        if not _is_number(amount):
            raise WorkflowFormatError(_join(item_path, "amount"), f"must be a number, not {_kind(amount)}")
        if amount < 0:
            raise WorkflowFormatError(_join(item_path, "amount"), f"must be >= 0, not {amount!r}")
        requests.append(common_pb2.ResourceRequest(id=resource_id, amount=float(amount)))
    return requests


def _viewers(value: Any, path: str) -> list[str]:
    viewers = _list(value or [], path)
    for i, viewer in enumerate(viewers):
        if not isinstance(viewer, str) or not ADDRESS.fullmatch(viewer):
            raise WorkflowFormatError(f"{path}[{i}]", "must be an Ethereum address (0x and 40 hex digits)")
    return viewers


def _check_unique_indexes(workflow: compute_pb2.Workflow) -> None:
    seen: set[int] = set()
    for i, stage in enumerate(workflow.stages):
        if stage.index in seen:
            raise WorkflowFormatError(f"stages[{i}].index", f"duplicate stage index {stage.index}")
        seen.add(stage.index)


# ---------------------------------------------------------------- value checks


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if _is_number(value) else type(value).__name__)


def _object(value: Any, path: str, keys: tuple[str, ...], what: str = "an object") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WorkflowFormatError(path, f"must be {what}, not {_kind(value)}")
    for key in value:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(keys)}"
            raise WorkflowFormatError(_join(path, str(key)), f"unknown key{hint}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise WorkflowFormatError(path, f"must be a list, not {_kind(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _uint(value: Any, path: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or not 0 <= value <= UINT32_MAX:
        raise WorkflowFormatError(path, f"must be a whole number from 0 to {UINT32_MAX}, not {value!r}")
    return value


def _opt_uint(doc: Mapping[str, Any], key: str, path: str) -> int:
    return 0 if doc.get(key) is None else _uint(doc[key], _join(path, key))


def _opt_str(doc: Mapping[str, Any], key: str, path: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WorkflowFormatError(_join(path, key), f"must be a string, not {_kind(value)}")
    return value


def _opt_struct(doc: Mapping[str, Any], key: str, path: str, target: struct_pb2.Struct) -> None:
    value = doc.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        raise WorkflowFormatError(_join(path, key), f"must be a JSON object, not {_kind(value)}")
    try:
        target.SetInParent()  # an empty object is still "given"
        target.update(value)
    except (ValueError, TypeError) as exc:
        raise WorkflowFormatError(_join(path, key), f"not representable as JSON: {exc}") from None


# ---------------------------------------------------------------- protobuf -> JSON


def workflow_to_json(workflow: compute_pb2.Workflow) -> dict[str, Any]:
    """The object form of ``workflow``; ``parse_workflow`` of the result gives it back unchanged.

    Unset optional fields are left out; ``index``, ``runAfter``, ``input`` and
    ``algorithm`` are always written, as in the seed's format.
    """
    doc: dict[str, Any] = {"stages": [_stage_json(stage) for stage in workflow.stages]}
    _put(doc, "environment", workflow.environment_id)
    _put(doc, "resources", _resources_json(workflow.resources))
    _put(doc, "maxJobDuration", workflow.max_duration_seconds)
    _put(doc, "queueMaxWaitTime", workflow.max_queue_seconds)
    _put(doc, "viewers", list(workflow.viewers))
    return doc


def _stage_json(stage: compute_pb2.Stage) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "index": stage.index,
        "runAfter": _run_after_json(stage.run_after),
        "input": [_input_json(item) for item in stage.input],
        "algorithm": _algorithm_json(stage.algorithm),
    }
    _put(doc, "environment", stage.environment_id)
    _put(doc, "resources", _resources_json(stage.resources))
    _put(doc, "maxJobDuration", stage.max_duration_seconds)
    return doc


def _run_after_json(deps: Any) -> int | str | list[int | str] | None:
    targets: list[int | str] = [
        dep.stage_index if dep.WhichOneof("target") == "stage_index" else dep.job_id for dep in deps
    ]
    if not targets:
        return None
    return targets[0] if len(targets) == 1 else targets


def _input_json(item: compute_pb2.StageInput) -> dict[str, Any]:
    doc: dict[str, Any] = {"index": item.index}
    _put(doc, "did", item.did)
    _put(doc, "serviceId", item.service_id)
    _put_struct(doc, "files", item, "files")
    _put_struct(doc, "userdata", item, "user_data")
    return doc


def _algorithm_json(algorithm: compute_pb2.Algorithm) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    _put(doc, "did", algorithm.did)
    _put(doc, "serviceId", algorithm.service_id)
    _put_struct(doc, "files", algorithm, "files")
    _put(doc, "rawcode", algorithm.rawcode)
    if algorithm.HasField("container"):
        container = algorithm.container
        doc["container"] = {key: getattr(container, key) for key in CONTAINER_KEYS if getattr(container, key)}
        if container.encrypted_registry_auth:
            doc["container"]["encryptedRegistryAuth"] = "0x" + container.encrypted_registry_auth.hex()
        if container.additional_files:
            doc["container"][CONTAINER_FILES] = {
                name: data.decode(errors="replace")
                for name, data in sorted(container.additional_files.items())
            }
    _put_struct(doc, "customData", algorithm, "custom_data")
    return doc


def _resources_json(resources: Any) -> list[dict[str, Any]]:
    return [{"id": r.id, "amount": _plain_number(r.amount)} for r in resources]


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    if value:
        doc[key] = value


def _put_struct(doc: dict[str, Any], key: str, message: Any, field: str) -> None:
    if message.HasField(field):
        doc[key] = _integral_floats_to_int(json_format.MessageToDict(getattr(message, field)))


def _plain_number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _integral_floats_to_int(value: Any) -> Any:
    """Struct keeps every number as a double; give back 3 rather than 3.0, as the author wrote it."""
    if isinstance(value, dict):
        return {key: _integral_floats_to_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_int(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
