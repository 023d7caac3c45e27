"""The bacalhau engine's pieces that need no orchestrator: config, names, job bodies, state decoding, pools.

The engine as a whole, against the orchestrator double, is tests/test_bacalhau_engine.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from c2d.plugin.kit.errors import EngineError
from c2d.plugin.kit.fingerprint import Usage
from c2d_bacalhau_engine import config, fingerprint, names, tasks
from c2d_bacalhau_engine.backend import node_view, pool_size
from c2d_bacalhau_engine.executions import EXECUTION_STATES, JOB_STATES, job_view, state_name

GIB = 1 << 30


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "job:1@x",
        "workflow_id": "wf-1",
        "host_id": "0xNode",
        "environment_id": "small",
        "image": {"repository": "busybox", "tag": "1.36", "digest": "", "reference": "busybox:1.36"},
        "command": "echo $HOME > /data/outputs/x",
        "env": {"GREETING": "hi"},
        "grant": {"cpu": 1.5, "ram_gib": 0.25, "disk_gib": 3, "gpus": ["bacalhau-gpu-0"]},
        "time_limit_seconds": 600,
        "network": False,
        "limits": {
            "local_folder": "/work/c2d-job-1",
            "node_folder": "/srv/c2d/c2d-job-1",
            "node_labels": {"pool": "gpu", "zone": "a"},
            "queue_timeout_seconds": 120,
            "api_wait_seconds": 120,
            "poll_seconds": 1.0,
        },
        "pod": {
            "node_peer_id": "0xNode",
            "node_http_api": "10.0.0.1:8471",
            "private_key": "0xsecret-pod-key",
            "image": {"repository": "c2d-pod", "tag": "abc", "digest": "", "reference": "c2d-pod:abc"},
            "timeout_seconds": 300,
            "cpu": 1.0,
            "ram_bytes": 2 * GIB,
            "disk_bytes": GIB,
            "network": "Full",
        },
    }
    return {**base, **overrides}


# Job bodies ------------------------------------------------------------------------------------


def test_algorithm_job_has_the_grant_the_limit_no_network_and_no_key() -> None:
    body = tasks.job_body(record(), names.ALGORITHM)
    assert "0xsecret-pod-key" not in json.dumps(body)
    assert body["Type"] == "batch" and body["Count"] == 1
    assert body["Labels"] == {
        "c2d-engine": "bacalhau",
        "c2d-node": "0xNode",
        "c2d-job": names.label_value("job:1@x"),
        "c2d-step": "algorithm",
    }
    assert body["Meta"]["c2d.job-id"] == "job:1@x" and body["Meta"]["c2d.host-id"] == "0xNode"
    assert body["Constraints"] == [
        {"Key": "pool", "Operator": "=", "Values": ["gpu"]},
        {"Key": "zone", "Operator": "=", "Values": ["a"]},
    ]
    (task,) = body["Tasks"]
    assert task["Resources"] == {"CPU": "1.5", "Memory": str(GIB // 4), "Disk": str(3 * GIB), "GPU": "1"}
    assert task["Network"] == {"Type": "None"}
    assert task["Timeouts"] == {"ExecutionTimeout": 600, "QueueTimeout": 120}
    params = task["Engine"]["Params"]
    assert params["Entrypoint"] == ["/bin/sh", "-c"] and params["Parameters"] == [
        "echo $HOME > /data/outputs/x"
    ]
    assert (
        "GREETING=hi" in params["EnvironmentVariables"] and "C2D_DATA=/data" in params["EnvironmentVariables"]
    )
    mounts = {m["Target"]: m["Source"]["Params"] for m in task["InputSources"]}
    assert mounts == {
        "/data/inputs": {"SourcePath": "/srv/c2d/c2d-job-1/inputs", "ReadWrite": False},
        "/data/transformations": {"SourcePath": "/srv/c2d/c2d-job-1/transformations", "ReadWrite": False},
        "/data/outputs": {"SourcePath": "/srv/c2d/c2d-job-1/outputs", "ReadWrite": True},
        "/data/logs": {"SourcePath": "/srv/c2d/c2d-job-1/logs", "ReadWrite": True},
    }


def test_network_allowed_is_full_network() -> None:
    (task,) = tasks.job_body(record(network=True), names.ALGORITHM)["Tasks"]
    assert task["Network"] == {"Type": "Full"}


def test_pod_jobs_read_the_key_from_the_folder_never_from_their_spec() -> None:
    for step in (names.CONFIGURATION, names.PUBLISHING):
        body = tasks.job_body(record(), step)
        assert "0xsecret-pod-key" not in json.dumps(body)
        (task,) = body["Tasks"]
        params = task["Engine"]["Params"]
        assert params["Image"] == "c2d-pod:abc"
        assert f"cat {tasks.POD_KEY_PATH}" in params["Parameters"][0]
        assert params["Parameters"][0].endswith(f"python3 -m pods.{step}")
        assert "nodeHttpApi=10.0.0.1:8471" in params["EnvironmentVariables"]
        assert not any(v.startswith("privateKey=") for v in params["EnvironmentVariables"])
        assert task["InputSources"] == [
            {
                "Source": {
                    "Type": "localDirectory",
                    "Params": {"SourcePath": "/srv/c2d/c2d-job-1", "ReadWrite": True},
                },
                "Target": "/data",
            }
        ]
        assert task["Timeouts"]["ExecutionTimeout"] == 300 and task["Network"] == {"Type": "Full"}


# Names -----------------------------------------------------------------------------------------


def test_names_fit_bacalhau_labels_and_tokens_are_per_node_job_and_step() -> None:
    for job_id in ("plain-id", "Job:" + "X" * 150 + "@node+1", "a", "..."):
        value = names.label_value(job_id)
        assert names.LABEL_VALUE.match(value) and len(value) <= 63, value
    assert names.label_value("a:b") != names.label_value("a@b")
    key = names.submission_key("node", "job", "algorithm", "2026-01-01T00:00:00Z")
    token = names.idempotency_token(key, "algorithm")
    assert token == names.idempotency_token(key, "algorithm")
    others = {
        names.idempotency_token(names.submission_key(*parts), parts[2])
        for parts in (
            ("node", "job", "publishing", "2026-01-01T00:00:00Z"),
            ("node2", "job", "algorithm", "2026-01-01T00:00:00Z"),
            ("node", "job2", "algorithm", "2026-01-01T00:00:00Z"),
            ("node", "job", "algorithm", "2026-01-02T00:00:00Z"),  # the id used again after a destroy
        )
    }
    assert token not in others and len(others) == 4
    assert names.job_name("job", "algorithm", key) != names.job_name(
        "job", "algorithm", names.submission_key("node", "job", "algorithm", "later")
    )


def test_only_this_nodes_jobs_are_its_own() -> None:
    body = tasks.job_body(record(), names.ALGORITHM)
    assert names.is_ours(body, "0xNode")
    assert not names.is_ours(body, "0xOther")
    assert not names.is_ours({**body, "Meta": {**body["Meta"], "c2d.host-id": "0xOther"}}, "0xNode")
    assert not names.is_ours({"Labels": None}, "0xNode")


# State decoding --------------------------------------------------------------------------------


def test_job_states_are_strings_and_execution_states_integers() -> None:
    answer = {
        "Job": {"ID": "j-1", "State": {"StateType": "Running", "Message": ""}},
        "Executions": {
            "Items": [
                {"ID": "e-old", "ComputeState": {"StateType": 10}, "ModifyTime": 1},
                {
                    "ID": "e-new",
                    "ComputeState": {"StateType": 6, "Message": "running"},
                    "DesiredState": {"StateType": 1},
                    "ModifyTime": 2,
                },
            ]
        },
    }
    view = job_view(answer)
    assert view.state == "Running" and not view.terminal
    assert view.execution is not None and view.execution.execution_id == "e-new"
    assert view.execution.state == "Running" and view.execution.desired == "Running" and view.running
    assert state_name({"StateType": 4}, JOB_STATES) == "Completed"  # an orchestrator writing numbers
    assert state_name({"StateType": "completed"}, EXECUTION_STATES) == "Completed"
    assert state_name({"StateType": 99}, EXECUTION_STATES) == "Undefined"


def test_an_ended_execution_ends_the_step_while_bacalhau_would_retry_it() -> None:
    retrying = job_view(
        {
            "Job": {"ID": "j", "State": {"StateType": "Running"}},
            "Executions": {
                "Items": [
                    {
                        "ID": "first",
                        "ComputeState": {"StateType": 10, "Message": "Execution timed out after 2s"},
                        "ModifyTime": 1,
                    },
                    {"ID": "retry", "ComputeState": {"StateType": 1}, "ModifyTime": 2},
                ]
            },
        }
    )
    settled = retrying.settled()
    assert not retrying.terminal and settled is not None
    assert settled.state == "Failed" and settled.timed_out
    assert settled.execution is not None and settled.execution.execution_id == "first"
    running = job_view(
        {
            "Job": {"State": {"StateType": "Running"}},
            "Executions": {"Items": [{"ComputeState": {"StateType": 6}}]},
        }
    )
    assert running.settled() is None


def test_run_output_exit_code_timeout_and_pull_failure() -> None:
    done = job_view(
        {
            "Job": {"ID": "j", "State": {"StateType": "Completed"}},
            "Executions": {
                "Items": [{"ComputeState": {"StateType": 9}, "RunOutput": {"ExitCode": 3, "Stdout": "x"}}]
            },
        }
    )
    assert done.terminal and done.execution is not None and done.execution.exit_code == 3
    timed = job_view(
        {
            "Job": {"ID": "j", "State": {"StateType": "Failed", "Message": "execution timed out after 2s"}},
            "Executions": {"Items": [{"ComputeState": {"StateType": 10}}]},
        }
    )
    assert timed.timed_out and not timed.pull_failed
    pulled = job_view(
        {
            "Job": {"ID": "j", "State": {"StateType": "Failed"}},
            "Executions": {
                "Items": [{"ComputeState": {"StateType": 10, "Message": "failed to pull image nope:1"}}]
            },
        }
    )
    assert pulled.pull_failed and "pull" in pulled.reason()


def test_the_orchestrators_refusals_become_the_engines_errors() -> None:
    import grpc

    from c2d_bacalhau_engine.api import BacalhauError, engine_error, is_unreachable

    cases = {
        401: grpc.StatusCode.FAILED_PRECONDITION,
        403: grpc.StatusCode.FAILED_PRECONDITION,
        404: grpc.StatusCode.NOT_FOUND,
        400: grpc.StatusCode.INVALID_ARGUMENT,
        500: grpc.StatusCode.UNAVAILABLE,
    }
    for status, code in cases.items():
        error = engine_error(BacalhauError(status, "Request Unauthorized"), "stopping Bacalhau job j-1")
        assert (
            error.code == code
            and "stopping Bacalhau job j-1" in error.message
            and str(status) in error.message
        )
    assert "set token" in engine_error(BacalhauError(401, "no"), "x").message
    assert is_unreachable(BacalhauError(503, "")) and not is_unreachable(BacalhauError(401, ""))


# Config and pools --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"url": "ftp://x"}, "not an http:// or https:// address"),
        ({"poll_seconds": 0.001}, "poll_seconds must be between"),
        ({"work_root": "relative/path"}, "must be an absolute path"),
        ({"node_labels": {"pool": "a b"}}, "is not a Bacalhau label"),
        ({"pod_network": "None"}, "pod_network must be one of"),
        ({"environments": [{"id": "e", "colour": "red"}]}, "unknown keys ['colour']"),
    ],
)
def test_config_checks_name_the_bad_key(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(EngineError) as failed:
        config.parse_settings(raw)
    assert words in failed.value.message


def node(
    node_id: str, labels: dict[str, str], *, connected: bool = True, cpu: float = 4, free: float = 4
) -> dict[str, Any]:
    return {
        "Info": {
            "NodeID": node_id,
            "NodeType": "Compute",
            "Labels": labels,
            "ComputeNodeInfo": {
                "MaxCapacity": {"CPU": cpu, "Memory": 8 * GIB, "Disk": 20 * GIB, "GPU": 1},
                "AvailableCapacity": {"CPU": free, "Memory": 4 * GIB, "Disk": 20 * GIB, "GPU": 1},
            },
        },
        "Connection": "CONNECTED" if connected else "DISCONNECTED",
    }


def test_a_pool_is_its_connected_matching_nodes_available_plus_what_our_jobs_hold() -> None:
    views = [
        v
        for v in (
            node_view(node("a", {"pool": "gpu"}, free=1)),
            node_view(node("b", {"pool": "gpu"}, free=4)),
            node_view(node("c", {"pool": "cpu"})),
            node_view(node("d", {"pool": "gpu"}, connected=False)),
            node_view({"Info": {"NodeType": "Requester"}}),
        )
        if v is not None
    ]
    assert [v.node_id for v in views] == ["a", "b", "c", "d"]
    used = Usage()
    used.cpu, used.ram_gib = 2.0, 1.0
    size = pool_size(views, {"pool": "gpu"}, used)
    assert size.nodes == 2 and size.cpu == 7.0  # 1 + 4 free, + 2 held by our jobs (at most 8)
    assert size.ram_gib == 9.0 and size.disk_gib == 40.0 and size.gpus == 2
    nobody = pool_size(views, {"pool": "none"}, Usage())
    assert nobody.nodes == 0 and nobody.measured

    settings = config.parse_settings(
        {"environments": [{"id": "gpu", "node_labels": {"pool": "gpu"}, "gpus": 4, "cpu": 64}]}
    )
    (env,) = config.resolve(settings, {"gpu": size})
    assert env.cpu == 7.0 and env.gpus == 2 and env.node_labels == {"pool": "gpu"}
    (empty,) = config.resolve(settings, {"gpu": nobody})  # a pool no connected node is in offers nothing
    assert (empty.cpu, empty.ram_gib, empty.disk_gib, empty.gpus) == (0, 0, 0, 0)
    (unknown,) = config.resolve(settings, {})  # not measured yet: the configured sizes
    assert unknown.cpu == 64 and unknown.gpus == 4
    caps = fingerprint.capabilities((env,), runs_pods=True)
    assert not caps.log_streaming and caps.gpu_vendors == ["nvidia"]
