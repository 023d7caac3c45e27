import datetime

from c2d.common.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_KIND_UNSPECIFIED: _ClassVar[ResultKind]
    RESULT_KIND_OUTPUT: _ClassVar[ResultKind]
    RESULT_KIND_ALGORITHM_LOG: _ClassVar[ResultKind]
    RESULT_KIND_CONFIGURATION_LOG: _ClassVar[ResultKind]
    RESULT_KIND_PUBLISHING_LOG: _ClassVar[ResultKind]
    RESULT_KIND_IMAGE_LOG: _ClassVar[ResultKind]

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FREE: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_LOCKING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_LOCKED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_LOCK_FAILED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CLAIMING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CLAIMED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_RELEASED: _ClassVar[PaymentStatus]
RESULT_KIND_UNSPECIFIED: ResultKind
RESULT_KIND_OUTPUT: ResultKind
RESULT_KIND_ALGORITHM_LOG: ResultKind
RESULT_KIND_CONFIGURATION_LOG: ResultKind
RESULT_KIND_PUBLISHING_LOG: ResultKind
RESULT_KIND_IMAGE_LOG: ResultKind
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_FREE: PaymentStatus
PAYMENT_STATUS_LOCKING: PaymentStatus
PAYMENT_STATUS_LOCKED: PaymentStatus
PAYMENT_STATUS_LOCK_FAILED: PaymentStatus
PAYMENT_STATUS_CLAIMING: PaymentStatus
PAYMENT_STATUS_CLAIMED: PaymentStatus
PAYMENT_STATUS_RELEASED: PaymentStatus

class Auth(_message.Message):
    __slots__ = ("address", "nonce", "signature", "version")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    address: str
    nonce: int
    signature: bytes
    version: int
    def __init__(self, address: _Optional[str] = ..., nonce: _Optional[int] = ..., signature: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class GetEnvironmentsRequest(_message.Message):
    __slots__ = ("engine", "chain_id")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    engine: str
    chain_id: int
    def __init__(self, engine: _Optional[str] = ..., chain_id: _Optional[int] = ...) -> None: ...

class GetEnvironmentsResponse(_message.Message):
    __slots__ = ("environments", "node_public_key")
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    NODE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Environment]
    node_public_key: bytes
    def __init__(self, environments: _Optional[_Iterable[_Union[_common_pb2.Environment, _Mapping]]] = ..., node_public_key: _Optional[bytes] = ...) -> None: ...

