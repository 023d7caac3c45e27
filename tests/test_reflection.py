"""Server reflection as tools outside this codebase use it: v1 and v1alpha, method symbols,
and the README's ``grpcurl`` and ``buf curl`` lines run as written against a real node."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from test_cli_e2e import DEFAULT_ADDRESS, REPO_ROOT, blocks

from nodeproc import running_node

Request = reflection_pb2.ServerReflectionRequest
Response = reflection_pb2.ServerReflectionResponse
PATHS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def tool(name: str, path: Path | None = None) -> str:
    """The tool's executable; CI must have it (scripts/setup-dev installs both)."""
    found = str(path) if path and path.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed; run bash scripts/setup-dev"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run {name}: {message}", pytrace=False)
    pytest.skip(message)


def ask(channel: grpc.Channel, version: str, request: Request) -> Response:
    """One request on the reflection stream of ``version``; v1's messages are v1alpha's, byte for byte."""
    call: Callable[..., list[Response]] = channel.stream_stream(
        PATHS[version],
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    (reply,) = list(call(iter([request]), timeout=10))
    return reply


def files(reply: Response) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    protos = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in reply.file_descriptor_response.file_descriptor_proto
    ]
    return {proto.name: proto for proto in protos}


def test_reflection_v1_and_v1alpha_resolve_services_and_methods(tmp_path: Path) -> None:
    with running_node(tmp_path / "data") as node:
        node.wait_listening()
        for version in PATHS:
            listed = ask(node.channel, version, Request(list_services=""))
            names = {s.name for s in listed.list_services_response.service}
            assert {
                "c2d.compute.v1.ComputeService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= names, (version, names)

            method = ask(
                node.channel,
                version,
                Request(file_containing_symbol="c2d.compute.v1.ComputeService.GetEnvironments"),
            )
            compute = files(method)["c2d/compute/v1/compute.proto"]
            (service,) = compute.service
            assert "GetEnvironments" in {m.name for m in service.method}

            v1_itself = ask(
                node.channel, version, Request(file_containing_symbol="grpc.reflection.v1.ServerReflection")
            )
            (v1_file,) = files(v1_itself).values()
            assert v1_file.package == "grpc.reflection.v1"
            assert {m.name for m in v1_file.message_type} >= {
                "ServerReflectionRequest",
                "ServerReflectionResponse",
            }

            for unknown in ("c2d.compute.v1.ComputeService.NoSuchMethod", "no.such.Symbol"):
                missing = ask(node.channel, version, Request(file_containing_symbol=unknown))
                assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], (
                    version,
                    unknown,
                )


def test_the_readme_grpc_tool_lines_work_as_written(tmp_path: Path) -> None:
    (block,) = blocks("tools")
    executables = {
        "grpcurl": tool("grpcurl"),
        "node_modules/.bin/buf": tool("buf", REPO_ROOT / "node_modules" / ".bin" / "buf"),
    }
    with running_node(tmp_path / "data") as node:
        node.wait_environment("stub-local")
        outputs = []
        for line in filter(str.strip, block.lines):
            words = [word.replace(DEFAULT_ADDRESS, node.address) for word in shlex.split(line)]
            assert words[0] in executables, (
                f"the README's tool block runs {words[0]!r}; this test knows {list(executables)}"
            )
            done = subprocess.run(
                [executables[words[0]], *words[1:]], capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
            outputs.append(done.stdout)
    described, called = outputs
    assert "c2d.compute.v1.ComputeService.GetEnvironments is a method" in described, described
    assert "GetEnvironmentsRequest" in described
    assert "stub-local" in {env["id"] for env in json.loads(called)["environments"]}
