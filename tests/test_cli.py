"""The ``c2d`` command and the Client under it, against no node and against a tiny in-test node.

The tiny node is a real grpc.server with a ComputeServiceServicer that
implements just enough (environments, status, free start, results, logs) and
checks every signature the way the real node must, so the client's wire
behaviour (signing, rising nonces, resumable verified downloads) is tested
without the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import auth, wire
from c2d.cli import main
from c2d.cli import output as cli_output
from c2d.cli.render import when
from c2d.client import C2DError, Client, StartResult
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from host.errors import RequestError

SERVICE = "/c2d.compute.v1.ComputeService/"
KEY = "0x" + "11" * 32
ADDRESS = auth.address_of(KEY)
ENV = common_pb2.Environment(
    id="docker-cpu",
    engine="docker",
    description="a test environment",
    resources=[common_pb2.Resource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, total=8, available=6, max=4)],
    free=common_pb2.FreeTier(enabled=True, max_job_duration_seconds=600),
    max_job_duration_seconds=3600,
    engine_health=common_pb2.ENGINE_HEALTH_HEALTHY,
)
RESULT_DATA = os.urandom(70_000)
CHUNK = 16_384


class FakeNode(compute_pb2_grpc.ComputeServiceServicer):
    """Just enough of a node; every signed call is checked and recorded in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.last_nonce: dict[str, int] = {}
        self.lock = threading.Lock()
        self.jobs: dict[str, compute_pb2.JobInfo] = {}
        self.progress: dict[str, list[int]] = {}  # statuses each job walks through, one per status call
        self.result_sha = hashlib.sha256(RESULT_DATA).hexdigest()
        self.fail_results_after: int | None = None  # abort UNAVAILABLE after this many chunks, once
        self.refuse = False  # refuse every signed call, as for a bad signature
        self.refused = 0
        self.stop_lands_later = False

    def _check(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        text = auth.signing_text(
            request.auth.address.lower(),
            request.auth.nonce,
            SERVICE + method,
            auth.wire_digest(request, wire.received_bytes(request)),
            request.auth.version,
        )
        try:
            signer = auth.recover_signer(text, request.auth.signature)
        except ValueError:
            signer = ""
        with self.lock:
            if self.refuse:
                self.refused += 1
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "the signature does not match")
            if signer != request.auth.address.lower():
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad signature")
            last = self.last_nonce.get(signer, 0)
            if request.auth.nonce <= last:  # refused as host/auth.py refuses it
                refusal = RequestError(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"nonce {request.auth.nonce} was already used",
                    reason=auth.STALE_NONCE,
                    metadata={"last_nonce": str(last)},
                )
                context.set_trailing_metadata(refusal.trailing_metadata())
                context.abort(refusal.code, refusal.message)
            self.last_nonce[signer] = request.auth.nonce
            self.calls.append((method, request))

    def GetEnvironments(self, request: Any, context: grpc.ServicerContext) -> Any:
        return compute_pb2.GetEnvironmentsResponse(environments=[ENV])

    def FreeStartCompute(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("FreeStartCompute", request, context)
        workflow_id = f"wf-{len(self.calls)}"
        refs = []
        for stage in request.workflow.stages:
            job_id = f"{workflow_id}-job-{stage.index}"
            self.jobs[job_id] = compute_pb2.JobInfo(
                job_id=job_id,
                workflow_id=workflow_id,
                stage_index=stage.index,
                owner=ADDRESS,
                environment_id=request.workflow.environment_id,
                status=common_pb2.JOB_STATUS_QUEUED,
            )
            if request.HasField("metadata"):
                self.jobs[job_id].metadata.CopyFrom(request.metadata)
            # The algorithm's rawcode names how the stage ends, so tests can ask for a failure.
            last = (
                common_pb2.JOB_STATUS_ALGORITHM_FAILED
                if "fail" in stage.algorithm.rawcode
                else (common_pb2.JOB_STATUS_FINISHED)
            )
            self.progress[job_id] = [common_pb2.JOB_STATUS_RUNNING, last]
            refs.append(compute_pb2.StageRef(index=stage.index, job_id=job_id))
        return compute_pb2.FreeStartComputeResponse(workflow_id=workflow_id, stages=refs)

    def GetComputeStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("GetComputeStatus", request, context)
        target = request.WhichOneof("target")
        if target == "job_id":
            jobs = [self.jobs[request.job_id]] if request.job_id in self.jobs else []
            if not jobs:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        elif target == "workflow_id":
            jobs = [job for job in self.jobs.values() if job.workflow_id == request.workflow_id]
        else:
            jobs = list(self.jobs.values())
        for job in jobs:
            self._advance(job)
        return compute_pb2.GetComputeStatusResponse(jobs=jobs)

    def _advance(self, job: compute_pb2.JobInfo) -> None:
        steps = self.progress.get(job.job_id)
        if steps:
            job.status = steps.pop(0)
            job.terminal = not steps
            if job.status == common_pb2.JOB_STATUS_FINISHED:
                job.exit_code = 0
                job.results.append(self.result_file())
            elif job.status == common_pb2.JOB_STATUS_ALGORITHM_FAILED:
                # As the real node reports it: the status's name, the reason in the history.
                job.exit_code, job.status_text = 1, "algorithm failed"
                job.history.add(status=job.status, message="exit code 1")

    def result_file(self) -> compute_pb2.ResultFile:
        return compute_pb2.ResultFile(
            index=0,
            name="outputs.tar",
            kind=compute_pb2.RESULT_KIND_OUTPUT,
            size=len(RESULT_DATA),
            sha256=self.result_sha,
        )

    def GetComputeResult(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._check("GetComputeResult", request, context)
        if request.offset > len(RESULT_DATA):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "offset past the end")  # as host/ does
        yield compute_pb2.GetComputeResultResponse(file=self.result_file(), offset=request.offset)
        for sent, start in enumerate(range(request.offset, len(RESULT_DATA), CHUNK)):
            if self.fail_results_after is not None and sent == self.fail_results_after:
                self.fail_results_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped")
            yield compute_pb2.GetComputeResultResponse(data=RESULT_DATA[start : start + CHUNK], offset=start)

    def StreamComputeLogs(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._check("StreamComputeLogs", request, context)
        log = b"line one\nline two\n"
        yield compute_pb2.StreamComputeLogsResponse(data=log[request.offset :], offset=request.offset)

    def StopCompute(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("StopCompute", request, context)
        if request.WhichOneof("target") == "job_id":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
        jobs = [job for job in self.jobs.values() if job.workflow_id == request.workflow_id]
        for job in jobs:
            job.status, job.terminal = common_pb2.JOB_STATUS_STOPPED, True
        if self.stop_lands_later:  # as the real node answers: still running, stopped a moment later
            reply = compute_pb2.StopComputeResponse(jobs=jobs)
            for job in reply.jobs:
                job.status, job.terminal = common_pb2.JOB_STATUS_RUNNING, False
            return reply
        return compute_pb2.StopComputeResponse(jobs=jobs)


@pytest.fixture
def node() -> Iterator[tuple[FakeNode, str]]:
    servicer = FakeNode()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    wire.add_keeping_bytes(compute_pb2_grpc.add_ComputeServiceServicer_to_server, servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C2D_NODE", raising=False)
    monkeypatch.delenv("C2D_KEY_FILE", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_workflow(tmp_path: Path, stages: Any) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(stages))
    return path


def stage(index: int = 0, rawcode: str = "print(1)", **extra: Any) -> dict[str, Any]:
    return {
        "index": index,
        "algorithm": {"rawcode": rawcode, "container": {"image": "python", "tag": "3"}},
        **extra,
    }


# ------------------------------------------------------------------ without a node


def test_unreachable_node_is_exit_3_without_traceback() -> None:
    # A real process, as a user runs it: the console entry point's module.
    result = subprocess.run(
        [sys.executable, "-m", "c2d.cli", "--node", "127.0.0.1:1", "envs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("C2D_")},
    )
    assert result.returncode == 3, result
    assert result.stderr.startswith("error: UNAVAILABLE"), result.stderr
    assert "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unreachable_node_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--node", "127.0.0.1:1", "--timeout", "5", "envs")
    assert (code, out) == (3, "")
    assert err.startswith("error: UNAVAILABLE: ") and err.count("\n") == 1


def test_node_from_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2D_NODE", "127.0.0.1:1")
    code, _, err = run(capsys, "envs")
    assert code == 3 and "127.0.0.1:1" in err


def test_key_new_and_address(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "consumer.key"
    code, out, _ = run(capsys, "key", "new", "-o", str(path))
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written_address = out.split()[0]
    key = path.read_text().strip()
    assert written_address == auth.address_of(key)

    code, out, _ = run(capsys, "--key-file", str(path), "key", "address")
    assert (code, out.strip()) == (0, written_address)
    code, out, _ = run(capsys, "--json", "key", "address", str(path))
    assert json.loads(out) == {"address": written_address}


def test_key_new_keeps_an_existing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "consumer.key"
    path.write_text("precious")
    code, _, err = run(capsys, "key", "new", "-o", str(path))
    assert code == 2 and "exists; pass --force" in err
    assert path.read_text() == "precious"
    code, _, _ = run(capsys, "key", "new", "-o", str(path), "--force")
    assert code == 0 and path.read_text() != "precious"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_address_from_environment(
    capsys: pytest.CaptureFixture[str], key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2D_KEY_FILE", str(key_file))
    code, out, _ = run(capsys, "key", "address")
    assert (code, out.strip()) == (0, ADDRESS)


def test_bad_key_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    code, _, err = run(capsys, "--key-file", str(bad), "key", "address")
    assert code == 2 and "does not hold a hex private key" in err
    code, _, err = run(capsys, "--key-file", str(tmp_path / "missing"), "key", "address")
    assert code == 2 and "cannot read key file" in err


def test_malformed_workflow_is_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    path = write_workflow(tmp_path, [stage(), {"index": 1, "algorithm": {"contaner": {}}}])
    code, out, err = run(
        capsys,
        "--node",
        "127.0.0.1:1",
        "--key-file",
        str(key_file),
        "start",
        str(path),
        "--env",
        "e",
        "--free",
    )
    assert (code, out) == (2, "")
    assert err.startswith("error: stages[1].algorithm.contaner: unknown key")
    assert "Traceback" not in err


def test_workflow_that_is_not_json_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    path = tmp_path / "wf.json"
    path.write_text("[{")
    code, _, err = run(capsys, "--key-file", str(key_file), "start", str(path), "--env", "e")
    assert code == 2 and "wf.json is not JSON" in err


def test_start_needs_an_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    code, _, err = run(capsys, "--key-file", str(key_file), "start", str(write_workflow(tmp_path, [stage()])))
    assert code == 2 and "no environment: pass --env" in err


def test_signed_command_without_a_key_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--node", "127.0.0.1:1", "status", "job-1")
    assert code == 2 and "pass --key-file or set C2D_KEY_FILE" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["start"], ["key"], ["admin", "assets"], ["logs"], ["--timeout", "x", "envs"]],
)
def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and "usage:" in err


def test_help_is_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "start" in out and "Exit codes" in out


def test_status_needs_an_id_or_all(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    code, _, err = run(capsys, "--node", "127.0.0.1:1", "--key-file", str(key_file), "status")
    assert code == 2 and "--all" in err


def test_asset_file_errors_are_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    path = tmp_path / "asset.json"
    path.write_text(json.dumps({"did": "did:op:1", "services": [{"serviceId": "s", "kind": "nonsense"}]}))
    code, _, err = run(capsys, "--key-file", str(key_file), "admin", "assets", "register", str(path))
    assert code == 2 and "asset" in err and "nonsense" in err


# ------------------------------------------------------------------ the client alone


def test_nonces_rise_strictly_within_one_microsecond() -> None:
    with Client("127.0.0.1:1", KEY) as client:
        nonces = [client.next_nonce() for _ in range(2000)]
    assert nonces == sorted(set(nonces))


def test_client_errors_are_c2d_errors() -> None:
    with Client("127.0.0.1:1", KEY, timeout=5) as client, pytest.raises(C2DError) as caught:
        client.environments()
    assert caught.value.code == "UNAVAILABLE" and caught.value.transient
    assert not isinstance(caught.value, grpc.RpcError)


def test_signed_call_without_key_is_refused_locally() -> None:
    with Client("127.0.0.1:1") as client, pytest.raises(C2DError, match=r"UNAUTHENTICATED: .*no private key"):
        client.status(all=True)


def test_status_takes_exactly_one_target() -> None:
    with Client("127.0.0.1:1", KEY) as client, pytest.raises(ValueError, match="exactly one"):
        client.status(job_id="a", workflow_id="b")


# ------------------------------------------------------------------ against the tiny node


def test_envs_table(capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str]) -> None:
    _, address = node
    code, out, err = run(capsys, "--node", address, "envs")
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split()[:3] == ["ID", "ENGINE", "HEALTH"]
    assert row.startswith("docker-cpu") and "docker" in row and "healthy" in row and "cpu 6/8" in row


def test_envs_json(capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str]) -> None:
    _, address = node
    code, out, _ = run(capsys, "--node", address, "--json", "envs")
    assert code == 0
    (env,) = json.loads(out)
    assert env["id"] == "docker-cpu" and env["engine"] == "docker" and env["engine_health"] == "healthy"
    assert env["free"]["max_job_duration_seconds"] == 600


def test_status_is_signed(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path
) -> None:
    servicer, address = node
    servicer.jobs["job-7"] = compute_pb2.JobInfo(
        job_id="job-7", workflow_id="wf-7", status=common_pb2.JOB_STATUS_RUNNING
    )
    code, out, err = run(capsys, "--node", address, "--key-file", str(key_file), "status", "job-7")
    assert (code, err) == (0, "")
    assert "job-7" in out and "running" in out

    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "--json", "status", "job-7")
    (job,) = json.loads(out)
    assert (job["job_id"], job["status"], job["status_code"]) == ("job-7", "running", 40)

    method, request = servicer.calls[0]
    assert method == "GetComputeStatus" and request.job_id == "job-7"
    assert request.auth.version == auth.SCHEME_V2  # the SDK signs the bytes it sends
    digest = auth.wire_digest(request, request.SerializeToString())
    text = auth.signing_text(
        ADDRESS, request.auth.nonce, SERVICE + "GetComputeStatus", digest, auth.SCHEME_V2
    )
    assert auth.recover_signer(text, request.auth.signature) == ADDRESS
    assert servicer.calls[1][1].auth.nonce > request.auth.nonce


def test_status_shows_metadata_exit_code_out_of_memory_and_algorithm_times(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path, tmp_path: Path
) -> None:
    servicer, address = node
    path = write_workflow(tmp_path, [stage(0)])
    base = ("--node", address, "--key-file", str(key_file))
    metadata = '{"name": "run 7", "runs": 3, "tags": ["a"]}'
    code, out, _ = run(
        capsys, *base, "--json", "start", str(path), "--env", "e", "--free", "--metadata", metadata
    )
    assert code == 0, out
    (job_id,) = [stage["job_id"] for stage in json.loads(out)["stages"]]
    job = servicer.jobs[job_id]
    job.status, job.terminal, job.exit_code = common_pb2.JOB_STATUS_OUT_OF_MEMORY, True, 137
    job.termination.exit_code, job.termination.oom_killed = 137, True
    job.started.FromJsonString("2026-01-02T03:04:05Z")
    job.algorithm_finished.FromJsonString("2026-01-02T03:04:09Z")
    job.finished.FromJsonString("2026-01-02T03:04:10Z")

    code, out, _ = run(capsys, *base, "status", job_id)
    assert code == 0
    (row,) = [line for line in out.splitlines() if job_id in line]
    assert "out of memory" in row and "137 (out of memory)" in row
    shown = [when(stamp) or "" for stamp in (job.started, job.algorithm_finished, job.finished)]
    assert all(shown) and " ".join(shown) in " ".join(row.split()), row  # in this order, all three
    assert 'metadata: {"name":"run 7","runs":3,"tags":["a"]}' in out.splitlines()

    code, out, _ = run(capsys, *base, "--json", "status", job_id)
    (doc,) = json.loads(out)
    assert doc["metadata"] == {"name": "run 7", "runs": 3, "tags": ["a"]}
    assert doc["termination"] == {"exit_code": 137, "oom_killed": True}
    assert (doc["started"], doc["algorithm_finished"]) == ("2026-01-02T03:04:05Z", "2026-01-02T03:04:09Z")

    code, _, err = run(capsys, *base, "start", str(path), "--env", "e", "--free", "--metadata", "[1]")
    assert code != 0 and "--metadata must be a JSON object" in err


def test_status_falls_back_to_the_workflow(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path
) -> None:
    servicer, address = node
    for index in (0, 1):
        servicer.jobs[f"j{index}"] = compute_pb2.JobInfo(
            job_id=f"j{index}", workflow_id="wf-9", stage_index=index, status=common_pb2.JOB_STATUS_QUEUED
        )
    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "status", "wf-9")
    assert code == 0 and "j0" in out and "j1" in out
    assert [request.WhichOneof("target") for _, request in servicer.calls] == ["job_id", "workflow_id"]
    code, _, err = run(capsys, "--node", address, "--key-file", str(key_file), "status", "nothing")
    assert code == 3 and err == "error: NOT_FOUND: no job or workflow nothing\n"


def test_start_wait_json(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path, tmp_path: Path
) -> None:
    _, address = node
    path = write_workflow(tmp_path, [stage(0), stage(1, runAfter=0)])
    code, out, err = run(
        capsys,
        "--node",
        address,
        "--key-file",
        str(key_file),
        "start",
        str(path),
        "--env",
        "docker-cpu",
        "--free",
        "--wait",
        "--poll",
        "0.01",
        "--json",
    )
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["workflow_id"].startswith("wf-")
    assert [(s["index"], s["status"], s["status_code"]) for s in doc["stages"]] == [
        (0, "finished", 70),
        (1, "finished", 70),
    ]
    assert all(s["job_id"] for s in doc["stages"])


def test_start_without_wait_json(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path, tmp_path: Path
) -> None:
    servicer, address = node
    path = write_workflow(tmp_path, {"stages": [stage(0)], "environment": "docker-cpu"})
    code, out, _ = run(
        capsys, "--node", address, "--key-file", str(key_file), "--json", "start", str(path), "--free"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc == {
        "workflow_id": doc["workflow_id"],
        "stages": [{"index": 0, "job_id": f"{doc['workflow_id']}-job-0"}],
    }
    ((_, request),) = servicer.calls
    assert request.workflow.environment_id == "docker-cpu"


def test_failed_stage_is_exit_1(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path, tmp_path: Path
) -> None:
    _, address = node
    path = write_workflow(tmp_path, [stage(0), stage(1, rawcode="fail()")])
    code, out, _ = run(
        capsys,
        "--node",
        address,
        "--key-file",
        str(key_file),
        "start",
        str(path),
        "--env",
        "docker-cpu",
        "--free",
        "--wait",
        "--poll",
        "0.01",
    )
    assert code == 1
    assert "algorithm failed: exit code 1" in out  # the plain per-change lines
    assert out.rstrip().endswith("1 of 2 stages did not finish")
    # status lists why the stage failed in its message column, not only under --history.
    workflow_id = out.split("workflow ", 1)[1].split()[0]
    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "status", workflow_id)
    (failed_row,) = [line for line in out.splitlines() if "algorithm failed" in line]
    assert code == 0 and failed_row.rstrip().endswith("exit code 1")


def test_start_wait_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    node: tuple[FakeNode, str],
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rich live display and download bars run (rendered into the captured stream).
    monkeypatch.setattr(cli_output, "_isatty", lambda stream: True)
    _, address = node
    path = write_workflow(tmp_path, [stage(0)])
    code, out, _ = run(
        capsys,
        "--node",
        address,
        "--key-file",
        str(key_file),
        "start",
        str(path),
        "--env",
        "docker-cpu",
        "--free",
        "--wait",
        "--poll",
        "0.01",
    )
    assert code == 0 and "finished" in out
    job_id = out.split("job ", 1)[1].split()[0]
    code, out, _ = run(
        capsys, "--node", address, "--key-file", str(key_file), "result", job_id, "-o", str(tmp_path / "out")
    )
    assert code == 0 and (tmp_path / "out" / "outputs.tar").read_bytes() == RESULT_DATA


def test_result_downloads_every_file(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path, tmp_path: Path
) -> None:
    servicer, address = node
    servicer.jobs["job-1"] = compute_pb2.JobInfo(
        job_id="job-1", status=common_pb2.JOB_STATUS_FINISHED, terminal=True, results=[servicer.result_file()]
    )
    out_dir = tmp_path / "results"
    code, out, _ = run(
        capsys,
        "--node",
        address,
        "--key-file",
        str(key_file),
        "--json",
        "result",
        "job-1",
        "-o",
        str(out_dir),
    )
    assert code == 0
    (saved,) = json.loads(out)
    assert saved["path"] == str(out_dir / "outputs.tar") and saved["size"] == len(RESULT_DATA)
    assert (out_dir / "outputs.tar").read_bytes() == RESULT_DATA
    assert list(out_dir.iterdir()) == [out_dir / "outputs.tar"]


def test_logs(capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path) -> None:
    _, address = node
    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "logs", "job-1", "--follow")
    assert (code, out) == (0, "line one\nline two\n")


