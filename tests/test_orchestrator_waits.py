"""A pod call that is a moment ahead of the engine waits for its stage's next recorded change,
not on a timer: the orchestrator wakes exactly the calls waiting on the stages a unit changed."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from c2d.common.v1 import common_pb2
from host.orchestrator.orchestrator import Orchestrator
from host.store.stages import Changes, Recorded

S = common_pb2.JobStatus
HOUR = 3600.0


def orchestrator() -> Orchestrator:
    """Only the waiting and announcing parts are used: nothing else is wired."""
    nothing = cast(Any, None)
    return Orchestrator(
        nothing,
        nothing,
        nothing,
        pod_endpoint="127.0.0.1:1",
        default_storage_expiry_seconds=1,
    )


def test_a_recorded_change_wakes_the_calls_waiting_on_that_stage_only() -> None:
    async def scenario() -> None:
        orch = orchestrator()
        waiting = asyncio.create_task(orch.stage_changed("job-a", HOUR))
        other = asyncio.create_task(orch.stage_changed("job-b", HOUR))
        await asyncio.sleep(0)  # both are waiting now
        orch._announce(Changes(recorded=[Recorded("job-a", "wf", S.JOB_STATUS_PUBLISHING)]))
        await waiting  # an hour otherwise
        await asyncio.sleep(0)
        assert not other.done()
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        assert orch._stage_waiters == {}  # a cancelled wait leaves nothing behind

    asyncio.run(scenario())


def test_a_wait_with_no_change_ends_at_its_timeout_and_leaves_nothing() -> None:
    async def scenario() -> None:
        orch = orchestrator()
        await orch.stage_changed("job-a", 0)
        assert orch._stage_waiters == {}

    asyncio.run(scenario())
