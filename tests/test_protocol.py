"""The protocol: generated modules are current, the protos pass buf lint/format, stubs import."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_generated_modules_are_current(repo_root: Path) -> None:
    result = _run([sys.executable, "scripts/gen_protos.py", "--check"], repo_root)
    assert result.returncode == 0, (
        "generated protobuf modules are stale; run python scripts/gen_protos.py and commit the result\n"
        f"{result.stdout}{result.stderr}"
    )


@pytest.fixture(scope="module")
def buf(repo_root: Path) -> Path:
    """node_modules/.bin/buf, installed by npm ci (scripts/setup-dev); CI must have it."""
    binary = repo_root / "node_modules" / ".bin" / "buf"
    problem = None
    if not binary.exists():
        problem = f"{binary.relative_to(repo_root)} is missing"
    else:
        version = _run([str(binary), "--version"], repo_root)
        if version.returncode != 0:
            problem = f"buf --version failed: {version.stdout}{version.stderr}"
    if problem:
        message = f"{problem}; run bash scripts/setup-dev (npm ci) to install buf"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run buf: {message}", pytrace=False)
        pytest.skip(message)
    return binary


def test_buf_lint(buf: Path, repo_root: Path) -> None:
    result = _run([str(buf), "lint"], repo_root)
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


def test_buf_format(buf: Path, repo_root: Path) -> None:
    result = _run([str(buf), "format", "--diff", "--exit-code"], repo_root)
    assert result.returncode == 0, (
        f"protos are not buf-formatted (fix with: node_modules/.bin/buf format -w):\n"
        f"{result.stdout}{result.stderr}"
    )


# (module, service, methods: name -> (client streaming, server streaming)): a handful per service.
SERVICES = [
    (
        "c2d.compute.v1.compute",
        "ComputeService",
        {
            "GetEnvironments": (False, False),
            "InitializeCompute": (False, False),
            "StartCompute": (False, False),
            "FreeStartCompute": (False, False),
            "StopCompute": (False, False),
            "GetComputeStatus": (False, False),
            "GetComputeResult": (False, True),
            "StreamComputeLogs": (False, True),
        },
    ),
    (
        "c2d.engine.v1.engine",
        "ComputeEngineService",
        {
            "GetPluginInfo": (False, False),
            "Configure": (False, False),
            "WatchFingerprint": (False, True),
            "StartJob": (False, False),
            "RecoverJob": (False, False),
            "WatchJob": (False, True),
            "StopJob": (False, False),
            "DestroyJob": (False, False),
            "ListJobs": (False, False),
            "StreamJobLogs": (False, True),
        },
    ),
    (
        "c2d.pod.v1.pod",
        "PodService",
        {
            "GetProvisioning": (False, False),
            "UpdateJobStatus": (False, False),
            "PublishResult": (True, False),
        },
    ),
]


@pytest.mark.parametrize(("module", "service", "methods"), SERVICES, ids=[s[1] for s in SERVICES])
def test_service_stubs(module: str, service: str, methods: dict[str, tuple[bool, bool]]) -> None:
    pb2 = importlib.import_module(f"{module}_pb2")
    pb2_grpc = importlib.import_module(f"{module}_pb2_grpc")

    descriptor = pb2.DESCRIPTOR.services_by_name[service]
    assert descriptor.full_name == f"{module.rsplit('.', 1)[0]}.{service}"
    for name, (client_streaming, server_streaming) in methods.items():
        assert name in descriptor.methods_by_name, f"{service} has no method {name}"
        method = descriptor.methods_by_name[name]
        assert (method.client_streaming, method.server_streaming) == (client_streaming, server_streaming), (
            f"{service}.{name}: streaming shape changed"
        )

    stub, servicer = getattr(pb2_grpc, f"{service}Stub"), getattr(pb2_grpc, f"{service}Servicer")
    assert callable(getattr(pb2_grpc, f"add_{service}Servicer_to_server"))
    for name in methods:
        assert callable(getattr(servicer, name)), f"{service}Servicer lacks {name}"
    # The stub binds one multicallable per method of the service.
    with grpc.insecure_channel("localhost:1") as channel:
        bound = stub(channel)
        for name in descriptor.methods_by_name:
            assert hasattr(bound, name), f"{service}Stub lacks {name}"


def test_every_proto_has_generated_modules(repo_root: Path) -> None:
    for proto in sorted((repo_root / "proto").rglob("*.proto")):
        dotted = ".".join(proto.relative_to(repo_root / "proto").with_suffix("").parts)
        importlib.import_module(f"{dotted}_pb2")
        importlib.import_module(f"{dotted}_pb2_grpc")
