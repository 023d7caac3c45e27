"""The pods' side of the node's PodService: signed calls, per-call timeouts, retries.

Every request is signed with the stage's pod key (:func:`c2d.auth.sign_pod_request`)
afresh on every attempt, with a nonce that rises even within one microsecond,
because the node accepts each nonce once. Unary calls retry transient errors
themselves; the two streams (:meth:`PodClient.publish` and
:meth:`PodClient.fetch`) make one attempt each, since only their callers know
where to resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from c2d.auth import new_nonce, sign_pod_request
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from pods.retry import Backoff

# A reply message; _unary is told its class, since the generated stub carries no hints.
R = TypeVar("R", bound=Message)

SERVICE = "/c2d.pod.v1.PodService/"
CALL_TIMEOUT_SECONDS = 30.0
# A stream's own deadline; an expired one is transient, so a long transfer resumes where it was.
STREAM_TIMEOUT_SECONDS = 600.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly once a restarted node listens again.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class PodClient:
    """One stage's pod talking to its node."""

    def __init__(
        self,
        target: str,
        private_key: str,
        job_id: str,
        *,
        backoff: Backoff | None = None,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        stream_timeout: float = STREAM_TIMEOUT_SECONDS,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.backoff = backoff or Backoff()
        self.call_timeout = call_timeout
        self.stream_timeout = stream_timeout
        self._key = private_key
        self._last_nonce = 0
        self.on_retry = on_retry
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = pod_pb2_grpc.PodServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"PodClient(job_id={self.job_id!r})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PodClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Signing ----------------------------------------------------------------------

    def sign(self, method: str, request: Message) -> None:
        """Fills ``request.auth`` for ``method`` (its short name) with a nonce above every earlier one."""
        nonce = max(new_nonce(), self._last_nonce + 1)
        self._last_nonce = nonce
        sign_pod_request(self._key, self.job_id, SERVICE + method, request, nonce=nonce)

    def _unary(self, method: str, request: Message, reply: type[R], retry: bool = True) -> R:
        """One signed unary call of ``method``, whose reply is a ``reply``."""
        call = getattr(self._stub, method)

        def attempt() -> R:
            self.sign(method, request)
            return call(request, timeout=self.call_timeout)

        return self.backoff.run(attempt, on_retry=self.on_retry) if retry else attempt()

    # Unary calls, retried -------------------------------------------------------------

    def get_provisioning(self) -> pod_pb2.GetProvisioningResponse:
        return self._unary(
            "GetProvisioning", pod_pb2.GetProvisioningRequest(), pod_pb2.GetProvisioningResponse
        )

    def update_status(self, phase: pod_pb2.PodPhase, message: str = "") -> None:
        self._unary(
            "UpdateJobStatus",
            pod_pb2.UpdateJobStatusRequest(phase=phase, message=message),
            pod_pb2.UpdateJobStatusResponse,
        )

    def get_upload_offset(self, name: str, kind: pod_pb2.UploadKind, *, retry: bool = True) -> int:
        """How many bytes of this upload the node holds; ``retry=False`` inside a caller's own retry loop."""
        reply = self._unary(
            "GetUploadOffset",
            pod_pb2.GetUploadOffsetRequest(name=name, kind=kind),
            pod_pb2.GetUploadOffsetResponse,
            retry,
        )
        return reply.offset

    # Streams, one attempt each ------------------------------------------------------------

    def publish(self, header: pod_pb2.UploadHeader, chunks: Iterable[bytes]) -> pod_pb2.PublishResultResponse:
        """One PublishResult stream: the signed header, then ``chunks``."""
        self.sign("PublishResult", header)

        def requests() -> Iterator[pod_pb2.PublishResultRequest]:
            yield pod_pb2.PublishResultRequest(header=header)
            for chunk in chunks:
                yield pod_pb2.PublishResultRequest(data=chunk)

        return self._stub.PublishResult(requests(), timeout=self.stream_timeout)

    def fetch(self, source: str, offset: int) -> Iterator[pod_pb2.FetchInputResponse]:
        """One FetchInput stream of a "node" file from ``offset``."""
        request = pod_pb2.FetchInputRequest(source=source, offset=offset)
        self.sign("FetchInput", request)
        return self._stub.FetchInput(request, timeout=self.stream_timeout)
