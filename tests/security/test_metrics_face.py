"""What the metrics endpoint tells whoever can reach it (host/metrics.py, docs/metrics.md).

The node faces strangers, and its metrics endpoint may be scraped from a network others share:
a scrape must name no consumer address, job or workflow id, or private dataset location, and its
label values must come from bounded sets whatever callers do (a stranger calling made-up gRPC
methods must not mint a series per path, which would also grow the node's memory without bound).
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from host.metrics import CHAIN_ERROR_KINDS, KNOWN_METHODS, PAYMENT_EVENTS, UNKNOWN
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
SECRET_DIR = "metrics-secret-location"

pytestmark = pytest.mark.timeout(240)

STATUS_NAMES = {name.removeprefix("JOB_STATUS_").lower() for name, _ in S.items()} | {UNKNOWN}
HEALTH_NAMES = {name.removeprefix("ENGINE_HEALTH_").lower() for name, _ in common_pb2.EngineHealth.items()}
# Every label the node's metrics have, and the values each may take.
ALLOWED: dict[str, set[str]] = {
    "environment": {ENV},
    "engine": {"external_stub"},
    "resource": {"cpu", "ram", "disk"},
    "status": STATUS_NAMES,
    "health": HEALTH_NAMES,
    "server": {"public", "pods"},
    "service": {service for service, _ in KNOWN_METHODS.values()} | {UNKNOWN},
    "method": {method for _, method in KNOWN_METHODS.values()} | {UNKNOWN},
    "code": {code.name for code in grpc.StatusCode} | {UNKNOWN},
    "event": set(PAYMENT_EVENTS) | {UNKNOWN},
    "kind": set(CHAIN_ERROR_KINDS) | {UNKNOWN},
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    (root / SECRET_DIR).mkdir()
    (root / SECRET_DIR / "numbers.csv").write_text("n\n1\n2\n3\n")
    return root


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[NodeProcess]:
    env = {
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


def scrape(node: NodeProcess) -> str:
    with urllib.request.urlopen(f"http://{node.metrics_address()}/metrics", timeout=5) as reply:
        return reply.read().decode()


def labels_of(text: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (sample.name, sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def assert_bounded(text: str) -> None:
    for name, labels in labels_of(text):
        for label, value in labels.items():
            if label == "le":  # histogram buckets: fixed in host/metrics.py
                continue
            assert label in ALLOWED, f"{name} has an unexpected label {label}"
            assert value in ALLOWED[label], f"{name}{{{label}={value!r}}} is not a bounded value"


def unknown_calls(text: str, server: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "c2d_grpc_calls_total"
        and sample.labels["server"] == server
        and sample.labels["method"] == UNKNOWN
    )


def test_unknown_methods_add_no_label_values(node: NodeProcess) -> None:
    before = scrape(node)
    made_up = [f"/evil{uuid.uuid4().hex}.Service/M{uuid.uuid4().hex}" for _ in range(20)]
    made_up += [f"/c2d.compute.v1.ComputeService/No{uuid.uuid4().hex}" for _ in range(5)]
    made_up += ["/" + "x" * 2000, "/c2d.compute.v1.ComputeService/", "//", "/a/b/c"]
    with grpc.insecure_channel(node.address) as channel:
        for path in made_up:
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as refused:
                call(b"\x00garbage", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(f"127.0.0.1:{node.pod_port}") as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(f"/pods{uuid.uuid4().hex}/X")(b"", timeout=5)
    after = scrape(node)
    assert_bounded(after)
    for path in made_up:
        for part in path.split("/"):
            if len(part) > 3 and part not in ("c2d.compute.v1.ComputeService",):
                assert part not in after, f"a made-up path's {part!r} appears in the scrape"
    assert unknown_calls(after, "public") - unknown_calls(before, "public") == len(made_up)
    assert unknown_calls(after, "pods") - unknown_calls(before, "pods") == 1


def test_a_scrape_after_a_workflow_names_no_consumer_job_or_location(
    node: NodeProcess, data_root: Path
) -> None:
    key = auth.new_private_key()
    consumer_address = auth.address_of(key)
    with Client(node.address, node.node_key()) as operator:
        operator.register_asset(
            {
                "did": "did:op:metrics-numbers",
                "services": [
                    {
                        "serviceId": "compute",
                        "kind": "KIND_DATASET",
                        "files": {"files": [{"type": "local", "path": f"{SECRET_DIR}/numbers.csv"}]},
                        "policy": {"allowRawCode": True},
                    }
                ],
            },
            replace=True,
        )
    workflow = {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "input": [{"index": 0, "did": "did:op:metrics-numbers", "serviceId": "compute"}],
                "algorithm": {
                    "rawcode": 'wc -l < "$C2D_DATA/inputs/0/file-0"; ls "$C2D_DATA/inputs/0"',
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            },
            {
                "index": 1,
                "runAfter": [0],
                "algorithm": {
                    "rawcode": "exit 3",  # a failure too: its messages must not reach the metrics either
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            },
        ],
    }
    with Client(node.address, key) as consumer:
        started = consumer.start(workflow, free=True)
        jobs = consumer.wait(started.workflow_id, timeout=60)
    assert {job.terminal for job in jobs} == {True}

    def ended() -> str | None:
        text = scrape(node)
        return (
            text
            if f'c2d_stages_ended_total{{environment="{ENV}",status="algorithm_failed"}}' in text
            else None
        )

    text = wait_for(ended, 15, "the failed stage in the metrics")
    assert_bounded(text)
    lowered = text.lower()
    secrets = [
        consumer_address.lower(),
        consumer_address.lower().removeprefix("0x"),
        auth.address_of(node.node_key()).lower().removeprefix("0x"),
        started.workflow_id.lower(),
        *(job.job_id.lower() for job in jobs),
        SECRET_DIR,
        str(data_root).lower(),
        str(node.data_dir).lower(),
        "did:op",
    ]
    for secret in secrets:
        assert secret not in lowered, f"{secret!r} appears in a scrape"