class AlgorithmContainer(_message.Message):
    __slots__ = ("entrypoint", "image", "tag", "checksum", "encrypted_registry_auth", "dockerfile", "additional_files")
    class AdditionalFilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_FILES_FIELD_NUMBER: _ClassVar[int]
    entrypoint: str
    image: str
    tag: str
    checksum: str
    encrypted_registry_auth: bytes
    dockerfile: str
    additional_files: _containers.ScalarMap[str, bytes]
    def __init__(self, entrypoint: _Optional[str] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., checksum: _Optional[str] = ..., encrypted_registry_auth: _Optional[bytes] = ..., dockerfile: _Optional[str] = ..., additional_files: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class Algorithm(_message.Message):
    __slots__ = ("did", "service_id", "files", "rawcode", "container", "custom_data")
    DID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    RAWCODE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_DATA_FIELD_NUMBER: _ClassVar[int]
    did: str
    service_id: str
    files: _struct_pb2.Struct
    rawcode: str
    container: AlgorithmContainer
    custom_data: _struct_pb2.Struct
    def __init__(self, did: _Optional[str] = ..., service_id: _Optional[str] = ..., files: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., rawcode: _Optional[str] = ..., container: _Optional[_Union[AlgorithmContainer, _Mapping]] = ..., custom_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StageInput(_message.Message):
    __slots__ = ("index", "did", "service_id", "files", "user_data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    USER_DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    did: str
    service_id: str
    files: _struct_pb2.Struct
    user_data: _struct_pb2.Struct
    def __init__(self, index: _Optional[int] = ..., did: _Optional[str] = ..., service_id: _Optional[str] = ..., files: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., user_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StageDependency(_message.Message):
    __slots__ = ("stage_index", "job_id")
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    stage_index: int
    job_id: str
    def __init__(self, stage_index: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("index", "run_after", "input", "algorithm", "environment_id", "resources", "max_duration_seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RUN_AFTER_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    run_after: _containers.RepeatedCompositeFieldContainer[StageDependency]
    input: _containers.RepeatedCompositeFieldContainer[StageInput]
    algorithm: Algorithm
    environment_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResourceRequest]
    max_duration_seconds: int
    def __init__(self, index: _Optional[int] = ..., run_after: _Optional[_Iterable[_Union[StageDependency, _Mapping]]] = ..., input: _Optional[_Iterable[_Union[StageInput, _Mapping]]] = ..., algorithm: _Optional[_Union[Algorithm, _Mapping]] = ..., environment_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_common_pb2.ResourceRequest, _Mapping]]] = ..., max_duration_seconds: _Optional[int] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("stages", "environment_id", "resources", "max_duration_seconds", "viewers", "max_queue_seconds")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    environment_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResourceRequest]
    max_duration_seconds: int
    viewers: _containers.RepeatedScalarFieldContainer[str]
    max_queue_seconds: int
    def __init__(self, stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., environment_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_common_pb2.ResourceRequest, _Mapping]]] = ..., max_duration_seconds: _Optional[int] = ..., viewers: _Optional[_Iterable[str]] = ..., max_queue_seconds: _Optional[int] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("chain_id", "token_address")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    token_address: str
    def __init__(self, chain_id: _Optional[int] = ..., token_address: _Optional[str] = ...) -> None: ...

class PriceLine(_message.Message):
    __slots__ = ("stage_index", "resource_id", "amount", "minutes", "price_per_unit_minute", "cost", "min_minutes")
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_UNIT_MINUTE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    MIN_MINUTES_FIELD_NUMBER: _ClassVar[int]
    stage_index: int
    resource_id: str
    amount: float
    minutes: int
    price_per_unit_minute: str
    cost: str
    min_minutes: int
    def __init__(self, stage_index: _Optional[int] = ..., resource_id: _Optional[str] = ..., amount: _Optional[float] = ..., minutes: _Optional[int] = ..., price_per_unit_minute: _Optional[str] = ..., cost: _Optional[str] = ..., min_minutes: _Optional[int] = ...) -> None: ...

class EscrowQuote(_message.Message):
    __slots__ = ("chain_id", "escrow_address", "payee", "token_address", "amount", "min_lock_seconds", "breakdown")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PAYEE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_LOCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    escrow_address: str
    payee: str
    token_address: str
    amount: str
    min_lock_seconds: int
    breakdown: _containers.RepeatedCompositeFieldContainer[PriceLine]
    def __init__(self, chain_id: _Optional[int] = ..., escrow_address: _Optional[str] = ..., payee: _Optional[str] = ..., token_address: _Optional[str] = ..., amount: _Optional[str] = ..., min_lock_seconds: _Optional[int] = ..., breakdown: _Optional[_Iterable[_Union[PriceLine, _Mapping]]] = ...) -> None: ...

class InitializeComputeRequest(_message.Message):
    __slots__ = ("workflow", "payment", "consumer_address", "auth")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    payment: Payment
    consumer_address: str
    auth: Auth
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ..., payment: _Optional[_Union[Payment, _Mapping]] = ..., consumer_address: _Optional[str] = ..., auth: _Optional[_Union[Auth, _Mapping]] = ...) -> None: ...

