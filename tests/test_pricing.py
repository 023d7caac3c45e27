"""Quotes: per stage and resource, rounded up, in the consumer's chain and token only."""

from __future__ import annotations

import pytest

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host import pricing
from host.errors import RequestError
from host.orchestrator.validation import StagePlan

TOKEN = "0x" + "11" * 20


def environment() -> common_pb2.Environment:
    return common_pb2.Environment(
        id="env",
        fees=[
            common_pb2.ChainFees(
                chain_id=31337,
                token_address=TOKEN,
                token_symbol="TST",
                escrow_address="0x" + "22" * 20,
                prices=[
                    common_pb2.ResourcePrice(resource_id="cpu", price_per_unit_minute="1000"),
                    common_pb2.ResourcePrice(resource_id="ram", price_per_unit_minute="0.5"),
                ],
            )
        ],
    )


def plan(index: int, seconds: int, cpu: float, ram: float) -> StagePlan:
    return StagePlan(
        index=index,
        job_id=f"j{index}",
        environment=environment(),
        engine="e",
        stage=compute_pb2.Stage(index=index),
        resources=[{"id": "cpu", "amount": cpu}, {"id": "ram", "amount": ram}, {"id": "disk", "amount": 1}],
        max_duration_seconds=seconds,
    )


def test_quote_sums_stages_rounding_minutes_and_costs_up() -> None:
    payment = compute_pb2.Payment(chain_id=31337, token_address=TOKEN.upper().replace("0X", "0x"))
    quote = pricing.quote([plan(0, 90, 2, 3), plan(1, 60, 1, 1)], payment, "0xnode")
    # stage 0: 2 minutes; cpu 2*1000*2 = 4000, ram 3*0.5*2 = 3, disk unpriced 0
    # stage 1: 1 minute;  cpu 1000, ram 0.5 -> 1 (rounded up)
    assert [(line.stage_index, line.resource_id, line.cost) for line in quote.breakdown] == [
        (0, "cpu", "4000"),
        (0, "ram", "3"),
        (0, "disk", "0"),
        (1, "cpu", "1000"),
        (1, "ram", "1"),
        (1, "disk", "0"),
    ]
    assert quote.amount == "5004"
    assert quote.payee == "0xnode" and quote.escrow_address == "0x" + "22" * 20
    assert quote.min_lock_seconds == 150 + pricing.CLAIM_MARGIN_SECONDS


def test_a_token_the_environment_does_not_take_is_refused_naming_what_it_takes() -> None:
    with pytest.raises(RequestError) as caught:
        pricing.quote([plan(0, 60, 1, 1)], compute_pb2.Payment(chain_id=1, token_address=TOKEN), "0xnode")
    assert "accepts TST on chain 31337" in caught.value.message


def test_the_quote_carries_the_environments_minimum_in_whole_minutes() -> None:
    payment = compute_pb2.Payment(chain_id=31337, token_address=TOKEN)
    short = plan(0, 600, 1, 1)
    short.environment.min_job_duration_seconds = 130  # 2 min 10 s: billed as 3 minutes at least
    lines = pricing.quote([short, plan(1, 600, 1, 1)], payment, "0xnode").breakdown
    assert {(line.stage_index, line.min_minutes) for line in lines} == {(0, 3), (1, 0)}
