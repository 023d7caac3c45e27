"""Which registry credentials a pull sends: the consumer's for their job, else the operator's.

A consumer's credentials arrive in StartJob (``JobSpec.registry_auth``, decrypted by the
host) and serve the algorithm image's pull only. They are kept in this process's memory,
never in the job's ``spec.json``, its handle, its events or a log line, and dropped once
the image is on the daemon or the job is destroyed. After a plugin restart they are gone:
a pull that had not finished then runs with the operator's credentials, and when that
fails the message says why.
"""

from __future__ import annotations

import threading

from c2d import registry_auth
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit.jobspec import ImageRef
from c2d_docker_engine.config import DockerSettings, RegistryAuth

RECORD_KEY = "job_registry_auth"  # in spec.json: true when the job came with credentials (never them)
LOST_ON_RESTART = (
    " (the job's own registry credentials are kept in memory only and were lost when the "
    "engine plugin restarted; start the job again)"
)


class JobCredentials:
    """The consumers' credentials of the jobs whose algorithm image is not pulled yet, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: dict[str, RegistryAuth] = {}

    def keep(self, job_id: str, auth: engine_pb2.RegistryAuth, ref: ImageRef) -> None:
        """Holds ``auth`` for the job's pull of ``ref``, addressed to the image's own registry."""
        server = registry_auth.registry_of(ref.repository)
        with self._lock:
            self._by_job[job_id] = RegistryAuth(
                username=auth.username, password=auth.password, serveraddress=server
            )

    def get(self, job_id: str) -> RegistryAuth | None:
        with self._lock:
            return self._by_job.get(job_id)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._by_job.pop(job_id, None)


def for_pull(settings: DockerSettings, ref: ImageRef, job_auth: RegistryAuth | None) -> RegistryAuth | None:
    """The job's own credentials when it has them, else the operator's for the image's registry:
    its ``registries`` entry, else ``registry_auth`` when that names the same registry or none
    (then it goes to every registry without an entry, as it did before there were several)."""
    if job_auth is not None:
        return job_auth
    server = registry_auth.registry_of(ref.repository)
    for entry in settings.registries:
        if entry.serveraddress == server:
            return entry
    single = settings.registry_auth
    if (
        single is not None
        and single.serveraddress
        and registry_auth.normalize_server(single.serveraddress) != server
    ):
        return None
    return single
