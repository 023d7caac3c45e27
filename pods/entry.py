"""The frame both pods run in: read the environment, open the log and the client, report a crash.

A pod must always end with a status report and an exit status the engine can
act on, even when its own code fails, so a bug is reported to the node as a
failure of the pod's phase (its traceback goes to stderr only).
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable

import grpc

from c2d.pod.v1 import pod_pb2
from pods.client import PodClient
from pods.env import PodEnv, PodEnvError
from pods.failures import describe_rpc_error
from pods.podlog import PodLog
from pods.retry import Backoff

Body = Callable[[PodEnv, PodClient, PodLog], int]
# Exit status when the engine started the pod without its environment.
USAGE_EXIT = 2


def run_pod(pod: str, log_name: str, body: Body, crash_phase: pod_pb2.PodPhase) -> int:
    """Runs ``body`` with the pod's environment, log and client; its exit status."""
    try:
        env = PodEnv.from_environ()
    except PodEnvError as exc:
        sys.stderr.write(f"{pod}: {exc}\n")
        return USAGE_EXIT
    log = PodLog(env.logs / log_name)
    client = PodClient(
        env.node_http_api,
        env.private_key,
        env.job_id,
        backoff=Backoff(budget=env.retry_budget),
        on_retry=lambda exc, wait: log.info(f"{describe_rpc_error(exc)}; retrying in {wait:.1f} s"),
    )
    try:
        return body(env, client, log)
    except Exception:
        log.info(f"internal error in {pod}")
        log.private(traceback.format_exc())
        with contextlib.suppress(grpc.RpcError):
            client.update_status(crash_phase, f"internal error in {pod}")
        return 1
    finally:
        client.close()
        log.close()
