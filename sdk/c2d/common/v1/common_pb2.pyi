import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_TYPE_UNSPECIFIED: _ClassVar[ResourceType]
    RESOURCE_TYPE_CPU: _ClassVar[ResourceType]
    RESOURCE_TYPE_RAM: _ClassVar[ResourceType]
    RESOURCE_TYPE_DISK: _ClassVar[ResourceType]
    RESOURCE_TYPE_GPU: _ClassVar[ResourceType]
    RESOURCE_TYPE_OTHER: _ClassVar[ResourceType]

class EngineHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_HEALTH_UNSPECIFIED: _ClassVar[EngineHealth]
    ENGINE_HEALTH_UNDETECTED: _ClassVar[EngineHealth]
    ENGINE_HEALTH_UNHEALTHY: _ClassVar[EngineHealth]
    ENGINE_HEALTH_HEALTHY: _ClassVar[EngineHealth]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUE_EXPIRED: _ClassVar[JobStatus]
    JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE: _ClassVar[JobStatus]
    JOB_STATUS_PULLING_IMAGE: _ClassVar[JobStatus]
    JOB_STATUS_PULL_IMAGE_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_BUILDING_IMAGE: _ClassVar[JobStatus]
    JOB_STATUS_IMAGE_BUILD_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CONFIGURING_VOLUMES: _ClassVar[JobStatus]
    JOB_STATUS_VOLUME_CREATION_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CONTAINER_CREATION_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_PROVISIONING: _ClassVar[JobStatus]
    JOB_STATUS_DATA_PROVISIONING_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_ALGORITHM_PROVISIONING_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_ALGORITHM_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_DISK_QUOTA_EXCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_TIMED_OUT: _ClassVar[JobStatus]
    JOB_STATUS_OUT_OF_MEMORY: _ClassVar[JobStatus]
    JOB_STATUS_PUBLISHING: _ClassVar[JobStatus]
    JOB_STATUS_RESULTS_UPLOAD_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_FINISHED: _ClassVar[JobStatus]
    JOB_STATUS_SETTLING_PAYMENT: _ClassVar[JobStatus]
    JOB_STATUS_STOPPED: _ClassVar[JobStatus]
    JOB_STATUS_SKIPPED: _ClassVar[JobStatus]
    JOB_STATUS_LOST: _ClassVar[JobStatus]
RESOURCE_TYPE_UNSPECIFIED: ResourceType
RESOURCE_TYPE_CPU: ResourceType
RESOURCE_TYPE_RAM: ResourceType
RESOURCE_TYPE_DISK: ResourceType
RESOURCE_TYPE_GPU: ResourceType
RESOURCE_TYPE_OTHER: ResourceType
ENGINE_HEALTH_UNSPECIFIED: EngineHealth
ENGINE_HEALTH_UNDETECTED: EngineHealth
ENGINE_HEALTH_UNHEALTHY: EngineHealth
ENGINE_HEALTH_HEALTHY: EngineHealth
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_QUEUE_EXPIRED: JobStatus
JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE: JobStatus
JOB_STATUS_PULLING_IMAGE: JobStatus
JOB_STATUS_PULL_IMAGE_FAILED: JobStatus
JOB_STATUS_BUILDING_IMAGE: JobStatus
JOB_STATUS_IMAGE_BUILD_FAILED: JobStatus
JOB_STATUS_CONFIGURING_VOLUMES: JobStatus
JOB_STATUS_VOLUME_CREATION_FAILED: JobStatus
JOB_STATUS_CONTAINER_CREATION_FAILED: JobStatus
JOB_STATUS_PROVISIONING: JobStatus
JOB_STATUS_DATA_PROVISIONING_FAILED: JobStatus
JOB_STATUS_ALGORITHM_PROVISIONING_FAILED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_ALGORITHM_FAILED: JobStatus
JOB_STATUS_DISK_QUOTA_EXCEEDED: JobStatus
JOB_STATUS_TIMED_OUT: JobStatus
JOB_STATUS_OUT_OF_MEMORY: JobStatus
JOB_STATUS_PUBLISHING: JobStatus
JOB_STATUS_RESULTS_UPLOAD_FAILED: JobStatus
JOB_STATUS_FINISHED: JobStatus
JOB_STATUS_SETTLING_PAYMENT: JobStatus
JOB_STATUS_STOPPED: JobStatus
JOB_STATUS_SKIPPED: JobStatus
JOB_STATUS_LOST: JobStatus

class Device(_message.Message):
    __slots__ = ("id", "vendor", "model", "memory_gib", "in_use")
    ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GIB_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    id: str
    vendor: str
    model: str
    memory_gib: float
    in_use: bool
    def __init__(self, id: _Optional[str] = ..., vendor: _Optional[str] = ..., model: _Optional[str] = ..., memory_gib: _Optional[float] = ..., in_use: bool = ...) -> None: ...

class ResourceConstraint(_message.Message):
    __slots__ = ("id", "min", "max")
    ID_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    id: str
    min: float
    max: float
    def __init__(self, id: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("id", "type", "unit", "total", "min", "max", "in_use", "available", "devices", "description", "constraints")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: ResourceType
    unit: str
    total: float
    min: float
    max: float
    in_use: float
    available: float
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    description: str
    constraints: _containers.RepeatedCompositeFieldContainer[ResourceConstraint]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[ResourceType, str]] = ..., unit: _Optional[str] = ..., total: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., in_use: _Optional[float] = ..., available: _Optional[float] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., description: _Optional[str] = ..., constraints: _Optional[_Iterable[_Union[ResourceConstraint, _Mapping]]] = ...) -> None: ...

