"""The seed's JSON workflow format <-> c2d.compute.v1.Workflow (c2d.workflow), with no node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from c2d.client import as_workflow
from c2d.compute.v1 import compute_pb2
from c2d.workflow import WorkflowFormatError, load_workflow, parse_workflow, workflow_to_json

VIEWER = "0x" + "ab" * 20

# The seed's example, as a consumer would write it: a list of stages.
SEED = [
    {
        "index": 0,
        "runAfter": None,
        "input": [
            {
                "index": 0,
                "did": "did:op:dataset",
                "serviceId": "compute",
                "files": {"type": "url", "url": "https://example.org/data.csv", "method": "GET"},
            }
        ],
        "algorithm": {
            "did": "",
            "serviceId": "",
            "files": {"type": "url", "url": "https://example.org/algo.py"},
            "rawcode": "",
            "container": {"entrypoint": "python $ALGO", "image": "python", "tag": "3.11-slim"},
        },
    },
    {
        "index": 1,
        "runAfter": 0,
        "input": [],
        "algorithm": {"rawcode": "print('hi')", "container": {"image": "python", "tag": "3.11-slim"}},
    },
]

# Every key of the object form, with values of every JSON type inside the free objects.
FULL = {
    "stages": [
        {
            "index": 0,
            "runAfter": None,
            "input": [
                {
                    "index": 0,
                    "did": "did:op:a",
                    "serviceId": "svc",
                    "files": {"type": "ipfs", "hash": "Qm", "headers": {"x": "y"}, "sizes": [1, 2.5]},
                    "userdata": {"limit": 10, "strict": True, "note": None},
                }
            ],
            "algorithm": {
                "did": "did:op:algo",
                "serviceId": "algo-svc",
                "container": {
                    "entrypoint": "python $ALGO",
                    "image": "python",
                    "tag": "3.11",
                    "checksum": "sha256:" + "0" * 64,
                },
                "customData": {"epochs": 3, "rate": 0.01, "layers": [64, 32]},
            },
            "environment": "gpu-env",
            "resources": [{"id": "nvidia-gpu", "amount": 1}],
            "maxJobDuration": 600,
        },
        {
            "index": 1,
            "runAfter": [0, "job-earlier"],
            "input": [],
            "algorithm": {"rawcode": "print(1)", "container": {"image": "alpine", "tag": "3"}},
        },
    ],
    "environment": "cpu-env",
    "resources": [{"id": "cpu", "amount": 2}, {"id": "ram", "amount": 0.5}],
    "maxJobDuration": 3600,
    "queueMaxWaitTime": 900,
    "viewers": [VIEWER],
}


def test_seed_list_maps_to_the_proto() -> None:
    workflow = parse_workflow(SEED)
    first, second = workflow.stages
    assert first.index == 0 and not first.run_after
    assert first.input[0].did == "did:op:dataset" and first.input[0].service_id == "compute"
    assert first.input[0].files["url"] == "https://example.org/data.csv"
    assert first.algorithm.container.entrypoint == "python $ALGO"
    assert first.algorithm.container.tag == "3.11-slim"
    assert first.algorithm.files["url"] == "https://example.org/algo.py"
    assert second.run_after[0].stage_index == 0
    assert second.run_after[0].WhichOneof("target") == "stage_index"
    assert workflow.environment_id == ""


def test_seed_round_trip() -> None:
    workflow = parse_workflow(SEED)
    assert parse_workflow(workflow_to_json(workflow)) == workflow


def test_full_object_round_trips_to_the_same_json() -> None:
    workflow = parse_workflow(FULL)
    assert workflow_to_json(workflow) == FULL
    assert parse_workflow(json.loads(json.dumps(workflow_to_json(workflow)))) == workflow


def test_full_object_maps_every_field() -> None:
    workflow = parse_workflow(FULL)
    stage = workflow.stages[0]
    assert stage.input[0].user_data["limit"] == 10
    assert stage.algorithm.custom_data["layers"] == [64, 32]
    assert stage.environment_id == "gpu-env"
    assert [(r.id, r.amount) for r in stage.resources] == [("nvidia-gpu", 1.0)]
    assert stage.max_duration_seconds == 600
    assert workflow.environment_id == "cpu-env"
    assert [(r.id, r.amount) for r in workflow.resources] == [("cpu", 2.0), ("ram", 0.5)]
    assert workflow.max_duration_seconds == 3600
    assert workflow.max_queue_seconds == 900
    assert list(workflow.viewers) == [VIEWER]


@pytest.mark.parametrize(
    ("run_after", "expected", "written"),
    [
        (None, [], None),
        ([], [], None),
        (0, [("stage_index", 0)], 0),
        ("job-1", [("job_id", "job-1")], "job-1"),
        ([0], [("stage_index", 0)], 0),
        ([1, "job-1", 0], [("stage_index", 1), ("job_id", "job-1"), ("stage_index", 0)], [1, "job-1", 0]),
        (2.0, [("stage_index", 2)], 2),
    ],
)
def test_run_after_forms(run_after: Any, expected: list[tuple[str, Any]], written: Any) -> None:
    workflow = parse_workflow([{"index": 5, "runAfter": run_after, "algorithm": {"did": "a"}}])
    deps = workflow.stages[0].run_after
    assert [(dep.WhichOneof("target"), getattr(dep, dep.WhichOneof("target"))) for dep in deps] == expected
    assert workflow_to_json(workflow)["stages"][0]["runAfter"] == written


def test_missing_indexes_default_to_positions() -> None:
    workflow = parse_workflow(
        [
            {"algorithm": {"did": "a"}, "input": [{"did": "x"}, {"did": "y"}]},
            {"algorithm": {"did": "b"}},
        ]
    )
    assert [stage.index for stage in workflow.stages] == [0, 1]
    assert [item.index for item in workflow.stages[0].input] == [0, 1]


def test_environment_argument_overrides_the_document() -> None:
    assert parse_workflow(FULL, "other").environment_id == "other"
    assert parse_workflow(FULL, None).environment_id == "cpu-env"
    assert parse_workflow(SEED, "env-1").environment_id == "env-1"


def test_null_means_not_set() -> None:
    workflow = parse_workflow(
        {
            "stages": [
                {"index": None, "input": None, "algorithm": {"did": None, "files": None, "container": None}}
            ],
            "environment": None,
            "resources": None,
            "maxJobDuration": None,
            "viewers": None,
        }
    )
    stage = workflow.stages[0]
    assert stage.index == 0 and not stage.input
    assert not stage.algorithm.HasField("files") and not stage.algorithm.HasField("container")


def test_empty_free_object_is_kept() -> None:
    workflow = parse_workflow([{"algorithm": {"did": "a", "customData": {}}}])
    assert workflow.stages[0].algorithm.HasField("custom_data")
    assert workflow_to_json(workflow)["stages"][0]["algorithm"]["customData"] == {}


def test_client_accepts_json_or_message() -> None:
    message = parse_workflow(SEED)
    assert as_workflow(message) is message
    assert as_workflow(SEED) == message
    assert as_workflow({"stages": SEED}) == message


def _stage(**overrides: Any) -> dict[str, Any]:
    stage: dict[str, Any] = {"index": 0, "algorithm": {"container": {"image": "python", "tag": "3"}}}
    stage.update(overrides)
    return stage


BAD = [
    ("not-a-workflow", 'workflow: must be a list of stages or an object with "stages", not a string'),
    (42, "workflow: must be a list of stages"),
    ({"stage": []}, 'stage: unknown key; did you mean "stages"?'),
    ({}, "stages: missing: a workflow needs at least one stage"),
    ([], "stages: empty: a workflow needs at least one stage"),
    ({"stages": {"0": {}}}, "stages: must be a list, not an object"),
    (["stage"], "stages[0]: must be an object, not a string"),
    (
        [_stage(), _stage(index=1, algorithm={"contaner": {}})],
        'stages[1].algorithm.contaner: unknown key; did you mean "container"?',
    ),
    ([_stage(zzz=1)], "stages[0].zzz: unknown key; known keys: index, runAfter, input"),
    ([{"index": 0}], "stages[0].algorithm: missing: every stage runs an algorithm"),
    ([_stage(algorithm="python")], "stages[0].algorithm: must be an object, not a string"),
    (
        [_stage(runAfter={"stage": 0})],
        "stages[0].runAfter: must be a stage index, a job id or a list of those, not an object",
    ),
    (
        [_stage(runAfter=True)],
        "stages[0].runAfter: must be a stage index, a job id or a list of those, not a boolean",
    ),
    (
        [_stage(runAfter=[0, None])],
        "stages[0].runAfter[1]: must be a stage index, a job id or a list of those, not null",
    ),
    ([_stage(runAfter=-1)], "stages[0].runAfter: must be a whole number from 0 to 4294967295, not -1"),
    ([_stage(runAfter=1.5)], "stages[0].runAfter: must be a whole number from 0 to 4294967295, not 1.5"),
    ([_stage(runAfter=["job", " "])], "stages[0].runAfter[1]: empty job id"),
    ([_stage(index="0")], "stages[0].index: must be a whole number from 0 to 4294967295, not '0'"),
    ([_stage(index=2**32)], "stages[0].index: must be a whole number"),
    ([_stage(), _stage()], "stages[1].index: duplicate stage index 0"),
    ([_stage(input={"did": "x"})], "stages[0].input: must be a list, not an object"),
    ([_stage(input=["did:x"])], "stages[0].input[0]: must be an object, not a string"),
    (
        [_stage(input=[{"serviceID": "s"}])],
        'stages[0].input[0].serviceID: unknown key; did you mean "serviceId"?',
    ),
    ([_stage(input=[{"did": 7}])], "stages[0].input[0].did: must be a string, not a number"),
    ([_stage(input=[{"index": -2}])], "stages[0].input[0].index: must be a whole number"),
    (
        [_stage(input=[{"files": [{"type": "url"}]}])],
        "stages[0].input[0].files: must be a JSON object, not a list",
    ),
    (
        [_stage(input=[{"userdata": "x=1"}])],
        "stages[0].input[0].userdata: must be a JSON object, not a string",
    ),
    (
        [_stage(algorithm={"container": "python:3"})],
        "stages[0].algorithm.container: must be an object, not a string",
    ),
    (
        [_stage(algorithm={"container": {"image": "p", "digest": "x"}})],
        "stages[0].algorithm.container.digest: unknown key",
    ),
    (
        [_stage(algorithm={"container": {"tag": 3}})],
        "stages[0].algorithm.container.tag: must be a string, not a number",
    ),
    (
        [_stage(algorithm={"rawcode": ["print(1)"]})],
        "stages[0].algorithm.rawcode: must be a string, not a list",
    ),
    (
        [_stage(algorithm={"customData": [1]})],
        "stages[0].algorithm.customData: must be a JSON object, not a list",
    ),
    ([_stage(algorithm={"files": {"n": float("nan")}, "did": "x"})], None),  # NaN is a double: accepted
    ([_stage(environment=1)], "stages[0].environment: must be a string, not a number"),
    ([_stage(resources={"cpu": 1})], "stages[0].resources: must be a list, not an object"),
    ([_stage(resources=[{"amount": 1}])], "stages[0].resources[0].id: missing"),
    ([_stage(resources=[{"id": "cpu"}])], "stages[0].resources[0].amount: must be a number, not null"),
    (
        [_stage(resources=[{"id": "cpu", "amount": "2"}])],
        "stages[0].resources[0].amount: must be a number, not a string",
    ),
    (
        [_stage(resources=[{"id": "cpu", "amount": -1}])],
        "stages[0].resources[0].amount: must be >= 0, not -1",
    ),
    (
        [_stage(resources=[{"id": "cpu", "amount": 1, "unit": "cores"}])],
        "stages[0].resources[0].unit: unknown key",
    ),
    ([_stage(maxJobDuration="1h")], "stages[0].maxJobDuration: must be a whole number"),
    ([_stage(maxJobDuration=-5)], "stages[0].maxJobDuration: must be a whole number"),
    ({"stages": [_stage()], "maxJobDuration": 2**40}, "maxJobDuration: must be a whole number"),
    ({"stages": [_stage()], "queueMaxWaitTime": -1}, "queueMaxWaitTime: must be a whole number"),
    ({"stages": [_stage()], "environment": ["a"]}, "environment: must be a string, not a list"),
    ({"stages": [_stage()], "resources": [["cpu", 1]]}, "resources[0]: must be an object, not a list"),
    ({"stages": [_stage()], "viewers": "0xabc"}, "viewers: must be a list, not a string"),
    ({"stages": [_stage()], "viewers": [VIEWER, "0x123"]}, "viewers[1]: must be an Ethereum address"),
    ({"stages": [_stage()], "viewers": [VIEWER + "\n"]}, "viewers[0]: must be an Ethereum address"),
]


@pytest.mark.parametrize(("document", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_format_errors_name_the_path(document: Any, message: str | None) -> None:
    if message is None:
        parse_workflow(document)
        return
    with pytest.raises(WorkflowFormatError) as caught:
        parse_workflow(document)
    assert str(caught.value).startswith(message), str(caught.value)
    assert caught.value.path == message.split(":", 1)[0].replace("workflow", "")


def test_format_error_is_a_value_error() -> None:
    assert issubclass(WorkflowFormatError, ValueError)


def test_load_workflow_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(SEED))
    assert load_workflow(path, "env") == parse_workflow(SEED, "env")


def test_load_workflow_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text('[{"index": 0,}]')
    with pytest.raises(WorkflowFormatError, match=r"wf\.json is not JSON: .*line 1 column 14"):
        load_workflow(path)


def test_load_workflow_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFormatError, match=r"workflow: cannot read .*nope\.json: No such file"):
        load_workflow(tmp_path / "nope.json")


def test_to_json_leaves_out_unset_fields() -> None:
    workflow = compute_pb2.Workflow(stages=[compute_pb2.Stage(index=3)])
    assert workflow_to_json(workflow) == {
        "stages": [{"index": 3, "runAfter": None, "input": [], "algorithm": {}}]
    }


def test_a_container_built_from_a_dockerfile_maps_and_round_trips() -> None:
    doc = [
        {
            "index": 0,
            "algorithm": {
                "rawcode": "cat /opt/a.txt",
                "container": {
                    "entrypoint": "sh $ALGO",
                    "dockerfile": "FROM busybox:1\nCOPY a.txt /opt/a.txt\n",
                    "additionalFiles": {"a.txt": "héllo\n"},
                },
            },
        }
    ]
    workflow = parse_workflow(doc)
    container = workflow.stages[0].algorithm.container
    assert container.dockerfile.startswith("FROM busybox:1")
    assert dict(container.additional_files) == {"a.txt": "héllo\n".encode()}
    assert parse_workflow(json.loads(json.dumps(workflow_to_json(workflow)))) == workflow


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["a.txt"], "stages[0].algorithm.container.additionalFiles: must be an object"),
        ({"a.txt": 7}, "stages[0].algorithm.container.additionalFiles.a.txt: must be text"),
    ],
)
def test_additional_files_must_be_names_to_text(files: Any, message: str) -> None:
    doc = [
        {
            "index": 0,
            "algorithm": {"rawcode": "x", "container": {"dockerfile": "FROM x", "additionalFiles": files}},
        }
    ]
    with pytest.raises(WorkflowFormatError) as caught:
        parse_workflow(doc)
    assert str(caught.value).startswith(message), str(caught.value)