class InitializeComputeResponse(_message.Message):
    __slots__ = ("quote", "free_eligible", "consumer_checked")
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    FREE_ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_CHECKED_FIELD_NUMBER: _ClassVar[int]
    quote: EscrowQuote
    free_eligible: bool
    consumer_checked: bool
    def __init__(self, quote: _Optional[_Union[EscrowQuote, _Mapping]] = ..., free_eligible: bool = ..., consumer_checked: bool = ...) -> None: ...

class StageRef(_message.Message):
    __slots__ = ("index", "job_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    job_id: str
    def __init__(self, index: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class StartComputeRequest(_message.Message):
    __slots__ = ("auth", "workflow", "payment", "metadata")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    workflow: Workflow
    payment: Payment
    metadata: _struct_pb2.Struct
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., workflow: _Optional[_Union[Workflow, _Mapping]] = ..., payment: _Optional[_Union[Payment, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StartComputeResponse(_message.Message):
    __slots__ = ("workflow_id", "stages", "quote", "payment")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    stages: _containers.RepeatedCompositeFieldContainer[StageRef]
    quote: EscrowQuote
    payment: PaymentState
    def __init__(self, workflow_id: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageRef, _Mapping]]] = ..., quote: _Optional[_Union[EscrowQuote, _Mapping]] = ..., payment: _Optional[_Union[PaymentState, _Mapping]] = ...) -> None: ...

class FreeStartComputeRequest(_message.Message):
    __slots__ = ("auth", "workflow", "metadata")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    workflow: Workflow
    metadata: _struct_pb2.Struct
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., workflow: _Optional[_Union[Workflow, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FreeStartComputeResponse(_message.Message):
    __slots__ = ("workflow_id", "stages")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    stages: _containers.RepeatedCompositeFieldContainer[StageRef]
    def __init__(self, workflow_id: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageRef, _Mapping]]] = ...) -> None: ...

class StopComputeRequest(_message.Message):
    __slots__ = ("auth", "workflow_id", "job_id")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    workflow_id: str
    job_id: str
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class StopComputeResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class GetComputeStatusRequest(_message.Message):
    __slots__ = ("auth", "workflow_id", "job_id", "all")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    workflow_id: str
    job_id: str
    all: bool
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., workflow_id: _Optional[str] = ..., job_id: _Optional[str] = ..., all: bool = ...) -> None: ...

class ResultFile(_message.Message):
    __slots__ = ("index", "name", "kind", "size", "sha256")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    kind: ResultKind
    size: int
    sha256: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[ResultKind, str]] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class PaymentState(_message.Message):
    __slots__ = ("status", "chain_id", "token_address", "escrow_address", "locked_amount", "claimed_amount", "lock_id", "lock_transaction", "claim_transaction", "proof_digest")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ESCROW_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOCKED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LOCK_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    PROOF_DIGEST_FIELD_NUMBER: _ClassVar[int]
    status: PaymentStatus
    chain_id: int
    token_address: str
    escrow_address: str
    locked_amount: str
    claimed_amount: str
    lock_id: str
    lock_transaction: str
    claim_transaction: str
    proof_digest: str
    def __init__(self, status: _Optional[_Union[PaymentStatus, str]] = ..., chain_id: _Optional[int] = ..., token_address: _Optional[str] = ..., escrow_address: _Optional[str] = ..., locked_amount: _Optional[str] = ..., claimed_amount: _Optional[str] = ..., lock_id: _Optional[str] = ..., lock_transaction: _Optional[str] = ..., claim_transaction: _Optional[str] = ..., proof_digest: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "workflow_id", "stage_index", "owner", "environment_id", "status", "status_text", "run_after_job_ids", "created", "started", "finished", "resources", "max_duration_seconds", "results", "history", "exit_code", "algorithm_image", "terminal", "payment", "results_expire", "max_queue_seconds", "metadata", "termination", "algorithm_finished")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_TEXT_FIELD_NUMBER: _ClassVar[int]
    RUN_AFTER_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_EXPIRE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TERMINATION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FINISHED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    workflow_id: str
    stage_index: int
    owner: str
    environment_id: str
    status: _common_pb2.JobStatus
    status_text: str
    run_after_job_ids: _containers.RepeatedScalarFieldContainer[str]
    created: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.GrantedResource]
    max_duration_seconds: int
    results: _containers.RepeatedCompositeFieldContainer[ResultFile]
    history: _containers.RepeatedCompositeFieldContainer[_common_pb2.StatusEvent]
    exit_code: int
    algorithm_image: str
    terminal: bool
    payment: PaymentState
    results_expire: _timestamp_pb2.Timestamp
    max_queue_seconds: int
    metadata: _struct_pb2.Struct
    termination: Termination
    algorithm_finished: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., stage_index: _Optional[int] = ..., owner: _Optional[str] = ..., environment_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., status_text: _Optional[str] = ..., run_after_job_ids: _Optional[_Iterable[str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[_common_pb2.GrantedResource, _Mapping]]] = ..., max_duration_seconds: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ResultFile, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[_common_pb2.StatusEvent, _Mapping]]] = ..., exit_code: _Optional[int] = ..., algorithm_image: _Optional[str] = ..., terminal: bool = ..., payment: _Optional[_Union[PaymentState, _Mapping]] = ..., results_expire: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_queue_seconds: _Optional[int] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., termination: _Optional[_Union[Termination, _Mapping]] = ..., algorithm_finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Termination(_message.Message):
    __slots__ = ("exit_code", "oom_killed")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    oom_killed: bool
    def __init__(self, exit_code: _Optional[int] = ..., oom_killed: bool = ...) -> None: ...

class GetComputeStatusResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class GetComputeResultRequest(_message.Message):
    __slots__ = ("auth", "job_id", "index", "offset")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    job_id: str
    index: int
    offset: int
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., job_id: _Optional[str] = ..., index: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class GetComputeResultResponse(_message.Message):
    __slots__ = ("data", "offset", "file")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    file: ResultFile
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., file: _Optional[_Union[ResultFile, _Mapping]] = ...) -> None: ...

class StreamComputeLogsRequest(_message.Message):
    __slots__ = ("auth", "job_id", "follow", "offset")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    job_id: str
    follow: bool
    offset: int
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., job_id: _Optional[str] = ..., follow: bool = ..., offset: _Optional[int] = ...) -> None: ...

class StreamComputeLogsResponse(_message.Message):
    __slots__ = ("data", "offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class GetPaymentProofRequest(_message.Message):
    __slots__ = ("auth", "workflow_id")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    workflow_id: str
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class GetPaymentProofResponse(_message.Message):
    __slots__ = ("records", "node_signature", "digest", "payment")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NODE_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    records: bytes
    node_signature: bytes
    digest: str
    payment: PaymentState
    def __init__(self, records: _Optional[bytes] = ..., node_signature: _Optional[bytes] = ..., digest: _Optional[str] = ..., payment: _Optional[_Union[PaymentState, _Mapping]] = ...) -> None: ...

class Asset(_message.Message):
    __slots__ = ("did", "name", "services")
    DID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    did: str
    name: str
    services: _containers.RepeatedCompositeFieldContainer[AssetService]
    def __init__(self, did: _Optional[str] = ..., name: _Optional[str] = ..., services: _Optional[_Iterable[_Union[AssetService, _Mapping]]] = ...) -> None: ...

class AssetService(_message.Message):
    __slots__ = ("service_id", "kind", "files", "policy", "container", "consumer_parameters")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[AssetService.Kind]
        KIND_DATASET: _ClassVar[AssetService.Kind]
        KIND_ALGORITHM: _ClassVar[AssetService.Kind]
    KIND_UNSPECIFIED: AssetService.Kind
    KIND_DATASET: AssetService.Kind
    KIND_ALGORITHM: AssetService.Kind
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    kind: AssetService.Kind
    files: _struct_pb2.Struct
    policy: ComputePolicy
    container: AlgorithmContainer
    consumer_parameters: _containers.RepeatedCompositeFieldContainer[ConsumerParameter]
    def __init__(self, service_id: _Optional[str] = ..., kind: _Optional[_Union[AssetService.Kind, str]] = ..., files: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., policy: _Optional[_Union[ComputePolicy, _Mapping]] = ..., container: _Optional[_Union[AlgorithmContainer, _Mapping]] = ..., consumer_parameters: _Optional[_Iterable[_Union[ConsumerParameter, _Mapping]]] = ...) -> None: ...

class ConsumerParameter(_message.Message):
    __slots__ = ("name", "type", "label", "description", "required", "default", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    label: str
    description: str
    required: bool
    default: _struct_pb2.Value
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., label: _Optional[str] = ..., description: _Optional[str] = ..., required: bool = ..., default: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class ComputePolicy(_message.Message):
    __slots__ = ("trusted_algorithm_dids", "trusted_image_digests", "allow_any_algorithm", "allowed_consumers", "allow_raw_code", "allow_network")
    TRUSTED_ALGORITHM_DIDS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_IMAGE_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_ANY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_RAW_CODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NETWORK_FIELD_NUMBER: _ClassVar[int]
    trusted_algorithm_dids: _containers.RepeatedScalarFieldContainer[str]
    trusted_image_digests: _containers.RepeatedScalarFieldContainer[str]
    allow_any_algorithm: bool
    allowed_consumers: _containers.RepeatedScalarFieldContainer[str]
    allow_raw_code: bool
    allow_network: bool
    def __init__(self, trusted_algorithm_dids: _Optional[_Iterable[str]] = ..., trusted_image_digests: _Optional[_Iterable[str]] = ..., allow_any_algorithm: bool = ..., allowed_consumers: _Optional[_Iterable[str]] = ..., allow_raw_code: bool = ..., allow_network: bool = ...) -> None: ...

class RegisterAssetRequest(_message.Message):
    __slots__ = ("auth", "asset", "replace")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    asset: Asset
    replace: bool
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., asset: _Optional[_Union[Asset, _Mapping]] = ..., replace: bool = ...) -> None: ...

class RegisterAssetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAssetsRequest(_message.Message):
    __slots__ = ("auth",)
    AUTH_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ...) -> None: ...

