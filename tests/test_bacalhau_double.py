"""The Bacalhau orchestrator double (tests/bacalhau_double) driven by the official client only.

These tests pin what the Bacalhau engine's tests rely on: v1.9's REST shapes and encodings as
``bacalhau_apiclient`` 1.4.1 decodes them (string job states, integer execution states, the
error body), and tasks really running in Docker with their mounts, limits, network, labels,
timeouts and results. The double's ``wait_for_job`` (woken by its state changes) is the only
synchronisation; what is asserted is read back through the client.
"""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bacalhau_apiclient as bac  # type: ignore[import-untyped]
import pytest
from bacalhau_apiclient.rest import ApiException  # type: ignore[import-untyped]
from bacalhau_double import BacalhauDouble, ExecutionState, Resources, start_double

BUSYBOX = "c2d-test-busybox:1"
TOKEN = "s3cret-token"


def _client(url: str, token: str | None = None) -> bac.ApiClient:
    configuration = bac.Configuration()
    configuration.host = url
    if token is None:
        return bac.ApiClient(configuration)
    return bac.ApiClient(configuration, header_name="Authorization", header_value=f"Bearer {token}")


@pytest.fixture
def api(bacalhau_api: BacalhauDouble) -> Iterator[bac.OrchestratorApi]:
    client = _client(bacalhau_api.url)
    yield bac.OrchestratorApi(client)
    client.rest_client.pool_manager.clear()


def job(
    script: str,
    *,
    name: str = "",
    image: str = BUSYBOX,
    inputs: list[tuple[str, str, bool]] = (),  # type: ignore[assignment]
    network: str = "None",
    cpu: str = "0.5",
    memory: str = "64mb",
    timeout: int = 60,
    queue_timeout: int = 0,
    total_timeout: int = 0,
    labels: dict[str, str] | None = None,
    constraints: list[bac.LabelSelectorRequirement] | None = None,
    publisher: str = "local",
    env: dict[str, str] | None = None,
) -> bac.Job:
    """A batch job of one busybox ``sh -c script`` task, as the engine builds them."""
    sources = [
        bac.InputSource(
            source=bac.SpecConfig(type="localDirectory", params={"SourcePath": path, "ReadWrite": rw}),
            target=target,
        )
        for path, target, rw in inputs
    ]
    task = bac.Task(
        name="main",
        engine=bac.SpecConfig(
            type="docker",
            params={
                "Image": image,
                "Entrypoint": ["sh", "-c"],
                "Parameters": [script],
                "EnvironmentVariables": [f"{k}={v}" for k, v in (env or {}).items()],
                "WorkingDirectory": "/",
            },
        ),
        input_sources=sources,
        publisher=bac.SpecConfig(type=publisher) if publisher else None,
        result_paths=[bac.ResultPath(name="outputs", path="/outputs")] if publisher else None,
        network=bac.NetworkConfig(type=network),
        resources=bac.ResourcesConfig(cpu=cpu, memory=memory, disk="1gb", gpu="0"),
        timeouts=bac.TimeoutConfig(
            execution_timeout=timeout,
            queue_timeout=queue_timeout or None,
            total_timeout=total_timeout or None,
        ),
    )
    return bac.Job(
        type="batch",
        count=1,
        name=name or None,
        labels={"c2d-node": "node-1", "c2d-job": "job-1", **(labels or {})},
        constraints=constraints,
        tasks=[task],
    )


def submit(api: bac.OrchestratorApi, spec: bac.Job, token: str | None = None) -> str:
    response = api.orchestratorput_job(bac.ApiPutJobRequest(job=spec, idempotency_token=token))
    assert response.job_id.startswith("j-")
    return str(response.job_id)


def finished(double: BacalhauDouble, api: bac.OrchestratorApi, job_id: str) -> Any:
    """Wait for a terminal job state, then read the job with its executions and history."""
    double.wait_for_job(job_id)
    return api.orchestratorget_job(job_id, include="executions,history")


