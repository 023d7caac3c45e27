"""Errors never echo unbounded input: a 1 MB id, name, did or image in any string field of any request
is refused with a short message (at most c2d.quoting.MESSAGE_LIMIT bytes), control characters escaped.

The string fields are found by walking the request descriptors (:mod:`security.walk`). Before the
cap, a 1 MB job id made the status message exceed gRPC's metadata limit, so the caller saw
RESOURCE_EXHAUSTED (or INTERNAL) instead of the refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from c2d.conformance.harness import EngineProcess
from c2d.quoting import MESSAGE_LIMIT, capped, quoted
from security.hostile import Caller, NodeSetup, hostile_node, stub_engine, tracebacks
from security.walk import SERVICES, STRING, STRUCT_STRING, Leaf, leaves, set_at

C = grpc.StatusCode
# A megabyte that starts with what a terminal or a log would act on.
HUGE = "\x1b[31m\r\nforged log line\x00" + "x" * (1 << 20)
REFUSED = {
    C.OK,  # a string the node does not look at (a free-text message, say) may be fine
    C.INVALID_ARGUMENT,
    C.OUT_OF_RANGE,
    C.NOT_FOUND,
    C.PERMISSION_DENIED,
    C.UNAUTHENTICATED,
    C.FAILED_PRECONDITION,
    C.UNAVAILABLE,  # a pod's publishing call before its stage publishes: "not yet" (podstates)
    C.ALREADY_EXISTS,
}
# Fields whose huge value would be signed over or start work rather than reach an error.
SKIPPED = {"signature"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSetup]:
    with hostile_node(tmp_path_factory.mktemp("echo")) as node_setup:
        yield node_setup


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with stub_engine(tmp_path_factory.mktemp("echo-engine")) as process:
        yield process


def test_quoted_and_capped_are_short_and_escaped() -> None:
    assert quoted("abc") == "'abc'"
    assert quoted(HUGE).endswith(f"… ({len(HUGE)} characters)") and len(quoted(HUGE)) < 120
    assert "\x1b" not in quoted(HUGE) and "\\x1b" in quoted(HUGE)
    message = capped("no job " + HUGE)
    assert len(message.encode()) <= MESSAGE_LIMIT and "\x00" not in message and "\r" not in message
    assert capped("é" * 2000).encode().decode() and len(capped("é" * 2000).encode()) <= MESSAGE_LIMIT


def test_huge_strings_in_every_field_get_a_short_refusal(setup: NodeSetup, engine: EngineProcess) -> None:
    caller = Caller(setup, engine)
    found = [
        leaf
        for service in SERVICES.values()
        for method in service.methods
        for leaf in leaves(method, {STRING, STRUCT_STRING})
        if leaf.last.name not in SKIPPED
        and not (method.name == "Configure" and leaf.last.name in ("state_dir", "host_id"))
    ]

    def send(leaf: Leaf) -> str | None:
        request = caller.base(leaf.method)
        set_at(request, leaf, HUGE)
        caller.sign(leaf.method, request)
        code, message = caller.send(leaf.method, request)
        if code not in REFUSED:
            return f"{leaf}: {code.name} {message[:200]!r}"
        if len(message.encode()) > MESSAGE_LIMIT or any(c in message for c in "\x00\x1b\r\n"):
            return f"{leaf}: {code.name}, a message of {len(message.encode())} bytes: {message[:200]!r}"
        return None

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            failures = [f for f in pool.map(send, found) if f is not None]
    finally:
        caller.close()
    assert len(found) > 40, f"the walk found only {len(found)} string fields"
    assert not failures, "\n".join(failures)
    assert not tracebacks(setup.node.raw_lines), tracebacks(setup.node.raw_lines)
    assert not tracebacks(engine.plugin.stderr_text().splitlines())


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("GetComputeStatus", "job_id"),
        ("GetComputeStatus", "workflow_id"),
        ("StopCompute", "job_id"),
        ("GetComputeResult", "job_id"),
        ("RemoveAsset", "did"),
    ],
)
def test_a_megabyte_id_is_not_found_with_a_short_quote(setup: NodeSetup, method: str, field: str) -> None:
    """The reported case: the refusal is NOT_FOUND (not RESOURCE_EXHAUSTED), quoting a short escaped prefix."""
    caller = Caller(setup)
    try:
        descriptor = SERVICES["ComputeService"].methods_by_name[method]
        request = caller.base(descriptor)
        setattr(request, field, HUGE)
        caller.sign(descriptor, request)
        code, message = caller.send(descriptor, request)
    finally:
        caller.close()
    assert code == C.NOT_FOUND, (code, message[:300])
    assert len(message.encode()) <= MESSAGE_LIMIT, len(message)
    assert "\\x1b[31m\\r\\nforged log line\\x00" in message and "\x1b" not in message, message[:300]
