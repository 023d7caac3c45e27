from c2d.common.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SourceOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_ORIGIN_UNSPECIFIED: _ClassVar[SourceOrigin]
    SOURCE_ORIGIN_OPERATOR: _ClassVar[SourceOrigin]
    SOURCE_ORIGIN_CONSUMER: _ClassVar[SourceOrigin]

class PodPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POD_PHASE_UNSPECIFIED: _ClassVar[PodPhase]
    POD_PHASE_PROVISIONING_STARTED: _ClassVar[PodPhase]
    POD_PHASE_PROVISIONING_FINISHED: _ClassVar[PodPhase]
    POD_PHASE_DATA_PROVISIONING_FAILED: _ClassVar[PodPhase]
    POD_PHASE_ALGORITHM_PROVISIONING_FAILED: _ClassVar[PodPhase]
    POD_PHASE_PUBLISHING_STARTED: _ClassVar[PodPhase]
    POD_PHASE_PUBLISHING_FINISHED: _ClassVar[PodPhase]
    POD_PHASE_PUBLISHING_FAILED: _ClassVar[PodPhase]

class UploadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_KIND_UNSPECIFIED: _ClassVar[UploadKind]
    UPLOAD_KIND_OUTPUT: _ClassVar[UploadKind]
    UPLOAD_KIND_ALGORITHM_LOG: _ClassVar[UploadKind]
    UPLOAD_KIND_CONFIGURATION_LOG: _ClassVar[UploadKind]
    UPLOAD_KIND_PUBLISHING_LOG: _ClassVar[UploadKind]
    UPLOAD_KIND_IMAGE_LOG: _ClassVar[UploadKind]
SOURCE_ORIGIN_UNSPECIFIED: SourceOrigin
SOURCE_ORIGIN_OPERATOR: SourceOrigin
SOURCE_ORIGIN_CONSUMER: SourceOrigin
POD_PHASE_UNSPECIFIED: PodPhase
POD_PHASE_PROVISIONING_STARTED: PodPhase
POD_PHASE_PROVISIONING_FINISHED: PodPhase
POD_PHASE_DATA_PROVISIONING_FAILED: PodPhase
POD_PHASE_ALGORITHM_PROVISIONING_FAILED: PodPhase
POD_PHASE_PUBLISHING_STARTED: PodPhase
POD_PHASE_PUBLISHING_FINISHED: PodPhase
POD_PHASE_PUBLISHING_FAILED: PodPhase
UPLOAD_KIND_UNSPECIFIED: UploadKind
UPLOAD_KIND_OUTPUT: UploadKind
UPLOAD_KIND_ALGORITHM_LOG: UploadKind
UPLOAD_KIND_CONFIGURATION_LOG: UploadKind
UPLOAD_KIND_PUBLISHING_LOG: UploadKind
UPLOAD_KIND_IMAGE_LOG: UploadKind

class PodAuth(_message.Message):
    __slots__ = ("job_id", "nonce", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    nonce: int
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., nonce: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class FileSource(_message.Message):
    __slots__ = ("type", "url", "method", "headers", "data", "name", "checksum", "size", "archive", "origin", "allow_hosts", "allow_networks", "deny_addresses")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_HOSTS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    DENY_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    type: str
    url: str
    method: str
    headers: _containers.ScalarMap[str, str]
    data: bytes
    name: str
    checksum: str
    size: int
    archive: bool
    origin: SourceOrigin
    allow_hosts: _containers.RepeatedScalarFieldContainer[str]
    allow_networks: _containers.RepeatedScalarFieldContainer[str]
    deny_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[str] = ..., url: _Optional[str] = ..., method: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ..., name: _Optional[str] = ..., checksum: _Optional[str] = ..., size: _Optional[int] = ..., archive: bool = ..., origin: _Optional[_Union[SourceOrigin, str]] = ..., allow_hosts: _Optional[_Iterable[str]] = ..., allow_networks: _Optional[_Iterable[str]] = ..., deny_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class ProvisionedInput(_message.Message):
    __slots__ = ("folder", "files")
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    folder: str
    files: _containers.RepeatedCompositeFieldContainer[FileSource]
    def __init__(self, folder: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileSource, _Mapping]]] = ...) -> None: ...

class GetProvisioningRequest(_message.Message):
    __slots__ = ("auth",)
    AUTH_FIELD_NUMBER: _ClassVar[int]
    auth: PodAuth
    def __init__(self, auth: _Optional[_Union[PodAuth, _Mapping]] = ...) -> None: ...

class GetProvisioningResponse(_message.Message):
    __slots__ = ("job_id", "inputs", "algorithm", "algorithm_custom_data", "max_output_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_CUSTOM_DATA_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[ProvisionedInput]
    algorithm: FileSource
    algorithm_custom_data: _struct_pb2.Struct
    max_output_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ProvisionedInput, _Mapping]]] = ..., algorithm: _Optional[_Union[FileSource, _Mapping]] = ..., algorithm_custom_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_output_bytes: _Optional[int] = ...) -> None: ...

class UpdateJobStatusRequest(_message.Message):
    __slots__ = ("auth", "phase", "message")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    auth: PodAuth
    phase: PodPhase
    message: str
    def __init__(self, auth: _Optional[_Union[PodAuth, _Mapping]] = ..., phase: _Optional[_Union[PodPhase, str]] = ..., message: _Optional[str] = ...) -> None: ...

class UpdateJobStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, str]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("auth", "name", "kind", "size", "sha256", "offset", "archive")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    auth: PodAuth
    name: str
    kind: UploadKind
    size: int
    sha256: str
    offset: int
    archive: bool
    def __init__(self, auth: _Optional[_Union[PodAuth, _Mapping]] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[UploadKind, str]] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., archive: bool = ...) -> None: ...

class PublishResultRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishResultResponse(_message.Message):
    __slots__ = ("received", "complete")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    received: int
    complete: bool
    def __init__(self, received: _Optional[int] = ..., complete: bool = ...) -> None: ...

class GetUploadOffsetRequest(_message.Message):
    __slots__ = ("auth", "name", "kind")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    auth: PodAuth
    name: str
    kind: UploadKind
    def __init__(self, auth: _Optional[_Union[PodAuth, _Mapping]] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[UploadKind, str]] = ...) -> None: ...

class GetUploadOffsetResponse(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class FetchInputRequest(_message.Message):
    __slots__ = ("auth", "source", "offset")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    auth: PodAuth
    source: str
    offset: int
    def __init__(self, auth: _Optional[_Union[PodAuth, _Mapping]] = ..., source: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchInputResponse(_message.Message):
    __slots__ = ("data", "offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...
