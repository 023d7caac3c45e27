"""The submitted job, decoded and normalised as Bacalhau v1.9's ``models.Job`` is.

Go's ``encoding/json`` matches field names case-insensitively and drops unknown fields, then
``Job.Normalize`` fills the empty collections and ``SanitizeSubmission`` discards what a client
may not set (ID of a batch job, State, Version, reserved Meta keys, all tasks but the first) with
a warning. :func:`decode_job` does the same and returns frozen dataclasses whose :meth:`to_json`
is what the orchestrator stores and answers: equality of two specs is v1.9's "no changes" test.
Bad input raises :class:`ValueError` with v1.9's wording (the API turns it into a 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JOB_TYPES = ("batch", "service", "daemon", "ops")
NETWORK_TYPES = ("Default", "None", "Host", "Full", "HTTP", "Bridge")
META_RESERVED_PREFIX = "bacalhau.org/"
ENV_PREFIX = "BACALHAU_"
SELECTION_OPERATORS = ("!", "=", "==", "in", "!=", "notin", "exists", "gt", "lt")


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` matched case-insensitively, as Go's JSON decoder matches struct fields."""
    if not isinstance(obj, Mapping):
        return default
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return default


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field {what} of type string"
        )
    return value


def _int(value: Any, what: str) -> int:
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != value  # NaN
        or not -(2**63) <= value < 2**63
        or int(value) != value
    ):
        raise ValueError(f"json: cannot unmarshal {value!r} into Go struct field {what} of type int64")
    return int(value)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field {what} of type map"
        )
    return {str(k): _str(v, what) for k, v in value.items()}


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field {what} of type slice"
        )
    return value


# resources ---------------------------------------------------------------------------------------

_BYTE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
    "p": 1000**5, "pb": 1000**5, "pi": 1024**5, "pib": 1024**5,
}  # fmt: skip
_BYTES = re.compile(r"^([0-9]*\.?[0-9]+)([a-z]*)$")
_CPU = re.compile(r"^([0-9]*\.?[0-9]+)(m?)$")


def parse_bytes(text: str) -> int:
    """go-humanize's ParseBytes: ``256mb`` is 256*1000^2, ``256mib`` 256*1024^2, a bare number is bytes."""
    match = _BYTES.match(text.replace(",", ""))
    if not match or match.group(2) not in _BYTE_UNITS:
        raise ValueError(text)
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])


def parse_cpu(text: str) -> float:
    """k8sresource's CPU quantity: ``0.5``, ``2`` or millicores ``500m``."""
    match = _CPU.match(text)
    if not match:
        raise ValueError(text)
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


@dataclass(frozen=True)
class Resources:
    """``models.Resources``: what a task asks for and a node has (CPU cores, bytes, GPUs)."""

    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    gpu: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cpu:
            out["CPU"] = self.cpu
        if self.memory:
            out["Memory"] = self.memory
        if self.disk:
            out["Disk"] = self.disk
        if self.gpu:
            out["GPU"] = self.gpu
        return out

    def fits(self, capacity: Resources) -> bool:
        return (
            self.cpu <= capacity.cpu + 1e-9
            and self.memory <= capacity.memory
            and self.disk <= capacity.disk
            and self.gpu <= capacity.gpu
        )

    def minus(self, other: Resources) -> Resources:
        return Resources(
            max(self.cpu - other.cpu, 0.0),
            max(self.memory - other.memory, 0),
            max(self.disk - other.disk, 0),
            max(self.gpu - other.gpu, 0),
        )


@dataclass(frozen=True)
class ResourcesConfig:
    """``models.ResourcesConfig``: the task's requested resources as strings, lower-cased, spaces removed."""

    cpu: str = ""
    memory: str = ""
    disk: str = ""
    gpu: str = ""

    @staticmethod
    def decode(raw: Any) -> ResourcesConfig:
        def clean(name: str) -> str:
            return (
                _str(field_of(raw, name), f"ResourcesConfig.{name}")
                .lower()
                .replace(" ", "")
                .replace("\n", "")
            )

        return ResourcesConfig(clean("CPU"), clean("Memory"), clean("Disk"), clean("GPU"))

    def to_resources(self) -> Resources:
        """``ToResources`` + ``Validate``: ValueError with v1.9's messages for bad or negative values."""
        errors: list[str] = []
        cpu = memory = disk = gpu = 0
        cpu_value = 0.0
        if self.cpu:
            try:
                cpu_value = parse_cpu(self.cpu)
            except ValueError:
                errors.append(f"invalid CPU value: {self.cpu}")
        if self.memory:
            try:
                memory = parse_bytes(self.memory)
            except ValueError:
                errors.append(f"invalid memory value: {self.memory}")
        if self.disk:
            try:
                disk = parse_bytes(self.disk)
            except ValueError:
                errors.append(f"invalid disk value: {self.disk}")
        if self.gpu:
            if not self.gpu.isdigit():
                raise ValueError(f"invalid GPU value: {self.gpu}")
            gpu = int(self.gpu)
        if errors:
            raise ValueError("\n".join(errors))
        del cpu
        return Resources(cpu_value, memory, disk, gpu)

    def to_json(self) -> dict[str, str]:
        pairs = (("CPU", self.cpu), ("Memory", self.memory), ("Disk", self.disk), ("GPU", self.gpu))
        return {key: value for key, value in pairs if value}


