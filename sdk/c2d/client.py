"""Consumer (and operator) client for a node's public ComputeService.

One :class:`Client` wraps one synchronous gRPC channel. It signs every call
but GetEnvironments with its key (InitializeCompute when it has one; see :mod:`c2d.auth`),
turns every gRPC failure into a :class:`C2DError` so callers handle one
exception type, and does the slow, failure-prone parts for the caller: waiting
for a workflow, following logs across reconnects, and resumable, verified
result downloads.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from c2d import auth, errorinfo
from c2d.bulkio import keep_freed_buffers
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.workflow import parse_workflow

DEFAULT_TIMEOUT = 30.0
# StartCompute awaits the escrow lock transaction before it answers.
START_TIMEOUT = 300.0
SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
# How a node answers a resume offset past the end of the file.
BAD_OFFSET = frozenset({"OUT_OF_RANGE", "INVALID_ARGUMENT"})
STREAM_RETRIES = 5
WAIT_RETRIES = 10
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SUCCESS = frozenset({common_pb2.JOB_STATUS_FINISHED})
# An ended job of a paid workflow whose payment is not settled yet: its own end comes back after.
SETTLING = frozenset({common_pb2.JOB_STATUS_SETTLING_PAYMENT})

JobInfo = compute_pb2.JobInfo
ProgressCallback = Callable[[int, int | None], None]


class C2DError(Exception):
    """A call that failed: ``code`` is a gRPC status name (``NOT_FOUND``), ``message`` the node's words."""

    def __init__(
        self, code: str, message: str, reason: str = "", metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason  # the node's ErrorInfo reason, for programs (e.g. auth.STALE_NONCE)
        self.metadata = metadata or {}

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> C2DError:
        if not isinstance(error, grpc.Call):
            return cls("UNKNOWN", str(error) or "no details")
        code = error.code()
        reason, metadata = errorinfo.read(error.trailing_metadata())
        return cls(code.name if code else "UNKNOWN", error.details() or "no details", reason, metadata)

    @property
    def stale_nonce(self) -> int | None:
        """The node's last accepted nonce, when it refused ours for not rising above it."""
        if self.reason != auth.STALE_NONCE or not self.metadata.get("last_nonce", "").isdigit():
            return None
        return int(self.metadata["last_nonce"])

    @property
    def transient(self) -> bool:
        """Worth retrying: the node was unreachable or slow, not wrong."""
        return self.code in TRANSIENT


@dataclass(frozen=True)
class StageRef:
    """One stage of a started workflow: its index and the job id the node gave it."""

    index: int
    job_id: str


@dataclass(frozen=True)
class StartResult:
    """What a started workflow is called: its id and one job id per stage."""

    workflow_id: str
    stages: list[StageRef]
    quote: compute_pb2.EscrowQuote | None = None
    payment: compute_pb2.PaymentState | None = None

    @property
    def job_ids(self) -> list[str]:
        return [stage.job_id for stage in self.stages]


def is_success(job: compute_pb2.JobInfo) -> bool:
    """A stage that ended well: finished (its results are there)."""
    return job.status in SUCCESS


class Client:
    """A connection to one node, optionally holding the consumer's (or operator's) key.

    Signed calls from one Client are sent one at a time with strictly rising
    nonces, because the node rejects a nonce not above the last one it
    accepted: two calls racing on the wire could otherwise reject each other.
    """

    def __init__(
        self,
        address: str,
        private_key: str | bytes | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._key = private_key
        self.signer = auth.address_of(private_key) if private_key else None
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = _BytesStub(self._channel)
        self._nonce_lock = threading.Lock()
        self._last_nonce = 0
        self._send_lock = threading.Lock()

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------ public, unsigned

    def environments(self, engine: str = "", chain_id: int = 0) -> list[common_pb2.Environment]:
        request = compute_pb2.GetEnvironmentsRequest(engine=engine, chain_id=chain_id)
        return list(self._unary("GetEnvironments", request, signed=False).environments)

    def node_public_key(self) -> bytes:
        """The node's secp256k1 public key (33 bytes), to encrypt registry credentials to
        (:func:`c2d.registry_auth.encrypt`)."""
        key = bytes(
            self._unary("GetEnvironments", compute_pb2.GetEnvironmentsRequest(), signed=False).node_public_key
        )
        if not key:
            raise C2DError(
                "UNIMPLEMENTED", "the node publishes no public key (it predates registry credentials)"
            )
        return key

    def initialize(
        self, workflow: WorkflowLike, payment: compute_pb2.Payment | None = None
    ) -> compute_pb2.InitializeComputeResponse:
        """Validates and prices a workflow without starting it.

        Signed when the client has a key, so that the checks that depend on the caller (runAfter
        job ids, datasets' allowed consumers, the free tier's jobs per consumer) run now; without
        one the node skips them (``consumer_checked`` false) and runs them at start.
        """
        request = compute_pb2.InitializeComputeRequest(workflow=as_workflow(workflow, self.node_public_key))
        if payment is not None:
            request.payment.CopyFrom(payment)
        return self._unary("InitializeCompute", request, signed=bool(self._key))

    # ------------------------------------------------------------ workflows

    def start(
        self,
        workflow: WorkflowLike,
        free: bool | None = None,
        payment: compute_pb2.Payment | None = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> StartResult:
        """Starts a workflow: free (FreeStartCompute) or paid (StartCompute).

        ``free`` left out means free unless a ``payment`` is given. ``metadata``: a JSON object the
        node keeps with the workflow and returns in every status of its jobs (at most 1,024
        bytes as compact JSON).
        """
        free = payment is None if free is None else free
        wf = as_workflow(workflow, self.node_public_key)
        if free:
            if payment is not None:
                raise ValueError("a free start takes no payment")
            request = compute_pb2.FreeStartComputeRequest(workflow=wf)
            if metadata is not None:
                request.metadata.SetInParent()
                request.metadata.update(metadata)
            reply = self._unary("FreeStartCompute", request, timeout=timeout)
            return StartResult(reply.workflow_id, _stage_refs(reply.stages))
        paid = compute_pb2.StartComputeRequest(workflow=wf)
        if metadata is not None:
            paid.metadata.SetInParent()
            paid.metadata.update(metadata)
        if payment is not None:
            paid.payment.CopyFrom(payment)
        reply = self._unary("StartCompute", paid, timeout=timeout or max(self.timeout, START_TIMEOUT))
        return StartResult(reply.workflow_id, _stage_refs(reply.stages), reply.quote, reply.payment)

    def status(
        self, *, job_id: str | None = None, workflow_id: str | None = None, all: bool = False
    ) -> list[compute_pb2.JobInfo]:
        """Jobs of one job id, one workflow, or all of the caller's: give exactly one."""
        target = _one_target(job_id=job_id, workflow_id=workflow_id, all=all)
        request = compute_pb2.GetComputeStatusRequest(**target)
        return list(self._unary("GetComputeStatus", request).jobs)

    def wait(
        self,
        target: str | StartResult | Iterable[str],
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_update: Callable[[list[compute_pb2.JobInfo]], None] | None = None,
        settled: bool = True,
    ) -> list[compute_pb2.JobInfo]:
        """Polls until every job is terminal and returns them; ``on_update`` sees every change.

        With ``settled`` (the default) it also waits while a job reads SETTLING_PAYMENT, so a paid
        workflow's jobs come back with their own ends once its payment is settled.

        ``target`` is a workflow id (a str), a StartResult, or job ids (any
        other iterable). The node going away for a moment is not an error:
        transient failures are retried, up to WAIT_RETRIES in a row.
        """
        fetch = self._fetcher(target)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: list[tuple[str, common_pb2.JobStatus, str]] | None = None
        failures = 0
        while True:
            try:
                jobs = fetch()
                failures = 0
            except C2DError as exc:
                failures += 1
                if not self._retryable(exc) or failures > WAIT_RETRIES:
                    raise
                jobs = None
            if jobs is not None:
                snapshot = [(job.job_id, job.status, job.status_text) for job in jobs]
                if snapshot != seen and on_update is not None:
                    on_update(jobs)
                seen = snapshot
                if all(job.terminal and not (settled and job.status in SETTLING) for job in jobs):
                    return jobs
            if deadline is not None and time.monotonic() >= deadline:
                raise C2DError(
                    "DEADLINE_EXCEEDED", f"jobs still not ended (or their payment settled) after {timeout:g}s"
                )
            time.sleep(poll if jobs is not None else min(poll * 2**failures, 5.0))

    def _fetcher(self, target: str | StartResult | Iterable[str]) -> Callable[[], list[compute_pb2.JobInfo]]:
        if isinstance(target, StartResult):
            target = target.workflow_id
        if isinstance(target, str):
            workflow_id = target

            def fetch_workflow() -> list[compute_pb2.JobInfo]:
                jobs = self.status(workflow_id=workflow_id)
                if not jobs:
                    raise C2DError("NOT_FOUND", f"workflow {workflow_id} has no jobs")
                return jobs

            return fetch_workflow
        job_ids = list(target)
        if not job_ids:
            raise ValueError("wait() needs a workflow id or at least one job id")
        return lambda: [job for job_id in job_ids for job in self.status(job_id=job_id)]

    def stop(self, *, workflow_id: str | None = None, job_id: str | None = None) -> list[compute_pb2.JobInfo]:
        """Stops a workflow or one stage; returns the jobs as the node left them."""
        request = compute_pb2.StopComputeRequest(**_one_target(workflow_id=workflow_id, job_id=job_id))
        return list(self._unary("StopCompute", request).jobs)

    def payment_proof(self, workflow_id: str) -> compute_pb2.GetPaymentProofResponse:
        return self._unary("GetPaymentProof", compute_pb2.GetPaymentProofRequest(workflow_id=workflow_id))

    # ------------------------------------------------------------ logs and results

    def logs(self, job_id: str, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        """The algorithm's log from ``offset``; with ``follow`` until the stage ends.

        A dropped connection is re-opened from the last byte received, so a
        follower sees every byte once.
        """
        position = offset
        failures = 0
        while True:
            request = compute_pb2.StreamComputeLogsRequest(job_id=job_id, follow=follow, offset=position)
            try:
                for message in self._stream("StreamComputeLogs", request):
                    failures = 0
                    data = _unseen(message.data, message.offset or position, position)
                    position += len(data)
                    if data:
                        yield data
                return
            except C2DError as exc:
                failures += 1
                if not self._retryable(exc) or failures > STREAM_RETRIES:
                    raise
                time.sleep(min(0.2 * 2**failures, 3.0))

    def result(
        self,
        job_id: str,
        index: int,
        dest_path: str | os.PathLike[str],
        *,
        resume: bool = True,
        on_progress: ProgressCallback | None = None,
        expected: compute_pb2.ResultFile | None = None,
    ) -> Path:
        """Downloads one result file to ``dest_path`` and returns it.

        Bytes go to ``<dest>.part`` first; an interrupted download resumes from
        the part's size (``resume``), the whole file is checked against the
        node's sha256, and only then renamed into place, so ``dest_path``
        existing means a complete, verified file. The bytes are hashed as they
        arrive, never read back. The first download tunes this process's malloc
        for MiB-sized buffers (:mod:`c2d.bulkio`: two to three times the speed).
        """
        keep_freed_buffers()
        return _Download(self, job_id, index, Path(dest_path), on_progress, expected).run(resume)

    def results(
        self,
        job_id: str,
        out_dir: str | os.PathLike[str],
        *,
        on_progress: Callable[[compute_pb2.ResultFile, int, int | None], None] | None = None,
    ) -> list[Path]:
        """Downloads every result of a job into ``out_dir`` under the node's file names."""
        jobs = self.status(job_id=job_id)
        if not jobs:
            raise C2DError("NOT_FOUND", f"no job {job_id}")
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        names: set[str] = set()
        for file in jobs[0].results:
            name = result_file_name(file, names)
            names.add(name)
            progress = None if on_progress is None else _bind_progress(on_progress, file)
            path = self.result(job_id, file.index, directory / name, on_progress=progress, expected=file)
            paths.append(path)
        return paths

    # ------------------------------------------------------------ operator

    def register_asset(self, asset: compute_pb2.Asset | Mapping[str, Any], replace: bool = False) -> None:
        request = compute_pb2.RegisterAssetRequest(asset=as_asset(asset), replace=replace)
        self._unary("RegisterAsset", request)

    def list_assets(self) -> list[compute_pb2.Asset]:
        return list(self._unary("ListAssets", compute_pb2.ListAssetsRequest()).assets)

    def remove_asset(self, did: str) -> None:
        self._unary("RemoveAsset", compute_pb2.RemoveAssetRequest(did=did))

    def engines(self) -> list[compute_pb2.EngineInfo]:
        return list(self._unary("ListEngines", compute_pb2.ListEnginesRequest()).engines)

    # ------------------------------------------------------------ plumbing

    def next_nonce(self) -> int:
        """A nonce above every one this Client handed out, even within one microsecond."""
        with self._nonce_lock:
            self._last_nonce = max(auth.new_nonce(), self._last_nonce + 1)
            return self._last_nonce

    def _sign(self, name: str, request: Message) -> bytes:
        """The bytes to send: ``request`` signed (scheme v2, whose signature covers these bytes)."""
        if not self._key:
            raise C2DError("UNAUTHENTICATED", f"{name} is a signed call: this client has no private key")
        return auth.signed_request_bytes(self._key, f"/{SERVICE}/{name}", request, nonce=self.next_nonce())

    def _unary(
        self, name: str, request: Message, *, signed: bool = True, timeout: float | None = None
    ) -> Any:
        method = getattr(self._stub, name)
        deadline = timeout or self.timeout
        if not signed:
            return _call(method, request, deadline)
        try:
            return self._signed_call(name, method, request, deadline)
        except C2DError as error:
            if not self._retryable(error) or error.transient:
                raise
        # The node refused the nonce before doing anything, so sending it again is safe.
        return self._signed_call(name, method, request, deadline)

    def _signed_call(self, name: str, method: Any, request: Message, timeout: float) -> Any:
        with self._send_lock:
            return _call(method, self._sign(name, request), timeout)

    def _retryable(self, error: C2DError) -> bool:
        """Whether sending the call again may work: a transient failure, or a nonce the node had
        already passed (another client with the same key, or a clock that went back), in which
        case this client's nonces now start above the node's."""
        floor = error.stale_nonce
        if floor is not None:
            with self._nonce_lock:
                self._last_nonce = max(self._last_nonce, floor)
            return True
        return error.transient

    def _stream(self, name: str, request: Message) -> Iterator[Any]:
        """A signed server stream whose failures come out as C2DError; cancelled when dropped."""
        with self._send_lock:
            call = getattr(self._stub, name)(self._sign(name, request))
        try:
            yield from call
        except grpc.RpcError as exc:
            raise C2DError.from_rpc_error(exc) from None
        finally:
            call.cancel()


def _serialize(request: Message | bytes) -> bytes:
    """A request's bytes: a signed request arrives already serialized (its signature covers them)."""
    return request if isinstance(request, bytes) else request.SerializeToString()


class _BytesStub:
    """compute_pb2_grpc.ComputeServiceStub's methods, taking a message or the bytes to send."""

    def __init__(self, channel: grpc.Channel) -> None:
        for method in compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].methods:
            # Callable[..., Any]: grpc's stubs do not name _registered_method (the generated stubs pass it)
            make: Callable[..., Any] = (
                channel.unary_stream if method.server_streaming else channel.unary_unary
            )
            response = GetMessageClass(method.output_type)
            setattr(
                self,
                method.name,
                make(
                    f"/{SERVICE}/{method.name}",
                    request_serializer=_serialize,
                    response_deserializer=response.FromString,
                    _registered_method=True,
                ),
            )


def _call(method: Any, request: Message | bytes, timeout: float) -> Any:
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise C2DError.from_rpc_error(exc) from None


WorkflowLike = compute_pb2.Workflow | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def as_workflow(workflow: WorkflowLike, node_key: Callable[[], bytes] | None = None) -> compute_pb2.Workflow:
    """A Workflow message from either a message or the seed's JSON form (``node_key``: what a
    container's ``registryAuth`` is encrypted to)."""
    if isinstance(workflow, compute_pb2.Workflow):
        return workflow
    return parse_workflow(workflow, node_key=node_key)


ASSET_KINDS = {"dataset": "KIND_DATASET", "algorithm": "KIND_ALGORITHM"}


def as_asset(asset: compute_pb2.Asset | Mapping[str, Any]) -> compute_pb2.Asset:
    """An Asset message from a message or its JSON form (field names in either case; kind "dataset")."""
    if isinstance(asset, compute_pb2.Asset):
        return asset
    doc = dict(asset)
    if isinstance(doc.get("services"), list):
        doc["services"] = [_normalise_service(service) for service in doc["services"]]
    try:
        return json_format.ParseDict(doc, compute_pb2.Asset())
    except json_format.ParseError as exc:
        raise ValueError(f"asset: {exc}") from None


def _normalise_service(service: Any) -> Any:
    if isinstance(service, dict) and isinstance(service.get("kind"), str):
        service = {**service, "kind": ASSET_KINDS.get(service["kind"].lower(), service["kind"])}
    return service


def _one_target(**targets: Any) -> dict[str, Any]:
    given = {key: value for key, value in targets.items() if value}
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(targets)}")
    return given


def _stage_refs(stages: Iterable[compute_pb2.StageRef]) -> list[StageRef]:
    return [StageRef(stage.index, stage.job_id) for stage in stages]


def _unseen(data: bytes, offset: int, position: int) -> bytes:
    """The part of a chunk at ``offset`` that lies at or after ``position`` (overlap after a resume)."""
    if offset > position:
        raise C2DError("DATA_LOSS", f"the node skipped bytes {position}..{offset}")
    return data[position - offset :]


def result_file_name(file: compute_pb2.ResultFile, taken: set[str]) -> str:
    """A local file name for a result that cannot leave the output folder or clash with another."""
    name = Path(file.name.replace("\\", "/")).name
    if name in {"", ".", ".."}:
        name = f"result-{file.index}"
    if name in taken:
        name = f"{file.index}-{name}"
    return name


def _bind_progress(
    callback: Callable[[compute_pb2.ResultFile, int, int | None], None], file: compute_pb2.ResultFile
) -> ProgressCallback:
    return lambda done, total: callback(file, done, total)


class _Download:
    """One resumable, verified download of a result file (see Client.result)."""

    def __init__(
        self,
        client: Client,
        job_id: str,
        index: int,
        dest: Path,
        on_progress: ProgressCallback | None,
        expected: compute_pb2.ResultFile | None,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.index = index
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.on_progress = on_progress
        self.file = expected

    def run(self, resume: bool) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        if not resume or (self.file is not None and self._part_size() > self.file.size):
            self.part.unlink(missing_ok=True)
        if resume and self.file is not None and _matches(self.dest, self.file):
            return self.dest  # fetched and verified by an earlier run
        if self.file is not None and _matches(self.part, self.file):
            return self._finish()  # a previous run got every byte but stopped before the rename
        resumed = self._part_size() > 0
        if self._fetch_and_verify():
            return self._finish()
        self.part.unlink(missing_ok=True)
        if resumed and self._fetch_and_verify():
            return self._finish()  # the old part's bytes were wrong; a fresh download was right
        self.part.unlink(missing_ok=True)
        raise self._mismatch()

    def _part_size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _fetch_and_verify(self) -> bool:
        failures = 0
        digest = _PartDigest()
        while True:
            try:
                self._fetch_from(digest)
                break
            except C2DError as exc:
                if exc.code in BAD_OFFSET and self._part_size() > 0:
                    # The node refused our offset: the part is longer than the file is. Start over.
                    self.part.unlink(missing_ok=True)
                    continue
                failures += 1
                if not self.client._retryable(exc) or failures > STREAM_RETRIES:
                    raise
                time.sleep(min(0.2 * 2**failures, 3.0))
        return self._verify(digest)

    def _fetch_from(self, digest: _PartDigest) -> None:
        """One stream from the part's end; each chunk is hashed as it is written, so the part is
        never read back (only a part an earlier run left is hashed, once, before it resumes)."""
        offset = digest.catch_up(self.part)
        request = compute_pb2.GetComputeResultRequest(job_id=self.job_id, index=self.index, offset=offset)
        position = offset
        with self.part.open("ab") as out:
            for message in self.client._stream("GetComputeResult", request):
                if message.HasField("file"):
                    self.file = message.file
                data = _unseen(message.data, message.offset or position, position)
                out.write(data)
                digest.update(data)
                position += len(data)
                if self.on_progress is not None:
                    self.on_progress(position, self.file.size if self.file is not None else None)
            out.flush()
            os.fsync(out.fileno())

    def _verify(self, digest: _PartDigest) -> bool:
        if self.file is None:
            self.file = self._file_from_status()
        digest.catch_up(self.part)
        return digest.size == self.file.size and digest.hexdigest() == self.file.sha256.lower()

    def _file_from_status(self) -> compute_pb2.ResultFile:
        for job in self.client.status(job_id=self.job_id):
            for file in job.results:
                if file.index == self.index:
                    return file
        raise C2DError("NOT_FOUND", f"job {self.job_id} has no result {self.index}")

    def _finish(self) -> Path:
        os.replace(self.part, self.dest)
        return self.dest

    def _mismatch(self) -> C2DError:
        assert self.file is not None
        return C2DError(
            "DATA_LOSS",
            f"result {self.index} of job {self.job_id} does not match its sha256 {self.file.sha256} "
            f"({self.file.size} bytes expected)",
        )


class _PartDigest:
    """The SHA-256 of a download's part file as it grows: fed the bytes as they are written; what
    it has not seen (a part left by an earlier run) is read from the disk once."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._digest.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def catch_up(self, part: Path) -> int:
        """Hashes what the part holds past the bytes seen (from scratch if it shrank); its size."""
        try:
            on_disk = part.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        if on_disk < self.size:
            self._digest, self.size = hashlib.sha256(), 0
        if on_disk > self.size:
            with part.open("rb") as handle:
                handle.seek(self.size)
                for block in iter(lambda: handle.read(1 << 20), b""):
                    self.update(block)
        return self.size


def _matches(path: Path, file: compute_pb2.ResultFile) -> bool:
    """Whether ``path`` holds exactly the bytes the node described (size first: it is free)."""
    try:
        if path.stat().st_size != file.size:
            return False
    except FileNotFoundError:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == file.sha256.lower()
