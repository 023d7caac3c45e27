"""The plugin process and its non-job calls: handshake, plugin info, Configure, fingerprint, Drain.

See docs/engine-plugins.md, "The process protocol" and "Semantics every engine keeps".
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from c2d.common.v1 import common_pb2
from c2d.conformance.harness import (
    PLUGIN_START_TIMEOUT,
    EngineFactory,
    EngineProcess,
    EventLoopThread,
    Status,
    Target,
    describe,
    expect_rpc_error,
    new_job_id,
    resource,
    rpc_error_text,
)
from c2d.conformance.plugin import FreshEngine
from c2d.engine.v1 import engine_pb2
from c2d.plugin import launcher


def test_plugin_info_names_the_engine(engine: EngineProcess, target: Target) -> None:
    info = engine.plugin_info()
    assert info.name == target.name, (
        f"GetPluginInfo.name is {info.name!r}, but the engine is registered as {target.name!r}: "
        "the plugin must report the name its EngineSpec registers"
    )


def test_plugin_info_lists_the_negotiated_version(engine: EngineProcess) -> None:
    info = engine.plugin_info()
    assert engine.api_version in info.api_versions, (
        f"the handshake line chose engine API version {engine.api_version}, but GetPluginInfo.api_versions "
        f"is {list(info.api_versions)}: a plugin must list every version it may choose"
    )


def test_configure_twice_is_fine(engine: EngineProcess) -> None:
    """The node configures again after every plugin restart, and may repeat itself."""
    engine.configure()
    engine.configure()
    assert engine.fingerprint().health == common_pb2.ENGINE_HEALTH_HEALTHY, (
        "after a repeated Configure with the same config the engine must stay HEALTHY"
    )


def test_fingerprint_arrives_at_once_and_is_healthy(engine: EngineProcess) -> None:
    started = time.monotonic()
    fingerprint = engine.fingerprint()
    took = time.monotonic() - started
    assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY, (
        f"a configured engine must report ENGINE_HEALTH_HEALTHY, got "
        f"{common_pb2.EngineHealth.Name(fingerprint.health)} ({fingerprint.health_description!r})"
    )
    assert took < 10.0, f"WatchFingerprint's first message took {took:.1f}s; it must come at once"


def test_fingerprint_environments(engine: EngineProcess) -> None:
    fingerprint = engine.fingerprint()
    envs = list(fingerprint.environments)
    assert envs, "the fingerprint must list at least one environment for a HEALTHY engine"
    ids = [env.id for env in envs]
    assert all(ids), f"every environment needs a non-empty id, got ids {ids}"
    assert len(set(ids)) == len(ids), f"environment ids must be unique, got {ids}"

    def usable(env: common_pb2.Environment) -> bool:
        cpu = resource(env, common_pb2.RESOURCE_TYPE_CPU)
        ram = resource(env, common_pb2.RESOURCE_TYPE_RAM)
        return cpu is not None and cpu.total > 0 and ram is not None and ram.total > 0

    summary = {
        env.id: [(r.id, common_pb2.ResourceType.Name(r.type), r.total) for r in env.resources] for env in envs
    }
    assert any(usable(env) for env in envs), (
        "at least one environment must offer a RESOURCE_TYPE_CPU and a RESOURCE_TYPE_RAM resource with "
        f"total > 0 (the node grants cpu and ram by type); got {summary}"
    )


def test_fingerprint_pools_are_reported_alike_and_hold_their_environments(engine: EngineProcess) -> None:
    """Environments sharing hardware name one pool: the node grants from its totals, so every
    environment must report it alike, with every GPU it offers and room for one job's minimum."""
    pools: dict[str, common_pb2.Pool] = {}
    for env in engine.fingerprint().environments:
        if not env.HasField("pool") or not env.pool.id:
            continue  # no pool: bounded by its own resources only
        first = pools.setdefault(env.pool.id, env.pool)
        assert env.pool == first, (
            f"environment {env.id!r} reports pool {env.pool.id!r} unlike another environment of it: "
            f"{list(env.pool.resources)} against {list(first.resources)}"
        )
        totals = {r.id: r for r in env.pool.resources}
        for shared in env.pool.resources:
            assert math.isfinite(shared.total) and shared.total >= 0, (
                f"pool {env.pool.id!r} has {shared.id} total {shared.total}: totals are finite and >= 0"
            )
        for own in env.resources:
            if own.id not in totals:
                continue
            assert own.min <= totals[own.id].total, (
                f"environment {env.id!r} asks one job for at least {own.min:g} {own.id}, more than its "
                f"pool {env.pool.id!r} has in all ({totals[own.id].total:g}): no job of it could ever run"
            )
            missing = {d.id for d in own.devices} - {d.id for d in totals[own.id].devices}
            assert not missing, (
                f"environment {env.id!r} offers devices {sorted(missing)} that its pool {env.pool.id!r} lacks"
            )


@pytest.fixture(scope="module")
def unconfigured(engines: EngineFactory) -> Iterator[EngineProcess]:
    """A plugin process that is never configured."""
    process = engines.start(configure=False)
    yield process
    engines.close([process])


