"""The host's go-plugin compatibility, language-independent parts: handshake lines, hclog lines,
GRPCStdio, and the parent-death signal. tests/test_go_engine.py runs a real Go plugin."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d.plugin import goplugin, handshake, launcher
from host.engines.plugin_logs import emit_plugin_line
from nodeproc import process_alive, wait_for

CERT = "M" * 400  # what a base64 DER certificate looks like to the parser


@pytest.mark.parametrize(
    ("line", "cert", "multiplex"),
    [
        ("1|1|unix|/tmp/p.sock|grpc", "", None),  # ours
        ("1|1|unix|/tmp/plugin123|grpc|", "", None),  # go-plugin without AutoMTLS
        ("1|1|unix|/tmp/plugin123|grpc||true", "", True),  # go-plugin >= 1.5 with PLUGIN_MULTIPLEX_GRPC
        ("1|1|tcp|127.0.0.1:1234|grpc||false", "", False),
        ("1|1|unix|/tmp/p|grpc|short\n", "short", None),  # go-plugin ignores a sixth field of <= 50 chars
    ],
)
def test_handshake_lines_of_five_six_and_seven_fields(line: str, cert: str, multiplex: bool | None) -> None:
    parsed = handshake.parse_handshake(line, [1])
    assert (parsed.app_version, parsed.protocol, parsed.server_cert, parsed.multiplex) == (
        1,
        "grpc",
        cert,
        multiplex,
    )
    assert handshake.parse_handshake(parsed.render(), [1]) == parsed


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"1|1|unix|/tmp/p|grpc|{CERT}", "serves TLS"),
        ("1|1|unix|/tmp/p|grpc||maybe", "not a boolean"),
        ("1|1|unix|/tmp/p|grpc||true|extra", "expected a handshake line"),
        ("1|1|unix|/tmp/p", "expected a handshake line"),
        ("1|1|unix|/tmp/p|netrpc|", "only speaks grpc"),
    ],
)
def test_bad_handshake_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(handshake.HandshakeError, match=message):
        handshake.parse_handshake(line, [1])


class Recorder:
    """Stands in for a structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.records.append((level, event, fields))


@pytest.mark.parametrize(
    ("level", "expected"),
    [("trace", "debug"), ("debug", "debug"), ("info", "info"), ("warn", "warning"), ("error", "error")],
)
def test_hclog_lines_map_to_structlog(level: str, expected: str) -> None:
    log = Recorder()
    line = (
        f'{{"@level":"{level}","@message":"plugin address","@timestamp":"2026-01-01T00:00:00.000000Z",'
        '"@module":"go_engine","address":"/tmp/plugin1","network":"unix","event":"x","plugin":"y"}'
    )
    emit_plugin_line(log, line)
    assert log.records == [
        (expected, "plugin address", {"module": "go_engine", "address": "/tmp/plugin1", "network": "unix"})
    ]


def test_our_json_lines_and_text_lines_still_map() -> None:
    log = Recorder()
    emit_plugin_line(log, '{"event":"ready","level":"warning","jobs":3,"timestamp":"t"}')
    emit_plugin_line(log, "panic: something", source="stdout")
    assert log.records == [
        ("warning", "ready", {"jobs": 3}),
        ("info", "plugin stdout", {"line": "panic: something"}),
    ]


def test_grpc_stdio_lines_are_re_emitted() -> None:
    """go-plugin's GRPCStdio, lines cut across chunks; a server without GRPCController answers Shutdown."""
    chunks = [(2, b'{"@level":"info","@mess'), (2, b'age":"hi"}\nsecond '), (1, b"out line\n"), (2, b"line")]

    async def stream(request: bytes, context: Any) -> AsyncIterator[Any]:
        for channel, data in chunks:
            yield goplugin.StdioData(channel=channel, data=data)

    async def scenario() -> tuple[bool, list[tuple[str, str]], bool]:
        handler = grpc.method_handlers_generic_handler(
            "plugin.GRPCStdio",
            {
                "StreamStdio": grpc.unary_stream_rpc_method_handler(
                    stream,
                    request_deserializer=lambda b: b,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            },
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        lines: list[tuple[str, str]] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                served = await goplugin.pump_stdio(channel, lambda source, line: lines.append((source, line)))
                shut = await goplugin.shutdown(channel, 2.0)
        finally:
            await server.stop(None)
        return served, lines, shut

    served, lines, shut = asyncio.run(scenario())
    assert served
    assert lines == [
        ("stderr", '{"@level":"info","@message":"hi"}'),
        ("stdout", "out line"),
        ("stderr", "second line"),
    ]
    assert not shut, "Shutdown on a server without GRPCController must report that it is not served"


def test_grpc_stdio_not_served_is_fine() -> None:
    async def scenario() -> bool:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await goplugin.pump_stdio(channel, lambda source, line: None)
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) is False


def test_plugins_get_the_parent_death_signal(tmp_path: Any) -> None:
    """Whatever the plugin's language (here `sleep`), it dies with a SIGKILLed host."""
    host = textwrap.dedent(
        """
        import asyncio, sys
        from c2d.plugin import launcher
        async def main():
            plugin = await launcher.spawn("sleeper", ["sleep", "300"])
            print(plugin.pid, flush=True)
            await asyncio.sleep(300)
        asyncio.run(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", host], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        pid = int(process.stdout.readline())
        assert process_alive(pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_for(lambda: not process_alive(pid), 5, f"the plugin {pid} to die with its host")
    finally:
        process.kill()
        process.wait()
        if "pid" in locals() and process_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_only_a_go_plugin_socket_in_the_temp_folder_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin announcing someone else's socket (or a file) must not get it deleted."""
    tmp, elsewhere = tmp_path / "tmp", tmp_path / "elsewhere"
    tmp.mkdir()
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def bound(path: Path) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock

    ours, other, named = tmp / "plugin123", elsewhere / "plugin456", tmp / "docker.sock"
    plain = tmp / "plugin789"
    plain.write_text("not a socket")
    sockets = [bound(ours), bound(other), bound(named)]
    try:
        for path in (ours, other, named, plain):
            line = handshake.HandshakeLine(1, 1, "unix", str(path), "grpc")
            plugin = launcher.PluginProcess("p", process=None, socket_dir=str(tmp_path / "dir"), line=line)  # type: ignore[arg-type]
            plugin._remove_foreign_socket()
        assert (ours.exists(), other.exists(), named.exists(), plain.exists()) == (False, True, True, True)
    finally:
        for sock in sockets:
            sock.close()


def test_hclog_text_lines_keep_their_level() -> None:
    log = Recorder()
    emit_plugin_line(log, "2026-12-04T06:35:02.333Z [WARN]  go_engine: disk nearly full: free=3%")
    emit_plugin_line(log, "2026-12-04T06:35:02.333Z [TRACE] go_engine: tick")
    assert log.records == [
        ("warning", "plugin stderr", {"line": "go_engine: disk nearly full: free=3%"}),
        ("debug", "plugin stderr", {"line": "go_engine: tick"}),
    ]
