"""The node as an operator runs it: ``python -m host`` spawning the external_stub engine plugin.

Real processes, a real Unix socket between host and plugin, real gRPC over
TCP from a client that knows nothing of this codebase but reflection.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import process_alive, running_node, wait_for

STUB_ENV = "stub-local"


def test_get_environments_shows_the_stub_and_reflection_lists_services(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as node:
        env = node.wait_environment(STUB_ENV)
        assert env.engine == "external_stub"
        assert env.engine_health == common_pb2.ENGINE_HEALTH_HEALTHY
        resources = {r.id: r for r in env.resources}
        assert resources["cpu"].total > 0 and resources["ram"].total > 0

        stub = reflection_pb2_grpc.ServerReflectionStub(node.channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {"c2d.compute.v1.ComputeService", "grpc.health.v1.Health"} <= services


def test_plugin_logs_are_re_emitted_with_the_plugin_name(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as node:
        node.wait_environment(STUB_ENV)
        serving = wait_for(lambda: node.log_events("plugin serving"), 10, "the plugin's own log line")
        assert serving[0]["plugin"] == "external_stub"
        assert serving[0]["api_version"] == 1


def test_sigkilled_plugin_is_restarted_and_its_environments_come_back(tmp_path: Path) -> None:
    with running_node(tmp_path / "data", env={"C2D_PLUGINS__RESTART_INITIAL_SECONDS": "0.1"}) as node:
        node.wait_environment(STUB_ENV)
        (first,) = node.plugin_pids()
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not process_alive(first), 5, "the killed plugin to go")
        wait_for(lambda: [p for p in node.plugin_pids() if p != first], 20, "a new plugin process")
        env = node.wait_environment(STUB_ENV)
        assert env.engine_health == common_pb2.ENGINE_HEALTH_HEALTHY
        assert node.log_events("engine plugin failed; restarting")


def test_environments_are_withdrawn_while_the_engine_is_down(tmp_path: Path) -> None:
    # A restart delay long enough to observe the gap.
    env = {"C2D_PLUGINS__RESTART_INITIAL_SECONDS": "6", "C2D_PLUGINS__RESTART_MAX_SECONDS": "6"}
    with running_node(tmp_path / "data", env=env) as node:
        node.wait_environment(STUB_ENV)
        (pid,) = node.plugin_pids()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not node.environments(), 5, "the environment to be withdrawn")
        node.wait_environment(STUB_ENV, timeout=30)


def test_sigterm_to_the_host_leaves_no_plugin_process(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as node:
        node.wait_environment(STUB_ENV)
        plugins = node.plugin_pids()
        assert plugins, "the node should have a plugin child"
        assert node.stop() == 0
        for pid in plugins:
            assert not process_alive(pid), f"plugin {pid} survived the node's SIGTERM"
        assert node.log_events("node stopped")


def test_sigkill_to_the_host_makes_the_plugin_exit(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as node:
        node.wait_environment(STUB_ENV)
        plugins = node.plugin_pids()
        node.kill()
        for pid in plugins:
            wait_for(lambda pid=pid: not process_alive(pid), 5, f"orphaned plugin {pid} to exit")


def test_disabled_engine_is_reported_and_the_node_keeps_serving(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[engines.external_stub]\n# enabled = true is needed for the stub\n")
    with running_node(tmp_path / "data", config=config) as node:
        refused = wait_for(
            lambda: node.log_events("engine plugin refused to run; not restarting"), 20, "the refusal"
        )
        assert "disabled" in refused[0]["reason"]
        assert node.environments() == []


def test_an_engine_with_nothing_to_drive_is_undetected_not_an_error(tmp_path: Path) -> None:
    """The default start loads every installed engine: the Kubernetes one, on a machine without any
    credentials, is an information line (undetected), never an error, and the others serve."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"C2D_LOAD_PLUGINS": "external_stub,kubernetes", "HOME": str(home), "KUBECONFIG": ""}
    with running_node(tmp_path / "data", env=env) as node:
        node.wait_environment(STUB_ENV)
        (undetected,) = wait_for(
            lambda: node.log_events("engine not detected; not starting it"),
            30,
            "the kubernetes engine to settle",
        )
        assert undetected["engine"] == "kubernetes" and undetected["level"] == "info"
        assert "no Kubernetes credentials" in undetected["reason"]
        assert [r for r in node.logs if r.get("level") in ("error", "critical")] == []
        with Client(node.address, node.node_key()) as operator:
            engines = {e.name: e for e in operator.engines()}
        assert engines["kubernetes"].health == common_pb2.ENGINE_HEALTH_UNDETECTED
        assert "no Kubernetes credentials" in engines["kubernetes"].health_description
        assert engines["external_stub"].health == common_pb2.ENGINE_HEALTH_HEALTHY


def test_a_second_node_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as first:
        first.wait_environment(STUB_ENV)
        with running_node(tmp_path / "data") as second:
            assert second.process.wait(20) == 1
            assert any("another node is running" in line for line in second.raw_lines)
