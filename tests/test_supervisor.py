"""The plugin supervisor against real plugin processes that misbehave in specific ways."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import structlog
import structlog.testing

from c2d.plugin import EngineSpec, HandshakeError, launcher
from c2d.plugin.discovery import DiscoveredEngine, find_engine
from host.engines.supervisor import EngineSupervisor, PluginSettings, SupervisorState

PLUGINS = Path(__file__).parent / "plugins"

FAST = PluginSettings(
    handshake_timeout_seconds=5,
    health_interval_seconds=0.3,
    health_timeout_seconds=0.5,
    health_failures=2,
    restart_initial_seconds=0.05,
    restart_max_seconds=0.2,
    crash_loop_restarts=3,
    crash_loop_window_seconds=60,
    stop_grace_seconds=2,
)


def script_engine(script: str) -> DiscoveredEngine:
    spec = EngineSpec(name=Path(script).stem, argv=[sys.executable, str(PLUGINS / script)], version="0")
    return DiscoveredEngine(spec, spec.name, "tests", "0")


def supervisor(engine: DiscoveredEngine, tmp_path: Path, **kwargs: object) -> EngineSupervisor:
    return EngineSupervisor(
        engine,
        config=kwargs.pop("config", {}),  # type: ignore[arg-type]
        settings=kwargs.pop("settings", FAST),  # type: ignore[arg-type]
        host_id="test-host",
        state_dir=tmp_path / "state",
        **kwargs,  # type: ignore[arg-type]
    )


async def handshake_error(script: str, timeout: float = 5) -> str:
    with pytest.raises(HandshakeError) as caught:
        await launcher.start(script, [sys.executable, str(PLUGINS / script)], timeout=timeout)
    return str(caught.value)


def test_garbage_on_stdout_is_refused_with_what_it_printed() -> None:
    message = asyncio.run(handshake_error("garbage.py"))
    assert "expected a handshake line" in message
    assert "definitely not a handshake" in message
    assert "some diagnostic the plugin wrote" in message  # its stderr comes along


def test_unsupported_protocol_version_names_both_versions() -> None:
    message = asyncio.run(handshake_error("future_version.py"))
    assert "the host speaks 1" in message
    assert "the plugin speaks 2" in message


def test_handshake_line_with_a_version_never_offered_is_refused() -> None:
    message = asyncio.run(handshake_error("liar.py"))
    assert "version 7" in message and "the host speaks 1" in message


def test_handshake_timeout_carries_stderr() -> None:
    started = time.monotonic()
    message = asyncio.run(handshake_error("silent.py", timeout=1))
    assert time.monotonic() - started < 10
    assert "no handshake within 1s" in message
    assert "loading a very large model" in message


def test_failed_handshake_leaves_no_process(tmp_path: Path) -> None:
    async def scenario() -> int:
        plugin = await launcher.spawn("silent", [sys.executable, str(PLUGINS / "silent.py")])
        plugin.stderr_task = asyncio.ensure_future(launcher.pump_stderr(plugin, None))
        with pytest.raises(HandshakeError):
            await launcher.read_handshake(plugin, (1,), timeout=0.5)
        await plugin.terminate(grace=1)
        return plugin.pid

    pid = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_crash_loop_is_marked_failed_and_not_restarted_forever(tmp_path: Path) -> None:
    async def scenario() -> EngineSupervisor:
        sup = supervisor(script_engine("crasher.py"), tmp_path)
        sup.start()
        await sup.wait_settled(timeout=30)
        restarts = sup.restarts
        await asyncio.sleep(1)  # no further attempts once given up
        assert sup.restarts == restarts
        await sup.stop()
        return sup

    sup = asyncio.run(scenario())
    assert sup.restarts == FAST.crash_loop_restarts
    assert sup.environments() == []
    assert "crashed 4 times" in sup.state_message
    assert "cannot open /nonexistent/engine.conf" in sup.state_message


def test_stub_disabled_by_config_is_failed_permanently_with_reason(tmp_path: Path) -> None:
    async def scenario() -> EngineSupervisor:
        sup = supervisor(find_engine("external_stub"), tmp_path, config={"enabled": False})
        sup.start()
        await sup.wait_settled(timeout=30)
        await sup.stop()
        return sup

    sup = asyncio.run(scenario())
    assert sup.state is SupervisorState.FAILED
    assert sup.restarts == 0
    assert "disabled" in sup.state_message
    assert sup.environments() == []


def test_hung_plugin_is_restarted(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        sup = supervisor(find_engine("external_stub"), tmp_path, config={"enabled": True})
        sup.start()
        await sup.wait_settled(timeout=30)
        first = sup.pid
        assert first > 0, f"engine did not start: {sup.state_message}"  # kill(0) would stop pytest itself
        os.kill(first, signal.SIGSTOP)  # alive, but answers nothing
        deadline = time.monotonic() + 20
        while (
            sup.pid in (0, first) or sup.state is not SupervisorState.READY
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        second = sup.pid
        restarts = sup.restarts
        await sup.stop()
        return first, second, restarts

    first, second, restarts = asyncio.run(scenario())
    assert second not in (0, first)
    assert restarts == 1
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)


def test_go_plugin_services_stdio_is_re_emitted_and_shutdown_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin serving go-plugin's GRPCStdio and GRPCController (tests/plugins/goplugin_services.py)."""
    marker = tmp_path / "shutdown"
    monkeypatch.setenv("GOPLUGIN_MARKER", str(marker))

    async def scenario() -> tuple[EngineSupervisor, int | None]:
        sup = supervisor(script_engine("goplugin_services.py"), tmp_path, config={"enabled": True})
        sup.start()
        await sup.wait_settled(timeout=30)
        assert sup.state is SupervisorState.READY, sup.state_message
        plugin = sup._plugin
        assert plugin is not None
        deadline = time.monotonic() + 5
        while not any(r.get("event") == "from stdio" for r in logs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await sup.stop()
        return sup, plugin.process.returncode

    with structlog.testing.capture_logs() as logs:
        _, code = asyncio.run(scenario())
    stdio = [r for r in logs if r.get("event") == "from stdio"]
    assert stdio and stdio[0]["log_level"] == "warning" and stdio[0]["answer"] == 42, logs
    assert stdio[0]["plugin"] == "goplugin_services"
    assert any(r.get("event") == "plugin stdout" and r.get("line") == "a stray print" for r in logs), logs
    assert marker.read_text() == "shutdown called\n", "GRPCController.Shutdown was not called"
    assert code == 0, f"after Shutdown the plugin exits by itself, not by a signal: {code}"