def _before_configure_calls(
    unconfigured: EngineProcess, env_id: str, image: str, tag: str
) -> dict[str, Callable[[], Any]]:
    stub = unconfigured.stub
    job_id = new_job_id()
    spec = engine_pb2.JobSpec(
        job_id=job_id,
        environment_id=env_id,
        container=engine_pb2.Container(image=image, tag=tag, command="echo hello"),
    )
    unconfigured.jobs.add(job_id)
    t = 10.0
    return {
        "StartJob": lambda: stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=t),
        "RecoverJob": lambda: stub.RecoverJob(
            engine_pb2.RecoverJobRequest(handle=engine_pb2.JobHandle(job_id=job_id, version=1)), timeout=t
        ),
        "WatchJob": lambda: list(stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id), timeout=t)),
        "StopJob": lambda: stub.StopJob(engine_pb2.StopJobRequest(job_id=job_id), timeout=t),
        "DestroyJob": lambda: stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id=job_id), timeout=t),
        "ListJobs": lambda: stub.ListJobs(engine_pb2.ListJobsRequest(), timeout=t),
        "StreamJobLogs": lambda: list(
            stub.StreamJobLogs(engine_pb2.StreamJobLogsRequest(job_id=job_id), timeout=t)
        ),
    }


@pytest.mark.parametrize(
    "call", ["StartJob", "RecoverJob", "WatchJob", "StopJob", "DestroyJob", "ListJobs", "StreamJobLogs"]
)
def test_job_calls_before_configure_fail_precondition(
    call: str, unconfigured: EngineProcess, engine: EngineProcess, target: Target
) -> None:
    """Configure comes first: the engine has no config, host id or state dir before it."""
    calls = _before_configure_calls(unconfigured, engine.environment().id, target.image, target.tag)
    if call == "StreamJobLogs" and not engine.fingerprint().capabilities.log_streaming:
        # An engine without log streaming need not implement the call at all.
        try:
            calls[call]()
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION):
                return
            raise AssertionError(
                f"StreamJobLogs before Configure must fail with FAILED_PRECONDITION (or UNIMPLEMENTED "
                f"without log streaming), but it failed with {rpc_error_text(exc)}"
            ) from None
        raise AssertionError("StreamJobLogs before Configure must fail with FAILED_PRECONDITION")
    expect_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"{call} before Configure", calls[call])


def test_drain_refuses_new_jobs_and_lets_running_ones_finish(fresh_engine: FreshEngine) -> None:
    """Draining is permanent for the process, so it gets one of its own."""
    process = fresh_engine()
    spec, _ = process.run("sleep 1; echo drained")
    process.stub.Drain(engine_pb2.DrainRequest(), timeout=30.0)
    refused = process.job_spec("echo too late")
    process.jobs.add(refused.job_id)
    expect_rpc_error(
        grpc.StatusCode.UNAVAILABLE,
        "StartJob after Drain",
        lambda: process.stub.StartJob(engine_pb2.StartJobRequest(spec=refused), timeout=30.0),
    )
    events = process.watch(spec.job_id).events
    assert events and events[-1].status == Status.JOB_STATUS_FINISHED, (
        f"a job running when Drain came must go on to FINISHED; its events: {describe(events)}"
    )


def test_plugin_exits_on_sigterm(fresh_engine: FreshEngine) -> None:
    """The node stops a plugin with SIGTERM to its pid; it must exit by itself."""
    process = fresh_engine()
    os.kill(process.pid, signal.SIGTERM)
    limit = 15.0
    try:
        process.loop.run(process.plugin.process.wait(), limit)
    except TimeoutError:
        pytest.fail(f"the plugin was still running {limit:g}s after SIGTERM to its pid {process.pid}")


def test_plugin_without_a_common_version_exits_1(target: Target, engine_loop: EventLoopThread) -> None:
    """Offered only versions it cannot speak, a plugin says so on stderr and exits with status 1."""

    async def attempt() -> tuple[int | None, bytes, str]:
        plugin = await launcher.spawn(target.name, target.spec.argv, versions=[9999])
        plugin.stderr_task = asyncio.ensure_future(launcher.pump_stderr(plugin, None))
        try:
            assert plugin.process.stdout is not None
            out = await asyncio.wait_for(plugin.process.stdout.read(), PLUGIN_START_TIMEOUT)
            code = await asyncio.wait_for(plugin.process.wait(), 5.0)
            await asyncio.sleep(0.1)
            return code, out, plugin.stderr_text()
        finally:
            await plugin.terminate(1.0)

    code, out, stderr = engine_loop.run(attempt(), PLUGIN_START_TIMEOUT + 15.0)
    assert code == 1, (
        f"offered only engine API version 9999, the plugin must exit with status 1; it exited with {code}, "
        f"stdout {out[:200]!r}, stderr:\n{stderr}"
    )
    assert not out.strip(), (
        f"a plugin that refuses the versions must print no handshake line, printed {out!r}"
    )


def test_stdout_carries_only_the_handshake(engine: EngineProcess, hello_job: object) -> None:
    """The node reads one line of stdout; anything more is a protocol violation."""
    assert not engine.extra_stdout, (
        f"the plugin wrote to stdout after its handshake line (logs go to stderr): {engine.extra_stdout[:5]}"
    )