def error_body(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


# agent and nodes ---------------------------------------------------------------------------------


def test_agent_answers_alive_and_v1_9_version(bacalhau_api: BacalhauDouble) -> None:
    ops = bac.OpsApi(_client(bacalhau_api.url))
    assert ops.agentalive() == str({"Status": "OK"})  # the client types the body as str
    version = ops.agentversion()
    assert version.git_version == "v1.9.3"
    assert (version.major, version.minor, version.goos) == ("1", "9", "linux")


def test_nodes_list_has_v1_9_shape_with_capacity_and_labels(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    # v1.9 answers "Nodes"; client 1.4.1 looks for "nodes", so its typed result is empty: read the JSON.
    assert api.orchestratorlist_nodes().nodes is None
    raw = json.loads(api.orchestratorlist_nodes(_preload_content=False).data)
    (node,) = raw["Nodes"]
    info = node["Info"]
    assert info["NodeType"] == "Compute" and info["NodeID"].startswith("n-")
    assert info["Labels"]["c2d-node"] == "double"
    assert (info["Labels"]["os_type"], info["Labels"]["name"]) == ("linux", info["NodeID"])  # v1.9's own
    compute = info["ComputeNodeInfo"]
    assert compute["MaxCapacity"] == {"CPU": 4.0, "Memory": 8 * 1024**3, "Disk": 20 * 1024**3}
    assert compute["AvailableCapacity"] == compute["MaxCapacity"]
    assert compute["ExecutionEngines"] == ["docker"]
    assert (node["Membership"], node["Connection"]) == ("APPROVED", "CONNECTED")
    one = json.loads(api.orchestratorget_node(info["NodeID"], _preload_content=False).data)
    assert one["Node"]["Info"]["NodeID"] == info["NodeID"]


# the happy path ----------------------------------------------------------------------------------


def test_job_writing_into_its_local_directory_completes_with_run_output(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi, bacalhau_allowed_dir: Path
) -> None:
    workdir = bacalhau_allowed_dir / "job-1"
    workdir.mkdir()
    script = "echo result > /data/out.txt && echo to-results > /outputs/r.txt && echo hello && echo warn >&2"
    job_id = submit(api, job(script, name="c2d-job-1-algo", inputs=[(str(workdir), "/data", True)]))

    got = finished(bacalhau_api, api, job_id)
    assert got.job.state.state_type == "Completed"
    assert got.job.name == "c2d-job-1-algo"
    assert got.job.labels == {"c2d-node": "node-1", "c2d-job": "job-1"}
    (execution,) = got.executions.items
    assert execution.compute_state.state_type == 9  # ExecutionState.COMPLETED: an integer on the wire
    assert (
        execution.desired_state.state_type == 2 and execution.desired_state.message == "execution completed"
    )
    out = execution.run_output
    assert (out.exit_code, out.stdout, out.stderr, out.error_msg) == (0, "hello\n", "warn\n", "")
    assert (workdir / "out.txt").read_text() == "result\n"
    events = [(h.type, h.event.topic, h.event.message) for h in got.history.items]
    assert events == [
        ("JobLevel", "Submission", "Job submitted"),
        ("ExecutionLevel", "Scheduling", f"Requested execution on {execution.node_id[:10]}"),
        ("ExecutionLevel", "Execution", "Running"),
        ("JobLevel", "State Update", "Running"),
        ("ExecutionLevel", "Execution", "Completed successfully"),
        ("JobLevel", "State Update", "Completed"),
    ]
    (published,) = api.orchestratorjob_results(job_id).items
    assert published.type == "urlDownload"
    with urllib.request.urlopen(published.params["URL"], timeout=30) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert files == {
        "stdout": b"hello\n",
        "stderr": b"warn\n",
        "exitCode": b"0",
        "outputs/r.txt": b"to-results\n",
    }
    assert bacalhau_api.containers() == []  # removed once the execution ended


def test_job_is_found_by_name_and_short_id(bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi) -> None:
    job_id = submit(api, job("true", name="c2d-by-name"))
    bacalhau_api.wait_for_job(job_id)
    assert api.orchestratorget_job("c2d-by-name").job.id == job_id
    assert api.orchestratorget_job(job_id[:10]).job.id == job_id
    executions = api.orchestratorjob_executions("c2d-by-name", "created_at").items
    assert [e.job_id for e in executions] == [job_id]
    history = api.orchestratorjob_history(job_id, event_type="job").items
    assert {h.type for h in history} == {"JobLevel"}


def test_container_has_the_tasks_resources_network_env_labels_and_mounts(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi, bacalhau_allowed_dir: Path
) -> None:
    readonly = bacalhau_allowed_dir / "in"
    readonly.mkdir()
    spec = job(
        "sleep 300", inputs=[(str(readonly), "/in", False)], cpu="0.25", memory="128mb", env={"MODE": "x"}
    )
    job_id = submit(api, spec)
    container = bacalhau_api.wait_for_container(job_id)
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 250_000_000
    assert host["Memory"] == 128 * 1000**2  # "128mb" is SI megabytes, as go-humanize reads it
    assert host["NetworkMode"] == "none"
    (execution,) = api.orchestratorjob_executions(job_id, "created_at").items
    assert execution.compute_state.state_type == ExecutionState.BID_ACCEPTED  # v1.9 never shows Running (6)
    assert container.labels["bacalhau-executor"] == bacalhau_api.instance_id
    assert container.labels["bacalhau-jobID"] == bacalhau_api.instance_id + job_id
    assert container.labels["bacalhau-executionID"] == bacalhau_api.instance_id + execution.id
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert (
        env["MODE"] == "x"
        and env["BACALHAU_JOB_ID"] == job_id
        and env["BACALHAU_EXECUTION_ID"] == execution.id
    )
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/in"]["Source"] == str(readonly) and mounts["/in"]["RW"] is False
    assert mounts["/outputs"]["RW"] is True
    api.orchestratorstop_job(job_id, reason="test over")
    bacalhau_api.wait_for_job(job_id)


def test_cpus_beyond_the_machine_are_capped_for_docker(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi, docker_client: Any
) -> None:
    job_id = submit(api, job("sleep 300", cpu="4"))  # the node's whole nominal capacity
    container = bacalhau_api.wait_for_container(job_id)
    machine = docker_client.info()["NCPU"]
    assert container.attrs["HostConfig"]["NanoCpus"] == min(4, machine) * 1_000_000_000
    api.orchestratorstop_job(job_id, reason="test over")
    bacalhau_api.wait_for_job(job_id)


def test_host_network_for_full(bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi) -> None:
    job_id = submit(api, job("sleep 300", network="Full"))
    container = bacalhau_api.wait_for_container(job_id)
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    api.orchestratorstop_job(job_id, reason="test over")
    bacalhau_api.wait_for_job(job_id)


# failures ----------------------------------------------------------------------------------------


def test_nonzero_exit_completes_with_its_exit_code(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    # Bacalhau only fails a job on a system error: the user's exit code is reported, not judged.
    got = finished(bacalhau_api, api, submit(api, job("echo oops >&2; exit 3")))
    assert got.job.state.state_type == "Completed"
    (execution,) = got.executions.items
    assert execution.compute_state.state_type == ExecutionState.COMPLETED
    assert (execution.run_output.exit_code, execution.run_output.stderr) == (3, "oops\n")


def test_system_failure_is_retried_once_then_fails_the_job(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    got = finished(bacalhau_api, api, submit(api, job("true", image="c2d-no-such-image:1")))
    assert got.job.state.state_type == "Failed"
    node = got.executions.items[0].node_id[:10]
    assert got.job.state.message == (
        "not enough nodes to run job. requested: 1, available: 1, suitable: 0."
        f"\n• Node {node}: job already executed on this node more than once"
    )
    assert len(got.executions.items) == 2  # v1.9 retries once on the node that failed
    for execution in got.executions.items:
        assert execution.compute_state.state_type == 10  # ExecutionState.FAILED
        assert "c2d-no-such-image:1" in execution.compute_state.message
        assert execution.desired_state.message == "execution failed"


def test_execution_timeout_kills_the_container_and_fails(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    got = finished(bacalhau_api, api, submit(api, job("sleep 300", timeout=1)))
    assert got.job.state.state_type == "Failed"
    messages = [e.compute_state.message for e in got.executions.items]
    assert messages == ["Execution timed out after 1s", "Execution timed out after 1s"]
    topics = {h.event.topic for h in got.history.items if h.event.message == "Execution timed out after 1s"}
    assert topics == {"Running Execution"}
    assert bacalhau_api.containers() == []


def test_path_outside_the_allow_list_is_refused(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi, tmp_path: Path, bacalhau_allowed_dir: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    sneaky = f"{bacalhau_allowed_dir}/../outside"
    for path in (str(outside), sneaky):
        got = finished(
            bacalhau_api, api, submit(api, job("echo x > /data/f", inputs=[(path, "/data", True)]))
        )
        assert got.job.state.state_type == "Failed"
        execution = got.executions.items[0]
        assert (
            execution.compute_state.message
            == f"calculating resource usage of job: volume {path} is not allowlisted"
        )
        scanning = [h.event for h in got.history.items if h.event.topic == "Exec Scanning"]
        assert scanning[0].details["Hint"] == "Verify Compute.AllowListedLocalPaths configuration property"
    assert list(outside.iterdir()) == []


def test_read_write_on_a_read_only_allow_entry_is_refused(docker_client: Any, tmp_path: Path) -> None:
    started = start_double(docker_client, allowed_paths=[f"{tmp_path}/**:ro"])
    try:
        api = bac.OrchestratorApi(_client(started.url))
        job_id = submit(api, job("true", inputs=[(str(tmp_path), "/data", True)]))
        got = finished(started.double, api, job_id)
        message = got.executions.items[0].compute_state.message
        assert message == f"calculating resource usage of job: volume {tmp_path} is not granted write access"
        reading = finished(
            started.double, api, submit(api, job("ls /data", inputs=[(str(tmp_path), "/data", False)]))
        )
        assert reading.job.state.state_type == "Completed"
    finally:
        started.stop()


def test_job_no_node_can_take_fails_with_the_reason(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    too_big = finished(bacalhau_api, api, submit(api, job("true", cpu="64")))
    assert too_big.job.state.state_type == "Failed"
    assert too_big.job.state.message.endswith("job requires more CPU (64) than the maximum available (4)")
    assert too_big.executions.items == []
    pinned = job(
        "true", constraints=[bac.LabelSelectorRequirement(key="c2d-node", operator="=", values=["other"])]
    )
    elsewhere = finished(bacalhau_api, api, submit(api, pinned))
    assert elsewhere.job.state.state_type == "Failed"
    assert "don't match required selectors" in elsewhere.job.state.message
    two = job("true")
    two.count = 2
    twice = finished(bacalhau_api, api, submit(api, two))
    assert twice.job.state.message.startswith(
        "not enough nodes to run job. requested: 2, available: 1, suitable: 1."
    )
    assert twice.executions.items == []


def test_a_job_no_node_fits_is_queued_until_its_queue_timeout(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    waiting = submit(api, job("true", cpu="64", queue_timeout=3600))
    queued = api.orchestratorget_job(waiting, include="history")
    assert queued.job.state.state_type == "Queued"
    assert queued.job.state.message.startswith(
        "not enough nodes to run job. requested: 1, available: 1, suitable: 0."
    )
    assert queued.history.items[-1].event.topic == "Queueing"
    api.orchestratorstop_job(waiting, reason="gave up")
    assert bacalhau_api.wait_for_job(waiting).state.value == "Stopped"

    expiring = submit(api, job("true", cpu="64", queue_timeout=1))
    got = finished(bacalhau_api, api, expiring)
    assert got.job.state.state_type == "Failed"
    assert got.job.state.message.startswith("not enough nodes to run job.")
    assert got.history.items[-1].event.topic == "Scheduling"
    assert got.executions.items == []


# stop, re-submission, listing --------------------------------------------------------------------


def test_stop_cancels_the_running_execution_and_is_idempotent(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    job_id = submit(api, job("sleep 300"))
    bacalhau_api.wait_for_container(job_id)
    assert api.orchestratorstop_job(job_id, reason="consumer asked").evaluation_id
    got = finished(bacalhau_api, api, job_id)
    assert (got.job.state.state_type, got.job.state.message) == ("Stopped", "consumer asked")
    (execution,) = got.executions.items
    assert execution.compute_state.state_type == 11  # ExecutionState.CANCELLED
    assert execution.desired_state.state_type == 2
    assert any(h.event.details == {"Reason": "consumer asked"} for h in got.history.items)
    assert api.orchestratorstop_job(job_id, reason="again").evaluation_id == ""
    bacalhau_api.wait_for(lambda: bacalhau_api.containers() == [], what="the container removed")


def test_stopping_a_completed_job_is_an_error(bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi) -> None:
    job_id = submit(api, job("true"))
    bacalhau_api.wait_for_job(job_id)
    with pytest.raises(ApiException) as caught:
        api.orchestratorstop_job(job_id, reason="late")
    assert caught.value.status == 500
    assert error_body(caught.value)["Message"] == "cannot stop job in state Completed"


def test_resubmitting_the_same_named_job_starts_nothing(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    spec = job("true", name="c2d-job-7-algo")
    job_id = submit(api, spec, token="tok-1")
    bacalhau_api.wait_for_job(job_id)
    with pytest.raises(ApiException) as caught:
        submit(api, spec, token="tok-1")
    body = error_body(caught.value)
    assert caught.value.status == 500
    assert (
        body["Message"]
        == f"no changes detected for new job spec. Job Name: 'c2d-job-7-algo', Job Id: '{job_id}'"
    )
    assert body["Hint"] == "Use the --force flag to override this warning"
    assert len(api.orchestratorjob_executions(job_id, "created_at").items) == 1
    # the idempotency token is ignored, as in v1.9: a new unnamed job is a new job
    assert submit(api, job("true"), token="tok-1") != job_id


def test_resubmitting_a_name_with_a_new_spec_updates_the_job(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi
) -> None:
    job_id = submit(api, job("sleep 300", name="c2d-updated"))
    bacalhau_api.wait_for_container(job_id)
    assert submit(api, job("echo v2", name="c2d-updated")) == job_id
    got = finished(bacalhau_api, api, job_id)
    assert (got.job.state.state_type, got.job.version) == ("Completed", 2)
    assert [e.run_output.stdout for e in got.executions.items] == ["v2\n"]
    every = api.orchestratorjob_executions(job_id, "created_at", _preload_content=False)
    assert len(json.loads(every.data)["Items"]) == 1  # the current version's only
    first = [e for e in bacalhau_api.executions(job_id) if e.job_version == 1]
    assert first[0].compute_state == ExecutionState.CANCELLED


def test_jobs_are_listed_by_label_selector(bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi) -> None:
    first = submit(api, job("true", labels={"c2d-job": "a"}))
    second = submit(api, job("true", labels={"c2d-job": "b"}))
    client = api.api_client

    def listed(*selectors: str) -> list[str]:
        response = client.call_api(
            "/api/v1/orchestrator/jobs",
            "GET",
            query_params=[("labels", s) for s in selectors],
            response_type="ApiListJobsResponse",
            _return_http_data_only=True,
        )
        return [item.id for item in response.items]

    assert listed("c2d-job=a") == [first]
    assert listed("c2d-node=node-1", "c2d-job in (a, b)") == [first, second]
    assert listed("c2d-job!=a") == [second]
    assert listed("missing") == []
    assert [j.id for j in api.orchestratorlist_jobs().items] == [first, second]
    page = api.orchestratorlist_jobs(limit=1)
    assert [j.id for j in page.items] == [first] and page.next_token
    assert [j.id for j in api.orchestratorlist_jobs(limit=1, next_token=page.next_token).items] == [second]


# errors and availability -------------------------------------------------------------------------


def test_unknown_job_answers_bacalhaus_404(api: bac.OrchestratorApi) -> None:
    with pytest.raises(ApiException) as caught:
        api.orchestratorget_job("j-00000000-0000-0000-0000-000000000000")
    assert caught.value.status == 404
    assert error_body(caught.value) == {
        "Status": 404,
        "Message": "job not found: j-00000000-0000-0000-0000-000000000000",
        "RequestID": "",
        "Code": "NotFound",
        "Component": "JobStore",
    }
    with pytest.raises(ApiException) as stop:
        api.orchestratorstop_job("nope")
    assert stop.value.status == 404


def test_invalid_job_answers_400(api: bac.OrchestratorApi) -> None:
    spec = job("true")
    spec.type = None
    with pytest.raises(ApiException) as caught:
        api.orchestratorput_job(bac.ApiPutJobRequest(job=spec))
    assert caught.value.status == 400
    assert error_body(caught.value)["Message"] == "missing job type"
    orphan_results = job("true", publisher="")
    orphan_results.tasks[0].result_paths = [bac.ResultPath(name="outputs", path="/outputs")]
    with pytest.raises(ApiException) as store:
        api.orchestratorput_job(bac.ApiPutJobRequest(job=orphan_results))
    assert (store.value.status, error_body(store.value)["Component"]) == (400, "JobStore")
    assert (
        error_body(store.value)["Message"]
        == "task main validation failed: publisher must be set if result paths are set"
    )
    bad_memory = job("true", memory="lots")
    with pytest.raises(ApiException) as memory:
        api.orchestratorput_job(bac.ApiPutJobRequest(job=bad_memory))
    assert "invalid memory value: lots" in error_body(memory.value)["Message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not a job", "empty/nil job"),
        (
            {"Job": ["a", "list"]},
            "json: cannot unmarshal into Go struct field PutJobRequest.Job of type models.Job",
        ),
        ({"Job": {"Type": "batch"}}, "missing job tasks"),
        (
            {
                "Job": {
                    "Type": "batch",
                    "Tasks": [
                        {"Name": "t", "Engine": {"Type": "docker"}, "Timeouts": {"ExecutionTimeout": 1e30}}
                    ],
                }
            },
            "json: cannot unmarshal 1e+30 into Go struct field TimeoutConfig.ExecutionTimeout of type int64",
        ),
        (
            {
                "Job": {
                    "Type": "batch",
                    "Tasks": [{"Name": "t", "Engine": {"Type": "docker"}, "Network": {"Type": "Mesh"}}],
                }
            },
            "models.Network: unknown type 'Mesh'",
        ),
        (
            {
                "Job": {
                    "Type": "batch",
                    "Tasks": [{"Name": "t", "Engine": {"Type": "docker"}, "Env": {"BACALHAU_X": "1"}}],
                }
            },
            "environment variable 'BACALHAU_X' cannot start with BACALHAU_",
        ),
    ],
)
def test_hostile_bodies_answer_400_and_create_nothing(
    bacalhau_api: BacalhauDouble, api: bac.OrchestratorApi, body: Any, message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        api.api_client.call_api(
            "/api/v1/orchestrator/jobs", "PUT", body=body, response_type="ApiPutJobResponse"
        )
    assert caught.value.status == 400
    assert message in error_body(caught.value)["Message"]
    assert api.orchestratorlist_jobs().items == []


def test_auth_refuses_a_missing_or_wrong_token(docker_client: Any) -> None:
    started = start_double(docker_client, token=TOKEN)
    try:
        for client, reason in (
            (_client(started.url), "Missing Authorization header"),
            (_client(started.url, "wrong"), "invalid API key"),
        ):
            with pytest.raises(ApiException) as caught:
                bac.OrchestratorApi(client).orchestratorlist_jobs()
            assert caught.value.status == 401
            body = error_body(caught.value)
            assert (body["Code"], body["Component"], body["Message"]) == (
                "Unauthorized",
                "Authorizer",
                "Request Unauthorized",
            )
            assert body["Details"] == {"reason": reason}
            assert bac.OpsApi(client).agentversion().git_version == "v1.9.3"  # open, as in v1.9
        assert bac.OrchestratorApi(_client(started.url, TOKEN)).orchestratorlist_jobs().items == []
    finally:
        started.stop()


def test_suspended_double_refuses_connections_until_resumed(bacalhau_api: BacalhauDouble) -> None:
    import urllib3

    ops = bac.OpsApi(_client(bacalhau_api.url))
    assert ops.agentalive()
    bacalhau_api.suspend()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as refused:
        ops.agentalive(_request_timeout=5)
    assert isinstance(refused.value.reason, urllib3.exceptions.NewConnectionError)
    bacalhau_api.resume()
    assert bac.OpsApi(_client(bacalhau_api.url)).agentalive()


def test_a_hanging_double_accepts_but_never_answers(bacalhau_api: BacalhauDouble) -> None:
    import urllib3

    bacalhau_api.suspend(mode="hang")
    client = _client(bacalhau_api.url)
    client.rest_client.pool_manager.connection_pool_kw["retries"] = False
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        bac.OpsApi(client).agentalive(_request_timeout=(5, 0.5))
    bacalhau_api.resume()
    assert bac.OpsApi(_client(bacalhau_api.url)).agentversion().git_version == "v1.9.3"


def test_a_job_waits_for_capacity_held_by_another(docker_client: Any) -> None:
    started = start_double(docker_client, capacity=Resources(cpu=1.0, memory=1024**3, disk=10 * 1024**3))
    try:
        double, api = started.double, bac.OrchestratorApi(_client(started.url))
        first = submit(api, job("sleep 300", cpu="1"))
        double.wait_for_container(first)
        second = submit(api, job("echo second", cpu="1"))
        accepted = double.job(second)

        def waits_for_capacity() -> bool:
            executions = double.orchestrator.executions_of(accepted)
            return bool(executions) and executions[0].compute_state == ExecutionState.BID_ACCEPTED

        double.wait_for(waits_for_capacity, what="the second execution accepted and queued on the node")
        (waiting,) = api.orchestratorjob_executions(second, "created_at").items
        assert waiting.compute_state.state_type == ExecutionState.BID_ACCEPTED
        node = json.loads(api.orchestratorlist_nodes(_preload_content=False).data)["Nodes"][0]["Info"]
        assert node["ComputeNodeInfo"]["EnqueuedExecutions"] == 1
        assert "CPU" not in node["ComputeNodeInfo"]["AvailableCapacity"]  # all of it is in use
        api.orchestratorstop_job(first, reason="make room")
        got = finished(double, api, second)
        assert got.executions.items[0].run_output.stdout == "second\n"
    finally:
        started.stop()


def test_total_timeout_fails_a_job_still_waiting_for_the_node(docker_client: Any) -> None:
    started = start_double(docker_client, capacity=Resources(cpu=1.0, memory=1024**3, disk=10 * 1024**3))
    try:
        double, api = started.double, bac.OrchestratorApi(_client(started.url))
        busy = submit(api, job("sleep 300", cpu="1"))
        double.wait_for_container(busy)
        late = submit(api, job("true", cpu="1", timeout=0, total_timeout=1))  # never gets the node in time
        got = finished(double, api, late)
        assert (got.job.state.state_type, got.job.state.message) == (
            "Failed",
            "Job timed out. Job took longer than 1s",
        )
        (execution,) = got.executions.items
        assert execution.compute_state.state_type == 11  # ExecutionState.CANCELLED
        assert execution.compute_state.message == "Execution stopped due to job failure"
        assert [h.event.topic for h in got.history.items if h.type == "JobLevel"][-1] == "Job Timeout"
        api.orchestratorstop_job(busy, reason="test over")
    finally:
        started.stop()


def test_stopping_the_double_removes_its_containers(docker_client: Any) -> None:
    import docker.errors

    started = start_double(docker_client)
    try:
        api = bac.OrchestratorApi(_client(started.url))
        container = started.double.wait_for_container(submit(api, job("sleep 300")))
    finally:
        started.stop()
    with pytest.raises(docker.errors.NotFound):
        container.reload()
    assert started.double.containers() == []
