"""A test double of Bacalhau v1.9's orchestrator REST API whose one compute node runs Docker.

No Bacalhau network runs on the development and CI machines, so the Bacalhau engine is tested
against this double. It is a real aiohttp server on loopback that the official client
``bacalhau_apiclient`` talks to unchanged, answering with v1.9's JSON shapes and encodings, and its
compute node runs each submitted task as a real Docker container (resources, network, execution
timeout, localDirectory bind mounts restricted to allow-listed paths, labels). Jobs and executions
move through v1.9's states with history events; results come back as RunOutput and, with the local
publisher, as a tar.gz served over HTTP. See README.md for what it covers and what it does not.
"""

from .double import DEFAULT_CAPACITY, BacalhauDouble, StartedDouble, start_double
from .records import DesiredState, ExecutionState, JobState
from .spec import Resources

__all__ = [
    "DEFAULT_CAPACITY",
    "BacalhauDouble",
    "DesiredState",
    "ExecutionState",
    "JobState",
    "Resources",
    "StartedDouble",
    "start_double",
]