class ResourceRequest(_message.Message):
    __slots__ = ("id", "amount")
    ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    amount: float
    def __init__(self, id: _Optional[str] = ..., amount: _Optional[float] = ...) -> None: ...

class GrantedResource(_message.Message):
    __slots__ = ("id", "type", "amount", "device_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: ResourceType
    amount: float
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[ResourceType, str]] = ..., amount: _Optional[float] = ..., device_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ResourcePrice(_message.Message):
    __slots__ = ("resource_id", "price_per_unit_minute")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_UNIT_MINUTE_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    price_per_unit_minute: str
    def __init__(self, resource_id: _Optional[str] = ..., price_per_unit_minute: _Optional[str] = ...) -> None: ...

class ChainFees(_message.Message):
    __slots__ = ("chain_id", "token_address", "token_symbol", "token_decimals", "escrow_address", "prices", "payee_address")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    PAYEE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    token_address: str
    token_symbol: str
    token_decimals: int
    escrow_address: str
    prices: _containers.RepeatedCompositeFieldContainer[ResourcePrice]
    payee_address: str
    def __init__(self, chain_id: _Optional[int] = ..., token_address: _Optional[str] = ..., token_symbol: _Optional[str] = ..., token_decimals: _Optional[int] = ..., escrow_address: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[ResourcePrice, _Mapping]]] = ..., payee_address: _Optional[str] = ...) -> None: ...

class FreeTier(_message.Message):
    __slots__ = ("enabled", "resources", "max_job_duration_seconds", "max_jobs_per_consumer", "max_concurrent_jobs", "access", "allow_image_build")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_PER_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_IMAGE_BUILD_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    max_job_duration_seconds: int
    max_jobs_per_consumer: int
    max_concurrent_jobs: int
    access: AccessPolicy
    allow_image_build: bool
    def __init__(self, enabled: bool = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., max_job_duration_seconds: _Optional[int] = ..., max_jobs_per_consumer: _Optional[int] = ..., max_concurrent_jobs: _Optional[int] = ..., access: _Optional[_Union[AccessPolicy, _Mapping]] = ..., allow_image_build: bool = ...) -> None: ...

class AccessList(_message.Message):
    __slots__ = ("chain_id", "address")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    address: str
    def __init__(self, chain_id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class AccessPolicy(_message.Message):
    __slots__ = ("allow_list", "access_lists")
    ALLOW_LIST_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LISTS_FIELD_NUMBER: _ClassVar[int]
    allow_list: bool
    access_lists: _containers.RepeatedCompositeFieldContainer[AccessList]
    def __init__(self, allow_list: bool = ..., access_lists: _Optional[_Iterable[_Union[AccessList, _Mapping]]] = ...) -> None: ...

class NetworkPolicy(_message.Message):
    __slots__ = ("allow_network", "allowed_hosts")
    ALLOW_NETWORK_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    allow_network: bool
    allowed_hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allow_network: bool = ..., allowed_hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("id", "engine", "description", "resources", "fees", "free", "min_job_duration_seconds", "max_job_duration_seconds", "storage_expiry_seconds", "network", "running_jobs", "queued_jobs", "engine_health", "platform", "max_jobs", "labels", "extra", "max_queue_seconds", "free_queue", "paid_queue", "paid_access", "pool")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    MIN_JOB_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_EXPIRY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_HEALTH_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FREE_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAID_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAID_ACCESS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    id: str
    engine: str
    description: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    fees: _containers.RepeatedCompositeFieldContainer[ChainFees]
    free: FreeTier
    min_job_duration_seconds: int
    max_job_duration_seconds: int
    storage_expiry_seconds: int
    network: NetworkPolicy
    running_jobs: int
    queued_jobs: int
    engine_health: EngineHealth
    platform: str
    max_jobs: int
    labels: _containers.ScalarMap[str, str]
    extra: _struct_pb2.Struct
    max_queue_seconds: int
    free_queue: QueueTier
    paid_queue: QueueTier
    paid_access: AccessPolicy
    pool: Pool
    def __init__(self, id: _Optional[str] = ..., engine: _Optional[str] = ..., description: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., fees: _Optional[_Iterable[_Union[ChainFees, _Mapping]]] = ..., free: _Optional[_Union[FreeTier, _Mapping]] = ..., min_job_duration_seconds: _Optional[int] = ..., max_job_duration_seconds: _Optional[int] = ..., storage_expiry_seconds: _Optional[int] = ..., network: _Optional[_Union[NetworkPolicy, _Mapping]] = ..., running_jobs: _Optional[int] = ..., queued_jobs: _Optional[int] = ..., engine_health: _Optional[_Union[EngineHealth, str]] = ..., platform: _Optional[str] = ..., max_jobs: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_queue_seconds: _Optional[int] = ..., free_queue: _Optional[_Union[QueueTier, _Mapping]] = ..., paid_queue: _Optional[_Union[QueueTier, _Mapping]] = ..., paid_access: _Optional[_Union[AccessPolicy, _Mapping]] = ..., pool: _Optional[_Union[Pool, _Mapping]] = ...) -> None: ...

class Pool(_message.Message):
    __slots__ = ("id", "resources")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    id: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class QueueTier(_message.Message):
    __slots__ = ("queued_jobs", "longest_wait_seconds")
    QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queued_jobs: int
    longest_wait_seconds: int
    def __init__(self, queued_jobs: _Optional[int] = ..., longest_wait_seconds: _Optional[int] = ...) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("status", "message", "time")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    status: JobStatus
    message: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[JobStatus, str]] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