def test_stop_falls_back_to_the_workflow(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path
) -> None:
    servicer, address = node
    servicer.jobs["j0"] = compute_pb2.JobInfo(
        job_id="j0", workflow_id="wf-3", status=common_pb2.JOB_STATUS_RUNNING
    )
    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "stop", "wf-3")
    assert code == 0 and "stopped" in out


def test_client_wait_reports_every_change(node: tuple[FakeNode, str]) -> None:
    _, address = node
    seen: list[list[int]] = []
    with Client(address, KEY) as client:
        started = client.start([stage(0), stage(1)], free=True)
        assert isinstance(started, StartResult) and len(started.job_ids) == 2
        jobs = client.wait(started, poll=0.01, on_update=lambda jobs: seen.append([j.status for j in jobs]))
    assert [job.status for job in jobs] == [common_pb2.JOB_STATUS_FINISHED] * 2
    assert seen == [[common_pb2.JOB_STATUS_RUNNING] * 2, [common_pb2.JOB_STATUS_FINISHED] * 2]


def test_download_resumes_after_a_dropped_stream(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    servicer.fail_results_after = 2
    progress: list[tuple[int, int | None]] = []
    with Client(address, KEY) as client:
        path = client.result(
            "job-1", 0, tmp_path / "out.bin", on_progress=lambda d, t: progress.append((d, t))
        )
    assert path.read_bytes() == RESULT_DATA
    assert not (tmp_path / "out.bin.part").exists()
    offsets = [request.offset for method, request in servicer.calls if method == "GetComputeResult"]
    assert offsets == [0, 2 * CHUNK]
    assert progress[-1] == (len(RESULT_DATA), len(RESULT_DATA))


def test_download_resumes_from_an_existing_part(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    (tmp_path / "out.bin.part").write_bytes(RESULT_DATA[:1000])
    with Client(address, KEY) as client:
        client.result("job-1", 0, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == RESULT_DATA
    assert [request.offset for _, request in servicer.calls] == [1000]


def test_download_starts_over_when_the_part_is_wrong(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    (tmp_path / "out.bin.part").write_bytes(b"x" * 1000)
    with Client(address, KEY) as client:
        client.result("job-1", 0, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == RESULT_DATA
    assert [request.offset for _, request in servicer.calls] == [1000, 0]


def test_download_with_a_wrong_checksum_fails(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    servicer.result_sha = "0" * 64
    with Client(address, KEY) as client, pytest.raises(C2DError) as caught:
        client.result("job-1", 0, tmp_path / "out.bin")
    assert caught.value.code == "DATA_LOSS" and "sha256" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_download_restarts_when_the_part_is_too_long(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    (tmp_path / "out.bin.part").write_bytes(b"x" * (len(RESULT_DATA) + 5))
    with Client(address, KEY) as client:
        client.result("job-1", 0, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == RESULT_DATA
    assert [request.offset for _, request in servicer.calls] == [len(RESULT_DATA) + 5, 0]


def test_complete_part_is_verified_and_renamed_without_a_download(
    node: tuple[FakeNode, str], tmp_path: Path
) -> None:
    servicer, address = node
    (tmp_path / "out.bin.part").write_bytes(RESULT_DATA)
    with Client(address, KEY) as client:
        client.result("job-1", 0, tmp_path / "out.bin", expected=servicer.result_file())
    assert (tmp_path / "out.bin").read_bytes() == RESULT_DATA
    assert servicer.calls == []


def test_results_names_files_safely(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    evil = servicer.result_file()
    evil.name = "../../escape.tar"
    servicer.jobs["job-1"] = compute_pb2.JobInfo(job_id="job-1", terminal=True, results=[evil])
    with Client(address, KEY) as client:
        paths = client.results("job-1", tmp_path / "out")
    assert paths == [tmp_path / "out" / "escape.tar"]
    assert paths[0].read_bytes() == RESULT_DATA


def test_a_verified_file_is_not_fetched_again(node: tuple[FakeNode, str], tmp_path: Path) -> None:
    servicer, address = node
    (tmp_path / "out.bin").write_bytes(RESULT_DATA)
    with Client(address, KEY) as client:
        client.result("job-1", 0, tmp_path / "out.bin", expected=servicer.result_file())
    assert servicer.calls == []


def test_wait_on_job_ids_gives_up_at_its_timeout(node: tuple[FakeNode, str]) -> None:
    servicer, address = node
    servicer.jobs["slow"] = compute_pb2.JobInfo(job_id="slow", status=common_pb2.JOB_STATUS_RUNNING)
    with Client(address, KEY) as client, pytest.raises(C2DError) as caught:
        client.wait(["slow"], poll=0.01, timeout=0.1)
    assert caught.value.code == "DEADLINE_EXCEEDED"


def test_a_nonce_the_node_has_passed_is_raised_and_sent_again(
    node: tuple[FakeNode, str], tmp_path: Path
) -> None:
    # Another client with the same key (or a clock that went back) got ahead of this one.
    servicer, address = node
    ahead = auth.new_nonce() + 10**9
    servicer.last_nonce[ADDRESS] = ahead
    servicer.jobs["job-1"] = compute_pb2.JobInfo(job_id="job-1", status=common_pb2.JOB_STATUS_QUEUED)
    with Client(address, KEY) as client:
        assert [job.job_id for job in client.status(job_id="job-1")] == ["job-1"]
        servicer.last_nonce[ADDRESS] += 10**6
        assert client.result("job-1", 0, tmp_path / "out.bin").read_bytes() == RESULT_DATA
    nonces = [request.auth.nonce for _, request in servicer.calls]
    assert nonces[0] == ahead + 1 and nonces[1] == ahead + 1 + 10**6 + 1


def test_other_refusals_are_not_retried(node: tuple[FakeNode, str]) -> None:
    servicer, address = node
    servicer.refuse = True
    with Client(address, KEY) as client, pytest.raises(C2DError) as caught:
        client.status(all=True)
    assert (caught.value.code, caught.value.stale_nonce) == ("UNAUTHENTICATED", None)
    assert servicer.refused == 1


def test_stop_prints_the_stage_stopped_once_it_is(
    capsys: pytest.CaptureFixture[str], node: tuple[FakeNode, str], key_file: Path
) -> None:
    # The node answers a stop with the stage still running; the next status call says stopped.
    servicer, address = node
    servicer.jobs["j0"] = compute_pb2.JobInfo(
        job_id="j0", workflow_id="wf-9", status=common_pb2.JOB_STATUS_RUNNING
    )
    servicer.stop_lands_later = True
    code, out, _ = run(capsys, "--node", address, "--key-file", str(key_file), "stop", "wf-9")
    assert code == 0 and "stopped" in out and "running" not in out
