import datetime

from c2d.common.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPluginInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPluginInfoResponse(_message.Message):
    __slots__ = ("name", "plugin_version", "api_versions", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    plugin_version: str
    api_versions: _containers.RepeatedScalarFieldContainer[int]
    description: str
    def __init__(self, name: _Optional[str] = ..., plugin_version: _Optional[str] = ..., api_versions: _Optional[_Iterable[int]] = ..., description: _Optional[str] = ...) -> None: ...

class ConfigureRequest(_message.Message):
    __slots__ = ("api_version", "config", "host_id", "state_dir")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    api_version: int
    config: _struct_pb2.Struct
    host_id: str
    state_dir: str
    def __init__(self, api_version: _Optional[int] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., host_id: _Optional[str] = ..., state_dir: _Optional[str] = ...) -> None: ...

class ConfigureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchFingerprintRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("container_isolation", "network_isolation", "disk_quota", "gpu_vendors", "log_streaming", "runs_pods", "image_build")
    CONTAINER_ISOLATION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ISOLATION_FIELD_NUMBER: _ClassVar[int]
    DISK_QUOTA_FIELD_NUMBER: _ClassVar[int]
    GPU_VENDORS_FIELD_NUMBER: _ClassVar[int]
    LOG_STREAMING_FIELD_NUMBER: _ClassVar[int]
    RUNS_PODS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BUILD_FIELD_NUMBER: _ClassVar[int]
    container_isolation: bool
    network_isolation: bool
    disk_quota: str
    gpu_vendors: _containers.RepeatedScalarFieldContainer[str]
    log_streaming: bool
    runs_pods: bool
    image_build: bool
    def __init__(self, container_isolation: bool = ..., network_isolation: bool = ..., disk_quota: _Optional[str] = ..., gpu_vendors: _Optional[_Iterable[str]] = ..., log_streaming: bool = ..., runs_pods: bool = ..., image_build: bool = ...) -> None: ...

class Fingerprint(_message.Message):
    __slots__ = ("health", "health_description", "environments", "capabilities")
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    health: _common_pb2.EngineHealth
    health_description: str
    environments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Environment]
    capabilities: Capabilities
    def __init__(self, health: _Optional[_Union[_common_pb2.EngineHealth, str]] = ..., health_description: _Optional[str] = ..., environments: _Optional[_Iterable[_Union[_common_pb2.Environment, _Mapping]]] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ...) -> None: ...

class WatchFingerprintResponse(_message.Message):
    __slots__ = ("fingerprint",)
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    fingerprint: Fingerprint
    def __init__(self, fingerprint: _Optional[_Union[Fingerprint, _Mapping]] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("image", "tag", "digest", "command", "env", "dockerfile", "additional_files")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AdditionalFilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_FILES_FIELD_NUMBER: _ClassVar[int]
    image: str
    tag: str
    digest: str
    command: str
    env: _containers.ScalarMap[str, str]
    dockerfile: str
    additional_files: _containers.ScalarMap[str, bytes]
    def __init__(self, image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., command: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., dockerfile: _Optional[str] = ..., additional_files: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class PodAccess(_message.Message):
    __slots__ = ("node_peer_id", "node_http_api", "private_key")
    NODE_PEER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_HTTP_API_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    node_peer_id: str
    node_http_api: str
    private_key: str
    def __init__(self, node_peer_id: _Optional[str] = ..., node_http_api: _Optional[str] = ..., private_key: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("job_id", "workflow_id", "environment_id", "owner", "container", "resources", "max_duration_seconds", "network", "pod", "labels", "options", "registry_auth")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    workflow_id: str
    environment_id: str
    owner: str
    container: Container
    resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.GrantedResource]
    max_duration_seconds: int
    network: _common_pb2.NetworkPolicy
    pod: PodAccess
    labels: _containers.ScalarMap[str, str]
    options: _struct_pb2.Struct
    registry_auth: RegistryAuth
    def __init__(self, job_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., environment_id: _Optional[str] = ..., owner: _Optional[str] = ..., container: _Optional[_Union[Container, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[_common_pb2.GrantedResource, _Mapping]]] = ..., max_duration_seconds: _Optional[int] = ..., network: _Optional[_Union[_common_pb2.NetworkPolicy, _Mapping]] = ..., pod: _Optional[_Union[PodAccess, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., registry_auth: _Optional[_Union[RegistryAuth, _Mapping]] = ...) -> None: ...

class RegistryAuth(_message.Message):
    __slots__ = ("username", "password", "server")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    server: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., server: _Optional[str] = ...) -> None: ...

class JobHandle(_message.Message):
    __slots__ = ("job_id", "version", "state")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    version: int
    state: bytes
    def __init__(self, job_id: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class StartJobResponse(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: JobHandle
    def __init__(self, handle: _Optional[_Union[JobHandle, _Mapping]] = ...) -> None: ...

class RecoverJobRequest(_message.Message):
    __slots__ = ("handle", "registry_auth")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    handle: JobHandle
    registry_auth: RegistryAuth
    def __init__(self, handle: _Optional[_Union[JobHandle, _Mapping]] = ..., registry_auth: _Optional[_Union[RegistryAuth, _Mapping]] = ...) -> None: ...

class RecoverJobResponse(_message.Message):
    __slots__ = ("handle", "last_event")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
    handle: JobHandle
    last_event: JobEvent
    def __init__(self, handle: _Optional[_Union[JobHandle, _Mapping]] = ..., last_event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "time", "status", "message", "terminal", "exit_code", "oom_killed", "timed_out", "disk_quota_exceeded", "stopped", "image_digest", "algorithm_started", "algorithm_finished", "details", "build_seconds")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    DISK_QUOTA_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_STARTED_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FINISHED_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    BUILD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    status: _common_pb2.JobStatus
    message: str
    terminal: bool
    exit_code: int
    oom_killed: bool
    timed_out: bool
    disk_quota_exceeded: bool
    stopped: bool
    image_digest: str
    algorithm_started: _timestamp_pb2.Timestamp
    algorithm_finished: _timestamp_pb2.Timestamp
    details: _containers.ScalarMap[str, str]
    build_seconds: float
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., message: _Optional[str] = ..., terminal: bool = ..., exit_code: _Optional[int] = ..., oom_killed: bool = ..., timed_out: bool = ..., disk_quota_exceeded: bool = ..., stopped: bool = ..., image_digest: _Optional[str] = ..., algorithm_started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., algorithm_finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Mapping[str, str]] = ..., build_seconds: _Optional[float] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class StopJobRequest(_message.Message):
    __slots__ = ("job_id", "grace_seconds", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    grace_seconds: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., grace_seconds: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StopJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DestroyJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DestroyJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("job_id", "workflow_id", "terminal", "status")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    workflow_id: str
    terminal: bool
    status: _common_pb2.JobStatus
    def __init__(self, job_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., terminal: bool = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSummary]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ...) -> None: ...

class StreamJobLogsRequest(_message.Message):
    __slots__ = ("job_id", "follow", "offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    follow: bool
    offset: int
    def __init__(self, job_id: _Optional[str] = ..., follow: bool = ..., offset: _Optional[int] = ...) -> None: ...

class StreamJobLogsResponse(_message.Message):
    __slots__ = ("data", "offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
