"""Every number in every request is finite and in range: NaN, infinities and absurd magnitudes are refused.

The numeric (and enum) fields are found by walking the request descriptors of the three services
(:mod:`security.walk`), never listed here, so a new field is covered the day it is added. Each gets
NaN, ±inf, negative, huge (1e308, 2^63-1, 2^63, 2^64-1), the rule's ceiling + 1 and boundary
values (0, -0.0, the smallest subnormal), signed as a consumer, the operator or the running stage's
pod would sign them, against a real node and a real external_stub plugin. A value no meaning can
have is INVALID_ARGUMENT naming the field's path, with nothing stored (the node's database rows,
the engine's jobs) and no nonce consumed; any other value gets a documented answer, never INTERNAL;
and no log shows a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from c2d import auth, bounds
from c2d.compute.v1 import compute_pb2
from c2d.conformance.harness import EngineProcess
from security.hostile import Caller, NodeSetup, engine_jobs, hostile_node, row_counts, stub_engine, tracebacks
from security.walk import ENUM, NUMBER, SERVICES, STRUCT_NUMBER, Leaf, leaves, set_at

C = grpc.StatusCode
# What a request may be answered with when its numbers are fine but auth or state refuse it.
DOCUMENTED = {
    C.OK,
    C.INVALID_ARGUMENT,
    C.OUT_OF_RANGE,
    C.NOT_FOUND,
    C.PERMISSION_DENIED,
    C.UNAUTHENTICATED,
    C.FAILED_PRECONDITION,
    C.UNAVAILABLE,  # a pod's publishing call before its stage publishes: "not yet" (podstates)
    C.ALREADY_EXISTS,
}
SUBNORMAL = 5e-324
_U64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_U32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}


def values(leaf: Leaf) -> tuple[list[Any], list[Any]]:
    """(values no meaning can have, boundary values) for the leaf's type and rule."""
    if leaf.kind == STRUCT_NUMBER:  # free JSON: any finite number of sane magnitude is fine
        return [math.nan, math.inf, -math.inf, 1e308, -1e308], [0.0, -0.0, SUBNORMAL, -1.0, 2.0**53]
    field = leaf.scalar
    assert field is not None
    if leaf.kind == ENUM:
        return [2**31 - 1], [0]
    rule = bounds.rule_for(field)
    assert rule is not None
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        hostile = [math.nan, math.inf, -math.inf, 1e308, -1e308, -1.0, float(2**63 - 1)]
        return hostile, [0.0, -0.0, SUBNORMAL]
    top = 2**64 - 1 if field.type in _U64 else 2**32 - 1 if field.type in _U32 else 2**63 - 1
    low = 0 if field.type in _U64 | _U32 else -(2**63 if top == 2**63 - 1 else 2**31)
    hostile = [v for v in (2**63, 2**64 - 1, int(rule.high) + 1) if rule.high < v <= top]
    boundary = [
        v for v in (low, 0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, int(rule.high)) if low <= v <= rule.high
    ]
    return sorted(set(hostile)), sorted(set(boundary))


def all_leaves() -> list[Leaf]:
    found = [
        leaf
        for service in SERVICES.values()
        for method in service.methods
        for leaf in leaves(method, {NUMBER, ENUM, STRUCT_NUMBER})
    ]
    # Nonces last: an in-range nonce is used up, and the pod key has no other stage to sign for.
    return sorted(found, key=lambda leaf: leaf.is_nonce())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSetup]:
    with hostile_node(tmp_path_factory.mktemp("numeric")) as node_setup:
        yield node_setup


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with stub_engine(tmp_path_factory.mktemp("numeric-engine")) as process:
        yield process


def _request(caller: Caller, leaf: Leaf, value: Any) -> Any:
    request = caller.base(leaf.method)
    nonce = None
    if leaf.is_nonce():
        nonce = value
    else:
        set_at(request, leaf, value)
    key = (
        auth.new_private_key()
        if leaf.is_nonce() and leaf.method.containing_service.name == "ComputeService"
        else ""
    )
    if leaf.is_nonce() and leaf.method.name in {"RegisterAsset", "ListAssets", "RemoveAsset", "ListEngines"}:
        key = ""  # the operator's nonce: used up by a fine value too, and these calls come last
    caller.sign(leaf.method, request, nonce=nonce, key=key)
    return request


