"""Holding an environment's capacity with a stage that runs until stopped, so that whether another
stage waits in the queue is never a matter of timing (tests/test_queue_limits.py and the Docker
tests of the same rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from nodeproc import wait_for


def job(client: Client, workflow_id: str) -> compute_pb2.JobInfo:
    """The first stage of a workflow, as the node reports it now."""
    return client.status(workflow_id=workflow_id)[0]


def hold_capacity(
    client: Client, blocker: dict[str, Any], start: Callable[[dict[str, Any]], Any] | None = None
) -> str:
    """Starts ``blocker`` (a stage that runs until stopped) with ``start`` (default: the client's
    free start) and waits until it runs, holding the environment's slot; returns its workflow id."""
    started = (start or client.start)(blocker)
    wait_for(
        lambda: job(client, started.workflow_id).status == common_pb2.JOB_STATUS_RUNNING,
        90,
        "the blocker running",
    )
    return str(started.workflow_id)


def release(client: Client, workflow_id: str) -> None:
    """Stops the blocker and waits until it has ended (its slot free again)."""
    client.stop(workflow_id=workflow_id)
    client.wait(workflow_id, timeout=60)
