"""Class 9: the network face. Real nodes, real sockets.

- A port another process holds is an error: a second node on a node's port (gRPC would
  share it through SO_REUSEPORT, and clients would reach either node at random), or a
  plain socket on the public or the pod port, makes ``python -m host`` exit 1 with one
  line that names the address; the first node keeps answering.
- One caller cannot hold the node: past ``[limits] max_calls_per_peer`` its calls get
  RESOURCE_EXHAUSTED with a message that says why, while a caller from another address
  (IPv6 loopback, the abuser being IPv4) still gets Health/Check and GetEnvironments.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
LIMIT = 6
GENEROUS = 30  # seconds: a deadline for "still answers", not a measured time


def exits_with_one_line(node: NodeProcess, address: str) -> str:
    """Waits for the node to exit 1 and returns the error line that names ``address``."""
    assert node.process.wait(60) == 1, "\n".join(node.raw_lines[-20:])
    node._reader.join(timeout=5)
    lines = [line for line in node.raw_lines if f"cannot listen on {address}" in line]
    assert lines, "\n".join(node.raw_lines[-20:])
    return lines[0]


def test_a_second_node_on_the_same_port_exits_1(tmp_path: Path) -> None:
    with running_node(tmp_path / "first") as first:
        first.wait_listening()
        with running_node(tmp_path / "second", port=first.port) as second:
            line = exits_with_one_line(second, first.address)
            assert "in use" in line
        # The first node is the one that answers, and still does.
        reply = first.compute.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=GENEROUS)
        assert isinstance(reply, compute_pb2.GetEnvironmentsResponse)


@pytest.mark.parametrize("which", ["public", "pods"])
def test_a_port_held_by_a_plain_socket_exits_1(tmp_path: Path, which: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        kwargs = {"port": held} if which == "public" else {"pod_port": held}
        with running_node(tmp_path / "node", **kwargs) as node:
            exits_with_one_line(node, f"127.0.0.1:{held}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 4}}]',
        "C2D_LIMITS__MAX_CALLS_PER_PEER": str(LIMIT),
    }
    # "[::]": IPv4 (the abuser, 127.0.0.1) and IPv6 (the other caller, ::1) reach it as two peers.
    with running_node(tmp_path / "node", env=env, listen_host="[::]") as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


def test_one_caller_cannot_hold_the_node(node: NodeProcess) -> None:
    abuser = Client(node.address, auth.new_private_key())
    channel = grpc.insecure_channel(node.address)
    streams: list[grpc.Future] = []
    try:
        job_id = abuser.start(
            {
                "environment": ENV,
                "stages": [
                    {
                        "index": 0,
                        "algorithm": {
                            "rawcode": "while true; do echo tick; sleep 0.2; done",
                            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                        },
                    }
                ],
            },
            free=True,
        ).job_ids[0]
        wait_for(
            lambda: abuser.status(job_id=job_id)[0].status == S.JOB_STATUS_RUNNING,
            60,
            "the abuser's job to run",
        )
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        # Follow the log, again and again, never closing: each stream is held open by the node.
        for _ in range(LIMIT):
            request = compute_pb2.StreamComputeLogsRequest(job_id=job_id, follow=True)
            abuser._sign("StreamComputeLogs", request)
            stream = stub.StreamComputeLogs(request, timeout=300)
            next(stream)  # open and answering: the node holds it
            streams.append(stream)
        # One more, or any other call from that address: refused at once, and said why.
        request = compute_pb2.StreamComputeLogsRequest(job_id=job_id, follow=True)
        abuser._sign("StreamComputeLogs", request)
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.StreamComputeLogs(request, timeout=GENEROUS))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        assert f"at most {LIMIT}" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=GENEROUS)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # Everyone else is served: Health and GetEnvironments from another address.
        with grpc.insecure_channel(f"[::1]:{node.port}") as other:
            health = health_pb2_grpc.HealthStub(other).Check(
                health_pb2.HealthCheckRequest(), timeout=GENEROUS
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            envs = compute_pb2_grpc.ComputeServiceStub(other).GetEnvironments(
                compute_pb2.GetEnvironmentsRequest(), timeout=GENEROUS
            )
            assert any(env.id == ENV for env in envs.environments)
        # Health is not counted, even from the abuser's address.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=GENEROUS)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        # Streams closed, the abuser's address is served again.
        for stream in streams:
            stream.cancel()
        wait_for(
            lambda: _answers(stub), GENEROUS, "the abuser's address to be served once its streams closed", 0.2
        )
    finally:
        for stream in streams:
            stream.cancel()
        with Client(node.address, abuser._key) as owner:
            for job in owner.status(all=True):
                if not job.terminal:
                    owner.stop(job_id=job.job_id)
        channel.close()
        abuser.close()


def _answers(stub: compute_pb2_grpc.ComputeServiceStub) -> bool:
    try:
        stub.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=GENEROUS)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return False
    return True
