"""The node's Prometheus endpoint (host/metrics.py, docs/metrics.md): a real node, scraped with
prometheus_client's own parser while a hello workflow runs on the external_stub engine."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from host.config import ConfigError, load_config
from host.metrics import NodeMetrics, serve_metrics
from nodeproc import NodeProcess, free_port, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
COMPUTE = "c2d.compute.v1.ComputeService"
POD = "c2d.pod.v1.PodService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_text(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        return reply.read().decode()


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the scrape has none (a labelled series appears on first use)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# -- config and the endpoint on its own ----------------------------------------------------------


def test_metrics_listen_defaults_to_loopback_and_empty_turns_it_off() -> None:
    assert load_config(environ={}).metrics.listen == "127.0.0.1:9470"
    assert load_config(environ={"C2D_METRICS__LISTEN": ""}).metrics.listen == ""
    assert load_config(environ={"C2D_METRICS__LISTEN": "[::1]:9470"}).metrics.listen == "[::1]:9470"
    for bad in ("9470", "example.com:9470", "127.0.0.1:99999", "127.0.0.1:"):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            load_config(environ={"C2D_METRICS__LISTEN": bad})


def test_endpoint_serves_its_own_registry_and_closes_cleanly() -> None:
    metrics = NodeMetrics()
    assert serve_metrics(metrics, "") is None
    server = serve_metrics(metrics, "127.0.0.1:0")
    assert server is not None
    metrics.payment("locked")
    samples = parse(scrape_text(server.address))
    assert value(samples, "c2d_payments_total", event="locked") == 1
    # The registry is the node's own: nothing of prometheus_client's default (process_*, python_*).
    assert not any(name.startswith(("process_", "python_")) for name, _ in samples)
    # A second endpoint on a taken port: logged, and the node runs on without one.
    assert serve_metrics(NodeMetrics(), server.address) is None
    host, port = server.address.rsplit(":", 1)
    server.close()
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
        pass


# -- a real node ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


def scrape(node: NodeProcess) -> Samples:
    return parse(scrape_text(node.metrics_address()))


def hello(seconds: float) -> dict:
    return {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "algorithm": {
                    "rawcode": f"sleep {seconds}; echo hello",
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        ],
    }


def test_the_endpoint_is_not_the_public_port(node: NodeProcess) -> None:
    address = node.metrics_address()
    assert address.startswith("127.0.0.1:")
    assert int(address.rsplit(":", 1)[1]) not in (node.port, node.pod_port)


def test_engine_and_capacity_are_scraped(node: NodeProcess) -> None:
    def counted() -> Samples | None:
        s = scrape(node)
        return s if value(s, "c2d_capacity_total", environment=ENV, resource="cpu") else None

    samples = wait_for(counted, 15, "the first census")
    assert value(samples, "c2d_engine_healthy", engine="external_stub") == 1
    assert value(samples, "c2d_engine_health", engine="external_stub", health="healthy") == 1
    assert value(samples, "c2d_engine_restarts_total", engine="external_stub") == 0
    assert value(samples, "c2d_capacity_total", environment=ENV, resource="cpu") == 2
    assert value(samples, "c2d_capacity_total", environment=ENV, resource="ram") == 4
    assert ("c2d_queue_length", frozenset({("environment", ENV)})) in samples


def test_a_hello_workflow_shows_in_the_metrics(node: NodeProcess) -> None:
    before = scrape(node)
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(hello(2), free=True)

        # While it runs: one running stage, holding capacity.
        def running() -> Samples | None:
            s = scrape(node)
            return s if value(s, "c2d_stages", environment=ENV, status="running") == 1 else None

        during = wait_for(running, 30, "a running stage in the metrics", interval=0.2)
        assert value(during, "c2d_capacity_granted", environment=ENV, resource="cpu") > 0

        (job,) = consumer.wait(started.workflow_id, timeout=60)
        assert job.status == S.JOB_STATUS_FINISHED
        with pytest.raises(C2DError) as refused:
            consumer.status(job_id="0" * 32)
        assert refused.value.code == "NOT_FOUND"

    def settled() -> Samples | None:
        s = scrape(node)
        return s if not total(s, "c2d_stages", environment=ENV) else None

    after = wait_for(settled, 15, "no stage left in the gauge", interval=0.2)
    assert value(after, "c2d_capacity_granted", environment=ENV, resource="cpu") == 0

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Stage counts by status: each status it went through, and its end.
    assert grew("c2d_stages_ended_total", environment=ENV, status="finished") == 1
    for status in ("queued", "running", "finished"):
        assert grew("c2d_stage_status_changes_total", environment=ENV, status=status) == 1, status
    # Durations observed: queue wait, acceptance to end, grant to end, the algorithm's own run.
    assert grew("c2d_queue_wait_seconds_count", environment=ENV) == 1
    assert grew("c2d_stage_duration_seconds_count", environment=ENV, status="finished") == 1
    assert grew("c2d_stage_run_seconds_count", environment=ENV, status="finished") == 1
    assert grew("c2d_algorithm_run_seconds_count", environment=ENV) == 1
    assert grew("c2d_algorithm_run_seconds_sum", environment=ENV) >= 1.5  # it slept 2 s
    assert grew("c2d_stage_duration_seconds_sum", environment=ENV, status="finished") >= 2
    # API calls by method and code; the pods' calls on their own server.
    calls = "c2d_grpc_calls_total"
    assert grew(calls, server="public", service=COMPUTE, method="FreeStartCompute", code="OK") == 1
    assert grew(calls, server="public", service=COMPUTE, method="GetComputeStatus", code="NOT_FOUND") == 1
    assert grew(calls, server="public", service=COMPUTE, method="GetComputeStatus", code="OK") >= 1
    assert total(after, calls, server="pods", service=POD, code="OK") > total(before, calls, server="pods")
    assert (
        grew("c2d_grpc_call_seconds_count", server="public", service=COMPUTE, method="FreeStartCompute") == 1
    )
    assert job.job_id not in scrape_text(node.metrics_address())


def test_the_node_shuts_the_endpoint_down(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        node.wait_listening()
        host, port = node.metrics_address().rsplit(":", 1)
        assert scrape_text(f"{host}:{port}")
        assert node.stop() == 0
        assert node.log_events("node stopped")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError("the metrics port still answers after the node stopped")


# -- payments and the chain ----------------------------------------------------------------------


def test_a_paid_workflow_counts_its_lock_and_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paidnode import ENV as PAID_ENV
    from paidnode import fund_node, in_process_node, new_consumer, payment, stub_env, two_stages, wait_payment

    from c2d.compute.v1 import compute_pb2
    from host.chain.devchain import start_dev_chain

    monkeypatch.setenv("C2D_LOAD_PLUGINS", "external_stub")
    address = f"127.0.0.1:{free_port()}"
    with start_dev_chain("py-evm") as chain:
        env = {**stub_env(chain), "C2D_METRICS__LISTEN": address}
        with in_process_node(tmp_path / "node", chain, env) as node:
            consumer = new_consumer(chain, fund_node(chain, node.node_key()))
            wait_for(lambda: scrape_text_or_none(address), 30, "the metrics endpoint")
            before = parse(scrape_text(address))
            with Client(node.address, consumer.key) as client:
                wait_for(lambda: any(e.id == PAID_ENV for e in client.environments()), 30, "the environment")
                started = client.start(two_stages(), payment=payment(chain))
                client.wait(started.workflow_id, timeout=60)
                wait_payment(client, started.workflow_id, {compute_pb2.PAYMENT_STATUS_CLAIMED})
            after = parse(scrape_text(address))
    for event, grown in (("locked", 1), ("claimed", 1), ("lock_failed", 0), ("released", 0)):
        assert (
            value(after, "c2d_payments_total", event=event) - value(before, "c2d_payments_total", event=event)
            == grown
        ), event


def scrape_text_or_none(address: str) -> str | None:
    try:
        return scrape_text(address)
    except OSError:
        return None


def test_chain_errors_are_counted_by_kind() -> None:
    from c2d.chain import errors
    from host.payments.service import Payments, PaymentSettings

    metrics = NodeMetrics()
    escrow = SimpleNamespace(chain=SimpleNamespace(address="0x" + "ab" * 20), address="0x" + "cd" * 20)
    settings = cast(PaymentSettings, SimpleNamespace(claim_batch_size=20, withdraw_earnings=True))
    payments = Payments(cast(Any, escrow), settings, signing_key="", stop_workflow=_never, metrics=metrics)

    def unreachable() -> None:
        raise errors.ChainError(errors.UNREACHABLE, "connection refused")

    def odd() -> None:
        raise errors.ChainError("a-kind-nobody-knows", "?")

    async def calls() -> None:
        for fn in (unreachable, unreachable, odd):
            with pytest.raises(errors.ChainError):
                await payments._chain(fn)

    try:
        asyncio.run(calls())
    finally:
        payments.close()
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "c2d_chain_errors_total", kind="unreachable") == 2
    assert value(samples, "c2d_chain_errors_total", kind="unknown") == 1


async def _never(_workflow_id: str, _reason: str) -> None:
    raise AssertionError("no workflow is stopped here")