# task parts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecConfig:
    """``models.SpecConfig``: a typed plug-in spec (engine, publisher, input source)."""

    type: str = ""
    params: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def decode(raw: Any, what: str) -> SpecConfig | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"json: cannot unmarshal {type(raw).__name__} into Go struct field {what} of type SpecConfig"
            )
        params = field_of(raw, "Params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(
                f"json: cannot unmarshal {type(params).__name__} into Go struct field {what}.Params"
            )
        return SpecConfig(
            _str(field_of(raw, "Type"), f"{what}.Type").strip(), tuple(sorted(_freeze(params).items()))
        )

    @property
    def param_map(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.params}

    def param(self, name: str, default: Any = None) -> Any:
        """A parameter matched case-insensitively (Bacalhau decodes Params with mapstructure)."""
        return field_of(self.param_map, name, default)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Type": self.type}
        if self.params:
            out["Params"] = self.param_map
        return out

    def is_empty(self) -> bool:
        return not self.type and not self.params


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _FrozenDict((str(k), _freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, _FrozenDict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class _FrozenDict(dict[str, Any]):
    """A hashable dict, so that specs can be compared and kept in frozen dataclasses."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


@dataclass(frozen=True)
class InputSource:
    source: SpecConfig
    alias: str
    target: str

    def to_json(self) -> dict[str, Any]:
        return {"Source": self.source.to_json(), "Alias": self.alias, "Target": self.target}


@dataclass(frozen=True)
class ResultPath:
    name: str
    path: str

    def to_json(self) -> dict[str, str]:
        return {"Name": self.name, "Path": self.path}


@dataclass(frozen=True)
class Timeouts:
    """``models.TimeoutConfig`` in seconds; ExecutionTimeout falls back to TotalTimeout when 0."""

    execution: int = 0
    queue: int = 0
    total: int = 0

    @property
    def effective_execution(self) -> int:
        return self.execution if self.execution > 0 else self.total

    def to_json(self) -> dict[str, int]:
        pairs = (
            ("ExecutionTimeout", self.execution),
            ("QueueTimeout", self.queue),
            ("TotalTimeout", self.total),
        )
        return {key: value for key, value in pairs if value}


@dataclass(frozen=True)
class Network:
    type: str = "Default"
    domains: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Type": self.type}
        if self.domains:
            out["Domains"] = list(self.domains)
        return out


@dataclass(frozen=True)
class LabelSelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Key": self.key, "Operator": self.operator}
        if self.values:
            out["Values"] = list(self.values)
        return out


@dataclass(frozen=True)
class Task:
    name: str
    engine: SpecConfig
    publisher: SpecConfig
    env: tuple[tuple[str, str], ...]
    meta: tuple[tuple[str, str], ...]
    input_sources: tuple[InputSource, ...]
    result_paths: tuple[ResultPath, ...]
    resources: ResourcesConfig
    network: Network
    timeouts: Timeouts

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Name": self.name,
            "Engine": self.engine.to_json(),
            "Publisher": self.publisher.to_json(),
        }
        if self.env:
            out["Env"] = dict(self.env)
        if self.meta:
            out["Meta"] = dict(self.meta)
        if self.input_sources:
            out["InputSources"] = [source.to_json() for source in self.input_sources]
        if self.result_paths:
            out["ResultPaths"] = [path.to_json() for path in self.result_paths]
        out["Resources"] = self.resources.to_json()
        out["Network"] = self.network.to_json()
        out["Timeouts"] = self.timeouts.to_json()
        return out


@dataclass(frozen=True)
class JobSpec:
    """What a client submitted, normalised; ``State``/``ID``/versions live on the stored job."""

    name: str
    namespace: str
    type: str
    priority: int
    count: int
    constraints: tuple[LabelSelectorRequirement, ...]
    meta: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    task: Task

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Namespace": self.namespace,
            "Type": self.type,
            "Priority": self.priority,
            "Count": self.count,
            "Constraints": [c.to_json() for c in self.constraints],
            "Meta": dict(self.meta),
            "Labels": dict(self.labels),
            "Tasks": [self.task.to_json()],
        }

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass
class Submission:
    """A decoded PUT: the spec, the warnings v1.9 would give, and whether a Name was chosen."""

    spec: JobSpec
    warnings: list[str] = field(default_factory=list)
    named: bool = True


# decoding ----------------------------------------------------------------------------------------


def _network(raw: Any) -> Network:
    if raw is None:
        return Network()
    kind = field_of(raw, "Type")
    if kind is None:
        name = "Default"
    elif isinstance(kind, int) and not isinstance(kind, bool) and 0 <= kind < len(NETWORK_TYPES):
        name = NETWORK_TYPES[kind]
    elif isinstance(kind, str):
        matches = [n for n in NETWORK_TYPES if n.lower() == kind.strip().lower()]
        if not matches:
            raise ValueError(f"models.Network: unknown type '{kind}'")
        name = matches[0]
    else:
        raise ValueError(f"models.Network: unknown type '{kind}'")
    domains = tuple(
        _str(d, "NetworkConfig.Domains").strip().lower() for d in _list(field_of(raw, "Domains"), "Domains")
    )
    if domains and name != "HTTP":
        raise ValueError("invalid network: domains can only be set for HTTP network mode")
    return Network(name, domains)


def _timeouts(raw: Any) -> Timeouts:
    timeouts = Timeouts(
        _int(field_of(raw, "ExecutionTimeout"), "TimeoutConfig.ExecutionTimeout"),
        _int(field_of(raw, "QueueTimeout"), "TimeoutConfig.QueueTimeout"),
        _int(field_of(raw, "TotalTimeout"), "TimeoutConfig.TotalTimeout"),
    )
    problems = []
    if timeouts.execution < 0:
        problems.append(f"invalid execution timeout value: {timeouts.execution}s")
    if timeouts.queue < 0:
        problems.append(f"invalid queue timeout value: {timeouts.queue}s")
    if timeouts.total < 0:
        problems.append(f"invalid total timeout value: {timeouts.total}s")
    if problems:
        raise ValueError("invalid timeouts: " + "\n".join(problems))
    return timeouts


def _task(raw: Any) -> Task:
    name = _str(field_of(raw, "Name"), "Task.Name")
    problems: list[str] = []
    if not name.strip():
        problems.append("missing task name")
    engine = SpecConfig.decode(field_of(raw, "Engine"), "Task.Engine")
    if engine is None or not engine.type:
        problems.append(
            "invalid engine: nil spec config" if engine is None else "invalid engine: missing spec type"
        )
    env = _str_map(field_of(raw, "Env"), "Task.Env")
    for key in env:
        if key.upper().startswith(ENV_PREFIX):
            problems.append(f"environment variable '{key}' cannot start with {ENV_PREFIX}")
    inputs: list[InputSource] = []
    for item in _list(field_of(raw, "InputSources"), "Task.InputSources"):
        source = SpecConfig.decode(field_of(item, "Source"), "InputSource.Source")
        target = _str(field_of(item, "Target"), "InputSource.Target").strip()
        if not target:
            problems.append("invalid input sources: input source is missing a target")
        if source is None or not source.type:
            problems.append("invalid input sources: invalid input source: missing spec type")
        inputs.append(
            InputSource(source or SpecConfig(), _str(field_of(item, "Alias"), "Alias").strip(), target)
        )
    targets = [i.target for i in inputs if i.target]
    if len(targets) != len(set(targets)):
        problems.append("input source with target already exists")
    results = [
        ResultPath(
            _str(field_of(item, "Name"), "ResultPath.Name"), _str(field_of(item, "Path"), "ResultPath.Path")
        )
        for item in _list(field_of(raw, "ResultPaths"), "Task.ResultPaths")
    ]
    for result in results:
        if not result.name.strip():
            problems.append("invalid output: result path is missing a name")
        if not result.path.startswith("/"):
            problems.append(f"invalid output: result path {result.path!r} must be absolute")
    resources = ResourcesConfig.decode(field_of(raw, "Resources"))
    try:
        resources.to_resources()
    except ValueError as exc:
        problems.append(f"invalid resources: {exc}")
    network = _network(field_of(raw, "Network"))
    timeouts = _timeouts(field_of(raw, "Timeouts"))
    if problems:
        raise ValueError(f"task {name} validation failed: " + "\n".join(problems))
    assert engine is not None
    return Task(
        name=name,
        engine=engine,
        publisher=SpecConfig.decode(field_of(raw, "Publisher"), "Task.Publisher") or SpecConfig(),
        env=tuple(sorted(env.items())),
        meta=tuple(sorted(_str_map(field_of(raw, "Meta"), "Task.Meta").items())),
        input_sources=tuple(inputs),
        result_paths=tuple(results),
        resources=resources,
        network=network,
        timeouts=timeouts,
    )


def _constraints(raw: Any) -> tuple[LabelSelectorRequirement, ...]:
    out = []
    for index, item in enumerate(_list(raw, "Job.Constraints"), start=1):
        key = _str(field_of(item, "Key"), "LabelSelectorRequirement.Key")
        operator = _str(field_of(item, "Operator"), "LabelSelectorRequirement.Operator")
        values = tuple(_str(v, "Values") for v in _list(field_of(item, "Values"), "Values"))
        if not key or operator not in SELECTION_OPERATORS:
            raise ValueError(
                f"constraint {index} validation failed: invalid key {key!r} or operator {operator!r}"
            )
        if operator in ("=", "==", "!=") and len(values) != 1:
            raise ValueError(f"constraint {index} validation failed: exact-match operator needs one value")
        out.append(LabelSelectorRequirement(key, operator, values))
    return tuple(out)


def decode_job(raw: Any) -> Submission:
    """A PUT body's ``Job`` decoded, validated (``ValidateSubmission``) and sanitised, with warnings."""
    if raw is None:
        raise ValueError("empty/nil job")
    if not isinstance(raw, Mapping):
        raise ValueError("json: cannot unmarshal into Go struct field PutJobRequest.Job of type models.Job")
    warnings: list[str] = []
    job_type = _str(field_of(raw, "Type"), "Job.Type")
    problems: list[str] = []
    if not job_type:
        problems.append("missing job type")
    elif job_type not in JOB_TYPES:
        problems.append(f'invalid job type: "{job_type}"')
    count_raw = field_of(raw, "Count")
    count = (
        (1 if job_type in ("batch", "service") else 0) if count_raw is None else _int(count_raw, "Job.Count")
    )
    if job_type in ("daemon", "ops"):
        count = 0
    if count < 0:
        problems.append("job count must be >= 0")
    tasks = _list(field_of(raw, "Tasks"), "Job.Tasks")
    if not tasks:
        problems.append("missing job tasks")
    constraints = _constraints(field_of(raw, "Constraints"))
    task = None
    if tasks:
        try:
            task = _task(tasks[0])
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("\n".join(problems))
    assert task is not None
    if len(tasks) > 1:
        warnings.append("only one task is supported per job")
    if field_of(raw, "ID") and job_type in ("batch", "ops"):
        warnings.append("job ID is ignored when submitting a batch job")
    state = field_of(raw, "State")
    if isinstance(state, Mapping) and field_of(state, "StateType") not in (None, "", 0, "Undefined"):
        warnings.append("job state is ignored when submitting a job")
    for name, message in (
        ("Revision", "job revision is ignored when submitting a job"),
        ("Version", "job version is ignored when submitting a job"),
        ("CreateTime", "job create time is ignored when submitting a job"),
        ("ModifyTime", "job modify time is ignored when submitting a job"),
    ):
        if field_of(raw, name):
            warnings.append(message)
    meta = _str_map(field_of(raw, "Meta"), "Job.Meta")
    for key in sorted(meta):
        if key.startswith(META_RESERVED_PREFIX):
            warnings.append(f'job meta key "{key}" is reserved and will be ignored')
            del meta[key]
    name = _str(field_of(raw, "Name"), "Job.Name")
    if "\x00" in name:
        raise ValueError("job Name contains a null character")
    namespace = _str(field_of(raw, "Namespace"), "Job.Namespace") or "default"
    spec = JobSpec(
        name=name,
        namespace=namespace,
        type=job_type,
        priority=_int(field_of(raw, "Priority"), "Job.Priority"),
        count=count,
        constraints=constraints,
        meta=tuple(sorted(meta.items())),
        labels=tuple(sorted(_str_map(field_of(raw, "Labels"), "Job.Labels").items())),
        task=task,
    )
    return Submission(spec, warnings, named=bool(name))
