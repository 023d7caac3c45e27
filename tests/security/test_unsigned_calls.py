"""Class 6: unsigned calls reveal nothing about others.

InitializeCompute and GetEnvironments need no signature, so anyone can make them
and claim any ``consumer_address``. Through a real node (free tier with a per-consumer
limit, a dataset only its allowed consumer may use), a victim runs jobs; a stranger then
asks unsigned about the victim's finished job, running job and a job id that does not
exist, in the victim's name and in others', with and without the allow-listed dataset:
every answer (or error) is byte-identical. Signed, the same checks run for the signer
(the victim's own job is found, a stranger's signature cannot use it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import auth
from c2d.client import C2DError, Client, as_workflow
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
DID = "did:op:unsigned-private"
CONFIG = f"""
[engines.external_stub]
enabled = true

[[engines.external_stub.environments]]
id = "{ENV}"
cpu = 2
ram_gib = 4
disk_gib = 4

[environments."{ENV}".free]
max_jobs_per_consumer = 1
max_job_duration_seconds = 600
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    config = tmp_path / "node.toml"
    config.write_text(CONFIG)
    data_root = tmp_path / "datasets"
    data_root.mkdir()
    (data_root / "private.csv").write_bytes(b"secret\n")
    env = {"C2D_ASSETS__DATA_ROOT": str(data_root)}
    with running_node(tmp_path / "node", config=config, env=env) as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


def stage(script: str, *, after: str = "", dataset: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "index": 0,
        "input": [{"index": 0, "did": DID, "serviceId": "compute"}] if dataset else [],
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
        },
        "maxJobDuration": 60,
    }
    if after:
        doc["runAfter"] = after
    return doc


def workflow(**kwargs: Any) -> compute_pb2.Workflow:
    return as_workflow({"environment": ENV, "stages": [stage("echo hi", **kwargs)]})


def answer(stub: compute_pb2_grpc.ComputeServiceStub, request: compute_pb2.InitializeComputeRequest) -> bytes:
    """The whole answer as bytes: the reply, or the error's code and message."""
    try:
        return bytes(stub.InitializeCompute(request, timeout=30).SerializeToString(deterministic=True))
    except grpc.RpcError as error:
        return f"{error.code()}: {error.details()}".encode()