def _stored(setup: NodeSetup, engine: EngineProcess) -> tuple[dict[str, int], list[str]]:
    return row_counts(setup.node.data_dir), engine_jobs(engine)


def test_every_numeric_field_of_every_request_is_checked(setup: NodeSetup, engine: EngineProcess) -> None:
    caller = Caller(setup, engine)
    failures: list[str] = []
    in_range: list[tuple[Leaf, Any]] = []
    checked = 0
    try:
        for leaf in all_leaves():
            hostile, boundary = values(leaf)
            in_range += [(leaf, value) for value in boundary]
            for value in hostile:
                before = _stored(setup, engine)
                code, message = caller.send(leaf.method, _request(caller, leaf, value))
                checked += 1
                if code != C.INVALID_ARGUMENT or leaf.path not in message:
                    failures.append(f"{leaf} = {value!r}: {code.name} {message[:200]!r}")
                elif _stored(setup, engine) != before:
                    failures.append(f"{leaf} = {value!r}: refused, but something was stored")

        def fine(item: tuple[Leaf, Any]) -> str | None:
            leaf, value = item
            code, message = caller.send(leaf.method, _request(caller, leaf, value))
            if code not in DOCUMENTED:
                return f"{leaf} = {value!r} (in range): {code.name} {message[:200]!r}"
            return None

        # In-range values may wait on a stage's state (a pod call): sent side by side, nonces last.
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(fine, [item for item in in_range if not item[0].is_nonce()]))
        answers += [fine(item) for item in in_range if item[0].is_nonce()]
        checked += len(answers)
        failures += [a for a in answers if a is not None]
    finally:
        caller.close()
    assert checked > 300, f"only {checked} requests: the walk found too few fields"
    assert not failures, f"{len(failures)} of {checked} requests answered wrongly:\n" + "\n".join(failures)
    assert not tracebacks(setup.node.raw_lines), tracebacks(setup.node.raw_lines)
    assert not tracebacks(engine.plugin.stderr_text().splitlines())


def test_a_consumer_nonce_that_is_refused_is_not_used_up(setup: NodeSetup) -> None:
    """A refusal for a number comes before the signature is checked, so it stores nothing, not even a nonce."""
    caller = Caller(setup)
    try:
        method = SERVICES["ComputeService"].methods_by_name["FreeStartCompute"]
        request = caller.base(method)
        request.workflow.stages[0].resources[0].amount = math.nan
        nonce = auth.new_nonce()
        caller.sign(method, request, nonce=nonce)
        code, message = caller.send(method, request)
        assert code == C.INVALID_ARGUMENT, message
        assert "workflow.stages[0].resources[0].amount is not a finite number" in message
        status = compute_pb2.GetComputeStatusRequest(job_id=setup.finished_job)
        caller.sign(SERVICES["ComputeService"].methods_by_name["GetComputeStatus"], status, nonce=nonce)
        assert (
            len(caller.compute.GetComputeStatus(status, timeout=20).jobs) == 1
        )  # the same nonce still works
    finally:
        caller.close()


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(amount=st.floats(allow_nan=True, allow_infinity=True))
@example(amount=math.nan)
@example(amount=-math.inf)
@example(amount=-0.0)
@example(amount=SUBNORMAL)
@example(amount=2.0)
@example(amount=2.0000001)
def test_a_cpu_amount_is_quoted_exactly_when_it_fits(setup: NodeSetup, amount: float) -> None:
    """InitializeCompute (unsigned, stores nothing) accepts a CPU amount exactly when it is a number the
    environment can grant: finite, at least the minimum, at most the maximum."""
    env = next(e for e in setup.node.environments() if e.id == "stub-local")
    cpu = next(r for r in env.resources if r.id == "cpu")
    caller = Caller(setup)
    try:
        method = SERVICES["ComputeService"].methods_by_name["InitializeCompute"]
        request = caller.base(method)
        request.workflow.stages[0].resources[0].amount = amount
        code, message = caller.send(method, request)
    finally:
        caller.close()
    fits = math.isfinite(amount) and max(cpu.min, 0) <= amount <= (cpu.max or cpu.total)
    assert code == (C.OK if fits else C.INVALID_ARGUMENT), (amount, code, message)