class ListAssetsResponse(_message.Message):
    __slots__ = ("assets",)
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    assets: _containers.RepeatedCompositeFieldContainer[Asset]
    def __init__(self, assets: _Optional[_Iterable[_Union[Asset, _Mapping]]] = ...) -> None: ...

class RemoveAssetRequest(_message.Message):
    __slots__ = ("auth", "did")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    DID_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    did: str
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., did: _Optional[str] = ...) -> None: ...

class RemoveAssetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnginesRequest(_message.Message):
    __slots__ = ("auth",)
    AUTH_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "plugin_version", "distribution", "distribution_version", "api_version", "health", "health_description", "restarts", "pid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    name: str
    plugin_version: str
    distribution: str
    distribution_version: str
    api_version: int
    health: _common_pb2.EngineHealth
    health_description: str
    restarts: int
    pid: int
    def __init__(self, name: _Optional[str] = ..., plugin_version: _Optional[str] = ..., distribution: _Optional[str] = ..., distribution_version: _Optional[str] = ..., api_version: _Optional[int] = ..., health: _Optional[_Union[_common_pb2.EngineHealth, str]] = ..., health_description: _Optional[str] = ..., restarts: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class ListEnginesResponse(_message.Message):
    __slots__ = ("engines",)
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    engines: _containers.RepeatedCompositeFieldContainer[EngineInfo]
    def __init__(self, engines: _Optional[_Iterable[_Union[EngineInfo, _Mapping]]] = ...) -> None: ...