@pytest.fixture
def victim(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client
        for job in client.status(all=True):
            if not job.terminal:
                client.stop(job_id=job.job_id)


def test_unsigned_initialize_answers_the_same_whoever_it_names(node: NodeProcess, victim: Client) -> None:
    assert victim.signer is not None
    with Client(node.address, node.node_key()) as operator:
        operator.register_asset(
            {
                "did": DID,
                "services": [
                    {
                        "serviceId": "compute",
                        "kind": "dataset",
                        "files": {"files": [{"type": "local", "path": "private.csv"}]},
                        "policy": {"allowRawCode": True, "allowedConsumers": [victim.signer]},
                    }
                ],
            }
        )
    finished = victim.start({"environment": ENV, "stages": [stage("echo done")]}, free=True).job_ids[0]
    (done,) = victim.wait([finished], timeout=120)
    assert done.status == S.JOB_STATUS_FINISHED, done.status_text
    # Running: also the victim's one free job at once (max_jobs_per_consumer = 1).
    running = victim.start({"environment": ENV, "stages": [stage("sleep 300")]}, free=True).job_ids[0]
    wait_for(
        lambda: victim.status(job_id=running)[0].status == S.JOB_STATUS_RUNNING, 60, "the victim's job to run"
    )
    nowhere = uuid.uuid4().hex

    stranger = auth.address_of(auth.new_private_key())
    claimed = [victim.signer, stranger, ""]
    with grpc.insecure_channel(node.address) as channel:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        for dataset in (False, True):
            answers = {
                (job, address): answer(
                    stub,
                    compute_pb2.InitializeComputeRequest(
                        workflow=workflow(after=job, dataset=dataset), consumer_address=address
                    ),
                )
                for job in (finished, running, nowhere)
                for address in claimed
            }
            assert len(set(answers.values())) == 1, answers
        # Without runAfter: neither the allow list nor the victim's free-tier usage shows.
        answers = {
            (dataset, address): answer(
                stub,
                compute_pb2.InitializeComputeRequest(
                    workflow=workflow(dataset=dataset), consumer_address=address
                ),
            )
            for dataset in (False, True)
            for address in claimed
        }
        assert len(set(answers.values())) == 1, answers
        reply = compute_pb2.InitializeComputeResponse.FromString(next(iter(answers.values())))
        assert not reply.consumer_checked

        # GetEnvironments carries nothing of any consumer.
        environments = stub.GetEnvironments(
            compute_pb2.GetEnvironmentsRequest(), timeout=30
        ).SerializeToString()
        for secret in (victim.signer[2:], finished, running):
            assert secret.encode() not in environments.lower()
            assert bytes.fromhex(secret) not in environments

    # Signed, the checks run for the signer: the victim's own finished job is found, and the
    # victim's free-tier usage counts ...
    reply = victim.initialize(workflow(after=finished))
    assert reply.consumer_checked and not reply.free_eligible  # the running job holds the one free slot
    with pytest.raises(C2DError) as refused:
        victim.initialize(workflow(after=nowhere))
    assert refused.value.code == "INVALID_ARGUMENT" and "unknown job" in str(refused.value)
    # ... while a stranger's signature finds nothing of the victim's (same answer as no job at all).
    with Client(node.address, auth.new_private_key()) as other:
        with pytest.raises(C2DError) as theirs:
            other.initialize(workflow(after=finished))
        with pytest.raises(C2DError) as none:
            other.initialize(workflow(after=nowhere))
        assert str(theirs.value).replace(finished, "") == str(none.value).replace(nowhere, "")
        with pytest.raises(C2DError) as listed:
            other.initialize(workflow(dataset=True))
        assert listed.value.code == "PERMISSION_DENIED"
        assert other.initialize(workflow()).free_eligible


MEMBERS = "members"


def test_an_environments_allow_list_shows_to_no_one(tmp_path: Path) -> None:
    """An allow list is the operator's: unsigned quotes answer alike for a member and a stranger,
    GetEnvironments says only that there is one, and only a member's signature starts there."""
    member_key = auth.new_private_key()
    member = auth.address_of(member_key)
    config = tmp_path / "node.toml"
    config.write_text(CONFIG.replace(f'"{ENV}"', f'"{MEMBERS}"') + f'allow = ["{member}"]\n')
    stranger_key = auth.new_private_key()
    members_workflow = as_workflow({"environment": MEMBERS, "stages": [stage("echo hi")]})
    with running_node(tmp_path / "node", config=config) as node:
        node.wait_environment(MEMBERS)
        with grpc.insecure_channel(node.address) as channel:
            stub = compute_pb2_grpc.ComputeServiceStub(channel)
            answers = {
                address: answer(
                    stub,
                    compute_pb2.InitializeComputeRequest(workflow=members_workflow, consumer_address=address),
                )
                for address in (member, auth.address_of(stranger_key), "")
            }
            assert len(set(answers.values())) == 1, answers
            reply = compute_pb2.InitializeComputeResponse.FromString(next(iter(answers.values())))
            assert not reply.consumer_checked
            environments = stub.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=30)
        (env,) = environments.environments
        assert env.free.access.allow_list and not env.free.access.access_lists
        wire = environments.SerializeToString()
        assert member[2:].lower().encode() not in wire.lower() and bytes.fromhex(member[2:]) not in wire
        with Client(node.address, stranger_key) as stranger:
            with pytest.raises(C2DError) as quoted:
                stranger.initialize(members_workflow)
            with pytest.raises(C2DError) as started:
                stranger.start(members_workflow, free=True)
            assert stranger.status(all=True) == []
        for refused in (quoted.value, started.value):
            assert refused.code == "PERMISSION_DENIED"
            assert "be on the environment's allow list" in refused.message and member not in refused.message
        with Client(node.address, member_key) as client:
            assert client.initialize(members_workflow).free_eligible
            (job,) = client.wait(client.start(members_workflow, free=True).workflow_id, timeout=120)
        assert job.status == S.JOB_STATUS_FINISHED, job.status_text
        node.settle()
