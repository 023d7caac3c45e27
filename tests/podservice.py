"""A test PodService, an HTTP file server and helpers to run the pods against them.

:class:`FakePodService` is a real gRPC server on 127.0.0.1 implementing every
RPC of ``c2d.pod.v1.PodService`` the way the node must: each call's signature
must recover the stage's pod address and its nonce must rise, uploads are kept
by (kind, name) and are resumable, ``node`` files are streamed from an offset.
It can fail calls with UNAVAILABLE on demand (once, or in the middle of a
stream after data went through) to exercise the pods' retries and resumption.
Shared by tests/test_pods.py and tests/test_stub_pods.py.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from c2d import auth
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc

SERVICE = "/c2d.pod.v1.PodService/"
FETCH_CHUNK_BYTES = 64 * 1024
Phase = pod_pb2.PodPhase
Kind = pod_pb2.UploadKind


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of ``entries`` (name -> content), plus symlink entries (name -> target) when given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) & 0xFFFF0000
            zf.writestr(info, target)
    return buffer.getvalue()


@dataclass
class Stored:
    """One upload as the node keeps it."""

    header: pod_pb2.UploadHeader
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False


class FakePodService(pod_pb2_grpc.PodServiceServicer):
    def __init__(self, job_id: str, pod_address: str) -> None:
        self.job_id = job_id
        self.pod_address = pod_address.lower()
        self.provisioning = pod_pb2.GetProvisioningResponse(job_id=job_id)
        self.node_files: dict[str, bytes] = {}
        self.statuses: list[tuple[int, str]] = []
        self.uploads: dict[tuple[int, str], Stored] = {}
        self.upload_order: list[str] = []
        self.upload_offsets: list[tuple[str, int]] = []
        self.calls: Counter[str] = Counter()
        # Calls by method name to refuse with UNAVAILABLE (after checking their signature).
        self.fail_calls: Counter[str] = Counter()
        # Streams (PublishResult, FetchInput) to break with UNAVAILABLE once some data went through.
        self.break_streams: Counter[str] = Counter()
        # While set, GetProvisioning waits for it to clear (to stop a job mid-provisioning).
        self.hold_provisioning = threading.Event()
        self._lock = threading.Lock()
        self._last_nonce = 0
        self._server: grpc.Server | None = None
        self.port = 0

    # The server ----------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakePodService:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pod_pb2_grpc.add_PodServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        self.hold_provisioning.clear()
        if self._server is not None:
            self._server.stop(0)

    def phases(self) -> list[str]:
        return [Phase.Name(phase) for phase, _ in self.statuses]

    def upload(self, kind: int, name: str) -> bytes | None:
        stored = self.uploads.get((kind, name))
        return bytes(stored.data) if stored is not None and stored.complete else None

    # Checks -------------------------------------------------------------------------

    def _admit(
        self, method: str, request: object, pod_auth: pod_pb2.PodAuth, context: grpc.ServicerContext
    ) -> None:
        """The node's checks: the pod's own signature, a rising nonce; then any failure asked for."""
        text = auth.signing_text(pod_auth.job_id, pod_auth.nonce, SERVICE + method, auth.body_digest(request))
        try:
            signer = auth.recover_signer(text, pod_auth.signature)
        except ValueError:
            signer = ""
        if pod_auth.job_id != self.job_id or signer != self.pod_address:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{method}: bad signature")
        with self._lock:
            if pod_auth.nonce <= self._last_nonce:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{method}: nonce did not rise")
            self._last_nonce = pod_auth.nonce
            self.calls[method] += 1
            failing = self.fail_calls[method] > 0
            if failing:
                self.fail_calls[method] -= 1
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "node restarting (test)")

    def _break_stream(self, method: str) -> bool:
        with self._lock:
            if self.break_streams[method] > 0:
                self.break_streams[method] -= 1
                return True
            return False

    # RPCs ---------------------------------------------------------------------------

    def GetProvisioning(self, request, context):
        self._admit("GetProvisioning", request, request.auth, context)
        while self.hold_provisioning.is_set() and context.is_active():
            time.sleep(0.05)
        return self.provisioning

    def UpdateJobStatus(self, request, context):
        self._admit("UpdateJobStatus", request, request.auth, context)
        with self._lock:
            self.statuses.append((request.phase, request.message))
        return pod_pb2.UpdateJobStatusResponse()

    def GetUploadOffset(self, request, context):
        self._admit("GetUploadOffset", request, request.auth, context)
        stored = self.uploads.get((request.kind, request.name))
        return pod_pb2.GetUploadOffsetResponse(offset=len(stored.data) if stored else 0)

    def PublishResult(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a header")
        header = first.header
        self._admit("PublishResult", header, header.auth, context)
        key = (header.kind, header.name)
        self.upload_offsets.append((header.name, header.offset))
        stored = self.uploads.get(key)
        if stored is None or header.offset == 0 or stored.header.sha256 != header.sha256:
            stored = self.uploads[key] = Stored(header)
        if header.offset != len(stored.data):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "offset is not where the upload stands")
        breaking = False
        for message in request_iterator:
            stored.data += message.data
            if len(stored.data) > header.size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "more data than the header said")
            if breaking or self._break_stream("PublishResult"):
                breaking = True
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (test)")
        stored.complete = len(stored.data) == header.size and sha256(bytes(stored.data)) == header.sha256
        if stored.complete:
            self.upload_order.append(header.name)
        return pod_pb2.PublishResultResponse(received=len(stored.data), complete=stored.complete)

    def FetchInput(self, request, context):
        self._admit("FetchInput", request, request.auth, context)
        data = self.node_files.get(request.source)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such node file")
        offset = request.offset
        while offset < len(data):
            chunk = data[offset : offset + FETCH_CHUNK_BYTES]
            yield pod_pb2.FetchInputResponse(data=chunk, offset=offset)
            offset += len(chunk)
            if self._break_stream("FetchInput"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (test)")


class FileServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (path -> bytes) to requests with ``token``."""

    def __init__(self, files: dict[str, bytes], token: str) -> None:
        self.files = files
        self.token = token
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.command, self.path))
                body = outer.files.get(self.path)
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self.send_response(403)
                    body = b""
                elif body is None:
                    self.send_response(404)
                    body = b""
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Stage:
    """A stage's identity as the node knows it: job id, pod key and address."""

    job_id: str
    private_key: str = field(default_factory=auth.new_private_key)
    node_address: str = "0x" + "ab" * 20

    @property
    def pod_address(self) -> str:
        return auth.address_of(self.private_key)


def pod_environment(stage: Stage, service: FakePodService, data: Path) -> dict[str, str]:
    """What an engine gives a pod."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data),
        "LANG": "C.UTF-8",
        "nodePeerId": stage.node_address,
        "nodeHttpApi": service.target,
        "privateKey": stage.private_key,
        "jobId": stage.job_id,
        "C2D_DATA": str(data),
        "C2D_POD_RETRY_SECONDS": "20",
    }


def run_pod(module: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m <module>`` as an engine runs it; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        cwd=env["C2D_DATA"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def files_under(folder: Path) -> Iterator[str]:
    """Relative paths of everything under ``folder``, links included, sorted."""
    for root, dirs, names in os.walk(folder):
        for name in sorted(dirs + names):
            yield str((Path(root) / name).relative_to(folder))
