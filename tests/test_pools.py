"""Environments that share a machine share its hardware: one pool of CPUs, memory, disk and GPUs.

The node tests run the external_stub engine with two environments of 2 CPUs each on a pool of
2 CPUs (``pool_cpu = 2``): a stage that runs until the test stops it holds the pool, so whether
the other waits is never a matter of timing. The scheduler's own rules (the pool's totals, GPUs
granted once per pool, first come first served per pool, environments with no pool as before,
grants that concurrent passes cannot overcommit) are driven with explicit times through
``stages.schedule`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import auth
from c2d.cli.render import ENV_COLUMNS, env_row
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.orchestrator import capacity
from host.store import runner, stages
from host.store.db import open_database
from host.store.models import Stage
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV_A = "stub-pool-a"
ENV_B = "stub-pool-b"
CONFIG = f"""
[engines.external_stub]
enabled = true
pool_id = "test-machine"
pool_cpu = 2
pool_disk_gib = 3

[[engines.external_stub.environments]]
id = "{ENV_A}"
cpu = 2
ram_gib = 2
disk_gib = 4

[[engines.external_stub.environments]]
id = "{ENV_B}"
cpu = 2
ram_gib = 2
disk_gib = 4

[environments."{ENV_A}".free]
max_job_duration_seconds = 600
[environments."{ENV_B}".free]
max_job_duration_seconds = 600
"""


def workflow(env: str, script: str, **resources: float) -> dict[str, Any]:
    return {
        "environment": env,
        "maxJobDuration": 600,
        "resources": [{"id": rid, "amount": amount} for rid, amount in resources.items()],
        "stages": [
            {
                "index": 0,
                "algorithm": {
                    "rawcode": script,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        ],
    }


def job(client: Client, workflow_id: str) -> compute_pb2.JobInfo:
    return client.status(workflow_id=workflow_id)[0]


def listed(client: Client, env_id: str) -> common_pb2.Environment:
    return next(env for env in client.environments() if env.id == env_id)


def pool_resource(env: common_pb2.Environment, resource_id: str) -> common_pb2.Resource:
    return next(r for r in env.pool.resources if r.id == resource_id)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("pools")
    config = root / "node.toml"
    config.write_text(CONFIG)
    with running_node(root / "data", config=config) as node:
        node.wait_environment(ENV_A)
        node.wait_environment(ENV_B)
        yield node
        node.settle()


@pytest.fixture
def client(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client


# -- over gRPC, against a node with the stub engine --------------------------------------------


def test_get_environments_shows_both_environments_in_the_machines_pool(client: Client) -> None:
    a, b = listed(client, ENV_A), listed(client, ENV_B)
    assert a.pool.id == b.pool.id == "test-machine"
    cpu = pool_resource(a, "cpu")
    assert (cpu.total, cpu.in_use, cpu.available) == (2, 0, 2)
    assert pool_resource(a, "disk").total == 3
    # One job never gets more than the pool has: the environment's 4 GiB of disk is capped at 3.
    assert next(r for r in a.resources if r.id == "disk").max == 3
    with pytest.raises(C2DError) as refused:
        client.start(workflow(ENV_A, "true", disk=4), free=True)
    assert refused.value.code == "INVALID_ARGUMENT"
    assert "above the maximum of 3 GiB per job" in refused.value.message


def test_two_stages_in_two_environments_of_one_pool_run_one_after_the_other(client: Client) -> None:
    first = client.start(workflow(ENV_A, "sleep 600", cpu=2), free=True)
    wait_for(lambda: job(client, first.workflow_id).status == S.JOB_STATUS_RUNNING, 60, "the first running")
    second = client.start(workflow(ENV_B, "sleep 600", cpu=2), free=True)
    # Its own environment has all its CPUs free; the pool has none: it waits, and says why.
    env_b = wait_for(lambda: (e := listed(client, ENV_B)).queued_jobs and e, 30, "the second queued")
    assert next(r for r in env_b.resources if r.id == "cpu").available == 2
    cpu = pool_resource(env_b, "cpu")
    assert (cpu.total, cpu.in_use, cpu.available) == (2, 2, 0)
    assert job(client, second.workflow_id).status == S.JOB_STATUS_QUEUED
    row = dict(zip(ENV_COLUMNS, env_row(env_b), strict=True))
    assert row["pool"].startswith("test-machine: cpu 0/2 cores, "), row["pool"]
    client.stop(workflow_id=first.workflow_id)
    (stopped,) = client.wait(first.workflow_id, timeout=60)
    wait_for(lambda: job(client, second.workflow_id).status == S.JOB_STATUS_RUNNING, 60, "the second running")
    ran = job(client, second.workflow_id)
    # Granted only once the first had given the pool back.
    assert ran.started.ToNanoseconds() >= stopped.finished.ToNanoseconds()
    client.stop(workflow_id=second.workflow_id)
    client.wait(second.workflow_id, timeout=60)
    after = pool_resource(listed(client, ENV_A), "cpu")
    assert (after.in_use, after.available) == (0, 2)


# -- the scheduler's rules, at explicit times ---------------------------------------------------

ENGINE = "stub"
KINDS = {"cpu": common_pb2.RESOURCE_TYPE_CPU, "gpu": common_pb2.RESOURCE_TYPE_GPU}


def gpu_devices(*ids: str) -> list[common_pb2.Device]:
    return [common_pb2.Device(id=i, vendor="nvidia") for i in ids]


def environment(
    env_id: str, *, pool: common_pb2.Pool | None = None, cpu: float = 2, gpus: tuple[str, ...] = ()
) -> common_pb2.Environment:
    resources = [common_pb2.Resource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, total=cpu, max=cpu)]
    if gpus:
        resources.append(
            common_pb2.Resource(
                id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, total=len(gpus), devices=gpu_devices(*gpus)
            )
        )
    return common_pb2.Environment(id=env_id, engine=ENGINE, resources=resources, pool=pool)


def machine(cpu: float = 2, gpus: tuple[str, ...] = ()) -> common_pb2.Pool:
    resources = [common_pb2.Resource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, total=cpu)]
    if gpus:
        resources.append(
            common_pb2.Resource(
                id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, total=len(gpus), devices=gpu_devices(*gpus)
            )
        )
    return common_pb2.Pool(id="machine-1", resources=resources)


def terms(*envs: common_pb2.Environment) -> stages.Terms:
    return stages.Terms({(env.engine, env.id): env for env in envs}, 3600.0)


def queue(job_id: str, env_id: str, created_at: float, **resources: float) -> None:
    new = stages.NewStage(
        job_id=job_id,
        index=0,
        environment_id=env_id,
        engine=ENGINE,
        status=S.JOB_STATUS_QUEUED,
        spec={},
        run_after=[],
        resources=[{"id": rid, "type": KINDS[rid], "amount": amount} for rid, amount in resources.items()],
        max_duration_seconds=60,
        queue_limit_seconds=3600,
    )
    stages.store_workflow(stages.NewWorkflow(f"w-{job_id}", "0xabc", env_id, True, [], created_at, [new]))


def granted(scheduled: stages.Scheduled) -> list[str]:
    return [stage.job_id for stage in scheduled.granted]


def devices_of(job_id: str) -> list[str]:
    return [d for grant in Stage.get_by_id(job_id).granted or [] for d in grant["device_ids"]]


def test_the_stubs_pool_is_the_machine_unless_the_operator_offers_less() -> None:
    from c2d_external_stub.config import parse_config
    from c2d_external_stub.errors import EngineError
    from c2d_external_stub.machine import MachineSize

    size = MachineSize(cpu=4.0, ram_gib=8.0, disk_gib=20.0)
    measured = parse_config({"enabled": True}, size)
    assert (measured.pool_id, measured.pool_cpu, measured.pool_ram_gib, measured.pool_disk_gib) == (
        socket.gethostname(),
        4.0,
        8.0,
        20.0,
    )
    assert parse_config({"enabled": True, "pool_cpu": 2, "pool_id": "m"}, size).pool_cpu == 2.0
    with pytest.raises(EngineError) as bad:
        parse_config({"enabled": True, "pool_cpu": -1}, size)
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(bad.value.message) == "[engines.external_stub]: pool_cpu must be a positive number, got -1"


def test_the_pool_grants_its_cpus_once_across_environments(tmp_path: Path, store_url: str | None) -> None:
    open_database(tmp_path, store_url)
    view = terms(environment("a", pool=machine()), environment("b", pool=machine()))
    queue("in-a", "a", 1000.0, cpu=2)
    queue("in-b", "b", 1001.0, cpu=2)
    assert granted(stages.schedule(1002.0, view)) == ["in-a"]
    assert granted(stages.schedule(1003.0, view)) == []  # b's own CPUs are free; the pool's are not
    stages.end_stage("in-a", S.JOB_STATUS_FINISHED, "done", 1004.0, view)
    assert granted(stages.schedule(1005.0, view)) == ["in-b"]


def test_environments_without_a_pool_each_grant_their_own_capacity(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    view = terms(environment("a", gpus=("g0",)), environment("b", gpus=("g0",)))
    queue("in-a", "a", 1000.0, cpu=2, gpu=1)
    queue("in-b", "b", 1001.0, cpu=2, gpu=1)
    queue("more-a", "a", 1002.0, cpu=1)
    assert granted(stages.schedule(1003.0, view)) == ["in-a", "in-b"]
    assert devices_of("in-a") == devices_of("in-b") == ["g0"]  # as before: each environment its own


def test_a_gpu_of_the_pool_is_never_granted_to_two_environments(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    pool = machine(cpu=8, gpus=("g0", "g1"))
    view = terms(
        environment("a", pool=pool, cpu=8, gpus=("g0", "g1")),
        environment("b", pool=pool, cpu=8, gpus=("g0", "g1")),
    )
    queue("a1", "a", 1000.0, cpu=1, gpu=1)
    queue("b1", "b", 1001.0, cpu=1, gpu=1)
    queue("b2", "b", 1002.0, cpu=1, gpu=1)
    assert granted(stages.schedule(1003.0, view)) == ["a1", "b1"]
    assert (devices_of("a1"), devices_of("b1")) == (["g0"], ["g1"])
    stages.end_stage("a1", S.JOB_STATUS_FINISHED, "done", 1004.0, view)
    assert granted(stages.schedule(1005.0, view)) == ["b2"]
    assert devices_of("b2") == ["g0"]  # the one a1 gave back, not b1's


def test_nothing_younger_in_the_pool_overtakes_a_stage_the_pool_cannot_take_yet(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    pool = machine(cpu=3)
    small_a = environment("a", pool=pool, cpu=3)
    view = terms(small_a, environment("b", pool=pool, cpu=3), environment("c", cpu=3))
    queue("holder", "a", 1000.0, cpu=2)
    queue("big", "b", 1001.0, cpu=2)  # fits b, not the pool
    queue("small", "a", 1002.0, cpu=1)  # would fit the pool, but came later
    queue("elsewhere", "c", 1003.0, cpu=3)  # another machine: not held up
    assert granted(stages.schedule(1004.0, view)) == ["holder", "elsewhere"]
    stages.end_stage("holder", S.JOB_STATUS_FINISHED, "done", 1005.0, view)
    assert granted(stages.schedule(1006.0, view)) == ["big", "small"]


def test_a_stage_its_own_environment_cannot_take_holds_up_only_that_environment(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    pool = machine(cpu=4)
    view = terms(environment("a", pool=pool, cpu=1), environment("b", pool=pool, cpu=4))
    queue("holder", "a", 1000.0, cpu=1)
    queue("waits-for-a", "a", 1001.0, cpu=1)  # a is full, the pool is not
    queue("in-b", "b", 1002.0, cpu=3)
    assert granted(stages.schedule(1003.0, view)) == ["holder", "in-b"]


def test_concurrent_scheduling_passes_never_overcommit_the_pool(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    pool = machine(cpu=4)
    view = terms(environment("a", pool=pool, cpu=4), environment("b", pool=pool, cpu=4))
    for i in range(12):
        queue(f"s{i}", "ab"[i % 2], 1000.0 + i, cpu=1)

    async def passes() -> list[stages.Scheduled]:  # as the node runs them: units on the database thread
        return await asyncio.gather(*(runner.run(stages.schedule, 2000.0, view) for _ in range(6)))

    results = asyncio.run(passes())
    if store_url is None:  # and from threads of their own, each on its own SQLite connection
        threads = [threading.Thread(target=stages.schedule, args=(2001.0, view)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    runner.close()
    holding = [s for s in Stage.select() if s.granted is not None]
    assert len(holding) == 4 and sum(len(granted(r)) for r in results) == 4
    assert sorted(s.job_id for s in holding) == ["s0", "s1", "s2", "s3"]
    usage = capacity.pool_usage(capacity.pool_members(view.environments.values()))
    assert usage[(ENGINE, "machine-1")].amounts["cpu"] == 4


def test_the_docker_pool_has_every_gpu_found_and_every_gpu_an_environment_names() -> None:
    from c2d_docker_engine import config as docker_config
    from c2d_docker_engine import fingerprint as docker_fingerprint
    from c2d_docker_engine.gpus import Gpu

    found = (Gpu(id="GPU-aaa", index="0", vendor="nvidia"),)
    size = docker_config.MachineSize(cpu=4, ram_gib=16, disk_gib=50, gpus=found, pool_id="daemon-id")
    settings = docker_config.parse_settings(
        {"environments": [{"id": "a", "gpus": ["0"]}, {"id": "b", "cpu": 1, "gpus": ["GPU-named"]}]}
    )
    envs = docker_config.resolve(settings, size)
    pool = docker_fingerprint.pool(size, envs)
    assert pool.id == "daemon-id"
    totals = {r.id: r for r in pool.resources}
    assert {k: r.total for k, r in totals.items()} == {"cpu": 4, "ram": 16, "disk": 50, "gpu": 2}
    assert [d.id for d in totals["gpu"].devices] == ["GPU-aaa", "GPU-named"]
